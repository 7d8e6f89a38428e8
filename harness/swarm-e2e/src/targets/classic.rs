//! The classic (pre-swarm-mode) topology's key-value store as every target names and
//! reaches it: its node name, its port, and the engine options that point at it.

use serde_json::json;

/// The key-value store container's node label (it is no engine, and no scenario node).
pub use swarm_e2e_model::KV_STORE_NODE;

/// The key-value store's client port (etcd), on every target.
pub const KV_STORE_PORT: u16 = 2379;

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
