//! The scenario model of swarm-e2e.
//!
//! A scenario file (`scenarios/*.toml`) is parsed and validated here into a [`Scenario`].
//! This is the only crate that knows TOML: targets, the run loop and the checks see only
//! the validated model, so every rule about what a scenario may say lives in one place.
//!
//! Validation reports every problem it can find in one pass, each with a span (rendered
//! as file:line:column) and a hint; see [`diag::ScenarioError`].

#![deny(clippy::too_many_lines)]

pub mod check_kinds;
pub mod constraint;
pub mod diag;
mod parse;

use std::collections::BTreeMap;
use std::time::Duration;

pub use check_kinds::{
    CHECK_KINDS, CheckKind, CheckKindSpec, DEFAULT_LOSS_PERCENT, DEFAULT_MAX_LOSS_PERCENT, DEFAULT_TRANSFER_BYTES,
    MAX_PING_PAYLOAD, MAX_TRANSFER_BYTES, Payload, UpdateOutcome, check_kind,
};
pub use constraint::{Constraint, ConstraintKey, NodeFacts, Operator};
pub use diag::{Problem, ScenarioError};
pub use parse::{
    IMPLICIT_STATE_CHECK, MAX_NODES, MAX_RETRIES, parse_scenario, parse_scenario_file, valid_engine,
    valid_engine_version,
};

/// The engine version a node runs when a scenario does not say: Debian 12's docker.io.
pub const DEFAULT_ENGINE: &str = "20.10";

/// The image name scenarios use for the harness's busybox test image.
pub const BUSYBOX: &str = "busybox";

/// A validated scenario: a cluster to build and the checks to run on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Cluster name (also the prefix of resource names).
    pub name: String,
    pub description: Option<String>,
    /// Path of the file it came from, as given.
    pub source: String,
    pub nodes: Vec<Node>,
    pub networks: Vec<Network>,
    pub services: Vec<Service>,
    pub containers: Vec<Container>,
    /// Compose files deployed as swarm stacks (`docker stack deploy`).
    pub stacks: Vec<Stack>,
    pub checks: Vec<Check>,
    pub timeouts: PhaseTimeouts,
    /// Faults for the fake DigitalOcean API, when the scenario declares them.
    pub faults: Option<FakeFaults>,
    /// Droplet settings for the DigitalOcean targets (`[digitalocean]`); every field
    /// empty when the scenario has no such table.
    pub digitalocean: DigitalOceanSettings,
    /// How the engines form one cluster.
    pub topology: Topology,
    /// Whether the swarm keeps its `ingress` network (the routing mesh for published
    /// ports). Every joining node builds an ingress sandbox and gossips its state, which
    /// dominates forming a big swarm (60 nodes on 2 cores: joins 27 s with it, 5 s
    /// without); `ingress = false` removes it right after `swarm init`.
    pub ingress: bool,
}

/// How a scenario's engines become one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// Swarm mode: `swarm init` on the first manager, the other nodes join.
    #[default]
    Swarm,
    /// The 2015 flow: a key-value store node, engines started with `--cluster-store`,
    /// global-scope overlay networks, plain containers. No swarm mode.
    Classic,
}

/// The classic topology's key-value store node (container or droplet): no scenario node
/// may take its name.
pub const KV_STORE_NODE: &str = "kv-store";

/// The first engine release without `--cluster-store` (the classic topology).
pub const CLUSTER_STORE_REMOVED_IN: u32 = 23;

/// The major version of an engine version string (`26` of `26.1.5`).
pub fn engine_major(engine: &str) -> Option<u32> {
    engine.split('.').next()?.parse().ok()
}

impl Scenario {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A declared service, or a stack's service by its swarm name (`STACK_NAME`), as its
    /// Compose file places it.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name).or_else(|| {
            (self.stacks.iter())
                .flat_map(|s| s.placements.values())
                .filter_map(|p| p.as_ref().ok())
                .find(|s| s.name == name)
        })
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn stack(&self, name: &str) -> Option<&Stack> {
        self.stacks.iter().find(|s| s.name == name)
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The node that initialises the swarm: the first manager in file order.
    pub fn first_manager(&self) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Manager)
            .expect("validation guarantees a manager")
    }

    /// The declared nodes whose facts satisfy every constraint of `service`; `None` when
    /// a constraint can only be decided at run time (node.id, platform).
    pub fn eligible_nodes(&self, service: &Service) -> Option<Vec<String>> {
        parse::eligible_nodes(service, &self.nodes)
    }

    pub fn manager_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.role == Role::Manager).count()
    }

    /// Why this scenario cannot run on its engines, when it cannot: decided before
    /// anything is provisioned, so an unsupported combination is reported, never tried.
    pub fn unsupported_reason(&self) -> Option<String> {
        if self.topology != Topology::Classic {
            return None;
        }
        if let Some(stack) = self.stacks.first() {
            return Some(format!(
                "stack `{}` needs swarm mode: `docker stack deploy` talks to a swarm manager, and the classic \
                 topology has none (deploy its services as `[[containers]]`, or use `topology = \"swarm\"`)",
                stack.name
            ));
        }
        let mut too_new: Vec<(&str, Vec<&str>)> = Vec::new();
        for n in &self.nodes {
            if engine_major(&n.engine).is_some_and(|m| m >= CLUSTER_STORE_REMOVED_IN) {
                match too_new.iter_mut().find(|(e, _)| *e == n.engine) {
                    Some((_, names)) => names.push(&n.name),
                    None => too_new.push((&n.engine, vec![&n.name])),
                }
            }
        }
        (!too_new.is_empty()).then(|| {
            let which: Vec<String> = too_new
                .iter()
                .map(|(engine, names)| format!("{} run(s) engine {engine}", names.join(", ")))
                .collect();
            format!(
                "the classic topology needs `--cluster-store`, which Engine {CLUSTER_STORE_REMOVED_IN}.0 removed; {}",
                which.join("; ")
            )
        })
    }

    /// The same scenario with every node on `engine` (the matrix and `run --engine`).
    pub fn with_engine(&self, engine: &str) -> Scenario {
        let mut s = self.clone();
        for n in &mut s.nodes {
            n.engine = engine.to_string();
        }
        s
    }

    /// Engine versions used by the nodes, without repeats, in node order.
    pub fn engines(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in &self.nodes {
            if !out.contains(&n.engine) {
                out.push(n.engine.clone());
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

/// One Docker engine (a node container locally, a droplet on DigitalOcean).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Also the node's hostname, so `node.hostname==NAME` constraints target it.
    pub name: String,
    pub role: Role,
    /// Swarm node labels (`node.labels.*`), applied after the node joins.
    pub labels: BTreeMap<String, String>,
    /// Engine labels (`engine.labels.*`), given to the daemon at start.
    pub engine_labels: BTreeMap<String, String>,
    /// Further daemon.json settings, as JSON values.
    pub engine_options: BTreeMap<String, serde_json::Value>,
    /// Engine version (`major.minor`), e.g. `20.10`.
    pub engine: String,
}

impl Node {
    pub fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            hostname: &self.name,
            is_manager: self.role == Role::Manager,
            labels: &self.labels,
            engine_labels: &self.engine_labels,
        }
    }
}

/// An overlay network created on the first manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub attachable: bool,
    pub encrypted: bool,
    pub subnet: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    Replicated { replicas: u64 },
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMode {
    /// DNS round robin: works without IPVS, so it is the default here.
    Dnsrr,
    /// Virtual IP: needs IPVS in the kernel of every node.
    Vip,
}

/// A swarm service a check needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub mode: ServiceMode,
    pub constraints: Vec<Constraint>,
    pub networks: Vec<String>,
    pub endpoint_mode: EndpointMode,
    /// Placement preferences, e.g. `spread=node.labels.rack`.
    pub preferences: Vec<String>,
}

/// A Compose application deployed with the real docker CLI (`docker stack deploy -c
/// FILE… NAME`): its objects share the label `com.docker.stack.namespace=NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub name: String,
    /// The Compose files, resolved against the scenario's folder, merged in this order.
    pub files: Vec<std::path::PathBuf>,
    /// Variables the CLI interpolates into the files (`${VAR}`), beside the caller's.
    pub env: BTreeMap<String, String>,
    /// The services the files declare (merged), in file order: what the checks expect
    /// to find under the namespace.
    pub services: Vec<String>,
    /// `--resolve-image` (`never` unless told: without a registry the CLI spends ~40 s
    /// per deploy trying to resolve digests).
    pub resolve_image: ResolveImage,
    /// Images copied from the host engine onto every node that lacks them before the
    /// deploy (`images = ["myapp:1.2"]`): the user's own images, no registry.
    pub images: Vec<String>,
    /// Services with `build:`: built on the host engine as their `image`, then copied
    /// like `images` (`docker stack deploy` ignores `build`).
    pub builds: Vec<ComposeBuild>,
    /// The files behind the stack's secrets and configs (`file:`), by Compose name,
    /// resolved against the first Compose file's folder as the CLI resolves them: the
    /// content `stack-secrets` expects at their targets.
    pub secret_files: BTreeMap<String, std::path::PathBuf>,
    pub config_files: BTreeMap<String, std::path::PathBuf>,
    /// Each service (by Compose name) as the model knows services, named `STACK_NAME`,
    /// its mode and placement read from its `deploy:`; or why that cannot be known before
    /// the deploy (a value from the caller's environment). `placement` and `pending`
    /// checks of a stack's service read this.
    pub placements: BTreeMap<String, Result<Service, String>>,
}

/// A Compose service's `build:`, as the host engine builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComposeBuild {
    pub service: String,
    /// The tag it is built as: the service's `image`.
    pub image: String,
    /// The build context, resolved against the Compose file's folder.
    pub context: std::path::PathBuf,
    /// The Dockerfile, relative to the context (`Dockerfile` unless told).
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
}

/// `docker stack deploy --resolve-image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResolveImage {
    #[default]
    Never,
    Changed,
    Always,
}

impl ResolveImage {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveImage::Never => "never",
            ResolveImage::Changed => "changed",
            ResolveImage::Always => "always",
        }
    }
}

/// A plain container started on one node (`docker run`), as in the 2015 flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub node: String,
    pub image: String,
    pub command: Vec<String>,
    pub networks: Vec<String>,
    /// Network aliases (`--network-alias`) on every network it joins.
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    /// The line of the scenario file its `[[checks]]` header is on (none for the
    /// implicit `declared-state`): where a CI annotation points.
    pub line: Option<usize>,
    /// The check's own bound from start to verdict (`timeout = "30s"`); its waits are
    /// bounded by `[timeouts] checks` as well.
    pub timeout: Option<Duration>,
    /// How often a failure is tried again (`retries = 2`); `run --retries` otherwise.
    pub retries: Option<u32>,
}

/// Bounds on each phase of a run; hitting one names the phase and tears down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseTimeouts {
    pub provision: Duration,
    pub engines_ready: Duration,
    pub cluster_formed: Duration,
    pub checks: Duration,
    pub teardown: Duration,
}

impl PhaseTimeouts {
    /// The defaults for a cluster of `nodes`: forming takes longer with every node past
    /// thirty (the joins queue at the leader; measured on 2 cores: 37-44 s for 60 nodes,
    /// 15-110 s for 100 depending on what else the host did), so its bound grows by two
    /// seconds per node from there. Formation gives up early when no node progresses,
    /// so a generous bound costs a broken cluster nothing.
    pub fn for_nodes(nodes: usize) -> Self {
        let mut t = PhaseTimeouts::default();
        t.cluster_formed += Duration::from_secs(2 * nodes.saturating_sub(30) as u64);
        t
    }
}

impl Default for PhaseTimeouts {
    fn default() -> Self {
        PhaseTimeouts {
            provision: Duration::from_secs(180),
            engines_ready: Duration::from_secs(60),
            cluster_formed: Duration::from_secs(60),
            checks: Duration::from_secs(120),
            teardown: Duration::from_secs(60),
        }
    }
}

/// Faults the fake DigitalOcean API injects (`[faults]` in a scenario, `--fake-faults`
/// on the command line); counters count down as they fire. Only `--target do-fake`
/// uses them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FakeFaults {
    /// The next N requests (any endpoint) get 429 with `retry-after`.
    pub burst_429: u32,
    /// `retry-after` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// 500 on the Nth request (1-based) to an endpoint, e.g. "POST /v2/droplets" = 1.
    pub fail_5xx: std::collections::BTreeMap<String, u32>,
    /// This many consecutive 5xx answers from the first failing request on.
    pub fail_5xx_streak: u32,
    /// Every response is delayed this long (milliseconds).
    pub slow_ms: u64,
    /// The next N droplet creates are carried out but their responses are lost.
    pub lose_create_responses: u32,
    /// Droplets with these names stay `new` forever.
    pub stuck_in_new: std::collections::BTreeSet<String>,
    /// Droplets with these names power `off` right after becoming active.
    pub goes_off: std::collections::BTreeSet<String>,
    /// The token is a custom-scoped one holding only these scopes (`droplet:create`,
    /// `tag:read`, …): a request needing another gets DigitalOcean's 403. Absent: full
    /// access.
    pub scopes: Option<std::collections::BTreeSet<String>>,
    /// `"digitalocean"`: DigitalOcean-like timings instead of the fast defaults (droplets
    /// `new` for 46 s, new droplets missing from lists for 5 s, deleted ones still listed
    /// for 10 s, firewalls `waiting` for 5 s).
    pub profile: Option<String>,
    /// Multiplies the profile's times: 0.05 runs a 46 s boot in 2.3 s. 1 when absent.
    pub time_scale: Option<f64>,
}

impl FakeFaults {
    /// What is wrong with the timing keys, each with its hint (`--fake-faults` and
    /// `fake-do serve --faults` are checked with it; a scenario's table is located too).
    pub fn timing_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(profile) = self.profile.as_deref().filter(|p| !FAKE_PROFILES.contains(p)) {
            out.push((
                format!("unknown timing profile `{profile}`"),
                format!("profiles: {}", FAKE_PROFILES.join(", ")),
            ));
        }
        if let Some(scale) = self.time_scale.filter(|s| !(*s > 0.0 && *s <= 1.0)) {
            out.push((
                format!("time_scale = {scale} is out of range"),
                "a factor above 0 and at most 1 (0.05 runs a 46 s boot in 2.3 s)".to_string(),
            ));
        }
        out
    }
}

/// A scenario's `[digitalocean]` table: what its droplets are made of. Flags and
/// environment variables (`--do-region`, `DIGITALOCEAN_REGION`, …) override it; the
/// harness's defaults fill what neither says. Slugs are checked against the API at
/// preflight, not here (the list of regions and sizes changes).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DigitalOceanSettings {
    /// Region slug, e.g. `nyc3`.
    pub region: Option<String>,
    /// Size slug of every droplet that `sizes` does not name, e.g. `s-1vcpu-1gb`.
    pub size: Option<String>,
    /// Image slug, e.g. `ubuntu-24-04-x64`.
    pub image: Option<String>,
    /// Per-node size slugs (the classic topology's store droplet is `kv-store`).
    pub sizes: std::collections::BTreeMap<String, String>,
    /// Shell commands each engine droplet's boot script runs as root before it installs
    /// the engine (packages, sysctls, …); the first that fails ends the boot, and the
    /// droplet's engine never starts.
    pub boot_commands: Vec<String>,
}

/// Whether `s` has the shape of a DigitalOcean slug (`nyc3`, `s-1vcpu-1gb`,
/// `ubuntu-24-04-x64`): lowercase letters, digits, `-` and `.`, not empty.
pub fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// The timing profiles of the fake DigitalOcean API (`[faults] profile`).
pub const FAKE_PROFILES: &[&str] = &["digitalocean"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formation_bound_grows_two_seconds_per_node_past_thirty() {
        assert_eq!(PhaseTimeouts::for_nodes(3).cluster_formed, Duration::from_secs(60));
        assert_eq!(PhaseTimeouts::for_nodes(30).cluster_formed, Duration::from_secs(60));
        assert_eq!(PhaseTimeouts::for_nodes(100).cluster_formed, Duration::from_secs(200));
        assert_eq!(PhaseTimeouts::for_nodes(100).checks, PhaseTimeouts::default().checks);
    }
}
