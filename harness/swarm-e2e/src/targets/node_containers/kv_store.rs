//! The classic topology on node containers: the key-value store container (etcd with
//! its v2 API) and the wait for classic engines' gossip port.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use testcontainers::core::Mount;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio_util::sync::CancellationToken;

use super::StartedNode;
use crate::images::resolve_node_image;
use crate::marks::{self, node_container_name};
use crate::targets::classic::{KV_STORE_NODE, KV_STORE_PORT};

/// The packaged node image whose Debian suite has the classic topology's key-value store
/// (Debian 12: etcd 3.4, which still serves the v2 API the engines' libkv speaks).
pub const KV_STORE_ENGINE: &str = "20.10";

/// Bound on etcd answering after its container started.
const KV_STORE_READY_LIMIT: Duration = Duration::from_secs(30);

/// Starts the classic topology's key-value store: etcd with its v2 API, in a container
/// on the run network (marked like every node container). Returns its address.
pub(crate) async fn start_kv_store(
    host: &Docker,
    run_id: &str,
    network: &str,
    mut node_labels: HashMap<String, String>,
    stop: &CancellationToken,
) -> anyhow::Result<(IpAddr, ContainerAsync<GenericImage>)> {
    if stop.is_cancelled() {
        bail!("provisioning stopped");
    }
    node_labels.insert(marks::NODE.into(), KV_STORE_NODE.to_string());
    let container_name = node_container_name(run_id, KV_STORE_NODE);
    let tag = resolve_node_image(host, KV_STORE_ENGINE).await?.tag;
    let (repo, version) = tag.split_once(':').expect("tag has a version");
    // etcd advertises the client URL it is given, and libkv clients sync their endpoint
    // list from it: it must be the container's own address, known only inside it.
    let command = format!(
        "exec etcd --name kv --data-dir /run/etcd --enable-v2=true \
         --listen-client-urls http://0.0.0.0:{KV_STORE_PORT} \
         --advertise-client-urls http://$(hostname -i):{KV_STORE_PORT} \
         --listen-peer-urls http://127.0.0.1:2380"
    );
    let container = GenericImage::new(repo, version)
        .with_entrypoint("/bin/sh")
        .with_cmd(["-c", command.as_str()])
        .with_container_name(&container_name)
        .with_hostname(KV_STORE_NODE)
        .with_network(network)
        .with_labels(node_labels)
        .with_mount(Mount::tmpfs_mount("/run"))
        .with_startup_timeout(Duration::from_secs(60))
        .start()
        .await
        .with_context(|| format!("starting the key-value store container {container_name}"))?;
    let address = container
        .get_bridge_ip_address()
        .await
        .with_context(|| format!("reading the address of {container_name}"))?;
    Ok((address, container))
}

/// Waits (bounded) until etcd at `address` answers its version endpoint.
pub(crate) async fn wait_kv_store(address: IpAddr, stop: &CancellationToken) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("an HTTP client for etcd")?;
    let url = format!("http://{address}:{KV_STORE_PORT}/version");
    let answered = crate::wait::poll_until(KV_STORE_READY_LIMIT, Duration::from_millis(50), || async {
        let response = client.get(&url).send().await?.error_for_status()?;
        anyhow::Ok(Some(response.text().await?))
    });
    // Only reads are in flight here, so a stopped provisioning need not wait for them.
    tokio::select! {
        r = answered => r.map(|_| ()).with_context(|| format!("the key-value store (etcd at {url}) did not answer")),
        _ = stop.cancelled() => bail!("provisioning stopped"),
    }
}

/// The port classic engines' serf (the overlay's peer gossip) listens on.
const GOSSIP_PORT: u16 = 7946;

/// Bound on a classic engine opening its gossip port after its container started.
const GOSSIP_READY_LIMIT: Duration = Duration::from_secs(30);

/// Waits (bounded) until `node`'s engine accepts connections on its gossip port; returns
/// early when the node container is no longer running (the engines-ready phase names
/// why, with its last log lines).
pub(crate) async fn wait_gossip(
    host: &Docker,
    run_id: &str,
    node: &StartedNode,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let target = std::net::SocketAddr::new(node.address, GOSSIP_PORT);
    let container = node_container_name(run_id, &node.name);
    let opened = crate::wait::poll_until(GOSSIP_READY_LIMIT, Duration::from_millis(50), || async {
        let connect = tokio::net::TcpStream::connect(target);
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(_)) => Ok(Some(())),
            Ok(Err(e)) => {
                let running = host
                    .inspect_container(&container, None)
                    .await
                    .ok()
                    .and_then(|c| c.state)
                    .and_then(|s| s.running);
                if running == Some(false) {
                    return Ok(Some(()));
                }
                bail!("{e}")
            }
            Err(_) => bail!("no answer within 1 s"),
        }
    });
    tokio::select! {
        r = opened => r.with_context(|| format!(
            "the engine of {} never opened its gossip port ({target}), where classic engines join each other; \
             hint: its engine log (docker logs {container}) says why", node.name
        )),
        _ = stop.cancelled() => bail!("provisioning stopped"),
    }
}
