//! Every mark a run puts on what it creates, in one place: labels on containers,
//! networks and volumes; names of node containers, networks, volumes, cgroup parents and
//! temp directories; tags and names on DigitalOcean. List, teardown, `down` and `sweep`
//! find resources by these marks, so no state file is needed.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;

pub const RUN: &str = "swarm-e2e.run";
pub const NODE: &str = "swarm-e2e.node";
pub const SCENARIO: &str = "swarm-e2e.scenario";
pub const CREATED: &str = "swarm-e2e.created";
pub const KEEP: &str = "swarm-e2e.keep";
/// On the container behind a fake droplet: the droplet's id.
pub const DROPLET: &str = "swarm-e2e.droplet";
/// On a fake droplet's mirror (what its boot script downloads): the droplet's name.
pub const MIRROR: &str = "swarm-e2e.mirror";
/// Prefix of every local resource name (containers, networks, volumes, cgroup parents,
/// temp directories): `swarm-e2e-<run-id>-...`.
pub const NAME_PREFIX: &str = "swarm-e2e-";

/// On services, containers and networks a run creates inside the cluster (workloads,
/// probes, overlays): teardown on engines the run does not own removes exactly these.
pub const WORKLOAD: &str = "swarm-e2e.workload";

/// The project's tag on every droplet (with a run tag beside it).
pub const PROJECT_TAG: &str = "swarm-e2e";

/// The tag of a kept run's droplets (`run --keep`): `sweep` leaves them unless
/// `--include-kept`, `ls` shows them kept, `down` removes them.
pub const KEPT_TAG: &str = "swarm-e2e-kept";

/// The per-run network on the host engine.
pub fn network_name(run_id: &str) -> String {
    format!("{NAME_PREFIX}{run_id}")
}

/// The node container of `node` (also its cgroup parent, `/<name>`).
pub fn node_container_name(run_id: &str, node: &str) -> String {
    format!("{NAME_PREFIX}{run_id}-{node}")
}

/// Per-run directory for files that must live on the host (the client certificates of
/// a kept cluster). Removed at teardown.
pub fn run_dir(run_id: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{NAME_PREFIX}{run_id}"))
}

/// A droplet's run tag. Tags allow letters, digits, `:`, `-`, `_`: run ids are made of
/// those.
pub fn run_tag(run_id: &str) -> String {
    format!("swarm-e2e-run-{run_id}")
}

/// Name of the run's SSH key and firewall on DigitalOcean.
pub fn run_resource_name(run_id: &str) -> String {
    format!("swarm-e2e-{run_id}")
}

/// Labels of what a run creates inside a cluster: the workload mark and the run id.
pub fn workload_labels(run_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (WORKLOAD.to_string(), "true".to_string()),
        (RUN.to_string(), run_id.to_string()),
    ])
}

/// A fresh run id: 8 lowercase letters and digits. Valid in container names, hostnames
/// and DigitalOcean tags alike.
pub fn new_run_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The labels every resource of a run carries.
pub fn run_labels(run_id: &str, scenario: &str, keep: bool) -> HashMap<String, String> {
    let mut m = HashMap::from([
        (RUN.to_string(), run_id.to_string()),
        (SCENARIO.to_string(), scenario.to_string()),
        (CREATED.to_string(), now_unix().to_string()),
    ]);
    if keep {
        m.insert(KEEP.to_string(), "true".to_string());
    }
    m
}

/// `label=swarm-e2e.run=<id>` as an engine list filter (or every run when `None`).
pub fn run_filter(run_id: Option<&str>) -> HashMap<String, Vec<String>> {
    let value = match run_id {
        Some(id) => format!("{RUN}={id}"),
        None => RUN.to_string(),
    };
    HashMap::from([("label".to_string(), vec![value])])
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_are_short_and_safe() {
        let a = super::new_run_id();
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(a, super::new_run_id());
    }
}
