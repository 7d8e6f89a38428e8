//! What node containers (local runs, do-fake's droplets) leave on this machine, found by the run's marks alone:
//! containers, networks and volumes by label; inner engines' cgroup directories and
//! per-run temp directories by name. Teardown, `down`, `ls` and `sweep` share this.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use futures_util::future::join_all;

use std::net::IpAddr;

use futures_util::future::BoxFuture;

use super::NodeHandles;
use crate::exit::Failure;
use crate::marks::{self, NAME_PREFIX};
use crate::targets::{Leftover, LeftoverKind, Leftovers, Removed};

/// One resource found by its labels (or, for host paths, by its name).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalResource {
    pub kind: ResourceKind,
    pub name: String,
    pub run_id: String,
    /// Unix seconds, when known.
    pub created: Option<u64>,
    pub kept: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    Container,
    Network,
    Volume,
    CgroupDir,
    TempDir,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Container => "container",
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
            ResourceKind::CgroupDir => "cgroup dir",
            ResourceKind::TempDir => "temp dir",
        }
    }
}

fn label_info(l: &Option<HashMap<String, String>>) -> Option<(String, Option<u64>, bool)> {
    let l = l.as_ref()?;
    let run = l.get(marks::RUN)?.clone();
    let created = l.get(marks::CREATED).and_then(|c| c.parse().ok());
    let kept = l.get(marks::KEEP).is_some_and(|k| k == "true");
    Some((run, created, kept))
}

/// Everything of run `run_id` (or of every run) on the host engine and the host.
pub async fn find_resources(host: &Docker, run_id: Option<&str>) -> anyhow::Result<Vec<LocalResource>> {
    let filter = marks::run_filter(run_id);
    let mut out = Vec::new();
    let containers = host
        .list_containers(Some(
            ListContainersOptionsBuilder::new().all(true).filters(&filter).build(),
        ))
        .await
        .context("listing containers")?;
    for c in containers {
        if let Some((run, created, kept)) = label_info(&c.labels) {
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .map(|n| n.trim_start_matches('/').to_string())
                .or(c.id)
                .unwrap_or_default();
            out.push(LocalResource {
                kind: ResourceKind::Container,
                name,
                run_id: run,
                created,
                kept,
            });
        }
    }
    let networks = host
        .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filter).build()))
        .await
        .context("listing networks")?;
    for n in networks {
        if let Some((run, created, kept)) = label_info(&n.labels) {
            out.push(LocalResource {
                kind: ResourceKind::Network,
                name: n.name.unwrap_or_default(),
                run_id: run,
                created,
                kept,
            });
        }
    }
    let volumes = host
        .list_volumes(Some(ListVolumesOptionsBuilder::new().filters(&filter).build()))
        .await
        .context("listing volumes")?;
    for v in volumes.volumes.unwrap_or_default() {
        if let Some((run, created, kept)) = label_info(&Some(v.labels)) {
            out.push(LocalResource {
                kind: ResourceKind::Volume,
                name: v.name,
                run_id: run,
                created,
                kept,
            });
        }
    }
    for (kind, path) in host_paths(run_id) {
        let run = run_of_path(&path).unwrap_or_default();
        let created = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        out.push(LocalResource {
            kind,
            name: path.display().to_string(),
            run_id: run,
            created,
            // Only a kept run's directory holds its client certificates or SSH key (to
            // reach it later).
            kept: kind == ResourceKind::TempDir && (path.join("certs").is_dir() || path.join("id_ed25519").is_file()),
        });
    }
    Ok(out)
}

/// The run id in a `swarm-e2e-<run>[-...]` path's last component.
fn run_of_path(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let id: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    (id.len() == 8).then_some(id)
}

/// Cgroup parents left by inner engines and per-run temp directories on this host.
fn host_paths(run_id: Option<&str>) -> Vec<(ResourceKind, PathBuf)> {
    let prefix = match run_id {
        Some(id) => format!("{NAME_PREFIX}{id}"),
        None => NAME_PREFIX.to_string(),
    };
    let mut out = Vec::new();
    let matches = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix) && run_of_path(p).is_some())
    };
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for ctrl in controllers.flatten() {
            if let Ok(entries) = std::fs::read_dir(ctrl.path()) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) && matches(&e.path()) {
                        out.push((ResourceKind::CgroupDir, e.path()));
                    }
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && matches(&e.path()) {
                out.push((ResourceKind::TempDir, e.path()));
            }
        }
    }
    out
}

/// Removes resources: containers first (they hold networks and volumes), then networks,
/// volumes, cgroup directories (depth first) and temp directories. Keeps going past
/// errors and returns them, so one stuck resource does not strand the rest.
pub async fn remove_resources(host: &Docker, resources: &[LocalResource]) -> Vec<String> {
    let mut errors = Vec::new();
    let of = |k: ResourceKind| resources.iter().filter(move |r| r.kind == k);
    let results = join_all(of(ResourceKind::Container).map(|r| async move {
        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match host.remove_container(&r.name, Some(opts)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(format!("container {}: {e}", r.name)),
        }
    }))
    .await;
    errors.extend(results.into_iter().filter_map(Result::err));
    for r in of(ResourceKind::Network) {
        if let Err(e) = remove_network(host, &r.name).await {
            errors.push(format!("network {}: {e}", r.name));
        }
    }
    let results = join_all(of(ResourceKind::Volume).map(|r| async move {
        let opts = RemoveVolumeOptionsBuilder::new().force(true).build();
        match host.remove_volume(&r.name, Some(opts)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(format!("volume {}: {e}", r.name)),
        }
    }))
    .await;
    errors.extend(results.into_iter().filter_map(Result::err));
    for r in of(ResourceKind::CgroupDir) {
        if let Err(e) = remove_cgroup_tree(Path::new(&r.name)).await {
            errors.push(format!("cgroup dir {}: {e}", r.name));
        }
    }
    for r in of(ResourceKind::TempDir) {
        match std::fs::remove_dir_all(&r.name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("temp dir {}: {e}", r.name)),
        }
    }
    errors
}

/// Removes a network of the run. One the engine says still has endpoints once the
/// containers are gone: the endpoints it lists are disconnected by force (stale ones of
/// removed containers) and the removal tried again; when it lists none, the engine's own
/// endpoint count is wrong, which only a restart of the engine recounts.
async fn remove_network(host: &Docker, name: &str) -> Result<(), String> {
    let in_use = match host.remove_network(name).await {
        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
        Err(e) if e.to_string().contains("active endpoints") => e,
        Err(e) => return Err(e.to_string()),
    };
    let inspected = host
        .inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .map_err(|e| format!("{in_use}; inspecting it: {e}"))?;
    let endpoints: Vec<String> = inspected.containers.unwrap_or_default().into_keys().collect();
    if endpoints.is_empty() {
        return Err(format!(
            "{in_use}, while it lists no endpoint: the host engine's endpoint count for it is stale (dockerd logs \
             `Fixing inconsistent endpoint_cnt` when it recounts). hint: restart the host engine (e.g. `systemctl \
             restart docker`), then `swarm-e2e sweep --yes`"
        ));
    }
    for endpoint in &endpoints {
        let request = bollard::models::NetworkDisconnectRequest {
            container: endpoint.clone(),
            force: Some(true),
        };
        if let Err(e) = host.disconnect_network(name, request).await {
            return Err(format!("{in_use}; disconnecting {endpoint} by force: {e}"));
        }
    }
    host.remove_network(name).await.map_err(|e| {
        format!(
            "{e} (after disconnecting {} by force). hint: restart the host engine, then `swarm-e2e sweep --yes`",
            endpoints.join(", ")
        )
    })
}

/// Cgroup directories can only be removed with rmdir, children first. A cgroup whose
/// last process is still exiting refuses (EBUSY) for a moment: retry, bounded.
async fn remove_cgroup_tree(root: &Path) -> std::io::Result<()> {
    let mut dirs = Vec::new();
    collect_dirs(root, &mut dirs)?;
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        let mut attempt = 0;
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if attempt < 50 => {
                    let _ = e;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            out.push(dir.to_path_buf());
            for e in entries.flatten() {
                if e.file_type()?.is_dir() {
                    collect_dirs(&e.path(), out)?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tears a run down: the testcontainers handles first (so their Drop has nothing left
/// to do), then everything else carrying the run's label. A create that was in flight
/// when the run was stopped can land after the first listing, so teardown lists again
/// until a listing comes back empty (at most three rounds). Returns what was removed and
/// the errors met.
pub async fn teardown(host: &Docker, run_id: &str, handles: NodeHandles) -> (Vec<LocalResource>, Vec<String>) {
    join_all(handles.into_iter().map(|h| h.rm())).await;
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..3 {
        let found = match find_resources(host, Some(run_id)).await {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("{e:#}"));
                break;
            }
        };
        if found.is_empty() {
            break;
        }
        errors = remove_resources(host, &found).await;
        removed.extend(found);
    }
    (removed, errors)
}

/// The leftovers of node containers on this machine (local runs, do-fake's droplets).
pub struct NodeContainerLeftovers {
    host: Docker,
}

impl NodeContainerLeftovers {
    pub fn new(host: Docker) -> Self {
        NodeContainerLeftovers { host }
    }
}

impl From<LocalResource> for Leftover {
    fn from(r: LocalResource) -> Self {
        Leftover {
            run_id: r.run_id,
            kind: match r.kind {
                ResourceKind::Container => LeftoverKind::Container,
                ResourceKind::Network => LeftoverKind::Network,
                ResourceKind::Volume => LeftoverKind::Volume,
                ResourceKind::CgroupDir => LeftoverKind::CgroupDir,
                ResourceKind::TempDir => LeftoverKind::TempDir,
            },
            name: r.name,
            id: None,
            created_unix: r.created,
            kept: r.kept,
        }
    }
}

/// The local resource a leftover names; none for a cloud resource.
fn local(r: &Leftover) -> Option<LocalResource> {
    let kind = match r.kind {
        LeftoverKind::Container => ResourceKind::Container,
        LeftoverKind::Network => ResourceKind::Network,
        LeftoverKind::Volume => ResourceKind::Volume,
        LeftoverKind::CgroupDir => ResourceKind::CgroupDir,
        LeftoverKind::TempDir => ResourceKind::TempDir,
        LeftoverKind::Droplet | LeftoverKind::Firewall | LeftoverKind::SshKey => return None,
    };
    Some(LocalResource {
        kind,
        name: r.name.clone(),
        run_id: r.run_id.clone(),
        created: r.created_unix,
        kept: r.kept,
    })
}

impl Leftovers for NodeContainerLeftovers {
    fn target(&self) -> &'static str {
        "local"
    }

    fn place(&self) -> &'static str {
        "this machine"
    }

    fn find(&self) -> BoxFuture<'_, anyhow::Result<Vec<Leftover>>> {
        Box::pin(async move {
            let found = find_resources(&self.host, None).await?;
            Ok(found.into_iter().map(Leftover::from).collect())
        })
    }

    fn remove<'a>(&'a self, found: &'a [Leftover]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut errors: Vec<String> = (found.iter())
                .filter(|r| local(r).is_none())
                .map(|r| format!("{} {} is not on this machine", r.kind.as_str(), r.name))
                .collect();
            let resources: Vec<LocalResource> = found.iter().filter_map(local).collect();
            errors.extend(remove_resources(&self.host, &resources).await);
            errors
        })
    }

    fn down<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Removed, Failure>> {
        Box::pin(async move {
            let (removed, errors) = teardown(&self.host, run_id, Vec::new()).await;
            if removed.is_empty() {
                // An id nobody has is a wrong argument, not a broken machine.
                return Err(
                    Failure::invalid_input(format!("nothing labelled swarm-e2e.run={run_id} was found"))
                        .with_hint("`swarm-e2e ls` lists runs with resources"),
                );
            }
            Ok((removed.into_iter().map(Leftover::from).collect(), errors))
        })
    }

    fn node_address<'a>(&'a self, run_id: &'a str, node: &'a str) -> BoxFuture<'a, Result<IpAddr, Failure>> {
        Box::pin(async move { Ok(super::node_address(&self.host, run_id, node).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_read_back_from_paths() {
        assert_eq!(
            run_of_path(Path::new("/tmp/swarm-e2e-ab12cd34")).as_deref(),
            Some("ab12cd34")
        );
        assert_eq!(
            run_of_path(Path::new("/sys/fs/cgroup/memory/swarm-e2e-ab12cd34-node-1")).as_deref(),
            Some("ab12cd34")
        );
        assert_eq!(run_of_path(Path::new("/tmp/swarm-e2e-node-image-x")), None);
        assert_eq!(run_of_path(Path::new("/tmp/other")), None);
    }
}
