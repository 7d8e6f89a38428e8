//! Where a run's nodes come from: the [`Target`] trait (kind's `Provider`) and one
//! implementation per backend. The run loop (`crate::run`) calls only this trait; the
//! phases between provisioning and teardown (engines ready, cluster formed, checks) are
//! the same for every target.
//!
//! - [`local`]: node containers on the host engine (the default).
//! - [`digitalocean`]: droplets through DigitalOcean's API, real or the in-process fake
//!   (whose droplets a backer turns into node containers).
//! - [`engines`]: engines the user already runs, named in a hosts file; nothing is
//!   created but what the run puts inside them.

pub mod classic;
pub mod digitalocean;
pub mod engines;
pub mod local;
pub mod node_containers;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::BoxFuture;
use swarm_e2e_model::{PhaseTimeouts, Scenario};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::exit::Failure;
use crate::pki::{CertBundle, Pki};
use crate::report::{NodeRecord, RunSummary};

/// A node whose engine the harness can reach (it may still be starting).
#[derive(Debug, Clone)]
pub struct ProvisionedNode {
    /// The scenario's node name.
    pub name: String,
    pub address: IpAddr,
    /// The engine's mutual-TLS port.
    pub port: u16,
    /// How the engine's server certificate is matched.
    pub identity: Identity,
    /// The client certificate the engine accepts (the run's own, or the user's).
    pub client: Arc<CertBundle>,
    /// `DOCKER_HOST` for the docker CLI (stacks): the name the user's certificate is
    /// for, or the address (a droplet's certificate names it; droplet names resolve
    /// nowhere).
    pub cli_host: String,
}

/// How an engine's server certificate is matched, beyond its issuer (see
/// [`crate::engine::ServerIdentity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// By the address connected to.
    Address,
    /// By a name (a droplet's, rendered before it had an address; a host name).
    Name(String),
}

/// What provisioning gets from the run loop.
pub struct ProvisionContext {
    pub scenario: Arc<Scenario>,
    pub run_id: String,
    pub pki: Arc<Pki>,
    pub keep: bool,
    /// Ends provisioning between steps; requests already sent are let land.
    pub stop: CancellationToken,
    /// Test hook: nodes whose engine is set up to fail (`bad-engine-option`).
    pub broken_engines: Vec<String>,
}

/// What the nodes' kernel has, for checks that need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFacts {
    /// IPVS: VIP endpoint mode.
    pub ipvs: bool,
    /// IPsec ESP: encrypted overlays.
    pub esp: bool,
}

/// Stops and starts a node's engine, keeping the node (and its address). Faults of the
/// underlay need no target: [`crate::netfault`] makes them through the engine.
pub trait NodeControl: Send + Sync {
    fn stop<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    fn start<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Why a node's engine does not answer, as far as the target can see it (its
    /// container exited, with the code and last log lines; its engine was stopped).
    fn why_silent<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Option<String>>;
    /// Why a node's engine cannot answer, only when that is certain (its container
    /// exited or is paused, its engine was stopped): what the watchdog acts on at once.
    fn certain_silence<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Option<String>>;
    /// Test hook (`freeze`): the whole node stops (its engine accepts connections and
    /// never answers).
    fn freeze<'a>(&'a self, node: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// A fault of a node, as clouds, operators and engine regressions break clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFault {
    /// The node's underlay interface carries at most this many bytes per packet.
    UnderlayMtu(u32),
    /// udp/4789 (VXLAN, the overlay's data path) to the node is dropped.
    DropVxlan,
    /// tcp+udp/7946 (gossip) to the node is dropped.
    DropGossip,
    /// tcp/2377 (the control plane: joins, heartbeats, task assignments) to the node, a
    /// manager, is dropped before the workloads are deployed: the workers' sessions
    /// stall, their tasks never start and the managers mark them Down.
    DropControlPlane,
    /// This share (percent) of the VXLAN packets arriving at the node is dropped: a
    /// lossy link, which a single retried ping does not notice.
    VxlanLoss(u32),
    /// tcp/2377 to the node, the first manager, is dropped before the swarm forms: the
    /// other nodes' joins never complete.
    BlockJoins,
    /// The node's engine is configured with an option it does not know, so it exits
    /// while it starts (applied at provisioning).
    BadEngineOption,
    /// A declared node label is removed once the swarm formed (through the swarm API,
    /// on every target).
    RemoveNodeLabel(String),
    /// A `partition` check's heal leaves this node cut (a firewall rule that stays).
    StickyPartition,
    /// The node's availability is `pause` before the workloads are deployed (an
    /// operator's leftover): it takes no new tasks.
    Paused,
    /// The node is drained once the workloads run (an operator's drain during the run):
    /// its tasks move elsewhere and no new one starts there.
    Drained,
    /// The node is frozen once the workloads run (its container paused, where the
    /// target has node control): its engine accepts connections and never answers, as
    /// an overloaded or wedged host does.
    Frozen,
}

/// When a run makes a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMoment {
    /// With the node (its engine's configuration).
    Provisioning,
    /// Once the engines answer, before the swarm forms.
    BeforeFormation,
    /// Once the swarm formed, before the workloads are deployed (what they meet from
    /// the start).
    BeforeWorkloads,
    /// Once the workloads run.
    WhileRunning,
}

impl NodeFault {
    pub fn moment(&self) -> FaultMoment {
        match self {
            NodeFault::BadEngineOption => FaultMoment::Provisioning,
            NodeFault::BlockJoins => FaultMoment::BeforeFormation,
            NodeFault::Paused | NodeFault::DropControlPlane => FaultMoment::BeforeWorkloads,
            _ => FaultMoment::WhileRunning,
        }
    }

    /// What the fault does to the node's underlay (nothing, for faults made elsewhere).
    pub fn underlay(&self) -> Vec<crate::netfault::UnderlayFault> {
        use crate::netfault::UnderlayFault::{DropInbound, Loss, Mtu};
        match self {
            NodeFault::UnderlayMtu(m) => vec![Mtu(*m)],
            NodeFault::VxlanLoss(percent) => vec![Loss {
                percent: *percent,
                from: Vec::new(),
            }],
            NodeFault::DropVxlan => vec![DropInbound {
                proto: "udp",
                port: 4789,
            }],
            NodeFault::DropGossip => vec![
                DropInbound {
                    proto: "tcp",
                    port: 7946,
                },
                DropInbound {
                    proto: "udp",
                    port: 7946,
                },
            ],
            NodeFault::DropControlPlane | NodeFault::BlockJoins => vec![DropInbound {
                proto: "tcp",
                port: 2377,
            }],
            NodeFault::BadEngineOption
            | NodeFault::RemoveNodeLabel(_)
            | NodeFault::StickyPartition
            | NodeFault::Paused
            | NodeFault::Drained
            | NodeFault::Frozen => vec![],
        }
    }
}

/// A fault and the node it goes to: `mtu=1280@node-2`, `loss=40@node-2`, `drop-vxlan@node-2`,
/// `drop-gossip@node-2`, `drop-control@node-1`, `block-joins@node-1`, `drain@node-2` (the hidden
/// `--inject-fault` of `run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    pub node: String,
    pub fault: NodeFault,
}

impl InjectedFault {
    /// Makes the fault's underlay part (nothing for faults made elsewhere) through
    /// `node`'s engine, which must have the test image.
    pub async fn inject_underlay(&self, node: &crate::cluster::EngineNode, run_id: &str) -> anyhow::Result<()> {
        for fault in self.fault.underlay() {
            crate::netfault::inject(
                node,
                run_id,
                crate::images::BUSYBOX_IMAGE,
                &fault,
                crate::netfault::Owner::Run,
            )
            .await?;
        }
        Ok(())
    }
}

impl std::str::FromStr for InjectedFault {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (what, node) = spec
            .split_once('@')
            .ok_or_else(|| format!("`{spec}`: expected FAULT@NODE, e.g. drop-vxlan@node-2"))?;
        let fault = match what.split_once('=') {
            Some(("mtu", n)) => NodeFault::UnderlayMtu(n.parse().map_err(|_| format!("`{n}` is no MTU"))?),
            Some(("unlabel", key)) => NodeFault::RemoveNodeLabel(key.to_string()),
            Some(("loss", n)) => match n.parse() {
                Ok(percent) if percent <= 100 => NodeFault::VxlanLoss(percent),
                _ => return Err(format!("`{n}` is no percentage (0-100)")),
            },
            None if what == "drop-vxlan" => NodeFault::DropVxlan,
            None if what == "drop-gossip" => NodeFault::DropGossip,
            None if what == "drop-control" => NodeFault::DropControlPlane,
            None if what == "block-joins" => NodeFault::BlockJoins,
            None if what == "bad-engine-option" => NodeFault::BadEngineOption,
            None if what == "sticky-partition" => NodeFault::StickyPartition,
            None if what == "pause" => NodeFault::Paused,
            None if what == "drain" => NodeFault::Drained,
            None if what == "freeze" => NodeFault::Frozen,
            _ => {
                return Err(format!(
                    "`{what}`: faults are mtu=N, loss=PERCENT, drop-vxlan, drop-gossip, drop-control, block-joins, bad-engine-option, \
                     unlabel=KEY, sticky-partition, pause, drain, freeze"
                ));
            }
        };
        Ok(InjectedFault {
            node: node.to_string(),
            fault,
        })
    }
}

/// How a teardown went: a line for the phase, and what could not be removed.
#[derive(Debug, Default)]
pub struct TeardownReport {
    pub detail: String,
    pub errors: Vec<String>,
}

/// One backend. Every method is bounded by its caller or by itself; none may block.
pub trait Target: Send + Sync {
    /// `local`, `do-fake`, `digitalocean`, `engines`.
    fn name(&self) -> &'static str;

    /// Before anything is created: is this target usable for the scenario (the host
    /// engine, node images, a token, engines that answer)? The failure says what to do.
    fn preflight<'a>(&'a self, scenario: &'a Scenario, keep: bool) -> BoxFuture<'a, Result<(), Failure>>;

    /// The scenario's bounds as this target needs them (real droplets install their
    /// engine after boot: minutes, not seconds).
    fn timeouts(&self, declared: PhaseTimeouts) -> PhaseTimeouts {
        declared
    }

    /// Whether a scenario's `[faults]` table applies here (only the fake API has faults).
    fn honours_faults(&self) -> bool {
        false
    }

    /// Whether the nodes are containers on this host, sharing its kernel and its limits
    /// (a failure then looks at the host's counters too).
    fn shares_host(&self) -> bool {
        false
    }

    /// Creates (or finds) the nodes. Runs as a task: the target keeps what it creates,
    /// so teardown finds it even when the task is stopped or fails.
    fn provision(self: Arc<Self>, ctx: ProvisionContext) -> BoxFuture<'static, anyhow::Result<Vec<ProvisionedNode>>>;

    /// Resolves when provisioning failed beside its own task (the fake's backer).
    fn provision_failed(&self) -> BoxFuture<'_, anyhow::Error> {
        Box::pin(std::future::pending())
    }

    /// Resolves when one of the run's nodes is gone for good (its container exited),
    /// with the reason and its last log lines: the phases waiting on engines fail then.
    fn node_exited<'a>(&'a self, _run_id: &'a str, _nodes: &'a [String]) -> BoxFuture<'a, anyhow::Error> {
        Box::pin(std::future::pending())
    }

    /// The provision phase's line, e.g. `3 node container(s)`.
    fn provisioned(&self, nodes: &[ProvisionedNode]) -> String;

    /// `Some(reason)` when the nodes have no engines (an API-only dry run): the checks
    /// are reported ignored with the reason.
    fn without_engines(&self) -> Option<&'static str> {
        None
    }

    /// The engine the test images are built on and exported from (the host engine).
    fn image_source(&self) -> Option<&Docker>;

    /// Stops and starts node engines, where this target can.
    fn node_control(&self, run_id: &str) -> Option<Arc<dyn NodeControl>>;

    fn kernel(&self) -> KernelFacts;

    /// A node's engine log, for failure artefacts. `engine` is the node's own engine
    /// once it answered (a target that reads logs through it may); `None` before.
    fn node_log<'a>(
        &'a self,
        run_id: &'a str,
        node: &'a str,
        engine: Option<&'a Docker>,
    ) -> BoxFuture<'a, anyhow::Result<String>>;

    /// The output of a node's boot script (cloud-init's log), for failure artefacts, on
    /// targets whose nodes run one.
    fn boot_log<'a>(
        &'a self,
        _run_id: &'a str,
        _node: &'a str,
        _engine: Option<&'a Docker>,
    ) -> Option<BoxFuture<'a, anyhow::Result<String>>> {
        None
    }

    /// Leaves the run up (`--keep`): returns how to reach it.
    fn keep(&self, run_id: &str, nodes: &[NodeRecord]) -> String;

    /// Removes everything of the run, bounded by `limit`. Keeps going past errors.
    fn teardown<'a>(&'a self, run_id: &'a str, limit: Duration) -> BoxFuture<'a, TeardownReport>;

    /// Adds what only this target knows to the finished run (API request counts).
    fn finish(&self, _summary: &mut RunSummary) -> Option<String> {
        None
    }
}

/// What runs leave behind on one target, found by their marks alone (kind's `list` and
/// `delete`: no state file). `ls`, `down`, `env` and `sweep` go through this; each
/// target that creates resources implements it ([`leftovers`] picks one).
pub trait Leftovers: Send + Sync {
    /// The `--target` value (`local`, `digitalocean`), as the sweep document names it.
    fn target(&self) -> &'static str;
    /// Where, for messages: "this machine", "DigitalOcean".
    fn place(&self) -> &'static str;
    /// Everything with the project's marks, oldest run first within a run's resources.
    fn find(&self) -> BoxFuture<'_, anyhow::Result<Vec<Leftover>>>;
    /// Removes `found`, keeping going past errors, which it returns.
    fn remove<'a>(&'a self, found: &'a [Leftover]) -> BoxFuture<'a, Vec<String>>;
    /// Removes everything of one run (`down`): what was removed and the errors met. An
    /// id with nothing is invalid input, with a hint.
    fn down<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Removed, Failure>>;
    /// The address a kept run's node is reached at (`env`).
    fn node_address<'a>(&'a self, run_id: &'a str, node: &'a str) -> BoxFuture<'a, Result<IpAddr, Failure>>;
    /// What to say when removals failed: `again` is the command that retries.
    fn removal_hint(&self, _again: &str) -> Option<String> {
        None
    }
}

/// What `down` removed, and the errors it met.
pub type Removed = (Vec<Leftover>, Vec<String>);

/// One resource a run left, found by its marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub run_id: String,
    pub kind: LeftoverKind,
    /// A container's or network's name, a path, a droplet's name.
    pub name: String,
    /// The API's id (DigitalOcean only).
    pub id: Option<String>,
    /// Unix seconds, when known.
    pub created_unix: Option<u64>,
    /// Of a run left up on purpose (`run --keep`).
    pub kept: bool,
}

impl Leftover {
    /// At least `min_age` old; one of unknown age counts (a key whose run has nothing
    /// else left is the remains of a crashed teardown).
    pub fn older_than(&self, now_unix: u64, min_age: Duration) -> bool {
        self.created_unix
            .is_none_or(|c| now_unix.saturating_sub(c) >= min_age.as_secs())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LeftoverKind {
    Container,
    Network,
    Volume,
    CgroupDir,
    TempDir,
    Droplet,
    Firewall,
    SshKey,
}

impl LeftoverKind {
    /// For people: `cgroup dir`, `ssh key`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeftoverKind::Container => "container",
            LeftoverKind::Network => "network",
            LeftoverKind::Volume => "volume",
            LeftoverKind::CgroupDir => "cgroup dir",
            LeftoverKind::TempDir => "temp dir",
            LeftoverKind::Droplet => "droplet",
            LeftoverKind::Firewall => "firewall",
            LeftoverKind::SshKey => "ssh key",
        }
    }
}

/// The leftovers of `target` (`local`: the host engine, which must answer;
/// `digitalocean`: the account of `DIGITALOCEAN_ACCESS_TOKEN`).
pub async fn leftovers(target: &str) -> Result<Box<dyn Leftovers>, Failure> {
    match target {
        "digitalocean" => Ok(Box::new(digitalocean::sweep::DoLeftovers::new(
            digitalocean::client_from_env()?,
        ))),
        _ => {
            let host = crate::engine::host_engine()?;
            crate::engine::ping_host_engine(&host).await?;
            Ok(Box::new(node_containers::resources::NodeContainerLeftovers::new(host)))
        }
    }
}

/// How to reach a kept run's nodes with the docker CLI (its client certificates are in
/// the run's directory); `flag` is what `env` and `down` need to find the run
/// (`--target digitalocean` for droplets).
pub(crate) fn keep_lines(run_id: &str, nodes: &[NodeRecord], flag: &str) -> String {
    let certs = crate::marks::run_dir(run_id).join("certs");
    let mut text = format!("swarm-e2e: kept run {run_id}. Reach a node with the docker CLI:\n");
    for n in nodes {
        text.push_str(&format!(
            "  # {} ({})\n  export DOCKER_HOST=tcp://{}:{} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}\n",
            n.name,
            n.role,
            n.address,
            crate::engine::ENGINE_TLS_PORT,
            certs.display()
        ));
    }
    if let Some(first) = nodes.first() {
        text.push_str(&format!(
            "Or: eval \"$(swarm-e2e env {run_id} {}{flag})\"\n",
            first.name
        ));
    }
    text.push_str(&format!("Remove it with: swarm-e2e down {run_id}{flag}"));
    text
}

/// Builds the target a run asked for. A target that cannot even be set up (no token,
/// an unreadable hosts file) fails here, before any run starts.
pub fn select(choice: &TargetChoice, rt: &Runtime, scenario: &Scenario) -> Result<Arc<dyn Target>, Failure> {
    match choice {
        TargetChoice::Local => Ok(Arc::new(local::LocalTarget::new()?)),
        TargetChoice::DoFake { .. } | TargetChoice::DigitalOcean { .. } => {
            Ok(Arc::new(digitalocean::DoTarget::new(choice, rt, scenario)?))
        }
        TargetChoice::Engines { hosts, force_leave } => Ok(Arc::new(engines::EnginesTarget::new(hosts, *force_leave)?)),
    }
}

/// Where a run's nodes come from: which [`Target`] [`select`] builds.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TargetChoice {
    /// Node containers on the host engine.
    #[default]
    Local,
    /// The in-process fake DigitalOcean API.
    DoFake {
        no_engines: bool,
        boot_latency: Duration,
        /// From `--fake-faults`; `None`: the scenario's `[faults]`, if any.
        faults: Option<swarm_e2e_digitalocean::fake::Faults>,
        /// `--do-region`, `--do-size`, `--do-image` (or their environment variables).
        droplets: digitalocean::settings::DropletOverrides,
    },
    /// The real DigitalOcean API (needs DIGITALOCEAN_ACCESS_TOKEN).
    DigitalOcean {
        no_engines: bool,
        droplets: digitalocean::settings::DropletOverrides,
    },
    /// Engines the user runs, named in a hosts file.
    Engines { hosts: PathBuf, force_leave: bool },
}

impl TargetChoice {
    pub fn name(&self) -> &'static str {
        match self {
            TargetChoice::Local => "local",
            TargetChoice::DoFake { .. } => "do-fake",
            TargetChoice::DigitalOcean { .. } => "digitalocean",
            TargetChoice::Engines { .. } => "engines",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_faults_parse_and_refuse_with_the_spelling() {
        let f: InjectedFault = "mtu=1280@node-2".parse().unwrap();
        assert_eq!(f.fault, NodeFault::UnderlayMtu(1280));
        assert_eq!(f.node, "node-2");
        assert_eq!(
            "drop-vxlan@n".parse::<InjectedFault>().unwrap().fault,
            NodeFault::DropVxlan
        );
        let cut = "drop-control@m".parse::<InjectedFault>().unwrap().fault;
        assert_eq!(cut, NodeFault::DropControlPlane);
        assert_eq!(cut.moment(), FaultMoment::BeforeWorkloads);
        assert_eq!(NodeFault::DropGossip.moment(), FaultMoment::WhileRunning);
        let joins = "block-joins@m".parse::<InjectedFault>().unwrap().fault;
        assert_eq!(joins.moment(), FaultMoment::BeforeFormation);
        assert_eq!(joins.underlay(), cut.underlay());
        assert!(
            "drop-vxlan"
                .parse::<InjectedFault>()
                .unwrap_err()
                .contains("FAULT@NODE")
        );
        assert!("netem@n".parse::<InjectedFault>().unwrap_err().contains("drop-gossip"));
        assert!("mtu=big@n".parse::<InjectedFault>().unwrap_err().contains("no MTU"));
    }
}
