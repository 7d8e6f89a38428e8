//! Gives the fake DigitalOcean's droplets real engines.
//!
//! Every droplet the fake creates becomes a node container of the local target, started
//! with exactly the configuration its `user_data` carries (daemon.json and TLS files as
//! the harness rendered them for a real droplet); the container's address on the run's
//! `--internal` network becomes the droplet's public IPv4, and only then is the droplet
//! `active`. Deleting the droplet removes its container. So `--target do-fake` runs the
//! whole DigitalOcean code path and the real overlay and placement checks.
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
use secrecy::SecretString;
use swarm_e2e_digitalocean::fake::{DropletEvent, FakeControl};
use testcontainers::{ContainerAsync, GenericImage};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::cloud_init::config_from_user_data;
use crate::marks::{self, run_tag};
use crate::pki::CertBundle;
use crate::target::local::nodes::{self, EngineConfig, NodeSpec, StartedNode};

/// How long shutting the backer down waits for backing containers still starting.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Shared {
    containers: HashMap<i64, ContainerAsync<GenericImage>>,
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
                                        tracing::warn!("{message}");
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
                                if let Some(c) = container
                                    && let Err(e) = c.rm().await
                                {
                                    tracing::warn!("removing the container behind droplet {id}: {e}");
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
        self.shared.lock().await.containers.drain().map(|(_, c)| c).collect()
    }
}

/// Starts the node container behind droplet `id` and reports its address to the fake.
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
    let config = user_data
        .and_then(config_from_user_data)
        .context("the droplet's user_data carries no swarm-e2e configuration")?;
    let scenario = config["scenario"].as_str().unwrap_or("unknown");
    let run_labels = marks::run_labels(run_id, scenario, false);
    let network = run_network(host, shared, run_id, &run_labels).await?;
    let mut node_labels = run_labels;
    node_labels.insert(marks::DROPLET.into(), id.to_string());
    let (address, container) = if config["kv_store"].is_object() {
        // The classic topology's store droplet: the same etcd the local target runs.
        nodes::start_kv_store(host, run_id, &network, node_labels, &CancellationToken::new()).await?
    } else if config["nodes"][name]["daemon_json"]["cluster-store"].is_string() {
        // Classic engines start one at a time, each once the previous one's gossip port
        // is open, as the local target starts them (see `local::provision`): real
        // droplets boot seconds apart, node containers within milliseconds.
        let turn = (shared.lock().await.classic_starts)
            .entry(run_id.to_string())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        let (started, container) = start_engine(host, run_id, name, &config, &network, node_labels).await?;
        if let Err(e) = nodes::wait_gossip(host, run_id, &started, &CancellationToken::new()).await {
            tracing::warn!("{e:#}");
        }
        (started.address, container)
    } else {
        let started = start_engine(host, run_id, name, &config, &network, node_labels).await?;
        (started.0.address, started.1)
    };
    let IpAddr::V4(address) = address else {
        anyhow::bail!("the backing container has no IPv4 address");
    };
    let mut s = shared.lock().await;
    if s.deleted.contains(&id) {
        // Deleted while its engine was starting: nothing may outlive the droplet.
        drop(s);
        container
            .rm()
            .await
            .context("removing a container whose droplet is gone")?;
        return Ok(());
    }
    s.containers.insert(id, container);
    control.set_backing_address(id, address);
    Ok(())
}

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

/// Starts the node container of engine droplet `name`, configured as its user_data says.
async fn start_engine(
    host: &Docker,
    run_id: &str,
    name: &str,
    config: &serde_json::Value,
    network: &str,
    node_labels: HashMap<String, String>,
) -> anyhow::Result<(StartedNode, ContainerAsync<GenericImage>)> {
    let node = &config["nodes"][name];
    let field = |k: &str| {
        node[k]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("user_data has no `{k}` for {name}"))
    };
    let spec = NodeSpec {
        name,
        engine: &field("engine")?,
        config: EngineConfig::Given {
            daemon_json: node["daemon_json"].clone(),
            server: CertBundle {
                ca_pem: field("ca_pem")?,
                cert_pem: field("cert_pem")?,
                key_pem: SecretString::from(field("key_pem")?),
            },
        },
    };
    nodes::start_node(host, run_id, spec, network, node_labels, &CancellationToken::new()).await
}
