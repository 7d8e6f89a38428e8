//! What a check kind *is*, one entry each in [`CHECK_KINDS`]: its name, the keys it
//! takes (with their types, required or not), the topologies it runs on, whether it
//! disrupts the cluster, and one line of documentation. Its validator (what its keys
//! must say about the declared cluster) is `parse/kinds.rs`, by the same name.
//! //! `[[checks]]` table of that kind into a [`CheckKind`].
//!
//! Parsing, validation hints, the docs' scenario reference, `--list` and the registry in
//! the binary's `checks/` all read this table: adding a check kind is an entry here (its
//! validator below it), the [`CheckKind`] variant, and the file that runs it.

use std::collections::BTreeMap;

use crate::Topology;

/// What a key of a check holds (what the docs and hints say about it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A declared node's name.
    Node,
    /// An array of declared nodes' names.
    Nodes,
    /// A declared network's name.
    Network,
    /// A declared service's name.
    Service,
    /// A declared service, container or container alias.
    Target,
    /// A string.
    Text,
    /// `KEY=VALUE`.
    Label,
    /// A whole number.
    Integer,
    /// A table of node name = task count.
    NodeCounts,
    /// A declared stack's name.
    Stack,
    /// An array of Compose files, relative to the scenario.
    Files,
}

impl KeyType {
    /// How the scenario reference describes a value of this type.
    pub fn describe(self) -> &'static str {
        match self {
            KeyType::Node => "node name",
            KeyType::Nodes => "array of node names",
            KeyType::Network => "network name",
            KeyType::Service => "service name",
            KeyType::Target => "service, container or alias",
            KeyType::Text => "string",
            KeyType::Label => "\"KEY=VALUE\"",
            KeyType::Integer => "integer",
            KeyType::NodeCounts => "table node = count",
            KeyType::Stack => "stack name",
            KeyType::Files => "array of Compose files",
        }
    }
}

/// One key a check kind takes.
#[derive(Debug, Clone, Copy)]
pub struct CheckKey {
    pub name: &'static str,
    pub ty: KeyType,
    pub required: bool,
}

const fn req(name: &'static str, ty: KeyType) -> CheckKey {
    CheckKey {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: KeyType) -> CheckKey {
    CheckKey {
        name,
        ty,
        required: false,
    }
}

/// The keys every check takes whatever its kind.
pub const COMMON_CHECK_KEYS: &[&str] = &["name", "kind", "timeout", "retries"];

/// A check kind, as the scenario language knows it.
pub struct CheckKindSpec {
    /// `kind = "..."` in a scenario.
    pub name: &'static str,
    /// One line: what the check proves.
    pub doc: &'static str,
    /// The keys it takes besides [`COMMON_CHECK_KEYS`], in the order hints list them.
    pub keys: &'static [CheckKey],
    /// The topologies it runs on.
    pub topologies: &'static [Topology],
    /// It changes the cluster (drains, pauses, stops engines, cuts or degrades the
    /// underlay): it runs alone, after every other check, in file order.
    pub disruptive: bool,
    /// It runs after the other checks without being disruptive (`cluster-state` looks
    /// again once the others are done).
    pub runs_last: bool,
}

impl std::fmt::Debug for CheckKindSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckKindSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CheckKindSpec {
    pub fn required(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.keys.iter().filter(|k| k.required).map(|k| k.name)
    }

    pub fn takes(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k.name == key)
    }

    pub fn supports(&self, topology: Topology) -> bool {
        self.topologies.contains(&topology)
    }
}

const BOTH: &[Topology] = &[Topology::Swarm, Topology::Classic];
const SWARM: &[Topology] = &[Topology::Swarm];

use KeyType as T;

/// Every check kind. The order is the order hints and the docs list them in.
pub const CHECK_KINDS: &[CheckKindSpec] = &[
    CheckKindSpec {
        name: "ping-by-name",
        doc: "a probe on `from` resolves `target` by name on `network` and pings it (full-size by default), then \
              a burst of pings loses at most `max_loss` percent",
        keys: &[
            req("from", T::Node),
            req("network", T::Network),
            req("target", T::Target),
            opt("payload", T::Integer),
            opt("max_loss", T::Integer),
        ],
        topologies: BOTH,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "placement",
        doc: "the service's tasks run exactly on the nodes its constraints allow (or `expect_nodes`, `expect_counts`)",
        keys: &[
            req("service", T::Service),
            opt("expect_nodes", T::Nodes),
            opt("expect_counts", T::NodeCounts),
            opt("stack", T::Stack),
        ],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "pending",
        doc: "a service no declared node satisfies stays pending, with no task running",
        keys: &[req("service", T::Service), opt("stack", T::Stack)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "dns",
        doc: "`query` (a service name, `tasks.NAME`, …) resolves from `from` on `network` to the service's addresses",
        keys: &[
            req("from", T::Node),
            req("network", T::Network),
            req("query", T::Text),
            req("service", T::Service),
        ],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "network",
        doc: "the overlay network is seen with its declared driver, scope and options from every node",
        keys: &[req("network", T::Network)],
        topologies: BOTH,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "membership",
        doc: "every declared node is in the swarm, Ready, with its declared role",
        keys: &[],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "starts-when-labelled",
        doc: "a pending service starts on `node` once `label` is added to it",
        keys: &[req("service", T::Service), req("node", T::Node), req("label", T::Label)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "drain",
        doc: "(disruptive) draining `node` moves the service's tasks to other nodes; active again, it takes tasks",
        keys: &[req("service", T::Service), req("node", T::Node)],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "pause",
        doc: "(disruptive) a paused node keeps its tasks and gets no new ones; resumed, it gets them again",
        keys: &[req("service", T::Service), req("node", T::Node)],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "node-restart",
        doc: "(disruptive) `node`'s engine stops and starts: the node comes back Ready and the service converges",
        keys: &[
            req("node", T::Node),
            req("service", T::Service),
            opt("from", T::Node),
            opt("network", T::Network),
        ],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "quorum",
        doc: "(disruptive) with all but one manager down a service cannot be created; with one back, it can",
        keys: &[],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "mtu",
        doc: "`bytes` cross the underlay over TCP both ways between probes on `from` and `to` in full-size segments",
        keys: &[
            req("from", T::Node),
            req("to", T::Node),
            req("network", T::Network),
            opt("bytes", T::Integer),
        ],
        topologies: BOTH,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "packet-loss",
        doc: "(disruptive) with `percent`% of the underlay packets dropped, TCP still delivers `bytes` both ways",
        keys: &[
            req("from", T::Node),
            req("to", T::Node),
            req("network", T::Network),
            opt("percent", T::Integer),
            opt("bytes", T::Integer),
        ],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "partition",
        doc: "(disruptive) `nodes` cut from the rest go Down; healed, all are Ready and `target` answers by name again",
        keys: &[
            req("nodes", T::Nodes),
            req("from", T::Node),
            req("network", T::Network),
            req("target", T::Target),
        ],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "stack-converges",
        doc: "every service of the stack runs its desired tasks (global: one per eligible node) with its update \
              completed; a task that cannot run is named with its own error (implicit for every stack)",
        keys: &[req("stack", T::Stack)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "stack-reach",
        doc: "from a probe on every node, each service of the stack resolves by name on each of its networks \
              (`tasks.NAME`: one address per running task) and every address answers a ping, then a burst of \
              pings loses at most `max_loss` percent",
        keys: &[req("stack", T::Stack), opt("max_loss", T::Integer)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "stack-ports",
        doc: "every published TCP port of the stack answers from another node: host-mode ports on each node a task \
              runs on, ingress ports on every node (where the kernel has IPVS)",
        keys: &[req("stack", T::Stack)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "stack-healthy",
        doc: "every running task of the stack's services with a healthcheck reaches `healthy`; an unhealthy task is \
              named with its node and its last probe's exit code and output",
        keys: &[req("stack", T::Stack)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "stack-secrets",
        doc: "every secret and config of the stack's services is in each running task at its target, with the \
              declared mode, owner and (for `file:` sources) the file's content",
        keys: &[req("stack", T::Stack)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "stack-redeploy",
        doc: "the stack deployed again from the same files changes nothing: no task spec differs, no update starts, \
              no running task is replaced",
        keys: &[req("stack", T::Stack)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
    },
    CheckKindSpec {
        name: "stack-update",
        doc: "(disruptive) the stack redeployed with `files` merged over its own: every changed service's update \
              ends as `expect` says (`completed`, or `rolled-back` to the previous spec), never more tasks down at \
              once than its `update_config` allows",
        keys: &[req("stack", T::Stack), req("files", T::Files), opt("expect", T::Text)],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "stack-removal",
        doc: "(disruptive) `docker stack rm` leaves no service, task, secret, config, container or network with the \
              stack's label on any node; deployed again it converges; `cycles` rounds in a row (1 unless told)",
        keys: &[req("stack", T::Stack), opt("cycles", T::Integer)],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
    },
    CheckKindSpec {
        name: "cluster-state",
        doc: "roles, availability, node and engine labels and engine versions are as declared, at the start and the end",
        keys: &[],
        topologies: BOTH,
        disruptive: false,
        runs_last: true,
    },
];

/// The spec of a kind by its name.
pub fn check_kind(name: &str) -> Option<&'static CheckKindSpec> {
    CHECK_KINDS.iter().find(|k| k.name == name)
}

/// A validated check of each kind: its keys, typed.
/// The large ping of a `ping-by-name` check (`payload = N` bytes of ICMP data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The default: as large as the overlay's MTU allows (MTU - 28 bytes of headers).
    OverlayMtu,
    /// `payload = N`: exactly N bytes.
    Bytes(u32),
    /// `payload = 0`: only the small ping.
    Off,
}

/// The share of `ping-by-name`'s burst that may be lost unless told: 2 of 40 pings. A
/// clean overlay loses none; a path losing a tenth of its packets trips it (nearly)
/// every time.
pub const DEFAULT_MAX_LOSS_PERCENT: u32 = 5;

/// The largest ICMP payload an IPv4 packet can carry.
pub const MAX_PING_PAYLOAD: u32 = 65_507;

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// A container on `from` attached to `network` resolves `target` by name and pings it,
    /// then sends a large packet (`payload`) across: an underlay smaller than the overlay
    /// assumes lets small pings through and loses large ones.
    PingByName {
        from: String,
        network: String,
        target: String,
        payload: Payload,
        /// The share of a burst of pings (percent) that may be lost once the path
        /// answers: loss is measured, not retried away.
        max_loss: u32,
    },
    /// Every running task of `service` is on one of `expect_nodes`, and every replica runs;
    /// with `expect_counts`, exactly that many tasks on each node (others: none).
    Placement {
        service: String,
        expect_nodes: Vec<String>,
        expect_counts: Option<BTreeMap<String, u64>>,
        /// The stack `service` belongs to (its swarm name is then `STACK_NAME`).
        stack: Option<String>,
    },
    /// `service` stays pending, and its tasks say the constraints are not satisfied.
    Pending { service: String, stack: Option<String> },
    /// From a container on `from` attached to `network`, `query` resolves to exactly the
    /// addresses of `service`'s tasks on that network (one record per task).
    Dns {
        from: String,
        network: String,
        query: String,
        service: String,
    },
    /// The overlay `network` as every node that sees it reports it: driver overlay, swarm
    /// scope, attachable and subnet as declared.
    Network { network: String },
    /// The manager lists exactly the declared nodes, each node ID matching what that
    /// node's engine says, and every node knows a manager's address.
    Membership,
    /// `service` is pending until `node` gets the node label `label` (`key=value`), then
    /// runs there.
    StartsWhenLabelled {
        service: String,
        node: String,
        label: String,
    },
    /// Draining `node` moves every task of `service` off it; the replicas keep running.
    Drain { service: String, node: String },
    /// Pausing `node` keeps its tasks of `service`; a new replica goes elsewhere.
    Pause { service: String, node: String },
    /// Restarting `node`'s engine: afterwards every replica of `service` runs again and,
    /// with `from`/`network`, its name still resolves from there.
    NodeRestart {
        node: String,
        service: String,
        from: Option<String>,
        network: Option<String>,
    },
    /// With all but one manager down, creating a service fails for lack of quorum;
    /// with one back, it works.
    Quorum,
    /// Every service of `stack` runs its desired tasks with its update completed.
    StackConverges { stack: String },
    /// Every service of `stack` resolves by name (`tasks.NAME`) on each of its networks
    /// from every node, one address per running task, each answering a ping.
    StackReach {
        stack: String,
        /// The share of each path's burst that may be lost (percent).
        max_loss: u32,
    },
    /// Every published TCP port of `stack` answers from another node where it should.
    StackPorts { stack: String },
    /// Every running task of `stack`'s services with a healthcheck is healthy.
    StackHealthy { stack: String },
    /// Every secret and config of `stack`'s services is at its target in each running
    /// task, with the declared mode, owner and content.
    StackSecrets { stack: String },
    /// `stack` deployed again from the same files restarts nothing.
    StackRedeploy { stack: String },
    /// (disruptive) `docker stack rm` leaves nothing of `stack`; redeployed, it
    /// converges; `cycles` times.
    StackRemoval { stack: String, cycles: u32 },
    /// (disruptive) `stack` redeployed with `files` merged over its own files: each
    /// service the update changes ends its update as `expect` says.
    StackUpdate {
        stack: String,
        files: Vec<std::path::PathBuf>,
        expect: UpdateOutcome,
    },
    /// Every node's role, availability, node labels, engine labels and engine version
    /// are as declared, when the checks start and again after the others ended.
    ClusterState,
    /// `bytes` go over TCP each way between probes on `from` and `to`, across `network`:
    /// full-size segments cross the underlay (path-MTU black holes show only there).
    Mtu {
        from: String,
        to: String,
        network: String,
        bytes: u64,
    },
    /// (disruptive) With `percent`% of the underlay packets between the nodes dropped on
    /// arrival, TCP over `network` still delivers `bytes` each way between `from` and `to`.
    PacketLoss {
        from: String,
        to: String,
        network: String,
        percent: u32,
        bytes: u64,
    },
    /// (disruptive) `nodes` are cut from the rest at the underlay until the swarm sees
    /// them Down; once healed, every node is Ready again and `from` resolves and pings
    /// `target` across `network` within the bound.
    Partition {
        nodes: Vec<String>,
        from: String,
        network: String,
        target: String,
    },
}

/// What a TCP transfer check moves by default: a few MiB, so that a path which loses
/// full-size segments stalls instead of passing on a handshake.
pub const DEFAULT_TRANSFER_BYTES: u64 = 4 << 20;
/// The largest transfer a check may ask for.
pub const MAX_TRANSFER_BYTES: u64 = 256 << 20;
/// How a `stack-update` must end (`expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// `completed` (the default): the new spec runs.
    Completed,
    /// `rolled-back`: the update failed and the swarm rolled it back
    /// (`rollback_completed`), the previous spec running again.
    RolledBack,
}

/// The share of underlay packets `packet-loss` drops unless told.
pub const DEFAULT_LOSS_PERCENT: u32 = 10;

impl CheckKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            CheckKind::PingByName { .. } => "ping-by-name",
            CheckKind::Placement { .. } => "placement",
            CheckKind::Pending { .. } => "pending",
            CheckKind::Dns { .. } => "dns",
            CheckKind::Network { .. } => "network",
            CheckKind::Membership => "membership",
            CheckKind::StartsWhenLabelled { .. } => "starts-when-labelled",
            CheckKind::Drain { .. } => "drain",
            CheckKind::Pause { .. } => "pause",
            CheckKind::NodeRestart { .. } => "node-restart",
            CheckKind::Quorum => "quorum",
            CheckKind::ClusterState => "cluster-state",
            CheckKind::Mtu { .. } => "mtu",
            CheckKind::PacketLoss { .. } => "packet-loss",
            CheckKind::Partition { .. } => "partition",
            CheckKind::StackConverges { .. } => "stack-converges",
            CheckKind::StackReach { .. } => "stack-reach",
            CheckKind::StackPorts { .. } => "stack-ports",
            CheckKind::StackUpdate { .. } => "stack-update",
            CheckKind::StackHealthy { .. } => "stack-healthy",
            CheckKind::StackSecrets { .. } => "stack-secrets",
            CheckKind::StackRedeploy { .. } => "stack-redeploy",
            CheckKind::StackRemoval { .. } => "stack-removal",
        }
    }

    /// What the scenario language says about this kind.
    pub fn spec(&self) -> &'static CheckKindSpec {
        check_kind(self.kind_name()).expect("every CheckKind variant has an entry in CHECK_KINDS")
    }

    /// Checks that change the cluster (node availability, engines stopped): they run
    /// one at a time, after or between the others, never alongside them.
    pub fn is_disruptive(&self) -> bool {
        self.spec().disruptive
    }

    /// Checks that run after every other non-disruptive check has ended (disruptive
    /// ones, and `cluster-state`, which looks again once the others are done).
    pub fn runs_last(&self) -> bool {
        self.spec().runs_last
    }

    /// The stack this check observes.
    pub fn stack(&self) -> Option<&str> {
        match self {
            CheckKind::StackConverges { stack }
            | CheckKind::StackReach { stack, .. }
            | CheckKind::StackPorts { stack }
            | CheckKind::StackUpdate { stack, .. }
            | CheckKind::StackHealthy { stack }
            | CheckKind::StackSecrets { stack }
            | CheckKind::StackRedeploy { stack }
            | CheckKind::StackRemoval { stack, .. } => Some(stack),
            CheckKind::Placement { stack, .. } | CheckKind::Pending { stack, .. } => stack.as_deref(),
            _ => None,
        }
    }

    /// The nodes this check runs its probes on or acts on, as the scenario names them
    /// (reports draw where each check ran); none for checks of the whole cluster.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            CheckKind::PingByName { from, .. } | CheckKind::Dns { from, .. } => vec![from],
            CheckKind::Placement { expect_nodes, .. } => expect_nodes.iter().map(String::as_str).collect(),
            CheckKind::StartsWhenLabelled { node, .. }
            | CheckKind::Drain { node, .. }
            | CheckKind::Pause { node, .. } => {
                vec![node]
            }
            CheckKind::NodeRestart { node, from, .. } => {
                std::iter::once(node.as_str()).chain(from.as_deref()).collect()
            }
            CheckKind::Mtu { from, to, .. } | CheckKind::PacketLoss { from, to, .. } => vec![from, to],
            CheckKind::Partition { nodes, from, .. } => nodes
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(from.as_str()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Services this check observes (they are deployed before checks start).
    pub fn services(&self) -> Vec<&str> {
        match self {
            CheckKind::PingByName { .. }
            | CheckKind::Network { .. }
            | CheckKind::Membership
            | CheckKind::Quorum
            | CheckKind::ClusterState
            | CheckKind::Mtu { .. }
            | CheckKind::PacketLoss { .. }
            | CheckKind::Partition { .. }
            | CheckKind::StackConverges { .. }
            | CheckKind::StackReach { .. }
            | CheckKind::StackPorts { .. }
            | CheckKind::StackUpdate { .. }
            | CheckKind::StackHealthy { .. }
            | CheckKind::StackSecrets { .. }
            | CheckKind::StackRedeploy { .. }
            | CheckKind::StackRemoval { .. } => {
                vec![]
            }
            CheckKind::Placement { service, .. }
            | CheckKind::Pending { service, .. }
            | CheckKind::Dns { service, .. }
            | CheckKind::StartsWhenLabelled { service, .. }
            | CheckKind::Drain { service, .. }
            | CheckKind::Pause { service, .. }
            | CheckKind::NodeRestart { service, .. } => vec![service],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_disruptive_ones_run_last() {
        let mut names: Vec<&str> = CHECK_KINDS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CHECK_KINDS.len());
        for kind in CHECK_KINDS {
            assert!(!kind.disruptive || kind.runs_last, "{}", kind.name);
            assert!(!kind.topologies.is_empty(), "{}", kind.name);
            // Hints list a kind's keys in this order: what it needs first.
            let first_optional = kind.keys.iter().position(|k| !k.required).unwrap_or(kind.keys.len());
            assert!(kind.keys[first_optional..].iter().all(|k| !k.required), "{}", kind.name);
        }
    }
}
