//! The droplets' boot script (`user_data`), rendered for cloud-init: it writes that
//! node's TLS files and daemon.json (chosen by hostname), runs the scenario's boot
//! commands, installs the engine the node names and starts dockerd on 2376 as a systemd
//! unit. A POSIX shell script with no other dependency than `curl` (on every
//! DigitalOcean distribution image), so the fake's droplets run exactly this script too
//! (see `fake_backer`). One comment line carries what a backer needs to pick a machine
//! for it (the engine per node, no secrets) as JSON.

use std::collections::BTreeMap;

use anyhow::bail;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use swarm_e2e_model::Scenario;

use crate::daemon::{CONFIG_DIR, daemon_json};
use crate::pki::Pki;
use crate::targets::classic::KV_STORE_PORT;

/// Marks the machine-readable configuration inside `user_data`.
pub const CONFIG_BEGIN: &str = "# swarm-e2e-config:";

/// The systemd unit the boot script runs the engine as.
pub const ENGINE_UNIT: &str = "swarm-e2e-engine.service";

/// Where a droplet's engine writes its log (the unit's `StandardOutput=append:`): a
/// plain file, so a helper container can read it through the engine's own API (the
/// journal's files need journalctl).
pub const ENGINE_LOG: &str = "/var/log/swarm-e2e-engine.log";

/// Where cloud-init writes the output of a droplet's boot script.
pub const BOOT_LOG: &str = "/var/log/cloud-init-output.log";

/// Defines `mint_server_certificate`: in the directory holding `issuer.pem` and
/// `issuer-key.pem`, writes the engine's `key.pem` and `cert.pem` (its certificate and
/// the issuer's) for the name `$me` and every IPv4 address the machine has now, then
/// removes the issuer's key.
pub const MINT_SERVER_CERTIFICATE: &str = r#"# The engine's server certificate, minted by this droplet's issuer (which may sign for
# this name only): the droplet's addresses are known only now, and the docker CLI
# verifies the address it connects to.
mint_server_certificate() {
  san="DNS:$me,DNS:localhost,IP:127.0.0.1"
  for address in $(hostname -I 2>/dev/null || true); do
    case "$address" in
      *:*) ;;
      *) san="$san,IP:$address" ;;
    esac
  done
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$me" \
    -keyout key.pem -out server.csr
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' \
    "$san" > server.ext
  openssl x509 -req -in server.csr -CA issuer.pem -CAkey issuer-key.pem -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -sha256 -extfile server.ext -out server.pem
  cat server.pem issuer.pem > cert.pem
  rm -f issuer-key.pem server.csr server.ext server.pem
  echo "swarm-e2e: the engine's certificate names $san"
}
"#;

/// The user_data limit of DigitalOcean's API.
pub const USER_DATA_LIMIT: usize = 64 * 1024;

/// Ends every file the script writes with a here-document; nothing rendered into one
/// (PEM, JSON) can hold this line.
const HEREDOC_END: &str = "SWARM_E2E_EOF";

/// `s` as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Renders the droplets' shared `user_data`: a shell script for cloud-init that picks
/// this droplet's configuration by hostname (DigitalOcean sets it to the droplet's
/// name), runs `boot_commands`, installs the engine and starts dockerd with it.
///
/// Each droplet gets an issuer that may sign for its name only ([`Pki::node_issuer`]);
/// its script mints the engine's server certificate with the addresses it booted with.
/// The harness verifies engines by name; the docker CLI of a kept run by address.
///
/// `extra` adds daemon.json keys to every node (the classic topology's cluster store).
pub fn user_data(
    scenario: &Scenario,
    pki: &Pki,
    extra: &[(&str, Value)],
    boot_commands: &[String],
) -> anyhow::Result<String> {
    let mut facts = BTreeMap::new();
    let mut cases = String::new();
    let write =
        |path: &str, body: &str| format!("cat > {path} <<'{HEREDOC_END}'\n{}\n{HEREDOC_END}\n", body.trim_end());
    let mut ca_pem = String::new();
    for node in &scenario.nodes {
        let issuer = pki.node_issuer(&node.name)?;
        facts.insert(node.name.clone(), json!({"engine": node.engine}));
        ca_pem = issuer.ca_pem.clone();
        cases.push_str(&format!("  {})\n    engine={}\n", node.name, shell_quote(&node.engine)));
        for (file, body) in [
            ("issuer.pem", issuer.cert_pem.as_str()),
            ("issuer-key.pem", issuer.key_pem.expose_secret()),
            ("daemon.json", &serde_json::to_string(&daemon_json(node, extra))?),
        ] {
            cases.push_str(&write(&format!("{CONFIG_DIR}/{file}"), body));
        }
        cases.push_str("    ;;\n");
    }
    let names: Vec<&str> = scenario.nodes.iter().map(|n| n.name.as_str()).collect();
    let classic = extra.iter().any(|(k, _)| *k == "cluster-store");
    let config = json!({"version": 2, "scenario": scenario.name, "classic": classic, "nodes": facts});
    let mut commands = String::new();
    for (i, command) in boot_commands.iter().enumerate() {
        commands.push_str(&format!(
            "log {}\n{command}\n",
            shell_quote(&format!("boot command {}/{}: {command}", i + 1, boot_commands.len()))
        ));
    }
    let script = format!(
        r#"#!/bin/sh
# swarm-e2e node bootstrap for scenario {name}: writes this droplet's TLS files and
# daemon.json (chosen by hostname), runs the scenario's boot commands, installs the
# engine, starts dockerd on 2376 as {ENGINE_UNIT}.
set -eu
{CONFIG_BEGIN}{config}
log() {{ echo "swarm-e2e: $*"; }}
me=$(hostname)
umask 077
mkdir -p {CONFIG_DIR}
chmod 700 {CONFIG_DIR}
{ca}case "$me" in
{cases}  *)
    log "no configuration for host $me in this script (it has: {names})" >&2
    exit 1
    ;;
esac
{MINT_SERVER_CERTIFICATE}(cd {CONFIG_DIR} && mint_server_certificate)
chmod 644 {CONFIG_DIR}/ca.pem {CONFIG_DIR}/cert.pem {CONFIG_DIR}/daemon.json
umask 022
log "configuration of $me written to {CONFIG_DIR}"
{commands}export DEBIAN_FRONTEND=noninteractive
# This node's engine: a static release archive (URL), or a version from Docker's
# packages (MAJOR.MINOR picks the newest patch release).
case "$engine" in
  http://*|https://*)
    log "installing the engine from $engine"
    curl -fsSL --retry 5 -o /tmp/swarm-e2e-engine.tgz "$engine"
    tar -xzf /tmp/swarm-e2e-engine.tgz -C /usr/local/bin --strip-components=1
    rm -f /tmp/swarm-e2e-engine.tgz
    dockerd=/usr/local/bin/dockerd
    ;;
  *)
    if dockerd --version 2>/dev/null | grep -q "version $engine"; then
      log "engine $engine is installed already: $(dockerd --version)"
    else
      log "installing engine $engine with Docker's install script"
      curl -fsSL --retry 5 -o /tmp/get-docker.sh https://get.docker.com
      sh /tmp/get-docker.sh --version "$engine"
    fi
    dockerd=$(command -v dockerd)
    ;;
esac
log "starting $("$dockerd" --version)"
systemctl disable --now docker.service docker.socket 2>/dev/null || true
printf '[Unit]\nAfter=network-online.target\n[Service]\nExecStart=%s --config-file {CONFIG_DIR}/daemon.json\nRestart=on-failure\nLimitNOFILE=1048576\nStandardOutput=append:{ENGINE_LOG}\nStandardError=inherit\n[Install]\nWantedBy=multi-user.target\n' "$dockerd" > /etc/systemd/system/{ENGINE_UNIT}
systemctl daemon-reload
systemctl enable --now {ENGINE_UNIT}
log "boot script done"
"#,
        name = scenario.name,
        ca = write(&format!("{CONFIG_DIR}/ca.pem"), &ca_pem),
        names = names.join(" "),
    );
    if script.len() > USER_DATA_LIMIT {
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
    use super::*;
    use crate::pki::Pki;

    fn demo() -> Scenario {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/swarm-demo.toml")).unwrap();
        swarm_e2e_model::parse_scenario("swarm-demo.toml", &text).unwrap()
    }

    /// Runs the script's minting with the machine's openssl in `dir` as droplet `me`,
    /// holding `issuer`; returns the engine's certificate chain.
    fn mint(
        dir: &std::path::Path,
        me: &str,
        issuer: &crate::pki::CertBundle,
    ) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        std::fs::write(dir.join("issuer.pem"), &issuer.cert_pem).unwrap();
        std::fs::write(dir.join("issuer-key.pem"), issuer.key_pem.expose_secret()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-euc")
            .arg(format!("{MINT_SERVER_CERTIFICATE}\nme={me}\nmint_server_certificate"))
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!dir.join("issuer-key.pem").exists(), "the issuer's key stays behind");
        assert!(dir.join("key.pem").is_file());
        let chain = std::fs::read(dir.join("cert.pem")).unwrap();
        rustls::pki_types::CertificateDer::pem_slice_iter(&chain)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    /// The droplet's own certificate verifies by its name (as the harness connects) and
    /// by its address (as the docker CLI of a kept run does); an issuer cannot sign for
    /// another droplet's name.
    #[test]
    fn a_droplet_mints_a_certificate_for_its_name_and_addresses_only() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
        let pki = Pki::new("t").unwrap();
        let issuer = pki.node_issuer("node-1").unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(issuer.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
        let verify = |chain: &[CertificateDer<'static>], name: &str| {
            verifier.verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let chain = mint(dir.path(), "node-1", &issuer);
        assert_eq!(chain.len(), 2, "the engine presents its issuer too");
        verify(&chain, "node-1").unwrap();
        verify(&chain, "127.0.0.1").unwrap();
        let other = tempfile::tempdir().unwrap();
        let forged = mint(other.path(), "node-2", &issuer);
        let refused = verify(&forged, "node-2").unwrap_err();
        assert!(format!("{refused:?}").contains("NameConstraint"), "{refused:?}");
    }

    #[test]
    fn user_data_carries_each_nodes_files_and_only_engines_as_facts() {
        let scenario = demo();
        let pki = Pki::new("t").unwrap();
        let ud = user_data(&scenario, &pki, &[], &[]).unwrap();
        assert!(ud.starts_with("#!/bin/sh"));
        let config = config_from_user_data(&ud).unwrap();
        assert_eq!(config["version"], 2);
        assert_eq!(config["nodes"]["swarm-demo-3"]["engine"], "20.10");
        // The facts line is for a backer choosing a machine: no secret in it.
        let facts = ud.lines().find(|l| l.starts_with(CONFIG_BEGIN)).unwrap();
        assert!(
            !facts.contains("PRIVATE KEY") && !facts.contains("CERTIFICATE"),
            "{facts}"
        );
        // One case per node, each with its own issuer and daemon.json.
        assert_eq!(ud.matches("BEGIN PRIVATE KEY").count(), scenario.nodes.len());
        assert_eq!(ud.matches("issuer-key.pem <<").count(), scenario.nodes.len());
        assert!(ud.contains("\"provider=local\",\"storage=ssd\""), "{ud}");
        assert!(ud.len() < USER_DATA_LIMIT);
    }

    #[test]
    fn user_data_installs_each_nodes_engine_runs_boot_commands_and_is_valid_shell() {
        let mut scenario = demo();
        scenario.nodes[1].engine = "26.1".into();
        scenario.nodes[2].engine = "https://example.invalid/docker-27.0.0-rc.1.tgz".into();
        let commands = [
            "echo \"it's early\"".to_string(),
            "sysctl -w net.core.somaxconn=1024".to_string(),
        ];
        let ud = user_data(&scenario, &Pki::new("t").unwrap(), &[], &commands).unwrap();
        let config = config_from_user_data(&ud).unwrap();
        assert_eq!(config["nodes"]["swarm-demo-1"]["engine"], "20.10");
        assert_eq!(config["nodes"]["swarm-demo-2"]["engine"], "26.1");
        assert!(ud.contains("engine='https://example.invalid/docker-27.0.0-rc.1.tgz'"));
        assert!(ud.contains("sh /tmp/get-docker.sh --version \"$engine\""));
        assert!(ud.contains("tar -xzf /tmp/swarm-e2e-engine.tgz -C /usr/local/bin --strip-components=1"));
        assert!(
            ud.contains("log 'boot command 1/2: echo \"it'\\''s early\"'\necho \"it's early\"\n"),
            "{ud}"
        );
        // The shell parses it (the do-fake suite runs it).
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
