//! The `engines` target: Docker engines the user already runs (a lab, another cloud, a
//! CI fleet), named in a hosts file. Nothing is created around them: the run checks
//! they answer and are not in a swarm, forms the swarm, runs the checks, and on teardown
//! removes only what it put inside them (services, containers and networks carrying
//! the run's label, the test image if it loaded it, `docker_gwbridge` if the swarm made
//! it) and leaves the swarm. The engines themselves, and everything else on them, stay.
//!
//! ```toml
//! # hosts.toml: one entry per scenario node
//! [[engine]]
//! node = "swarm-demo-1"              # the scenario's node name
//! host = "tcp://192.0.2.10:2376"     # mutual TLS, as DOCKER_HOST with DOCKER_TLS_VERIFY=1
//! tls = "certs/node1"                # ca.pem, cert.pem, key.pem, as DOCKER_CERT_PATH
//! ```

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::{LocalNodeState, NetworkDisconnectRequest};
use bollard::query_parameters::{
    LeaveSwarmOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListServicesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures_util::future::{BoxFuture, join_all};
use secrecy::SecretString;
use serde::Deserialize;
use swarm_e2e_model::{Role, Scenario, Topology};

use super::{Identity, KernelFacts, NodeControl, ProvisionContext, ProvisionedNode, Target, TeardownReport};
use crate::engine::{ENGINE_TLS_PORT, ServerIdentity, host_engine, ping_host_engine, tls_engine};
use crate::exit::{self, Failure};
use crate::images::BUSYBOX_IMAGE;
use crate::marks;
use crate::pki::CertBundle;
use crate::report::NodeRecord;

/// How long an engine of the user's may take to answer before the run refuses it.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// The network a swarm join creates on every engine; removed only if the run made it.
const GWBRIDGE: &str = "docker_gwbridge";

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

/// One engine of the user's, as the hosts file names it.
#[derive(Debug, Clone)]
struct Engine {
    node: String,
    /// As written in the hosts file, for messages.
    host: String,
    address: IpAddr,
    port: u16,
    identity: Identity,
    client: Arc<CertBundle>,
}

impl Engine {
    fn connect(&self) -> anyhow::Result<Docker> {
        let identity = match &self.identity {
            Identity::Address => ServerIdentity::Address,
            Identity::Name(n) => ServerIdentity::Name(n),
        };
        tls_engine(
            std::net::SocketAddr::new(self.address, self.port),
            &self.client,
            identity,
        )
        .with_context(|| format!("a TLS client for {} ({})", self.node, self.host))
    }
}

/// What was on an engine before the run, so teardown removes only what the run made.
#[derive(Debug, Clone, Default)]
struct Before {
    had_test_image: bool,
    had_gwbridge: bool,
    in_swarm: bool,
    /// The scenario makes it a manager (it leaves the swarm last).
    manager: bool,
}

/// Engines named in a hosts file.
pub struct EnginesTarget {
    hosts_file: PathBuf,
    engines: Vec<Engine>,
    force_leave: bool,
    /// The local engine the test image is built on (busybox from Debian's package).
    host: Option<Docker>,
    before: Mutex<HashMap<String, Before>>,
}

impl EnginesTarget {
    pub fn new(hosts_file: &Path, force_leave: bool) -> Result<EnginesTarget, Failure> {
        let engines = read_hosts_file(hosts_file)?;
        Ok(EnginesTarget {
            hosts_file: hosts_file.to_path_buf(),
            engines,
            force_leave,
            host: host_engine().ok(),
            before: Mutex::new(HashMap::new()),
        })
    }

    fn engine(&self, node: &str) -> Option<&Engine> {
        self.engines.iter().find(|e| e.node == node)
    }

    /// The engines of the scenario's nodes, in scenario order (preflight checked them).
    fn for_scenario<'a>(&'a self, scenario: &Scenario) -> Vec<&'a Engine> {
        scenario.nodes.iter().filter_map(|n| self.engine(&n.name)).collect()
    }

    /// Every engine the run may have touched (teardown does not know the scenario).
    fn touched(&self) -> Vec<&Engine> {
        let before = self.before.lock().unwrap();
        self.engines.iter().filter(|e| before.contains_key(&e.node)).collect()
    }
}

fn read_hosts_file(path: &Path) -> Result<Vec<Engine>, Failure> {
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

/// What an engine of the user's is before the run: it answers, and its swarm state.
async fn inspect(engine: &Engine, labels_wanted: &[String]) -> anyhow::Result<(Before, Vec<String>, String)> {
    let docker = engine.connect()?;
    let info = tokio::time::timeout(ANSWER_LIMIT, docker.info())
        .await
        .map_err(|_| anyhow::anyhow!("did not answer within {}s", ANSWER_LIMIT.as_secs()))?
        .context("docker info")?;
    let state = info
        .swarm
        .as_ref()
        .and_then(|s| s.local_node_state)
        .unwrap_or(LocalNodeState::INACTIVE);
    let hostname = info.name.clone().unwrap_or_default();
    let have: BTreeSet<String> = info.labels.unwrap_or_default().into_iter().collect();
    let missing = labels_wanted.iter().filter(|l| !have.contains(*l)).cloned().collect();
    let had_test_image = docker.inspect_image(BUSYBOX_IMAGE).await.is_ok();
    let had_gwbridge = docker.inspect_network(GWBRIDGE, None).await.is_ok();
    Ok((
        Before {
            had_test_image,
            had_gwbridge,
            in_swarm: state != LocalNodeState::INACTIVE,
            manager: false,
        },
        missing,
        hostname,
    ))
}

impl Target for EnginesTarget {
    fn name(&self) -> &'static str {
        "engines"
    }

    fn preflight<'a>(&'a self, scenario: &'a Scenario, keep: bool) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            if keep {
                return Err(
                    Failure::invalid_input("--keep is not available on target engines").with_hint(
                        "the engines are yours: run without --keep, then form a swarm of your own if you need one",
                    ),
                );
            }
            if scenario.topology == Topology::Classic {
                return Err(Failure::new(
                    exit::UNSUPPORTED,
                    "the classic topology needs engines started with a cluster store; target engines uses them as they are",
                )
                .with_hint("run it on --target local, or start your engines with cluster-store and cluster-advertise"));
            }
            let missing: Vec<&str> = scenario
                .nodes
                .iter()
                .filter(|n| self.engine(&n.name).is_none())
                .map(|n| n.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(Failure::invalid_input(format!(
                    "the hosts file {} names no engine for node(s) {}",
                    self.hosts_file.display(),
                    missing.join(", ")
                ))
                .with_hint("add an [[engine]] entry (node, host, tls) for each scenario node"));
            }
            let host = self.host.as_ref().ok_or_else(|| {
                Failure::new(
                    exit::INFRASTRUCTURE,
                    "target engines builds its test image on a local Docker engine, and none answers",
                )
                .with_hint("start one (`dockerd &`, Debian: `apt-get install docker.io busybox-static`)")
            })?;
            ping_host_engine(host).await?;
            let inspected = join_all(self.for_scenario(scenario).into_iter().map(|e| {
                let declared = scenario.node(&e.node).expect("checked above");
                let labels: Vec<String> = declared.engine_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                async move { (e, inspect(e, &labels).await) }
            }))
            .await;
            // `node.hostname==X` constraints name engines by their own hostname.
            let by_hostname = scenario
                .services
                .iter()
                .flat_map(|s| &s.constraints)
                .any(|c| c.to_string().starts_with("node.hostname"));
            let mut problems = Vec::new();
            let mut in_swarm = Vec::new();
            let mut before = HashMap::new();
            for (e, result) in inspected {
                match result {
                    Err(err) => problems.push(format!("{} ({}): {err:#}", e.node, e.host)),
                    Ok((b, missing_labels, hostname)) => {
                        if by_hostname && hostname != e.node {
                            problems.push(format!(
                                "{} ({}) has hostname `{hostname}`, but the scenario's node.hostname constraints name it `{}`",
                                e.node, e.host, e.node
                            ));
                        }
                        if !missing_labels.is_empty() {
                            problems.push(format!(
                                "{} ({}) lacks the engine label(s) the scenario declares: {}",
                                e.node,
                                e.host,
                                missing_labels.join(", ")
                            ));
                        }
                        if b.in_swarm {
                            in_swarm.push(format!("{} ({})", e.node, e.host));
                        }
                        let manager = scenario.node(&e.node).is_some_and(|n| n.role == Role::Manager);
                        before.insert(e.node.clone(), Before { manager, ..b });
                    }
                }
            }
            if !problems.is_empty() {
                return Err(Failure::new(
                    exit::INFRASTRUCTURE,
                    format!("engines from {} cannot be used:\n  {}", self.hosts_file.display(), problems.join("\n  ")),
                )
                .with_hint("check each engine with `docker --tlsverify -H HOST info`; engine labels are set in its daemon.json"));
            }
            if !in_swarm.is_empty() && !self.force_leave {
                return Err(Failure::new(
                    exit::INFRASTRUCTURE,
                    format!("already part of a swarm: {}", in_swarm.join(", ")),
                )
                .with_hint("run `docker swarm leave --force` on them, or pass --force-leave to let the run do it (that swarm's state on those engines is lost)"));
            }
            *self.before.lock().unwrap() = before;
            Ok(())
        })
    }

    fn provision(self: Arc<Self>, ctx: ProvisionContext) -> BoxFuture<'static, anyhow::Result<Vec<ProvisionedNode>>> {
        Box::pin(async move {
            let engines: Vec<Engine> = self.for_scenario(&ctx.scenario).into_iter().cloned().collect();
            let leave: Vec<&Engine> = {
                let before = self.before.lock().unwrap();
                engines
                    .iter()
                    .filter(|e| before.get(&e.node).is_some_and(|b| b.in_swarm))
                    .collect()
            };
            for e in leave {
                if ctx.stop.is_cancelled() {
                    anyhow::bail!("provisioning stopped");
                }
                e.connect()?
                    .leave_swarm(Some(LeaveSwarmOptionsBuilder::new().force(true).build()))
                    .await
                    .with_context(|| format!("--force-leave: {} leaving its swarm", e.node))?;
            }
            Ok(engines
                .into_iter()
                .map(|e| ProvisionedNode {
                    name: e.node,
                    address: e.address,
                    port: e.port,
                    identity: e.identity,
                    client: e.client,
                })
                .collect())
        })
    }

    fn provisioned(&self, nodes: &[ProvisionedNode]) -> String {
        format!("{} engine(s) from {}", nodes.len(), self.hosts_file.display())
    }

    fn image_source(&self) -> Option<&Docker> {
        self.host.as_ref()
    }

    fn node_control(&self, _run_id: &str) -> Option<Arc<dyn NodeControl>> {
        // The engines are the user's: the run never stops them.
        None
    }

    fn kernel(&self) -> KernelFacts {
        // Unknown: counted as present, so such checks run and say what they saw.
        KernelFacts { ipvs: true, esp: true }
    }

    fn node_log<'a>(
        &'a self,
        _run_id: &'a str,
        node: &'a str,
        _engine: Option<&'a Docker>,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            let host = self.engine(node).map(|e| e.host.as_str()).unwrap_or("its host");
            anyhow::bail!("the engine log of {node} stays on {host} (target engines does not read it)")
        })
    }

    fn keep(&self, _run_id: &str, _nodes: &[NodeRecord]) -> String {
        unreachable!("preflight refuses --keep on target engines")
    }

    fn teardown<'a>(&'a self, run_id: &'a str, limit: Duration) -> BoxFuture<'a, TeardownReport> {
        Box::pin(async move {
            match tokio::time::timeout(limit, self.remove_what_the_run_made(run_id, limit)).await {
                Ok(report) => report,
                Err(_) => TeardownReport {
                    detail: String::new(),
                    errors: vec![format!(
                        "teardown on the engines timed out after {}s\nhint: look for services, containers and networks labelled {}={run_id}, and `docker swarm leave --force`",
                        limit.as_secs(),
                        marks::RUN
                    )],
                },
            }
        })
    }
}

impl EnginesTarget {
    /// Services first (any manager removes them), then the swarm (workers before
    /// managers), then on every engine what carries the run's label or was not there
    /// before: containers, networks, the test image. Removing a network races the
    /// engine's own cleanup of task endpoints, so the last step is retried, bounded.
    async fn remove_what_the_run_made(&self, run_id: &str, limit: Duration) -> TeardownReport {
        let engines = self.touched();
        let before = self.before.lock().unwrap().clone();
        let filter = marks::run_filter(Some(run_id));
        let mut errors = Vec::new();
        let mut removed = 0usize;
        let clients: Vec<(&Engine, Docker)> = engines
            .iter()
            .filter_map(|e| match e.connect() {
                Ok(d) => Some((*e, d)),
                Err(err) => {
                    errors.push(format!("{err:#}"));
                    None
                }
            })
            .collect();
        let mut deleted = Vec::new();
        for (e, docker) in &clients {
            let Ok(services) = docker
                .list_services(Some(ListServicesOptionsBuilder::new().filters(&filter).build()))
                .await
            else {
                continue;
            };
            for s in services {
                let id = s.id.unwrap_or_default();
                match docker.delete_service(&id).await {
                    Ok(()) => {
                        removed += 1;
                        deleted.push(id);
                    }
                    Err(err) => errors.push(format!("service {id} via {}: {err}", e.node)),
                }
            }
            break;
        }
        // An engine that leaves while its tasks still shut down keeps their overlay
        // state (sandboxes, gossip of those networks): the next swarm it joins did not
        // converge on such an engine (CI, twice: a peer missing from a network's gossip
        // for 120 s). So the run's own containers (probes) go first, and the tasks'
        // containers are waited for, bounded.
        let settle = (limit / 4).min(Duration::from_secs(20));
        let settled = join_all(clients.iter().map(|(e, docker)| {
            let (deleted, filter) = (&deleted, &filter);
            async move {
                let (n, errors) = remove_run_containers(docker, filter).await;
                let waited = crate::wait::poll_until(settle, Duration::from_millis(200), || async {
                    match tasks_left(docker, deleted).await? {
                        0 => Ok(Some(())),
                        left => anyhow::bail!("{left} container(s) of the run's tasks still there"),
                    }
                })
                .await;
                if let Err(err) = waited {
                    tracing::warn!("{} leaves the swarm before the run's tasks are gone: {err:#}", e.node);
                }
                (n, errors)
            }
        }))
        .await;
        for (n, e) in settled {
            removed += n;
            errors.extend(e);
        }
        // Workers leave first, so the managers do not see them go down.
        let mut order: Vec<&(&Engine, Docker)> = clients.iter().collect();
        order.sort_by_key(|(e, _)| before.get(&e.node).is_some_and(|b| b.manager));
        for (e, docker) in order {
            match docker
                .leave_swarm(Some(LeaveSwarmOptionsBuilder::new().force(true).build()))
                .await
            {
                Ok(()) => {}
                // Never joined (the run stopped before the swarm formed).
                Err(err) if err.to_string().contains("not part of a swarm") => {}
                Err(err) => errors.push(format!("{} leaving the swarm: {err}", e.node)),
            }
        }
        let cleaned = join_all(clients.iter().map(|(e, docker)| {
            let before = before.get(&e.node).cloned().unwrap_or_default();
            let filter = &filter;
            async move {
                let removed = std::sync::atomic::AtomicUsize::new(0);
                // Half the bound: the rest is for the steps before and the report.
                let result = crate::wait::poll_until(limit / 2, Duration::from_millis(200), || async {
                    let (n, errors) = clean_engine(docker, filter, &before).await;
                    removed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    if errors.is_empty() {
                        Ok(Some(()))
                    } else {
                        Err(anyhow::anyhow!("{}", errors.join("; ")))
                    }
                })
                .await;
                (
                    removed.into_inner(),
                    result.err().map(|err| format!("{}: {err:#}", e.node)),
                )
            }
        }))
        .await;
        for (r, e) in cleaned {
            removed += r;
            errors.extend(e);
        }
        TeardownReport {
            detail: format!(
                "{removed} resource(s) the run made removed from {} engine(s), swarm left; the engines stay",
                clients.len()
            ),
            errors,
        }
    }
}

/// How many containers of the deleted services' tasks are still on an engine.
async fn tasks_left(docker: &Docker, services: &[String]) -> anyhow::Result<usize> {
    let task_filter = HashMap::from([("label".to_string(), vec![SERVICE_ID_LABEL.to_string()])]);
    let tasks = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&task_filter)
                .build(),
        ))
        .await?;
    Ok(tasks
        .iter()
        .filter(|c| {
            (c.labels.as_ref())
                .and_then(|l| l.get(SERVICE_ID_LABEL))
                .is_some_and(|id| services.contains(id))
        })
        .count())
}

/// The label the engine puts on a task's container: its service's ID.
const SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";

/// Removes the containers carrying the run's label; returns how many, and what could
/// not be removed (one already gone is no error).
async fn remove_run_containers(docker: &Docker, filter: &HashMap<String, Vec<String>>) -> (usize, Vec<String>) {
    let mut errors = Vec::new();
    let mut removed = 0;
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new().all(true).filters(filter).build(),
        ))
        .await
        .unwrap_or_default();
    for c in containers {
        let id = c.id.unwrap_or_default();
        let opts = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        let r = docker.remove_container(&id, Some(opts)).await;
        match r {
            Ok(()) => removed += 1,
            _ if not_found(&r) => {}
            Err(err) => errors.push(format!("container {id}: {err}")),
        }
    }
    (removed, errors)
}

fn not_found(r: &Result<(), bollard::errors::Error>) -> bool {
    matches!(
        r,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
    )
}

/// One round of removing what the run made on one engine: containers and networks
/// carrying the run's label, `docker_gwbridge` and the test image if they were not there
/// before. Returns how many were removed and what could not be.
async fn clean_engine(docker: &Docker, filter: &HashMap<String, Vec<String>>, before: &Before) -> (usize, Vec<String>) {
    let (mut removed, mut errors) = remove_run_containers(docker, filter).await;
    let mut networks: Vec<String> = docker
        .list_networks(Some(ListNetworksOptionsBuilder::new().filters(filter).build()))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    if !before.had_gwbridge
        && let Ok(bridge) = docker.inspect_network(GWBRIDGE, None).await
    {
        // A swarm left while tasks were starting can keep its ingress sandbox's
        // endpoint (`gateway_ingress-sbox`) on the bridge until the engine restarts:
        // the swarm's own endpoints are let go by force, nothing else is.
        let swarm_endpoints = bridge
            .containers
            .unwrap_or_default()
            .into_values()
            .filter_map(|e| e.name)
            .filter(|n| n.starts_with("gateway_"));
        for endpoint in swarm_endpoints {
            // By endpoint name: the sandbox is no container the engine would find.
            let request = NetworkDisconnectRequest {
                container: endpoint.clone(),
                force: Some(true),
            };
            if let Err(err) = docker.disconnect_network(GWBRIDGE, request).await {
                tracing::debug!("disconnecting {endpoint} from {GWBRIDGE}: {err}");
            }
        }
        networks.push(GWBRIDGE.to_string());
    }
    for n in networks {
        let r = docker.remove_network(&n).await;
        match r {
            Ok(()) => removed += 1,
            _ if not_found(&r) => {}
            Err(err) => {
                // Name what still holds it: that is what to look at when it stays.
                let holders: Vec<String> = docker
                    .inspect_network(&n, None)
                    .await
                    .ok()
                    .and_then(|i| i.containers)
                    .map(|c| c.into_iter().map(|(id, e)| e.name.unwrap_or(id)).collect())
                    .unwrap_or_default();
                errors.push(format!("network {n} (attached: {}): {err}", holders.join(", ")));
            }
        }
    }
    if !before.had_test_image && docker.inspect_image(BUSYBOX_IMAGE).await.is_ok() {
        let opts = RemoveImageOptionsBuilder::new().force(true).build();
        match docker.remove_image(BUSYBOX_IMAGE, Some(opts), None).await {
            Ok(_) => removed += 1,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(err) => errors.push(format!("image {BUSYBOX_IMAGE}: {err}")),
        }
    }
    (removed, errors)
}
