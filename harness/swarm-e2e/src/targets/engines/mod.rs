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

mod cleanup;
mod hosts_file;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::LocalNodeState;
use bollard::query_parameters::LeaveSwarmOptionsBuilder;
use futures_util::future::{BoxFuture, join_all};
use swarm_e2e_model::{Role, Scenario, Topology};

use super::{Identity, KernelFacts, NodeControl, ProvisionContext, ProvisionedNode, Target, TeardownReport};
use crate::engine::{ServerIdentity, host_engine, ping_host_engine, tls_engine};
use crate::exit::{self, Failure};
use crate::images::BUSYBOX_IMAGE;
use crate::marks;
use crate::pki::CertBundle;
use crate::report::NodeRecord;

/// How long an engine of the user's may take to answer before the run refuses it.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// The network a swarm join creates on every engine; removed only if the run made it.
const GWBRIDGE: &str = "docker_gwbridge";

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
        let engines = hosts_file::read_hosts_file(hosts_file)?;
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
                    cli_host: match &e.identity {
                        Identity::Name(host) => format!("tcp://{host}:{}", e.port),
                        Identity::Address => format!("tcp://{}", std::net::SocketAddr::new(e.address, e.port)),
                    },
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
