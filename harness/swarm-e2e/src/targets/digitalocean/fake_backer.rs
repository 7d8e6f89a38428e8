//! Gives the fake DigitalOcean's droplets real engines.
//!
//! Every droplet the fake creates becomes a node container of the local target that
//! boots as a droplet does: its `user_data` is delivered and run as cloud-init runs it
//! (root, the script as delivered, output in `/var/log/cloud-init-output.log`), and the
//! engine that answers is the one that script configured and started. What the script
//! downloads is served on the container's own loopback (a static engine archive, by a
//! busybox httpd sharing its network namespace); Docker's install hosts resolve there
//! too, so nothing leaves the machine and an install that would need the internet fails
//! at once. The container's address on the run's `--internal` network becomes the
//! droplet's public IPv4 once the script has succeeded, and only then is the droplet
//! `active`; a script that fails fails the droplet, with its output. Deleting the
//! droplet removes its containers. So `--target do-fake` runs the whole DigitalOcean
//! code path, the droplets' own boot script, and the real overlay and placement checks.
//!
//! Backing containers carry the usual run labels (the run id comes from the droplet's
//! run tag), so local teardown and `sweep` find them like any node container.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use swarm_e2e_digitalocean::fake::{DropletEvent, FakeControl};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::cloud_init::config_from_user_data;
use crate::images;
use crate::marks::{self, run_tag};
use crate::targets::node_containers::kv_store::{self, KV_STORE_ENGINE};
use crate::targets::node_containers::{self as nodes, EngineConfig, NodeSpec, StartedNode};

/// How long shutting the backer down waits for backing containers still starting.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Shared {
    /// What backs each droplet: its node container, and its mirror if it has one.
    containers: HashMap<i64, Vec<ContainerAsync<GenericImage>>>,
    /// Static engine archives fetched for mirrors, by URL (fetched once per run).
    archives: HashMap<String, Arc<tokio::sync::OnceCell<bytes::Bytes>>>,
    deleted: HashSet<i64>,
    /// Run networks created so far, by run id.
    networks: HashMap<String, String>,
    /// Per run: held while a classic engine starts, until its gossip port is open.
    classic_starts: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// The running backer. [`Backer::shutdown`] waits for in-flight work and hands back
/// what it still holds, for teardown.
pub struct Backer {
    task: tokio::task::JoinHandle<JoinSet<()>>,
    stop: CancellationToken,
    shared: Arc<tokio::sync::Mutex<Shared>>,
    failure: watch::Receiver<Option<String>>,
    backed: Arc<AtomicUsize>,
}

impl Backer {
    /// Starts backing the droplets announced on `events`.
    pub fn spawn(host: Docker, control: FakeControl, mut events: UnboundedReceiver<DropletEvent>) -> Backer {
        let stop = CancellationToken::new();
        let shared = Arc::new(tokio::sync::Mutex::new(Shared::default()));
        let (fail_tx, failure) = watch::channel(None);
        let fail_tx = Arc::new(fail_tx);
        let backed = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, shared, backed) = (stop.clone(), shared.clone(), backed.clone());
            async move {
                let mut work = JoinSet::new();
                loop {
                    let event = tokio::select! {
                        e = events.recv() => match e { Some(e) => e, None => break },
                        _ = stop.cancelled() => break,
                    };
                    let (host, control, shared, fail_tx, backed) = (
                        host.clone(),
                        control.clone(),
                        shared.clone(),
                        fail_tx.clone(),
                        backed.clone(),
                    );
                    match event {
                        DropletEvent::Created {
                            id,
                            name,
                            tags,
                            user_data,
                        } => {
                            work.spawn(async move {
                                match back(&host, &control, &shared, id, &name, &tags, user_data.as_deref()).await {
                                    Ok(()) => {
                                        backed.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(e) => {
                                        let message = format!("backing droplet {name} ({id}): {e:#}");
                                        tracing::debug!("{message}");
                                        fail_tx.send_if_modified(|f| {
                                            f.get_or_insert(message);
                                            true
                                        });
                                    }
                                }
                            });
                        }
                        DropletEvent::Deleted { id } => {
                            work.spawn(async move {
                                let container = {
                                    let mut s = shared.lock().await;
                                    s.deleted.insert(id);
                                    s.containers.remove(&id)
                                };
                                for c in container.into_iter().flatten() {
                                    if let Err(e) = c.rm().await {
                                        tracing::warn!("removing a container behind droplet {id}: {e}");
                                    }
                                }
                            });
                        }
                    }
                }
                work
            }
        });
        Backer {
            task,
            stop,
            shared,
            failure,
            backed,
        }
    }

    /// The first backing failure, once there is one.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Counts the droplets backed so far.
    pub fn backed_counter(&self) -> Arc<AtomicUsize> {
        self.backed.clone()
    }

    /// The runs whose droplets it backed so far (by their run networks).
    pub async fn runs(&self) -> Vec<String> {
        self.shared.lock().await.networks.keys().cloned().collect()
    }

    /// Stops taking events, waits (bounded) for backing work in flight, and returns the
    /// containers still held, for teardown.
    pub async fn shutdown(self) -> Vec<ContainerAsync<GenericImage>> {
        self.stop.cancel();
        if let Ok(mut work) = self.task.await {
            let drained = tokio::time::timeout(SHUTDOWN_LIMIT, async { while work.join_next().await.is_some() {} });
            if drained.await.is_err() {
                tracing::warn!("backing work still running after {SHUTDOWN_LIMIT:?}; teardown by label will catch it");
                work.abort_all();
            }
        }
        self.shared
            .lock()
            .await
            .containers
            .drain()
            .flat_map(|(_, c)| c)
            .collect()
    }
}

/// Starts the node container behind droplet `id`, boots it from its `user_data` and
/// reports its address to the fake.
async fn back(
    host: &Docker,
    control: &FakeControl,
    shared: &tokio::sync::Mutex<Shared>,
    id: i64,
    name: &str,
    tags: &[String],
    user_data: Option<&str>,
) -> anyhow::Result<()> {
    let run_id = tags
        .iter()
        .find_map(|t| t.strip_prefix(&run_tag("")))
        .context("the droplet has no swarm-e2e run tag, so there is no run to back it for")?;
    let user_data = user_data.context("the droplet has no user_data, so nothing would configure an engine")?;
    let config =
        config_from_user_data(user_data).context("the droplet's user_data carries no swarm-e2e configuration")?;
    let scenario = config["scenario"].as_str().unwrap_or("unknown");
    let run_labels = marks::run_labels(run_id, scenario, false);
    let network = run_network(host, shared, run_id, &run_labels).await?;
    let mut node_labels = run_labels;
    node_labels.insert(marks::DROPLET.into(), id.to_string());
    let (address, containers) = if config["kv_store"].is_object() {
        // The classic topology's store droplet: the same etcd the local target runs
        // (its script installs etcd with apt, which needs the internet).
        let (address, container) =
            kv_store::start_kv_store(host, run_id, &network, node_labels, &CancellationToken::new()).await?;
        (address, vec![container])
    } else {
        let droplet = Droplet {
            host,
            shared,
            id,
            run_id,
            name,
            config: &config,
            user_data,
            network: &network,
        };
        if config["classic"] == true {
            // Classic engines start one at a time, each once the previous one's gossip
            // port is open, as the local target starts them (see `local::provision`):
            // real droplets boot seconds apart, node containers within milliseconds.
            let turn = (shared.lock().await.classic_starts)
                .entry(run_id.to_string())
                .or_default()
                .clone();
            let _turn = turn.lock().await;
            let (started, containers) = boot(&droplet, node_labels).await?;
            if let Err(e) = kv_store::wait_gossip(host, run_id, &started, &CancellationToken::new()).await {
                tracing::warn!("{e:#}");
            }
            (started.address, containers)
        } else {
            let (started, containers) = boot(&droplet, node_labels).await?;
            (started.address, containers)
        }
    };
    let IpAddr::V4(address) = address else {
        anyhow::bail!("the backing container has no IPv4 address");
    };
    let mut s = shared.lock().await;
    if s.deleted.contains(&id) {
        // Deleted while its engine was starting: nothing may outlive the droplet.
        drop(s);
        for c in containers {
            c.rm().await.context("removing a container whose droplet is gone")?;
        }
        return Ok(());
    }
    s.containers.insert(id, containers);
    control.set_backing_address(id, address);
    Ok(())
}

/// One engine droplet being backed: what `boot` needs of it and of the backer.
#[derive(Clone, Copy)]
struct Droplet<'a> {
    host: &'a Docker,
    shared: &'a tokio::sync::Mutex<Shared>,
    id: i64,
    run_id: &'a str,
    name: &'a str,
    /// The swarm-e2e configuration line of its `user_data`.
    config: &'a serde_json::Value,
    user_data: &'a str,
    /// The run's network on this machine.
    network: &'a str,
}

/// How long a droplet's boot script may run on the fake (a real install takes minutes;
/// here nothing is downloaded from afar).
const BOOT_SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Names a droplet's boot script may fetch from, sent to the container's loopback: an
/// install that needs them fails at once instead of leaving the machine.
const INSTALL_HOSTS: &[&str] = &["get.docker.com", "download.docker.com"];

/// Boots engine droplet `name`: its node container (the machine the script expects:
/// the node image, or for a static archive an engineless one), the mirror of the
/// archive, then the script, awaited until it exits. A failed script keeps the
/// containers (held for the droplet, so failure artefacts can read them) and fails with
/// the script's last output lines.
async fn boot(
    droplet: &Droplet<'_>,
    node_labels: HashMap<String, String>,
) -> anyhow::Result<(StartedNode, Vec<ContainerAsync<GenericImage>>)> {
    let Droplet {
        host,
        shared,
        id,
        run_id,
        name,
        config,
        user_data,
        network,
    } = *droplet;
    let engine = config["nodes"][name]["engine"]
        .as_str()
        .with_context(|| format!("user_data names no engine for {name}"))?;
    let archive = archive_url(engine)?;
    let mut hosts: Vec<String> = INSTALL_HOSTS.iter().map(|h| h.to_string()).collect();
    let image = match &archive {
        Some(url) => {
            let parsed = reqwest::Url::parse(url).with_context(|| format!("engine {url} is no URL"))?;
            if let Some(h) = parsed.host_str().filter(|h| h.parse::<IpAddr>().is_err()) {
                hosts.push(h.to_string());
            }
            images::engineless_base(host).await?
        }
        None => images::resolve_node_image(host, engine).await?.tag,
    };
    let spec = NodeSpec {
        name,
        engine,
        config: EngineConfig::BootScript { image, hosts },
    };
    let (started, container) = nodes::start_node(
        host,
        run_id,
        spec,
        network,
        node_labels.clone(),
        &CancellationToken::new(),
    )
    .await?;
    let mut containers = vec![container];
    let result = async {
        if let Some(url) = &archive {
            let bytes = fetch_archive(shared, url).await?;
            let mirror_name = format!("{}-mirror", marks::node_container_name(run_id, name));
            let mut labels = node_labels;
            labels.insert(marks::MIRROR.into(), name.to_string());
            containers.push(start_mirror(host, &containers[0], &mirror_name, url, bytes, labels).await?);
        }
        nodes::deliver_boot_script(host, containers[0].id(), user_data)
            .await
            .context("delivering the boot script")?;
        wait_boot_script(host, containers[0].id(), name).await
    }
    .await;
    match result {
        Ok(()) => Ok((started, containers)),
        Err(e) => {
            // Held as the droplet's, so artefacts can read the machine and deleting the
            // droplet removes it.
            shared.lock().await.containers.insert(id, containers);
            Err(e)
        }
    }
}

/// The static archive's URL a droplet's engine names, if it names one. Served over
/// `http://` only: a mirror that answered for an `https://` host would need that host's
/// certificate.
fn archive_url(engine: &str) -> anyhow::Result<Option<String>> {
    if engine.starts_with("https://") {
        anyhow::bail!(
            "engine {engine}: the fake's droplets can only fetch a static archive from an http:// URL (their \
             downloads are served on their own loopback, without that host's certificate)\n\
             hint: serve the archive over http (a loopback server will do), or use --target local"
        );
    }
    Ok(engine.starts_with("http://").then(|| engine.to_string()))
}

/// What the fake's droplets boot on, for every engine of `scenario`, checked before
/// anything is created: node images (an engineless base for a static archive's URL,
/// which must be `http://`), and the key-value store's image.
pub async fn require_droplet_images(host: &Docker, scenario: &swarm_e2e_model::Scenario) -> anyhow::Result<()> {
    for engine in scenario.engines() {
        match archive_url(&engine)? {
            Some(_) => drop(images::engineless_base(host).await?),
            None => drop(images::resolve_node_image(host, &engine).await?),
        }
    }
    if scenario.topology == swarm_e2e_model::Topology::Classic {
        images::resolve_node_image(host, KV_STORE_ENGINE)
            .await
            .context("the classic topology's key-value store (etcd) comes from this node image")?;
    }
    Ok(())
}

/// The archive at `url`, fetched from this machine once per backer.
async fn fetch_archive(shared: &tokio::sync::Mutex<Shared>, url: &str) -> anyhow::Result<bytes::Bytes> {
    // One cell per URL: droplets booting at once wait for one download.
    let cell = shared.lock().await.archives.entry(url.to_string()).or_default().clone();
    let bytes = cell
        .get_or_try_init(|| async {
            let response = reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(600))
                .send()
                .await
                .and_then(|r| r.error_for_status())?;
            response.bytes().await
        })
        .await
        .with_context(|| format!("fetching {url} for the droplets' mirror"))?;
    Ok(bytes.clone())
}

/// A busybox httpd in the network namespace of `node`, serving `bytes` at `url`'s port
/// and path on the node's loopback (its host name resolves there, see `boot`).
async fn start_mirror(
    host: &Docker,
    node: &ContainerAsync<GenericImage>,
    container_name: &str,
    url: &str,
    bytes: bytes::Bytes,
    labels: HashMap<String, String>,
) -> anyhow::Result<ContainerAsync<GenericImage>> {
    let parsed = reqwest::Url::parse(url)?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let path = parsed.path().trim_start_matches('/').to_string();
    anyhow::ensure!(!path.is_empty(), "{url} names no file");
    images::ensure_busybox_image(host).await?;
    let (repo, tag) = images::BUSYBOX_IMAGE.split_once(':').expect("tag");
    let serve = format!("while [ ! -e /srv/.ready ]; do sleep 0.05; done; exec httpd -f -p 127.0.0.1:{port} -h /srv");
    let mirror = GenericImage::new(repo, tag)
        .with_entrypoint("/bin/sh")
        .with_cmd(["-c", serve.as_str()])
        .with_container_name(container_name)
        .with_network(format!("container:{}", node.id()))
        .with_labels(labels)
        .start()
        .await
        .context("starting the droplet's mirror")?;
    let mut tar = tar::Builder::new(Vec::new());
    for (entry, body) in [
        (format!("srv/{path}"), &bytes[..]),
        ("srv/.ready".to_string(), &b""[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(marks::now_unix());
        tar.append_data(&mut h, entry, body)?;
    }
    host.upload_to_container(
        mirror.id(),
        Some(
            bollard::query_parameters::UploadToContainerOptionsBuilder::new()
                .path("/")
                .build(),
        ),
        bollard::body_full(tar.into_inner()?.into()),
    )
    .await
    .context("uploading the archive to the droplet's mirror")?;
    let local = format!("http://127.0.0.1:{port}/{path}");
    crate::wait::poll_until(Duration::from_secs(10), Duration::from_millis(50), || async {
        let (code, out) = crate::engine::exec(host, mirror.id(), &["wget", "-q", "--spider", &local]).await?;
        anyhow::ensure!(code == 0, "{}", out.trim());
        anyhow::Ok(Some(()))
    })
    .await
    .context("the droplet's mirror did not answer")?;
    Ok(mirror)
}

/// Waits (bounded) until the boot script of node container `container` has exited;
/// a failure names its exit status and its last output lines.
async fn wait_boot_script(host: &Docker, container: &str, node: &str) -> anyhow::Result<()> {
    let status = crate::wait::poll_until(BOOT_SCRIPT_LIMIT, Duration::from_millis(100), || async {
        let (code, out) = crate::engine::exec(host, container, &["cat", "/run/swarm-e2e/boot-status"]).await?;
        anyhow::Ok((code == 0).then(|| out.trim().to_string()))
    })
    .await
    .with_context(|| format!("the boot script did not finish within {}s", BOOT_SCRIPT_LIMIT.as_secs()))?;
    if status == "0" {
        return Ok(());
    }
    let (_, log) = crate::engine::exec(host, container, &["tail", "-n", "15", BOOT_LOG]).await?;
    anyhow::bail!(
        "its boot script (user_data) exited with status {status}; its last lines ({BOOT_LOG}):\n    {}\n\
         hint: the whole output is among the run's failure artefacts, as {node}/cloud-init-output.log",
        log.trim_end().lines().collect::<Vec<_>>().join("\n    "),
    )
}

/// Where cloud-init (and the fake's droplets) keep a boot script's output.
pub use super::cloud_init::BOOT_LOG;

/// The run's network on the host engine, created by the first droplet backed for it.
async fn run_network(
    host: &Docker,
    shared: &tokio::sync::Mutex<Shared>,
    run_id: &str,
    run_labels: &HashMap<String, String>,
) -> anyhow::Result<String> {
    let mut s = shared.lock().await;
    match s.networks.get(run_id) {
        Some(n) => Ok(n.clone()),
        None => {
            let network = nodes::create_run_network(host, run_id, run_labels).await?;
            s.networks.insert(run_id.to_string(), network.clone());
            Ok(network)
        }
    }
}
