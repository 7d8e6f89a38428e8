//! Finding and removing what runs left on DigitalOcean, by the project's marks only:
//! droplets tagged `swarm-e2e` (with a run tag `swarm-e2e-run-<id>`), and SSH keys and
//! firewalls named `swarm-e2e-<id>` (firewalls also tagged with the run tag). Nothing
//! without those marks is ever listed or touched.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use swarm_e2e_digitalocean::client::DoClient;

use crate::marks::{KEPT_TAG, PROJECT_TAG, run_resource_name, run_tag};

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

/// Keeps what is at least `min_age` old. A key whose run has nothing else left (its
/// age unknown) is the remains of a crashed teardown: kept in the selection.
pub fn older_than(found: Vec<CloudResource>, min_age: Duration) -> Vec<CloudResource> {
    found
        .into_iter()
        .filter(|r| r.age.is_none_or(|a| a >= min_age))
        .collect()
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
