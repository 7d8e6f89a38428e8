//! The local target: one node container per scenario node on the host engine, each
//! running a real dockerd, on a per-run `--internal` network; what it shares with the
//! fake's backed droplets (node containers, their control, finding them again by their
//! marks) is [`super::node_containers`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use futures_util::future::{BoxFuture, join_all};
use swarm_e2e_model::{Scenario, Topology};
use testcontainers::{ContainerAsync, GenericImage};

use super::classic::{KV_STORE_PORT, cluster_store_config};
use super::node_containers::kv_store::{KV_STORE_ENGINE, start_kv_store, wait_gossip, wait_kv_store};
use super::node_containers::{
    ContainerNodeControl, EngineConfig, NodeHandles, NodeSpec, StartedNode, container_log, create_run_network,
    host_kernel, node_container_exited, resources, start_node,
};
use super::{Identity, KernelFacts, NodeControl, ProvisionContext, ProvisionedNode, Target, TeardownReport};
use crate::engine::{ENGINE_TLS_PORT, host_engine, ping_host_engine};
use crate::exit::Failure;
use crate::images::resolve_node_image;
use crate::marks::{self, node_container_name, run_dir};
use crate::report::NodeRecord;

/// Node containers on the host engine.
pub struct LocalTarget {
    host: Docker,
    /// The node containers' handles, removed explicitly at teardown.
    handles: Mutex<NodeHandles>,
}

impl LocalTarget {
    pub fn new() -> Result<LocalTarget, Failure> {
        let host = host_engine()?;
        Ok(LocalTarget {
            host,
            handles: Mutex::new(Vec::new()),
        })
    }
}

impl Target for LocalTarget {
    fn shares_host(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "local"
    }

    fn preflight<'a>(&'a self, scenario: &'a Scenario, _keep: bool) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            // Node containers share this host's kernel: its limits bound the run's size.
            crate::hostlimits::preflight(scenario)?;
            async {
                ping_host_engine(&self.host).await?;
                require_node_images(&self.host, scenario).await
            }
            .await
            .map_err(Failure::from)
        })
    }

    fn provision(self: Arc<Self>, ctx: ProvisionContext) -> BoxFuture<'static, anyhow::Result<Vec<ProvisionedNode>>> {
        Box::pin(async move {
            if ctx.keep {
                ctx.pki.write_client_dir(&run_dir(&ctx.run_id).join("certs"))?;
            }
            let (handles, result) = provision(&self.host, &ctx).await;
            self.handles.lock().unwrap().extend(handles);
            let client = Arc::new(ctx.pki.client.clone());
            Ok(result?
                .into_iter()
                .map(|n| ProvisionedNode {
                    name: n.name,
                    address: n.address,
                    port: ENGINE_TLS_PORT,
                    // Certificates are issued once the container's address is known.
                    identity: Identity::Address,
                    client: client.clone(),
                    cli_host: format!("tcp://{}:{ENGINE_TLS_PORT}", n.address),
                })
                .collect())
        })
    }

    fn provisioned(&self, nodes: &[ProvisionedNode]) -> String {
        format!("{} node container(s)", nodes.len())
    }

    fn node_exited<'a>(&'a self, run_id: &'a str, nodes: &'a [String]) -> BoxFuture<'a, anyhow::Error> {
        Box::pin(node_container_exited(&self.host, run_id, nodes))
    }

    fn image_source(&self) -> Option<&Docker> {
        Some(&self.host)
    }

    fn node_control(&self, run_id: &str) -> Option<Arc<dyn NodeControl>> {
        Some(Arc::new(ContainerNodeControl {
            host: self.host.clone(),
            run_id: run_id.to_string(),
        }))
    }

    fn kernel(&self) -> KernelFacts {
        host_kernel()
    }

    fn node_log<'a>(
        &'a self,
        run_id: &'a str,
        node: &'a str,
        _engine: Option<&'a Docker>,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(container_log(&self.host, node_container_name(run_id, node)))
    }

    fn keep(&self, run_id: &str, nodes: &[NodeRecord]) -> String {
        // The containers stay; forget the handles so their Drop does not remove them.
        for h in self.handles.lock().unwrap().drain(..) {
            std::mem::forget(h);
        }
        super::keep_lines(run_id, nodes, "")
    }

    fn teardown<'a>(&'a self, run_id: &'a str, limit: Duration) -> BoxFuture<'a, TeardownReport> {
        Box::pin(async move {
            let handles = std::mem::take(&mut *self.handles.lock().unwrap());
            match tokio::time::timeout(limit, resources::teardown(&self.host, run_id, handles)).await {
                Ok((removed, errors)) => TeardownReport {
                    detail: format!("{} resource(s) removed", removed.len()),
                    errors,
                },
                Err(_) => TeardownReport {
                    detail: String::new(),
                    errors: vec![format!(
                        "teardown timed out after {}s\nhint: run `swarm-e2e sweep --yes` to remove what run {run_id} left",
                        limit.as_secs()
                    )],
                },
            }
        })
    }
}

/// Fails early, with the build command, when a node image is missing (the classic
/// topology's key-value store node included).
pub async fn require_node_images(host: &Docker, scenario: &Scenario) -> anyhow::Result<()> {
    for engine in scenario.engines() {
        resolve_node_image(host, &engine).await?;
    }
    if scenario.topology == Topology::Classic {
        resolve_node_image(host, KV_STORE_ENGINE)
            .await
            .context("the classic topology's key-value store (etcd) comes from this node image")?;
    }
    Ok(())
}

/// Node container starts sent to the host engine at once (see `provision`).
const NODE_STARTS_IN_FLIGHT: usize = 8;

/// Creates the run's network and volumes, then starts every node container in parallel
/// and delivers its engine configuration. The first error wins; whatever was created
/// carries the run label, so teardown finds it.
///
/// `stop` ends provisioning between steps. Requests already sent are never abandoned
/// (a dropped create can still land after teardown looked), so a stopped provision
/// returns once what it started has landed.
async fn provision<'a>(host: &Docker, ctx: &'a ProvisionContext) -> (NodeHandles, anyhow::Result<Vec<StartedNode>>) {
    let (scenario, run_id, keep, pki, stop) = (&*ctx.scenario, ctx.run_id.as_str(), ctx.keep, &*ctx.pki, &ctx.stop);
    let run_labels = marks::run_labels(run_id, &scenario.name, keep);
    let network = match create_run_network(host, run_id, &run_labels).await {
        Ok(n) => n,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut handles = Vec::new();
    // The classic topology: the key-value store first, since every engine's
    // configuration names its address.
    let mut classic_config = Vec::new();
    let mut kv_address = None;
    if scenario.topology == Topology::Classic {
        match start_kv_store(host, run_id, &network, run_labels.clone(), stop).await {
            Ok((address, handle)) => {
                handles.push(handle);
                classic_config = cluster_store_config(&format!("etcd://{address}:{KV_STORE_PORT}"));
                kv_address = Some(address);
            }
            Err(e) => return (handles, Err(e)),
        }
    }
    let classic_config = &classic_config;
    // Test hook: an option no engine knows makes dockerd exit while it starts.
    let broken: Vec<(&'static str, serde_json::Value)> = classic_config
        .iter()
        .cloned()
        .chain([("swarm-e2e-injected-unknown-option", serde_json::json!(true))])
        .collect();
    let broken = &broken;
    // Every node start runs to its end, even after one failed: a start abandoned midway
    // could still create a container after teardown looked. A failure stops the others
    // at their next step instead.
    let start = |node: &'a swarm_e2e_model::Node| {
        let run_labels = run_labels.clone();
        let network = network.clone();
        let stop = stop.clone();
        async move {
            let spec = NodeSpec {
                name: &node.name,
                engine: &node.engine,
                config: EngineConfig::Issue {
                    pki,
                    node,
                    extra: if ctx.broken_engines.contains(&node.name) {
                        broken
                    } else {
                        classic_config
                    },
                },
            };
            let r = start_node(host, run_id, spec, &network, run_labels, &stop).await;
            if r.is_err() {
                stop.cancel();
            }
            r
        }
    };
    let results = if let Some(address) = kv_address {
        // Classic engines join each other's serf (the overlay's peer gossip) once, when
        // they first see a node in the store, and never retry: an engine that saw a
        // neighbour before its gossip port opened stays alone, and no container on
        // another node is reachable from it (measured: 1 of 4 runs under load). So the
        // engines start one at a time, as docker-machine created them in 2015: each
        // once the previous one's gossip port is open, and the store answers first.
        if let Err(e) = wait_kv_store(address, stop).await {
            return (handles, Err(e));
        }
        let mut results = Vec::new();
        for node in &scenario.nodes {
            let r = start(node).await;
            let r = match r {
                Ok((started, handle)) => match wait_gossip(host, run_id, &started, stop).await {
                    Ok(()) => Ok((started, handle)),
                    Err(e) => {
                        handles.push(handle);
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            let failed = r.is_err();
            results.push(r);
            if failed {
                break;
            }
        }
        results
    } else {
        // A bounded number of node starts in flight: the host engine creates containers
        // about one at a time anyway (0.4 s each at 30 nodes), and an interrupt has to
        // wait for every start already sent (a dropped one could land after teardown
        // looked). With all 30 sent at once, SIGINT one second in took 11 s to exit.
        let in_flight = tokio::sync::Semaphore::new(NODE_STARTS_IN_FLIGHT);
        let start = &start;
        join_all(scenario.nodes.iter().map(|node| {
            let in_flight = &in_flight;
            async move {
                let _turn = in_flight.acquire().await.expect("the semaphore is never closed");
                start(node).await
            }
        }))
        .await
    };
    collect_started(results, handles)
}

/// The nodes that started, their container handles added to `handles`; when any start
/// failed, the first real error (not the "provisioning stopped" echoes of it).
fn collect_started(
    results: Vec<anyhow::Result<(StartedNode, ContainerAsync<GenericImage>)>>,
    mut handles: NodeHandles,
) -> (NodeHandles, anyhow::Result<Vec<StartedNode>>) {
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok((node, handle)) => {
                nodes.push(node);
                handles.push(handle);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return (handles, Ok(nodes));
    }
    // "provisioning stopped" errors are the echo of the first real one.
    let first = errors
        .iter()
        .position(|e| !e.to_string().contains("provisioning stopped"))
        .unwrap_or(0);
    (handles, Err(errors.swap_remove(first)))
}
