//! The hosts file: one `[[engine]]` per scenario node (node, host, tls), read into
//! [`Engine`]s with every problem reported at once.

use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;

use super::Engine;
use crate::engine::ENGINE_TLS_PORT;
use crate::exit::Failure;
use crate::pki::CertBundle;
use crate::targets::Identity;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    #[serde(default)]
    engine: Vec<HostEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    node: String,
    host: String,
    tls: PathBuf,
}

pub(super) fn read_hosts_file(path: &Path) -> Result<Vec<Engine>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::invalid_input(format!("cannot read the hosts file {}: {e}", path.display()))
            .with_hint("--hosts names a TOML file with one [[engine]] entry (node, host, tls) per scenario node")
    })?;
    let parsed: HostsFile = toml::from_str(&text).map_err(|e| {
        Failure::invalid_input(format!("{}: {}", path.display(), e.message().trim())).with_hint(
            "each [[engine]] has node = \"NAME\", host = \"tcp://ADDR:2376\", tls = \"DIR\" (ca.pem, cert.pem, key.pem)",
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut engines = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in parsed.engine {
        if !seen.insert(entry.node.clone()) {
            problems.push(format!("node `{}` is named twice", entry.node));
            continue;
        }
        match engine_of(&entry, base) {
            Ok(e) => engines.push(e),
            Err(e) => problems.push(format!("node `{}`: {e:#}", entry.node)),
        }
    }
    if problems.is_empty() {
        Ok(engines)
    } else {
        Err(Failure::invalid_input(format!(
            "{}:\n  {}",
            path.display(),
            problems.join("\n  ")
        )))
    }
}

fn engine_of(entry: &HostEntry, base: &Path) -> anyhow::Result<Engine> {
    let rest = entry.host.strip_prefix("tcp://").unwrap_or(&entry.host);
    let rest = rest.trim_end_matches('/');
    // `[v6]:port`, `host:port` or `host` (the TLS port).
    let (name, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>().context("port")?,
        ),
        _ => (rest, ENGINE_TLS_PORT),
    };
    let (address, identity) = match name.parse::<IpAddr>() {
        Ok(ip) => (ip, Identity::Address),
        Err(_) => {
            let resolved = (name, port)
                .to_socket_addrs()
                .with_context(|| format!("`{name}` does not resolve"))?
                .next()
                .with_context(|| format!("`{name}` resolves to no address"))?;
            (resolved.ip(), Identity::Name(name.to_string()))
        }
    };
    let dir = if entry.tls.is_absolute() {
        entry.tls.clone()
    } else {
        base.join(&entry.tls)
    };
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).with_context(|| format!("reading {}", dir.join(file).display()))
    };
    Ok(Engine {
        node: entry.node.clone(),
        host: entry.host.clone(),
        address,
        port,
        identity,
        client: Arc::new(CertBundle {
            ca_pem: read("ca.pem")?,
            cert_pem: read("cert.pem")?,
            key_pem: SecretString::from(read("key.pem")?),
        }),
    })
}
