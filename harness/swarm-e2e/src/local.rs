//! The local target: one node container per scenario node on the host engine, each
//! running a real dockerd, on a per-run `--internal` network.
//!
//! Node containers are started with testcontainers. `--privileged` is not used: it fails
//! in sandboxes whose capability bounding set lacks CAP_SYS_RESOURCE, and the explicit
//! set below (all capabilities but that one, no seccomp/apparmor, unmasked /proc and
//! /sys paths) runs the inner engine on ordinary Docker hosts too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{DeviceMapping, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::future::join_all;
use secrecy::ExposeSecret;
use serde_json::json;
use swarm_e2e_model::{Node, Scenario, Topology};
use testcontainers::core::Mount;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio_util::sync::CancellationToken;

use crate::daemon::{CONFIG_DIR, daemon_json};
use crate::images::resolve_node_image;
use crate::labels::{self, NAME_PREFIX};
use crate::pki::{CertBundle, Pki};

/// A node container, started and configured; its engine may still be starting.
#[derive(Debug, Clone)]
pub struct ProvisionedNode {
    pub name: String,
    pub address: IpAddr,
    pub container: String,
}

/// Handles of the node containers, removed explicitly at teardown (dropping them
/// outside a tokio context would leak them).
pub type NodeHandles = Vec<ContainerAsync<GenericImage>>;

pub fn network_name(run_id: &str) -> String {
    format!("{NAME_PREFIX}{run_id}")
}

pub fn node_container_name(run_id: &str, node: &str) -> String {
    format!("{NAME_PREFIX}{run_id}-{node}")
}

/// Per-run directory for files that must live on the host (the client certificates of
/// a kept cluster). Removed at teardown.
pub fn run_dir(run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{NAME_PREFIX}{run_id}"))
}

/// Fails early, with the build command, when a node image is missing (the classic
/// topology's key-value store node included).
pub async fn require_node_images(host: &Docker, scenario: &Scenario) -> anyhow::Result<()> {
    for engine in scenario.engines() {
        resolve_node_image(host, &engine).await?;
    }
    if scenario.topology == Topology::Classic {
        resolve_node_image(host, KV_STORE_ENGINE)
            .await
            .context("the classic topology's key-value store (etcd) comes from this node image")?;
    }
    Ok(())
}

/// Creates the run's network and volumes, then starts every node container in parallel
/// and delivers its engine configuration. The first error wins; whatever was created
/// carries the run label, so teardown finds it.
///
/// `stop` ends provisioning between steps. Requests already sent are never abandoned
/// (a dropped create can still land after teardown looked), so a stopped provision
/// returns once what it started has landed.
pub async fn provision(
    host: &Docker,
    scenario: &Scenario,
    run_id: &str,
    keep: bool,
    pki: &Pki,
    stop: CancellationToken,
) -> (NodeHandles, anyhow::Result<Vec<ProvisionedNode>>) {
    let run_labels = labels::run_labels(run_id, &scenario.name, keep);
    let network = match create_run_network(host, run_id, &run_labels).await {
        Ok(n) => n,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut handles = Vec::new();
    // The classic topology: the key-value store first, since every engine's
    // configuration names its address.
    let mut classic_config = Vec::new();
    let mut kv_address = None;
    if scenario.topology == Topology::Classic {
        match start_kv_store(host, run_id, &network, run_labels.clone(), &stop).await {
            Ok((address, handle)) => {
                handles.push(handle);
                classic_config = cluster_store_config(&format!("etcd://{address}:{KV_STORE_PORT}"));
                kv_address = Some(address);
            }
            Err(e) => return (handles, Err(e)),
        }
    }
    let classic_config = &classic_config;
    // Every node start runs to its end, even after one failed: a start abandoned midway
    // could still create a container after teardown looked. A failure stops the others
    // at their next step instead.
    let results = join_all(scenario.nodes.iter().map(|node| {
        let run_labels = run_labels.clone();
        let network = network.clone();
        let stop = stop.clone();
        async move {
            let spec = NodeSpec {
                name: &node.name,
                engine: &node.engine,
                config: EngineConfig::Issue {
                    pki,
                    node,
                    extra: classic_config,
                },
            };
            let r = start_node(host, run_id, spec, &network, run_labels, &stop).await;
            if r.is_err() {
                stop.cancel();
            }
            r
        }
    }))
    .await;
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok((node, handle)) => {
                nodes.push(node);
                handles.push(handle);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        if let Some(address) = kv_address
            && let Err(e) = wait_kv_store(address, &stop).await
        {
            return (handles, Err(e));
        }
        return (handles, Ok(nodes));
    }
    // "provisioning stopped" errors are the echo of the first real one.
    let first = errors
        .iter()
        .position(|e| !e.to_string().contains("provisioning stopped"))
        .unwrap_or(0);
    (handles, Err(errors.swap_remove(first)))
}

/// Creates the run's `--internal` network (nodes reach each other and the harness,
/// nothing else); returns its name.
pub async fn create_run_network(
    host: &Docker,
    run_id: &str,
    run_labels: &HashMap<String, String>,
) -> anyhow::Result<String> {
    let network = network_name(run_id);
    host.create_network(NetworkCreateRequest {
        name: network.clone(),
        driver: Some("bridge".into()),
        internal: Some(true),
        labels: Some(run_labels.clone()),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the run network {network}"))?;
    Ok(network)
}

/// Where a node container's engine configuration comes from.
pub enum EngineConfig<'a> {
    /// Issued here once the container's address is known (the local target); `extra`
    /// adds daemon.json keys (the classic topology's cluster store).
    Issue {
        pki: &'a Pki,
        node: &'a Node,
        extra: &'a [(&'static str, serde_json::Value)],
    },
    /// Rendered before any address existed (a droplet's `user_data`), used as given.
    Given {
        daemon_json: serde_json::Value,
        server: CertBundle,
    },
}

/// One node container to start: its hostname, engine version and configuration.
pub struct NodeSpec<'a> {
    pub name: &'a str,
    pub engine: &'a str,
    pub config: EngineConfig<'a>,
}

/// Starts one node container on `network` (its data volume first), then delivers its
/// engine configuration. Everything carries `node_labels` plus the node's name.
pub async fn start_node(
    host: &Docker,
    run_id: &str,
    spec: NodeSpec<'_>,
    network: &str,
    mut node_labels: HashMap<String, String>,
    stop: &CancellationToken,
) -> anyhow::Result<(ProvisionedNode, ContainerAsync<GenericImage>)> {
    let node_name = spec.name;
    let check_stop = || {
        if stop.is_cancelled() {
            bail!("provisioning stopped");
        }
        Ok(())
    };
    check_stop()?;
    node_labels.insert(labels::NODE.into(), node_name.to_string());
    let container_name = node_container_name(run_id, node_name);
    let volume = format!("{container_name}-data");
    host.create_volume(VolumeCreateRequest {
        name: Some(volume.clone()),
        labels: Some(node_labels.clone()),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating volume {volume}"))?;

    check_stop()?;
    let tag = resolve_node_image(host, spec.engine).await?.tag;
    let (repo, version) = tag.split_once(':').expect("tag has a version");
    let request = GenericImage::new(repo, version)
        .with_container_name(&container_name)
        .with_hostname(node_name)
        .with_network(network)
        .with_labels(node_labels)
        .with_env_var("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
        .with_mount(Mount::volume_mount(&volume, "/var/lib/docker"))
        .with_mount(Mount::bind_mount("/sys/fs/cgroup", "/sys/fs/cgroup"))
        .with_mount(Mount::tmpfs_mount("/run"))
        .with_cap_add("ALL")
        .with_cap_drop("SYS_RESOURCE")
        .with_security_opt("seccomp=unconfined")
        .with_security_opt("apparmor=unconfined")
        .with_startup_timeout(Duration::from_secs(60))
        .with_host_config_modifier(|hc| {
            // `--security-opt systempaths=unconfined` is a CLI spelling of these two.
            hc.masked_paths = Some(vec![]);
            hc.readonly_paths = Some(vec![]);
            hc.devices = Some(vec![DeviceMapping {
                path_on_host: Some("/dev/net/tun".into()),
                path_in_container: Some("/dev/net/tun".into()),
                cgroup_permissions: Some("rwm".into()),
            }]);
        });
    let container = request
        .start()
        .await
        .with_context(|| format!("starting node container {container_name}"))?;
    let address = container
        .get_bridge_ip_address()
        .await
        .with_context(|| format!("reading the address of {container_name}"))?;

    // The inner engine's containers get cgroups under a parent named after the node
    // container, so teardown can find and remove them.
    let cgroup_parent = ("cgroup-parent", json!(format!("/{container_name}")));
    let (server, config) = match spec.config {
        EngineConfig::Issue { pki, node, extra } => {
            let mut keys = vec![cgroup_parent];
            keys.extend(extra.iter().cloned());
            (pki.server(&node.name, &[address])?, daemon_json(node, &keys))
        }
        EngineConfig::Given {
            mut daemon_json,
            server,
        } => {
            if let Some(m) = daemon_json.as_object_mut() {
                m.insert(cgroup_parent.0.into(), cgroup_parent.1);
            }
            (server, daemon_json)
        }
    };
    deliver_config(host, container.id(), &server, &config)
        .await
        .with_context(|| format!("delivering the engine configuration to {container_name}"))?;
    Ok((
        ProvisionedNode {
            name: node_name.to_string(),
            address,
            container: container.id().to_string(),
        },
        container,
    ))
}

/// The packaged node image whose Debian suite has the classic topology's key-value store
/// (Debian 12: etcd 3.4, which still serves the v2 API the engines' libkv speaks).
pub const KV_STORE_ENGINE: &str = "20.10";
/// The key-value store container's node label (it is no engine, and no scenario node).
pub use swarm_e2e_model::KV_STORE_NODE;
/// The key-value store's client port (etcd), on every target.
pub const KV_STORE_PORT: u16 = 2379;
/// Bound on etcd answering after its container started.
const KV_STORE_READY_LIMIT: Duration = Duration::from_secs(30);

/// daemon.json keys that put an engine in a classic (pre-swarm-mode) cluster: the
/// store, and the address other engines reach it by (the TLS port, as docker-machine
/// advertised it).
pub fn cluster_store_config(store_url: &str) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("cluster-store", json!(store_url)),
        (
            "cluster-advertise",
            json!(format!("eth0:{}", crate::engine::ENGINE_TLS_PORT)),
        ),
    ]
}

/// Starts the classic topology's key-value store: etcd with its v2 API, in a container
/// on the run network (marked like every node container). Returns its address.
pub(crate) async fn start_kv_store(
    host: &Docker,
    run_id: &str,
    network: &str,
    mut node_labels: HashMap<String, String>,
    stop: &CancellationToken,
) -> anyhow::Result<(IpAddr, ContainerAsync<GenericImage>)> {
    if stop.is_cancelled() {
        bail!("provisioning stopped");
    }
    node_labels.insert(labels::NODE.into(), KV_STORE_NODE.to_string());
    let container_name = node_container_name(run_id, KV_STORE_NODE);
    let tag = resolve_node_image(host, KV_STORE_ENGINE).await?.tag;
    let (repo, version) = tag.split_once(':').expect("tag has a version");
    // etcd advertises the client URL it is given, and libkv clients sync their endpoint
    // list from it: it must be the container's own address, known only inside it.
    let command = format!(
        "exec etcd --name kv --data-dir /run/etcd --enable-v2=true \
         --listen-client-urls http://0.0.0.0:{KV_STORE_PORT} \
         --advertise-client-urls http://$(hostname -i):{KV_STORE_PORT} \
         --listen-peer-urls http://127.0.0.1:2380"
    );
    let container = GenericImage::new(repo, version)
        .with_entrypoint("/bin/sh")
        .with_cmd(["-c", command.as_str()])
        .with_container_name(&container_name)
        .with_hostname(KV_STORE_NODE)
        .with_network(network)
        .with_labels(node_labels)
        .with_mount(Mount::tmpfs_mount("/run"))
        .with_startup_timeout(Duration::from_secs(60))
        .start()
        .await
        .with_context(|| format!("starting the key-value store container {container_name}"))?;
    let address = container
        .get_bridge_ip_address()
        .await
        .with_context(|| format!("reading the address of {container_name}"))?;
    Ok((address, container))
}

/// Waits (bounded) until etcd at `address` answers its version endpoint.
async fn wait_kv_store(address: IpAddr, stop: &CancellationToken) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("an HTTP client for etcd")?;
    let url = format!("http://{address}:{KV_STORE_PORT}/version");
    let answered = crate::wait::poll_until(KV_STORE_READY_LIMIT, Duration::from_millis(50), || async {
        let response = client.get(&url).send().await?.error_for_status()?;
        anyhow::Ok(Some(response.text().await?))
    });
    // Only reads are in flight here, so a stopped provisioning need not wait for them.
    tokio::select! {
        r = answered => r.map(|_| ()).with_context(|| format!("the key-value store (etcd at {url}) did not answer")),
        _ = stop.cancelled() => bail!("provisioning stopped"),
    }
}

/// Uploads TLS files and daemon.json as one tar; `ready` is its last entry, which the
/// node's init waits for.
async fn deliver_config(
    host: &Docker,
    container: &str,
    server: &CertBundle,
    config: &serde_json::Value,
) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, mode: u32, body: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_mtime(labels::now_unix());
        tar.append_data(&mut h, name, body)
    };
    add("ca.pem", 0o644, server.ca_pem.as_bytes())?;
    add("cert.pem", 0o644, server.cert_pem.as_bytes())?;
    add("key.pem", 0o600, server.key_pem.expose_secret().as_bytes())?;
    add("daemon.json", 0o644, serde_json::to_string_pretty(config)?.as_bytes())?;
    add("ready", 0o644, b"")?;
    let body = bytes::Bytes::from(tar.into_inner()?);
    // Sent as a stream, never as a full body: bollard logs full request bodies at trace
    // level, and this one holds the node's private key.
    host.upload_to_container(
        container,
        Some(UploadToContainerOptionsBuilder::new().path(CONFIG_DIR).build()),
        bollard::body_stream(futures_util::stream::once(async move { body })),
    )
    .await?;
    Ok(())
}

/// The address of a kept run's node on the run network, found by labels.
pub async fn node_address(host: &Docker, run_id: &str, node: &str) -> anyhow::Result<IpAddr> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={run_id}", labels::RUN), format!("{}={node}", labels::NODE)],
    )]);
    let found = host
        .list_containers(Some(ListContainersOptionsBuilder::new().filters(&filters).build()))
        .await
        .context("listing node containers")?;
    let container = found.first().with_context(|| {
        format!("no running node `{node}` in run {run_id}\nhint: `swarm-e2e ls` lists runs and their containers")
    })?;
    let network = network_name(run_id);
    container
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(&network))
        .and_then(|e| e.ip_address.as_deref())
        .and_then(|ip| ip.parse().ok())
        .with_context(|| format!("node `{node}` has no address on {network}"))
}

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
    let run = l.get(labels::RUN)?.clone();
    let created = l.get(labels::CREATED).and_then(|c| c.parse().ok());
    let kept = l.get(labels::KEEP).is_some_and(|k| k == "true");
    Some((run, created, kept))
}

/// Everything of run `run_id` (or of every run) on the host engine and the host.
pub async fn find_resources(host: &Docker, run_id: Option<&str>) -> anyhow::Result<Vec<LocalResource>> {
    let filter = labels::run_filter(run_id);
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
            kept: false,
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
        match host.remove_network(&r.name).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(e) => errors.push(format!("network {}: {e}", r.name)),
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
