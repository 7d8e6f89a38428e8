//! The daemon.json every node engine starts with. One renderer for every target, so a
//! local node and a droplet run the same engine configuration.

use serde_json::{Map, Value, json};
use swarm_e2e_model::Node;

/// Where node engines find their configuration (inside the node).
pub const CONFIG_DIR: &str = "/etc/swarm-e2e";

/// Renders daemon.json for `node`: the TLS endpoint, engine labels, the scenario's own
/// options, and target-specific extras (e.g. the local target's cgroup parent).
pub fn daemon_json(node: &Node, extra: &[(&str, Value)]) -> Value {
    let labels: Vec<String> = node.engine_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut config = Map::new();
    for (k, v) in &node.engine_options {
        config.insert(k.clone(), v.clone());
    }
    // Harness-managed keys win; validation already refuses scenario options for them.
    let managed = json!({
        "hosts": ["unix:///var/run/docker.sock", format!("tcp://0.0.0.0:{}", crate::engine::ENGINE_TLS_PORT)],
        "tls": true,
        "tlsverify": true,
        "tlscacert": format!("{CONFIG_DIR}/ca.pem"),
        "tlscert": format!("{CONFIG_DIR}/cert.pem"),
        "tlskey": format!("{CONFIG_DIR}/key.pem"),
        "labels": labels,
    });
    if let Value::Object(m) = managed {
        config.extend(m);
    }
    for (k, v) in extra {
        config.insert((*k).to_string(), v.clone());
    }
    Value::Object(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn labels_and_options_land_in_daemon_json() {
        let node = Node {
            name: "n1".into(),
            role: swarm_e2e_model::Role::Manager,
            labels: BTreeMap::new(),
            engine_labels: BTreeMap::from([("storage".into(), "ssd".into())]),
            engine_options: BTreeMap::from([("log-level".into(), json!("warn"))]),
            engine: "20.10".into(),
        };
        let v = daemon_json(&node, &[("cgroup-parent", json!("/swarm-e2e-r-n1"))]);
        assert_eq!(v["labels"], json!(["storage=ssd"]));
        assert_eq!(v["log-level"], json!("warn"));
        assert_eq!(v["tlsverify"], json!(true));
        assert_eq!(v["cgroup-parent"], json!("/swarm-e2e-r-n1"));
    }
}
