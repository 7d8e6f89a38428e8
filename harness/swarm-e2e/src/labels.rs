//! Every resource a run creates is marked with these labels at creation time; list,
//! teardown, `down` and `sweep` find resources by them, so no state file is needed.

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
/// Prefix of every local resource name (containers, networks, volumes, cgroup parents,
/// temp directories): `swarm-e2e-<run-id>-...`.
pub const NAME_PREFIX: &str = "swarm-e2e-";

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
