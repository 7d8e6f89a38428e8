//! Node containers: one per node on the host engine, each running a real dockerd, on a
//! per-run `--internal` network. The local target's nodes and the fake's backed droplets
//! are both node containers; this is what they share.
//!
//! Node containers are started with testcontainers. `--privileged` is not used: it fails
//! in sandboxes whose capability bounding set lacks CAP_SYS_RESOURCE, and the explicit
//! set below (all capabilities but that one, no seccomp/apparmor, unmasked /proc and
//! /sys paths) runs the inner engine on ordinary Docker hosts too.

pub mod control;
pub mod kv_store;
pub mod resources;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{DeviceMapping, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{ListContainersOptionsBuilder, UploadToContainerOptionsBuilder};
use secrecy::ExposeSecret;
use serde_json::json;
use swarm_e2e_model::Node;
use testcontainers::core::Mount;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio_util::sync::CancellationToken;

use crate::daemon::{CONFIG_DIR, daemon_json};
use crate::images::resolve_node_image;
use crate::marks::{self, network_name, node_container_name};
use crate::pki::{CertBundle, Pki};
use crate::targets::KernelFacts;
pub use control::ContainerNodeControl;
pub(crate) use control::{container_log, node_container_exited};

/// A node container, started and configured; its engine may still be starting.
#[derive(Debug, Clone)]
pub struct StartedNode {
    pub name: String,
    pub address: IpAddr,
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
    /// A droplet's boot script (`user_data`), delivered by the caller with
    /// [`deliver_boot_script`] once what it downloads is served, then run in the container
    /// as cloud-init runs it: the script writes the engine's configuration and starts it.
    /// `image` is the machine it boots on; `hosts` are names `/etc/hosts` sends to the
    /// container's loopback (where the mirror of what the script downloads listens).
    BootScript { image: String, hosts: Vec<String> },
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
) -> anyhow::Result<(StartedNode, ContainerAsync<GenericImage>)> {
    let node_name = spec.name;
    let check_stop = || {
        if stop.is_cancelled() {
            bail!("provisioning stopped");
        }
        Ok(())
    };
    check_stop()?;
    node_labels.insert(marks::NODE.into(), node_name.to_string());
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
    let tag = match &spec.config {
        EngineConfig::BootScript { image, .. } => image.clone(),
        EngineConfig::Issue { .. } => resolve_node_image(host, spec.engine).await?.tag,
    };
    let (repo, version) = tag.split_once(':').expect("tag has a version");
    let mut request = GenericImage::new(repo, version)
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
    // The inner engine's containers get cgroups under a parent named after the node
    // container, so teardown can find and remove them.
    let cgroup_parent = format!("/{container_name}");
    if let EngineConfig::BootScript { hosts, .. } = &spec.config {
        // The boot script's dockerd gets it as a flag (see swarm-e2e-systemctl): its
        // daemon.json is the script's, as on a real droplet.
        request = request.with_env_var("SWARM_E2E_DOCKERD_ARGS", format!("--cgroup-parent={cgroup_parent}"));
        for name in hosts {
            request = request.with_host(name, testcontainers::core::Host::Addr(IpAddr::from([127, 0, 0, 1])));
        }
    }
    let container = request
        .start()
        .await
        .with_context(|| format!("starting node container {container_name}"))?;
    let address = container
        .get_bridge_ip_address()
        .await
        .with_context(|| format!("reading the address of {container_name}"))?;

    match spec.config {
        EngineConfig::Issue { pki, node, extra } => {
            let mut keys = vec![("cgroup-parent", json!(cgroup_parent))];
            keys.extend(extra.iter().cloned());
            let server = pki.server(&node.name, &[address])?;
            deliver_config(host, container.id(), &server, &daemon_json(node, &keys))
                .await
                .with_context(|| format!("delivering the engine configuration to {container_name}"))?;
        }
        EngineConfig::BootScript { .. } => {}
    }
    Ok((
        StartedNode {
            name: node_name.to_string(),
            address,
        },
        container,
    ))
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
        h.set_mtime(marks::now_unix());
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

/// Where a fake droplet's boot script is delivered (and cloud-init keeps it).
pub const BOOT_SCRIPT_DIR: &str = "/var/lib/cloud/instance";

/// Uploads `user_data` and then `ready` (the last entry of the same tar), which starts
/// the node's boot (see swarm-e2e-node-init).
pub async fn deliver_boot_script(host: &Docker, container: &str, user_data: &str) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(Vec::new());
    // Paths from `/`: the upload creates the directory (images need not have it).
    let dir = BOOT_SCRIPT_DIR.trim_start_matches('/');
    for (name, mode, body) in [
        ("user-data.txt", 0o600, user_data.as_bytes()),
        ("ready", 0o644, &b""[..]),
    ] {
        let name = format!("{dir}/{name}");
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_mtime(marks::now_unix());
        tar.append_data(&mut h, name, body)?;
    }
    let body = bytes::Bytes::from(tar.into_inner()?);
    // A stream, never a full body: the script holds the node's private key (see
    // `deliver_config`).
    host.upload_to_container(
        container,
        Some(UploadToContainerOptionsBuilder::new().path("/").build()),
        bollard::body_stream(futures_util::stream::once(async move { body })),
    )
    .await?;
    Ok(())
}

/// The address of a kept run's node on the run network, found by labels.
pub async fn node_address(host: &Docker, run_id: &str, node: &str) -> anyhow::Result<IpAddr> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={run_id}", marks::RUN), format!("{}={node}", marks::NODE)],
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

/// What the host kernel has; local nodes (and the fake's droplets) share it.
pub fn host_kernel() -> KernelFacts {
    KernelFacts {
        ipvs: host_has_ipvs(),
        esp: host_has_esp(),
    }
}

/// Whether this kernel has IPVS (local nodes share the host kernel).
/// Whether this kernel has IPsec ESP, which encrypted overlays need (local nodes share
/// the host kernel). Read from the kernel configuration; unknown counts as present, so
/// the check runs and says what it saw.
pub fn host_has_esp() -> bool {
    use std::io::Read;
    if std::path::Path::new("/sys/module/esp4").exists() {
        return true;
    }
    let Ok(file) = std::fs::File::open("/proc/config.gz") else {
        return true;
    };
    let mut config = String::new();
    if flate2::read::GzDecoder::new(file).read_to_string(&mut config).is_err() {
        return true;
    }
    config.lines().any(|l| l == "CONFIG_INET_ESP=y")
}

pub fn host_has_ipvs() -> bool {
    std::path::Path::new("/proc/net/ip_vs").exists() || std::path::Path::new("/sys/module/ip_vs").exists()
}

/// Handles of the node containers, removed explicitly at teardown (dropping them
/// outside a tokio context would leak them).
pub type NodeHandles = Vec<ContainerAsync<GenericImage>>;
