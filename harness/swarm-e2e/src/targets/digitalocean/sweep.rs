//! Finding and removing what runs left on DigitalOcean, by the project's marks only:
//! droplets tagged `swarm-e2e` (with a run tag `swarm-e2e-run-<id>`), and SSH keys and
//! firewalls named `swarm-e2e-<id>` (firewalls also tagged with the run tag). Nothing
//! without those marks is ever listed or touched.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use swarm_e2e_digitalocean::client::DoClient;

use std::net::IpAddr;

use futures_util::future::BoxFuture;

use crate::exit::Failure;
use crate::marks::{KEPT_TAG, PROJECT_TAG, now_unix, run_dir, run_resource_name, run_tag};
use crate::targets::{Leftover, LeftoverKind, Leftovers, Removed};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloudKind {
    Droplet,
    Firewall,
    SshKey,
}

impl CloudKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CloudKind::Droplet => "droplet",
            CloudKind::Firewall => "firewall",
            CloudKind::SshKey => "ssh key",
        }
    }
}

/// One resource of a run, found by its marks.
#[derive(Debug, Clone)]
pub struct CloudResource {
    pub kind: CloudKind,
    pub id: String,
    pub name: String,
    pub run_id: String,
    /// From the API's `created_at`; SSH keys have none.
    pub age: Option<Duration>,
    /// Of a run left up on purpose (`run --keep`: its droplets carry the kept tag).
    pub kept: bool,
}

fn age_of(created_at: Option<&str>) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(created_at?).ok()?;
    SystemTime::now().duration_since(t).ok()
}

/// Everything on the account that carries the project's marks.
pub async fn find(client: &DoClient) -> anyhow::Result<Vec<CloudResource>> {
    let prefix = run_tag("");
    let mut out = Vec::new();
    for d in client.droplets_by_tag(PROJECT_TAG).await? {
        // A droplet with the project tag but no run tag was not made by a run.
        let Some(run_id) = d.tags.iter().find_map(|t| t.strip_prefix(&prefix)) else {
            continue;
        };
        out.push(CloudResource {
            kind: CloudKind::Droplet,
            id: d.id.to_string(),
            name: d.name.clone(),
            run_id: run_id.to_string(),
            age: age_of(Some(&d.created_at)),
            kept: d.tags.iter().any(|t| t == KEPT_TAG),
        });
    }
    let name_prefix = run_resource_name("");
    for f in client.firewalls().await? {
        let name = f["name"].as_str().unwrap_or_default();
        let Some(run_id) = name.strip_prefix(&name_prefix) else {
            continue;
        };
        let tagged = f["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t.as_str() == Some(&run_tag(run_id))));
        if !tagged {
            continue;
        }
        out.push(CloudResource {
            kind: CloudKind::Firewall,
            id: f["id"].as_str().unwrap_or_default().to_string(),
            name: name.to_string(),
            run_id: run_id.to_string(),
            age: age_of(f["created_at"].as_str()),
            kept: false,
        });
    }
    let keys: Vec<CloudResource> = client
        .ssh_keys()
        .await?
        .into_iter()
        .filter_map(|k| {
            let run_id = k.name.strip_prefix(&name_prefix)?.to_string();
            Some(CloudResource {
                kind: CloudKind::SshKey,
                id: k.id.to_string(),
                name: k.name,
                run_id,
                age: None,
                kept: false,
            })
        })
        .collect();
    out.extend(keys);
    // A key has no creation time: it is as old as the oldest resource of its run.
    let ages: Vec<(String, Duration)> = out
        .iter()
        .filter_map(|r| r.age.map(|a| (r.run_id.clone(), a)))
        .collect();
    for r in out.iter_mut().filter(|r| r.age.is_none()) {
        r.age = ages.iter().filter(|(run, _)| *run == r.run_id).map(|(_, a)| *a).max();
    }
    // A kept run's firewall and key are kept with its droplets.
    let kept: BTreeSet<String> = out.iter().filter(|r| r.kept).map(|r| r.run_id.clone()).collect();
    for r in &mut out {
        r.kept = kept.contains(&r.run_id);
    }
    out.sort_by(|a, b| (&a.run_id, a.kind, &a.name).cmp(&(&b.run_id, b.kind, &b.name)));
    Ok(out)
}

/// Removes `found`: droplets by run tag (verified by listing), then firewalls, then
/// keys. Returns the errors met; keeps going past them.
pub async fn remove(client: &DoClient, found: &[CloudResource], limit: Duration) -> Vec<String> {
    let mut errors = Vec::new();
    let runs: BTreeSet<&str> = found
        .iter()
        .filter(|r| r.kind == CloudKind::Droplet)
        .map(|r| r.run_id.as_str())
        .collect();
    for run in runs {
        if let Err(e) = client.delete_by_tag_verified(&run_tag(run), limit).await {
            errors.push(format!("droplets of run {run}: {e}"));
        }
    }
    for r in found.iter().filter(|r| r.kind == CloudKind::Firewall) {
        if let Err(e) = client.delete_firewall(&r.id).await {
            errors.push(format!("firewall {}: {e}", r.name));
        }
    }
    for r in found.iter().filter(|r| r.kind == CloudKind::SshKey) {
        let deleted = match r.id.parse() {
            Ok(id) => client.delete_ssh_key(id).await.map_err(|e| e.to_string()),
            Err(_) => Err(format!("unexpected key id {}", r.id)),
        };
        if let Err(e) = deleted {
            errors.push(format!("ssh key {}: {e}", r.name));
        }
    }
    errors
}

/// The leftovers of runs on a DigitalOcean account.
pub struct DoLeftovers {
    client: DoClient,
}

impl DoLeftovers {
    pub fn new(client: DoClient) -> Self {
        DoLeftovers { client }
    }
}

impl From<CloudResource> for Leftover {
    fn from(r: CloudResource) -> Self {
        Leftover {
            run_id: r.run_id,
            kind: match r.kind {
                CloudKind::Droplet => LeftoverKind::Droplet,
                CloudKind::Firewall => LeftoverKind::Firewall,
                CloudKind::SshKey => LeftoverKind::SshKey,
            },
            name: r.name,
            id: Some(r.id),
            created_unix: r.age.map(|a| now_unix().saturating_sub(a.as_secs())),
            kept: r.kept,
        }
    }
}

/// The cloud resource a leftover names; none for a local one.
fn cloud(r: &Leftover) -> Option<CloudResource> {
    let kind = match r.kind {
        LeftoverKind::Droplet => CloudKind::Droplet,
        LeftoverKind::Firewall => CloudKind::Firewall,
        LeftoverKind::SshKey => CloudKind::SshKey,
        _ => return None,
    };
    Some(CloudResource {
        kind,
        id: r.id.clone()?,
        name: r.name.clone(),
        run_id: r.run_id.clone(),
        age: r
            .created_unix
            .map(|c| Duration::from_secs(now_unix().saturating_sub(c))),
        kept: r.kept,
    })
}

/// Bound on verified deletes (droplets gone from the run tag's listing).
const REMOVAL_LIMIT: Duration = Duration::from_secs(300);

const LS_HINT: &str = "`swarm-e2e ls --target digitalocean` lists the runs with resources there";

impl Leftovers for DoLeftovers {
    fn target(&self) -> &'static str {
        "digitalocean"
    }

    fn place(&self) -> &'static str {
        "DigitalOcean"
    }

    fn find(&self) -> BoxFuture<'_, anyhow::Result<Vec<Leftover>>> {
        Box::pin(async move { Ok(find(&self.client).await?.into_iter().map(Leftover::from).collect()) })
    }

    fn remove<'a>(&'a self, found: &'a [Leftover]) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut errors: Vec<String> = (found.iter())
                .filter(|r| cloud(r).is_none())
                .map(|r| format!("{} {} is not on DigitalOcean", r.kind.as_str(), r.name))
                .collect();
            let resources: Vec<CloudResource> = found.iter().filter_map(cloud).collect();
            errors.extend(remove(&self.client, &resources, REMOVAL_LIMIT).await);
            errors
        })
    }

    /// The run's droplets (by run tag, verified), firewall and SSH key, then its local
    /// directory (client certificates, SSH key).
    fn down<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Removed, Failure>> {
        Box::pin(async move {
            let found: Vec<CloudResource> = find(&self.client)
                .await?
                .into_iter()
                .filter(|r| r.run_id == run_id)
                .collect();
            if found.is_empty() {
                return Err(Failure::invalid_input(format!(
                    "nothing of run {run_id} was found on DigitalOcean (droplets tagged {}, a firewall or SSH key named {})",
                    run_tag(run_id),
                    run_resource_name(run_id)
                ))
                .with_hint(LS_HINT));
            }
            let mut errors = remove(&self.client, &found, REMOVAL_LIMIT).await;
            let dir = run_dir(run_id);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                errors.push(format!("could not remove {}: {e}", dir.display()));
            }
            Ok((found.into_iter().map(Leftover::from).collect(), errors))
        })
    }

    fn node_address<'a>(&'a self, run_id: &'a str, node: &'a str) -> BoxFuture<'a, Result<IpAddr, Failure>> {
        Box::pin(droplet_address(&self.client, run_id, node))
    }

    fn removal_hint(&self, again: &str) -> Option<String> {
        Some(format!(
            "run {again} again; deletes on DigitalOcean are eventually consistent"
        ))
    }
}

/// The public address of a kept run's droplet `node`.
async fn droplet_address(client: &DoClient, run_id: &str, node: &str) -> Result<IpAddr, Failure> {
    let droplets = client
        .droplets_by_tag(&run_tag(run_id))
        .await
        .map_err(Failure::infrastructure)?;
    let Some(droplet) = droplets.iter().find(|d| d.name == node) else {
        let names: Vec<&str> = droplets.iter().map(|d| d.name.as_str()).collect();
        return Err(Failure::invalid_input(format!(
            "run {run_id} has no droplet {node} on DigitalOcean{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" (it has {})", names.join(", "))
            }
        ))
        .with_hint(LS_HINT));
    };
    droplet.public_ipv4().map(IpAddr::V4).ok_or_else(|| {
        Failure::infrastructure(format!("droplet {node} of run {run_id} has no public IPv4 address yet"))
            .with_hint("wait until it is active, then ask again")
    })
}
