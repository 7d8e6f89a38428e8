//! What a check kind *is*, one entry each in [`CHECK_KINDS`]: its name, the keys it
//! takes (with their types, required or not), the topologies it runs on, whether it
//! disrupts the cluster, one line of documentation, and the function that validates a
//! `[[checks]]` table of that kind into a [`CheckKind`].
//!
//! Parsing, validation hints, the docs' scenario reference, `--list` and the registry in
//! the binary's `checks/` all read this table: adding a check kind is an entry here (its
//! validator below it), the [`CheckKind`] variant, and the file that runs it.

mod validate;

use crate::parse::Parser;
use crate::{CheckKind, Topology};
pub(crate) use validate::CheckInput;
use validate::*;

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
    /// Validates one check of this kind; its required keys are present. `None` when a
    /// problem leaves nothing to check (the problem is recorded).
    pub(crate) build: fn(&mut Parser, &mut CheckInput<'_>) -> Option<CheckKind>,
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
        doc: "a probe on `from` resolves `target` by name on `network` and pings it (full-size by default)",
        keys: &[
            req("from", T::Node),
            req("network", T::Network),
            req("target", T::Target),
            opt("payload", T::Integer),
        ],
        topologies: BOTH,
        disruptive: false,
        runs_last: false,
        build: ping_by_name,
    },
    CheckKindSpec {
        name: "placement",
        doc: "the service's tasks run exactly on the nodes its constraints allow (or `expect_nodes`, `expect_counts`)",
        keys: &[
            req("service", T::Service),
            opt("expect_nodes", T::Nodes),
            opt("expect_counts", T::NodeCounts),
        ],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
        build: placement,
    },
    CheckKindSpec {
        name: "pending",
        doc: "a service no declared node satisfies stays pending, with no task running",
        keys: &[req("service", T::Service)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
        build: pending,
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
        build: dns,
    },
    CheckKindSpec {
        name: "network",
        doc: "the overlay network is seen with its declared driver, scope and options from every node",
        keys: &[req("network", T::Network)],
        topologies: BOTH,
        disruptive: false,
        runs_last: false,
        build: network,
    },
    CheckKindSpec {
        name: "membership",
        doc: "every declared node is in the swarm, Ready, with its declared role",
        keys: &[],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
        build: |_, _| Some(CheckKind::Membership),
    },
    CheckKindSpec {
        name: "starts-when-labelled",
        doc: "a pending service starts on `node` once `label` is added to it",
        keys: &[req("service", T::Service), req("node", T::Node), req("label", T::Label)],
        topologies: SWARM,
        disruptive: false,
        runs_last: false,
        build: starts_when_labelled,
    },
    CheckKindSpec {
        name: "drain",
        doc: "(disruptive) draining `node` moves the service's tasks to other nodes; active again, it takes tasks",
        keys: &[req("service", T::Service), req("node", T::Node)],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
        build: drain_or_pause,
    },
    CheckKindSpec {
        name: "pause",
        doc: "(disruptive) a paused node keeps its tasks and gets no new ones; resumed, it gets them again",
        keys: &[req("service", T::Service), req("node", T::Node)],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
        build: drain_or_pause,
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
        build: node_restart,
    },
    CheckKindSpec {
        name: "quorum",
        doc: "(disruptive) with all but one manager down a service cannot be created; with one back, it can",
        keys: &[],
        topologies: SWARM,
        disruptive: true,
        runs_last: true,
        build: quorum,
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
        build: transfer,
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
        build: transfer,
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
        build: partition,
    },
    CheckKindSpec {
        name: "cluster-state",
        doc: "roles, availability, node and engine labels and engine versions are as declared, at the start and the end",
        keys: &[],
        topologies: BOTH,
        disruptive: false,
        runs_last: true,
        build: |_, _| Some(CheckKind::ClusterState),
    },
];

/// The spec of a kind by its name.
pub fn check_kind(name: &str) -> Option<&'static CheckKindSpec> {
    CHECK_KINDS.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::raw::RawCheck;

    #[test]
    fn every_key_a_kind_takes_is_a_key_of_the_raw_check() {
        for kind in CHECK_KINDS {
            for key in kind.keys {
                assert!(
                    RawCheck::KEYS.contains(&key.name),
                    "`{}` of `{}` is no field of RawCheck",
                    key.name,
                    kind.name
                );
            }
        }
        // And the raw check takes no key that no kind takes (serde's own list of fields,
        // read from its unknown-field message).
        let text =
            "name = \"x\"\n[[nodes]]\nname = \"a\"\nrole = \"manager\"\n[[checks]]\nkind = \"membership\"\nzzz = 1\n";
        let problems = crate::parse_scenario("x.toml", text).unwrap_err().problems;
        let help = problems[0].help.clone().unwrap_or_default();
        for field in RawCheck::KEYS.iter().chain(COMMON_CHECK_KEYS) {
            assert!(help.contains(*field), "{field} missing from {help}");
        }
        for field in RawCheck::KEYS {
            assert!(CHECK_KINDS.iter().any(|k| k.takes(field)), "no kind takes `{field}`");
        }
    }

    #[test]
    fn names_are_unique_and_disruptive_ones_run_last() {
        let mut names: Vec<&str> = CHECK_KINDS.iter().map(|k| k.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CHECK_KINDS.len());
        for kind in CHECK_KINDS {
            assert!(!kind.disruptive || kind.runs_last, "{}", kind.name);
            assert!(!kind.topologies.is_empty(), "{}", kind.name);
        }
    }
}
