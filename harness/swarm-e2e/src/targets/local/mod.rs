//! The local target: one node container per scenario node on the host engine, each
//! running a real dockerd, on a per-run `--internal` network ([`nodes`]); everything
//! found again by its marks for teardown, `down`, `ls` and `sweep` ([`resources`]).

pub mod nodes;
pub mod resources;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use futures_util::future::{BoxFuture, join_all};
use swarm_e2e_model::{Scenario, Topology};
use testcontainers::{ContainerAsync, GenericImage};

use super::{Identity, KernelFacts, NodeControl, ProvisionContext, ProvisionedNode, Target, TeardownReport};
use crate::engine::{ENGINE_TLS_PORT, exec, host_engine, ping_host_engine};
use crate::exit::Failure;
use crate::images::resolve_node_image;
use crate::marks::{self, node_container_name, run_dir};
use crate::report::NodeRecord;
use nodes::{
    EngineConfig, KV_STORE_ENGINE, KV_STORE_PORT, NodeSpec, StartedNode, cluster_store_config, create_run_network,
    start_kv_store, start_node, wait_gossip, wait_kv_store,
};

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

/// Resolves when a node container of the run (one of `nodes`) has exited, with its exit
/// code and last log lines. Driven by the host engine's `die` events; containers that
/// died before the subscription are found by one look right after it.
pub(crate) async fn node_container_exited(host: &Docker, run_id: &str, nodes: &[String]) -> anyhow::Error {
    use bollard::query_parameters::EventsOptionsBuilder;
    let filters = std::collections::HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("event".to_string(), vec!["die".to_string()]),
        ("label".to_string(), vec![format!("{}={run_id}", marks::RUN)]),
    ]);
    let mut events = host.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
    for node in nodes {
        if let Some(e) = exited(host, run_id, node).await {
            return e;
        }
    }
    while let Some(event) = events.next().await {
        let Ok(event) = event else { break };
        let node = event
            .actor
            .and_then(|a| a.attributes)
            .and_then(|a| a.get(marks::NODE).cloned());
        if let Some(node) = node.filter(|n| nodes.contains(n))
            && let Some(e) = exited(host, run_id, &node).await
        {
            return e;
        }
    }
    // The event stream ended (the engine went away): nothing more to say from here.
    std::future::pending().await
}

/// The reason a node container is gone, if it has exited.
async fn exited(host: &Docker, run_id: &str, node: &str) -> Option<anyhow::Error> {
    let name = node_container_name(run_id, node);
    let state = host.inspect_container(&name, None).await.ok()?.state?;
    if state.running == Some(true) {
        return None;
    }
    let code = state.exit_code.unwrap_or(-1);
    let log = container_log(host, name.clone()).await.unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Some(anyhow::anyhow!(
        "node {node} is gone: its container {name} exited with code {code}; its last log lines:\n    {}",
        tail.join("\n    ")
    ))
}

/// A container's own output (a node container's: its dockerd log), the last 2000 lines.
pub(crate) async fn container_log(host: &Docker, container: String) -> anyhow::Result<String> {
    let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).tail("2000").build();
    let mut stream = host.logs(&container, Some(opts));
    let mut out = String::new();
    while let Some(chunk) = stream.next().await {
        out.push_str(&chunk?.to_string());
    }
    Ok(out)
}

/// What the host kernel has; local nodes (and the fake's droplets) share it.
pub fn host_kernel() -> KernelFacts {
    KernelFacts {
        ipvs: host_has_ipvs(),
        esp: host_has_esp(),
    }
}

/// Stops and starts node engines inside node containers on the host engine (local, and
/// do-fake's backed droplets).
#[derive(Clone)]
pub struct ContainerNodeControl {
    pub host: Docker,
    pub run_id: String,
}

impl ContainerNodeControl {
    fn container(&self, node: &str) -> String {
        node_container_name(&self.run_id, node)
    }

    async fn node_exec(&self, node: &str, script: &str) -> anyhow::Result<()> {
        let (code, out) = exec(&self.host, &self.container(node), &["sh", "-c", script]).await?;
        if code != 0 {
            anyhow::bail!("exit {code}: {}", out.trim());
        }
        Ok(())
    }

    /// Stops the node's engine (SIGTERM, as a shutdown does) and waits until it is gone.
    /// The node container stays, so the node keeps its address, as a rebooted host does.
    async fn stop_engine(&self, node: &str) -> anyhow::Result<()> {
        self.node_exec(
            node,
            "touch /run/swarm-e2e/engine-stopped && kill -TERM \"$(cat /var/run/docker.pid)\" && \
             i=0; while [ -e /var/run/docker.pid ] && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done; \
             [ ! -e /var/run/docker.pid ]",
        )
        .await
        .with_context(|| format!("stopping the engine of node {node} (bounded: 30 s)"))
    }

    /// Starts the node's engine again (it answers some time later).
    async fn start_engine(&self, node: &str) -> anyhow::Result<()> {
        self.node_exec(node, "rm -f /run/swarm-e2e/engine-stopped")
            .await
            .with_context(|| format!("starting the engine of node {node}"))
    }
}

impl ContainerNodeControl {
    async fn silent_because(&self, node: &str) -> Option<String> {
        if let Some(gone) = exited(&self.host, &self.run_id, node).await {
            return Some(format!("{gone:#}"));
        }
        let inspected = self.host.inspect_container(&self.container(node), None).await;
        if inspected.ok().and_then(|c| c.state).and_then(|s| s.paused) == Some(true) {
            return Some("its node container is paused: the engine accepts connections and cannot answer".into());
        }
        let stopped = self
            .node_exec(node, "[ -e /run/swarm-e2e/engine-stopped ]")
            .await
            .is_ok();
        if stopped {
            return Some("its engine was stopped (the node container runs)".into());
        }
        let log = container_log(&self.host, self.container(node)).await.ok()?;
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Some(format!(
            "its container runs, but its engine does not answer; its last log lines:\n    {}",
            tail.join("\n    ")
        ))
    }
}

impl NodeControl for ContainerNodeControl {
    fn why_silent<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.silent_because(node))
    }

    fn stop<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.stop_engine(node))
    }

    fn start<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.start_engine(node))
    }

    fn freeze<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            (self.host.pause_container(&self.container(node)).await)
                .with_context(|| format!("pausing the node container of {node}"))
        })
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
