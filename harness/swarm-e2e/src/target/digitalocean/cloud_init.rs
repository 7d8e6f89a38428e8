//! The droplets' boot script (`user_data`), rendered for cloud-init: it installs the
//! engine each node names, writes that node's TLS files and daemon.json (chosen by
//! hostname) and starts dockerd on 2376. The same configuration is embedded as one
//! JSON line, which is what a fake droplet's backer boots from.

use std::collections::BTreeMap;

use anyhow::bail;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use swarm_e2e_model::Scenario;

use crate::daemon::{CONFIG_DIR, daemon_json};
use crate::pki::Pki;
use crate::target::local::nodes::KV_STORE_PORT;

/// Marks the machine-readable configuration inside `user_data`.
pub const CONFIG_BEGIN: &str = "# swarm-e2e-config:";

/// Renders the droplets' shared `user_data`: a shell script for cloud-init that installs
/// the engine, picks this droplet's configuration by hostname and starts dockerd with it.
/// The same configuration is embedded as one JSON line after [`CONFIG_BEGIN`], which is
/// what a fake droplet's backer boots from.
///
/// Server certificates name the droplet (the address is unknown until boot); the
/// harness verifies engines by that name.
///
/// `extra` adds daemon.json keys to every node (the classic topology's cluster store).
pub fn user_data(scenario: &Scenario, pki: &Pki, extra: &[(&str, Value)]) -> anyhow::Result<String> {
    let mut nodes = BTreeMap::new();
    for node in &scenario.nodes {
        let server = pki.server(&node.name, &[])?;
        nodes.insert(
            node.name.clone(),
            json!({
                "engine": node.engine,
                "daemon_json": daemon_json(node, extra),
                "ca_pem": server.ca_pem,
                "cert_pem": server.cert_pem,
                "key_pem": server.key_pem.expose_secret(),
            }),
        );
    }
    let config = json!({"version": 1, "scenario": scenario.name, "nodes": nodes});
    let script = format!(
        r#"#!/bin/sh
# swarm-e2e node bootstrap for scenario {name}. Installs the engine, writes this
# droplet's TLS files and daemon.json (chosen by hostname), starts dockerd on 2376.
set -eu
{CONFIG_BEGIN}{config}
me=$(hostname)
mkdir -p {CONFIG_DIR} && chmod 700 {CONFIG_DIR}
python3 - "$me" "$0" <<'PY'
import json, os, sys
me, script = sys.argv[1], sys.argv[2]
line = next(l for l in open(script) if l.startswith("{CONFIG_BEGIN}"))
node = json.loads(line[len("{CONFIG_BEGIN}"):])["nodes"][me]
for name, key in (("ca.pem", "ca_pem"), ("cert.pem", "cert_pem"), ("key.pem", "key_pem")):
    path = os.path.join("{CONFIG_DIR}", name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(node[key])
with open("{CONFIG_DIR}/daemon.json", "w") as f:
    json.dump(node["daemon_json"], f)
with open("{CONFIG_DIR}/engine", "w") as f:
    f.write(node["engine"])
PY
export DEBIAN_FRONTEND=noninteractive
# This node's engine: a static release archive (URL), or a version from Docker's
# packages (MAJOR.MINOR picks the newest patch release).
engine=$(cat {CONFIG_DIR}/engine)
case "$engine" in
  http://*|https://*)
    curl -fsSL --retry 5 "$engine" | tar -xz -C /usr/local/bin --strip-components=1
    dockerd=/usr/local/bin/dockerd
    ;;
  *)
    dockerd --version 2>/dev/null | grep -q "version $engine" || curl -fsSL --retry 5 https://get.docker.com | sh -s -- --version "$engine"
    dockerd=$(command -v dockerd)
    ;;
esac
systemctl disable --now docker.service docker.socket 2>/dev/null || true
printf '[Unit]\nAfter=network-online.target\n[Service]\nExecStart=%s --config-file {CONFIG_DIR}/daemon.json\nRestart=on-failure\nLimitNOFILE=1048576\n[Install]\nWantedBy=multi-user.target\n' "$dockerd" > /etc/systemd/system/swarm-e2e-engine.service
systemctl daemon-reload
systemctl enable --now swarm-e2e-engine.service
"#,
        name = scenario.name,
    );
    if script.len() > 64 * 1024 {
        bail!(
            "the rendered user_data is {} bytes; DigitalOcean allows 64 KiB\nhint: split the scenario into fewer nodes",
            script.len()
        );
    }
    Ok(script)
}

/// The key-value store droplet's `user_data` (classic topology): Ubuntu's etcd with its
/// v2 API (what the engines' cluster store speaks), listening on the droplet's public
/// address; the firewall admits only the run's droplets. Its embedded configuration
/// tells a fake droplet's backer to run the same store.
pub fn kv_store_user_data(scenario: &Scenario) -> String {
    let config = json!({"version": 1, "scenario": scenario.name, "kv_store": {"kind": "etcd", "port": KV_STORE_PORT}});
    format!(
        r#"#!/bin/sh
# swarm-e2e key-value store for scenario {name} (classic topology): etcd, v2 API.
set -eu
{CONFIG_BEGIN}{config}
export DEBIAN_FRONTEND=noninteractive
apt-get update -q && apt-get install -y -q etcd-server
me=$(curl -fsS http://169.254.169.254/metadata/v1/interfaces/public/0/ipv4/address)
printf 'ETCD_NAME=kv\nETCD_ENABLE_V2=true\nETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:{KV_STORE_PORT}\nETCD_ADVERTISE_CLIENT_URLS=http://%s:{KV_STORE_PORT}\nETCD_LISTEN_PEER_URLS=http://127.0.0.1:2380\n' "$me" > /etc/default/etcd
systemctl restart etcd
"#,
        name = scenario.name,
    )
}

/// Reads the embedded configuration back out of `user_data` (what a backer boots from).
pub fn config_from_user_data(user_data: &str) -> Option<Value> {
    let line = user_data.lines().find_map(|l| l.strip_prefix(CONFIG_BEGIN))?;
    serde_json::from_str(line).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pki::Pki;

    #[test]
    fn user_data_embeds_each_nodes_configuration() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/swarm-demo.toml")).unwrap();
        let scenario = swarm_e2e_model::parse_scenario("swarm-demo.toml", &text).unwrap();
        let pki = Pki::new("t").unwrap();
        let ud = user_data(&scenario, &pki, &[]).unwrap();
        assert!(ud.starts_with("#!/bin/sh"));
        let config = config_from_user_data(&ud).unwrap();
        let node = &config["nodes"]["swarm-demo-3"];
        assert_eq!(node["daemon_json"]["log-level"], "warn");
        assert_eq!(node["daemon_json"]["labels"], json!(["provider=local", "storage=ssd"]));
        assert!(node["cert_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
        assert!(ud.len() < 64 * 1024);
    }

    #[test]
    fn user_data_installs_each_nodes_engine_and_is_valid_shell() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/swarm-demo.toml")).unwrap();
        let mut scenario = swarm_e2e_model::parse_scenario("swarm-demo.toml", &text).unwrap();
        scenario.nodes[1].engine = "26.1".into();
        scenario.nodes[2].engine = "https://example.invalid/docker-27.0.0-rc.1.tgz".into();
        let ud = user_data(&scenario, &Pki::new("t").unwrap(), &[]).unwrap();
        let config = config_from_user_data(&ud).unwrap();
        assert_eq!(config["nodes"]["swarm-demo-1"]["engine"], "20.10");
        assert_eq!(config["nodes"]["swarm-demo-2"]["engine"], "26.1");
        assert!(ud.contains("get.docker.com | sh -s -- --version \"$engine\""));
        assert!(ud.contains("tar -xz -C /usr/local/bin --strip-components=1"));
        // The shell parses it (the script itself only runs on a droplet).
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("user_data");
        std::fs::write(&script, &ud).unwrap();
        let check = std::process::Command::new("sh")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    }
}
