//! Each check kind's validator: what its own keys must say about the declared cluster,
//! one per entry of `check_kinds::CHECK_KINDS`, found by the kind's name.

use std::collections::BTreeMap;
use std::ops::Range;

use super::raw::RawCheck;
use super::{Parser, S, eligible_nodes, span_of};
use crate::diag::{Problem, did_you_mean};
use crate::{
    CheckKind, Container, DEFAULT_LOSS_PERCENT, DEFAULT_MAX_LOSS_PERCENT, DEFAULT_TRANSFER_BYTES, MAX_PING_PAYLOAD,
    MAX_TRANSFER_BYTES, Network, Node, Payload, Role, Service, ServiceMode, Stack, Topology, UpdateOutcome,
};

/// Validates one check of a kind; its required keys are present. `None` when a problem
/// leaves nothing to check (the problem is recorded).
pub(crate) type Validator = fn(&mut Parser, &mut CheckInput<'_>) -> Option<CheckKind>;

/// The validator of every kind in `CHECK_KINDS`, by name.
const VALIDATORS: &[(&str, Validator)] = &[
    ("ping-by-name", ping_by_name),
    ("placement", placement),
    ("pending", pending),
    ("dns", dns),
    ("network", network),
    ("membership", |_, _| Some(CheckKind::Membership)),
    ("starts-when-labelled", starts_when_labelled),
    ("drain", drain_or_pause),
    ("pause", drain_or_pause),
    ("node-restart", node_restart),
    ("quorum", quorum),
    ("mtu", transfer),
    ("packet-loss", transfer),
    ("partition", partition),
    ("stack-converges", stack_converges),
    ("stack-reach", stack_reach),
    ("stack-ports", stack_ports),
    ("stack-healthy", |p, c| {
        stack_only(p, c).map(|stack| CheckKind::StackHealthy { stack })
    }),
    ("stack-secrets", |p, c| {
        stack_only(p, c).map(|stack| CheckKind::StackSecrets { stack })
    }),
    ("stack-redeploy", |p, c| {
        stack_only(p, c).map(|stack| CheckKind::StackRedeploy { stack })
    }),
    ("stack-update", stack_update),
    ("stack-removal", stack_removal),
    ("cluster-state", |_, _| Some(CheckKind::ClusterState)),
];

fn stack_converges(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let stack = take(&mut c.raw.stack);
    p.known_stack(&stack, c.declared.stacks)
        .then(|| CheckKind::StackConverges {
            stack: stack.into_inner(),
        })
}

/// The `stack` of a kind that takes nothing else, when it is a declared stack.
fn stack_only(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<String> {
    let stack = take(&mut c.raw.stack);
    p.known_stack(&stack, c.declared.stacks).then(|| stack.into_inner())
}

/// More rounds than this prove nothing more and hold the checks up for minutes.
const MAX_REMOVAL_CYCLES: u32 = 10;

fn stack_removal(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let stack = stack_only(p, c);
    let cycles = match &c.raw.cycles {
        None => 1,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_REMOVAL_CYCLES).contains(&v) => v,
            _ => {
                p.push(
                    Problem::new(format!("`cycles = {}` is out of range", n.get_ref()), span_of(n)).help(format!(
                        "give 1 to {MAX_REMOVAL_CYCLES} (rounds of removal and redeploy; a few show a leak of \
                         addresses as well as many)"
                    )),
                );
                1
            }
        },
    };
    Some(CheckKind::StackRemoval { stack: stack?, cycles })
}

fn stack_ports(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let stack = take(&mut c.raw.stack);
    p.known_stack(&stack, c.declared.stacks).then(|| CheckKind::StackPorts {
        stack: stack.into_inner(),
    })
}

fn stack_update(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (stack, files) = (take(&mut c.raw.stack), take(&mut c.raw.files));
    let known = p.known_stack(&stack, c.declared.stacks);
    let folder = std::path::Path::new(c.declared.source)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    if files.get_ref().is_empty() {
        p.push(
            Problem::new("a `stack-update` needs at least one Compose file", span_of(&files))
                .help("name the file(s) merged over the stack's own, e.g. `files = [\"app-v2.yml\"]`"),
        );
    }
    let mut paths = Vec::new();
    for f in files.get_ref() {
        let path = folder.join(f.get_ref());
        p.compose_services(f, &path);
        paths.push(path);
    }
    let expect = match c.raw.expect.as_ref().map(|e| e.get_ref().as_str()) {
        None | Some("completed") => UpdateOutcome::Completed,
        Some("rolled-back") => UpdateOutcome::RolledBack,
        Some(other) => {
            p.push(
                Problem::new(format!("`expect = \"{other}\"` is no update outcome"), c.raw.expect.as_ref().and_then(span_of))
                    .help("\"completed\" (the default: the new spec runs) or \"rolled-back\" (it failed and the swarm rolled it back)"),
            );
            UpdateOutcome::Completed
        }
    };
    known.then(|| CheckKind::StackUpdate {
        stack: stack.into_inner(),
        files: paths,
        expect,
    })
}

fn stack_reach(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let stack = take(&mut c.raw.stack);
    let max_loss = max_loss(p, c);
    p.known_stack(&stack, c.declared.stacks).then(|| CheckKind::StackReach {
        stack: stack.into_inner(),
        max_loss,
    })
}

/// `max_loss`: the percent of a loss burst's pings that may go unanswered.
fn max_loss(p: &mut Parser, c: &CheckInput<'_>) -> u32 {
    match &c.raw.max_loss {
        None => DEFAULT_MAX_LOSS_PERCENT,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(percent) if percent <= 100 => percent,
            _ => {
                p.push(
                    Problem::new(format!("`max_loss = {}` is no percentage", n.get_ref()), span_of(n)).help(format!(
                        "give 0 to 100 (percent of the burst's pings that may be lost; 100 accepts any loss), or \
                         leave it out for {DEFAULT_MAX_LOSS_PERCENT}"
                    )),
                );
                DEFAULT_MAX_LOSS_PERCENT
            }
        },
    }
}

/// The validator of the kind named `kind`.
pub(crate) fn validator(kind: &str) -> Option<Validator> {
    VALIDATORS.iter().find(|(name, _)| *name == kind).map(|(_, v)| *v)
}

/// One `[[checks]]` table of a known kind, with what its validator may look up.
pub(crate) struct CheckInput<'a> {
    pub raw: RawCheck,
    /// The whole table.
    pub span: Range<usize>,
    pub declared: &'a Declared<'a>,
}

/// What the checks of a scenario may refer to.
pub(crate) struct Declared<'a> {
    pub nodes: &'a [Node],
    pub networks: &'a [Network],
    pub services: &'a [Service],
    pub containers: &'a [Container],
    pub stacks: &'a [Stack],
    pub topology: Topology,
    /// The scenario file's path: Compose files a check names are relative to it.
    pub source: &'a str,
}

/// A required key, present by the time a validator runs.
fn take<T>(key: &mut Option<T>) -> T {
    key.take()
        .expect("required keys are checked before the kind's validator runs")
}

fn ping_by_name(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (from, network, target) = (take(&mut c.raw.from), take(&mut c.raw.network), take(&mut c.raw.target));
    p.known_node(&from, c.declared.nodes);
    let nets = p.known_networks(std::slice::from_ref(&network), c.declared.networks, true);
    let target_networks = c
        .declared
        .services
        .iter()
        .find(|s| &s.name == target.get_ref())
        .map(|s| &s.networks)
        .or_else(|| {
            c.declared
                .containers
                .iter()
                .find(|x| &x.name == target.get_ref() || x.aliases.contains(target.get_ref()))
                .map(|x| &x.networks)
        });
    match target_networks {
        None => p.push(
            Problem::new(
                format!(
                    "`{}` is neither a declared service, a container, nor a container's alias",
                    target.get_ref()
                ),
                span_of(&target),
            )
            .help("declare the target in `[[services]]` or `[[containers]]`"),
        ),
        Some(tn) if !nets.is_empty() && !tn.contains(network.get_ref()) => p.push(
            Problem::new(
                format!(
                    "`{}` is not attached to network `{}`",
                    target.get_ref(),
                    network.get_ref()
                ),
                span_of(&target),
            )
            .help(format!("add \"{}\" to its `networks`", network.get_ref())),
        ),
        Some(_) => {}
    }
    let payload = match &c.raw.payload {
        None => Payload::OverlayMtu,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(0) => Payload::Off,
            Ok(b) if b <= MAX_PING_PAYLOAD => Payload::Bytes(b),
            _ => {
                p.push(
                    Problem::new(format!("`payload = {}` is no ping size", n.get_ref()), span_of(n)).help(format!(
                        "give 1 to {MAX_PING_PAYLOAD} bytes, 0 for only the small ping, or leave it out to fill the \
                         overlay's MTU"
                    )),
                );
                Payload::OverlayMtu
            }
        },
    };
    let max_loss = max_loss(p, c);
    Some(CheckKind::PingByName {
        from: from.into_inner(),
        network: network.into_inner(),
        target: target.into_inner(),
        payload,
        max_loss,
    })
}

fn placement(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let service_name = take(&mut c.raw.service);
    let stack = c.raw.stack.take();
    let service = placed_service(p, &service_name, stack.as_ref(), c.declared)?;
    let expect_nodes = match c.raw.expect_nodes.take() {
        Some(list) => {
            let list = list.into_inner();
            if list.is_empty() {
                p.push(
                    Problem::new("`expect_nodes` is empty", span_of(&service_name))
                        .help("a service that must not run anywhere is checked with kind = \"pending\""),
                );
            }
            list.iter()
                .filter(|n| p.known_node(n, c.declared.nodes))
                .map(|n| n.get_ref().clone())
                .collect()
        }
        None => match eligible_nodes(service, c.declared.nodes) {
            Some(e) if e.is_empty() => {
                p.push(
                    Problem::new(
                        format!("no declared node satisfies the constraints of `{}`", service.name),
                        span_of(&service_name),
                    )
                    .help("check with kind = \"pending\", or fix the constraints"),
                );
                return None;
            }
            Some(e) => e,
            None => {
                p.push(
                    Problem::new(
                        format!(
                            "the nodes for `{}` cannot be derived from its constraints",
                            service.name
                        ),
                        span_of(&service_name),
                    )
                    .help("constraints on node.id or platform are only known at run time: add `expect_nodes`"),
                );
                return None;
            }
        },
    };
    let expect_counts = c
        .raw
        .expect_counts
        .take()
        .map(|counts| expect_counts(p, counts.into_inner(), &service_name, service, c.declared.nodes));
    let expect_nodes = match &expect_counts {
        Some(counts) => counts.iter().filter(|(_, v)| **v > 0).map(|(n, _)| n.clone()).collect(),
        None => expect_nodes,
    };
    Some(CheckKind::Placement {
        service: service.name.clone(),
        expect_nodes,
        expect_counts,
        stack: stack.map(S::into_inner),
    })
}

/// The service a `placement` or `pending` check names: a `[[services]]` one, or with
/// `stack`, that stack's Compose service as its `deploy:` places it.
fn placed_service<'a>(
    p: &mut Parser,
    name: &S<String>,
    stack: Option<&S<String>>,
    declared: &'a Declared<'a>,
) -> Option<&'a Service> {
    let Some(stack) = stack else {
        return p.known_service(name, declared.services);
    };
    if !p.known_stack(stack, declared.stacks) {
        return None;
    }
    let found = declared.stacks.iter().find(|s| &s.name == stack.get_ref())?;
    match found.placements.get(name.get_ref()) {
        Some(Ok(service)) => Some(service),
        Some(Err(why)) => {
            p.push(
                Problem::new(
                    format!(
                        "where `{}` of stack `{}` may run cannot be known: {why}",
                        name.get_ref(),
                        found.name
                    ),
                    span_of(name),
                )
                .help("give the variable a value in the stack's `env`, or a default (`${VAR:-2}`)"),
            );
            None
        }
        None => {
            let help = match did_you_mean(name.get_ref(), found.services.iter().map(String::as_str)) {
                Some(g) => format!("did you mean `{g}`? (the name under `services:`, without the stack's prefix)"),
                None => format!("its Compose files declare: {}", found.services.join(", ")),
            };
            p.push(
                Problem::new(
                    format!("stack `{}` has no service `{}`", found.name, name.get_ref()),
                    span_of(name),
                )
                .help(help),
            );
            None
        }
    }
}

/// `expect_counts` of a placement check: node names declared, counts adding up to the
/// replicas of a replicated service.
fn expect_counts(
    p: &mut Parser,
    counts: BTreeMap<S<String>, S<u64>>,
    service_name: &S<String>,
    service: &Service,
    nodes: &[Node],
) -> BTreeMap<String, u64> {
    let total: u64 = counts.values().map(|v| *v.get_ref()).sum();
    if let ServiceMode::Replicated { replicas } = service.mode
        && total != replicas
    {
        p.push(
            Problem::new(
                format!(
                    "`expect_counts` adds up to {total}, but `{}` has {replicas} replica(s)",
                    service.name
                ),
                span_of(service_name),
            )
            .help("the counts per node must add up to the replicas"),
        );
    }
    counts
        .into_iter()
        .filter(|(n, _)| p.known_node(n, nodes))
        .map(|(n, v)| (n.into_inner(), v.into_inner()))
        .collect()
}

fn pending(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let service_name = take(&mut c.raw.service);
    let stack = c.raw.stack.take();
    let service = placed_service(p, &service_name, stack.as_ref(), c.declared)?;
    if let Some(e) = eligible_nodes(service, c.declared.nodes).filter(|e| !e.is_empty()) {
        p.push(
            Problem::new(
                format!(
                    "`{}` can be placed on {}, so it will not stay pending",
                    service.name,
                    e.join(", ")
                ),
                span_of(&service_name),
            )
            .help("a pending check needs constraints that no declared node satisfies"),
        );
    }
    Some(CheckKind::Pending {
        service: service.name.clone(),
        stack: stack.map(S::into_inner),
    })
}

fn dns(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (from, network, query, service) = (
        take(&mut c.raw.from),
        take(&mut c.raw.network),
        take(&mut c.raw.query),
        take(&mut c.raw.service),
    );
    p.known_node(&from, c.declared.nodes);
    p.known_networks(std::slice::from_ref(&network), c.declared.networks, true);
    if let Some(s) = p.known_service(&service, c.declared.services)
        && !s.networks.contains(network.get_ref())
    {
        p.push(
            Problem::new(
                format!("`{}` is not attached to network `{}`", s.name, network.get_ref()),
                span_of(&service),
            )
            .help(format!("add \"{}\" to its `networks`", network.get_ref())),
        );
    }
    Some(CheckKind::Dns {
        from: from.into_inner(),
        network: network.into_inner(),
        query: query.into_inner(),
        service: service.into_inner(),
    })
}

fn network(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let network = take(&mut c.raw.network);
    p.known_networks(std::slice::from_ref(&network), c.declared.networks, false);
    Some(CheckKind::Network {
        network: network.into_inner(),
    })
}

fn quorum(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let managers = c.declared.nodes.iter().filter(|n| n.role == Role::Manager).count();
    if managers < 3 {
        p.push(
            Problem::new(
                format!("a quorum check needs at least 3 managers; the scenario has {managers}"),
                Some(c.span.clone()),
            )
            .help("declare three nodes with role = \"manager\""),
        );
    }
    Some(CheckKind::Quorum)
}

fn starts_when_labelled(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (service_name, node, label) = (take(&mut c.raw.service), take(&mut c.raw.node), take(&mut c.raw.label));
    p.known_node(&node, c.declared.nodes);
    if !label.get_ref().contains('=') || label.get_ref().starts_with('=') {
        p.push(
            Problem::new(format!("label `{}` is not KEY=VALUE", label.get_ref()), span_of(&label))
                .help("e.g. label = \"gpu=yes\""),
        );
    }
    if let Some(service) = p.known_service(&service_name, c.declared.services)
        && let Some(e) = eligible_nodes(service, c.declared.nodes).filter(|e| !e.is_empty())
    {
        p.push(
            Problem::new(
                format!("`{}` can already be placed on {}", service.name, e.join(", ")),
                span_of(&service_name),
            )
            .help("the service must be pending until the label is added"),
        );
    }
    Some(CheckKind::StartsWhenLabelled {
        service: service_name.into_inner(),
        node: node.into_inner(),
        label: label.into_inner(),
    })
}

fn drain_or_pause(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (service_name, node) = (take(&mut c.raw.service), take(&mut c.raw.node));
    p.known_node(&node, c.declared.nodes);
    p.known_service(&service_name, c.declared.services);
    let (service, node) = (service_name.into_inner(), node.into_inner());
    Some(if c.raw.kind.get_ref() == "drain" {
        CheckKind::Drain { service, node }
    } else {
        CheckKind::Pause { service, node }
    })
}

fn node_restart(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (service_name, node) = (take(&mut c.raw.service), take(&mut c.raw.node));
    p.known_node(&node, c.declared.nodes);
    p.known_service(&service_name, c.declared.services);
    if let Some(f) = &c.raw.from {
        p.known_node(f, c.declared.nodes);
    }
    if let Some(n) = &c.raw.network {
        p.known_networks(std::slice::from_ref(n), c.declared.networks, true);
    }
    if c.raw.from.is_some() != c.raw.network.is_some() {
        p.push(
            Problem::new("`from` and `network` go together", Some(c.span.clone()))
                .help("give both to check name resolution after the restart, or neither"),
        );
    }
    Some(CheckKind::NodeRestart {
        node: node.into_inner(),
        service: service_name.into_inner(),
        from: c.raw.from.take().map(|f| f.into_inner()),
        network: c.raw.network.take().map(|n| n.into_inner()),
    })
}

/// `mtu` and `packet-loss`: a TCP transfer between two nodes.
fn transfer(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (from, to, network) = (take(&mut c.raw.from), take(&mut c.raw.to), take(&mut c.raw.network));
    p.known_node(&from, c.declared.nodes);
    p.known_node(&to, c.declared.nodes);
    p.known_networks(std::slice::from_ref(&network), c.declared.networks, true);
    if from.get_ref() == to.get_ref() {
        p.push(
            Problem::new(
                format!(
                    "`from` and `to` are both {}: nothing would cross the underlay",
                    to.get_ref()
                ),
                span_of(&to),
            )
            .help("name two different nodes"),
        );
    }
    let bytes = match &c.raw.bytes {
        None => DEFAULT_TRANSFER_BYTES,
        Some(b) => match u64::try_from(*b.get_ref()) {
            Ok(n) if (64 << 10..=MAX_TRANSFER_BYTES).contains(&n) => n,
            _ => {
                p.push(
                    Problem::new(format!("`bytes = {}` is out of range", b.get_ref()), span_of(b)).help(format!(
                        "give {} to {MAX_TRANSFER_BYTES} bytes, or leave it out for {DEFAULT_TRANSFER_BYTES}",
                        64 << 10
                    )),
                );
                DEFAULT_TRANSFER_BYTES
            }
        },
    };
    let (from, to, network) = (from.into_inner(), to.into_inner(), network.into_inner());
    if c.raw.kind.get_ref() == "mtu" {
        return Some(CheckKind::Mtu {
            from,
            to,
            network,
            bytes,
        });
    }
    let percent = match &c.raw.percent {
        None => DEFAULT_LOSS_PERCENT,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=50).contains(&v) => v,
            _ => {
                p.push(
                    Problem::new(format!("`percent = {}` is out of range", n.get_ref()), span_of(n))
                        .help("give 1 to 50 (a share of packets dropped; more is an outage, which `partition` checks)"),
                );
                DEFAULT_LOSS_PERCENT
            }
        },
    };
    Some(CheckKind::PacketLoss {
        from,
        to,
        network,
        percent,
        bytes,
    })
}

fn partition(p: &mut Parser, c: &mut CheckInput<'_>) -> Option<CheckKind> {
    let (cut, from, network, target) = (
        take(&mut c.raw.nodes),
        take(&mut c.raw.from),
        take(&mut c.raw.network),
        take(&mut c.raw.target),
    );
    p.known_node(&from, c.declared.nodes);
    p.known_networks(std::slice::from_ref(&network), c.declared.networks, true);
    let known_target = c.declared.services.iter().any(|s| &s.name == target.get_ref())
        || c.declared
            .containers
            .iter()
            .any(|x| &x.name == target.get_ref() || x.aliases.contains(target.get_ref()));
    if !known_target {
        p.push(
            Problem::new(
                format!("target `{}` is neither a service nor a container", target.get_ref()),
                span_of(&target),
            )
            .help("name a declared service or container (or a container's alias)"),
        );
    }
    let cut_span = span_of(&cut);
    let cut: Vec<String> = cut
        .into_inner()
        .into_iter()
        .filter(|n| p.known_node(n, c.declared.nodes))
        .map(|n| n.into_inner())
        .collect();
    partition_sides(p, &cut, c.declared.nodes, cut_span.or(Some(c.span.clone())));
    Some(CheckKind::Partition {
        nodes: cut,
        from: from.into_inner(),
        network: network.into_inner(),
        target: target.into_inner(),
    })
}

/// A partition cuts `cut` from the rest; the rest keeps the swarm: the first manager
/// (the harness talks to the swarm through it) and most managers.
fn partition_sides(p: &mut Parser, cut: &[String], nodes: &[Node], span: Option<Range<usize>>) {
    if cut.is_empty() || cut.len() >= nodes.len() {
        p.push(
            Problem::new(
                format!("a partition cuts {} of {} node(s)", cut.len(), nodes.len()),
                span.clone(),
            )
            .help("list the nodes on one side in `nodes`; the other side keeps the rest"),
        );
        return;
    }
    let managers: Vec<&Node> = nodes.iter().filter(|n| n.role == Role::Manager).collect();
    if let Some(first) = managers.first()
        && cut.contains(&first.name)
    {
        p.push(
            Problem::new(format!("`nodes` holds {}, the first manager", first.name), span.clone())
                .help("the harness talks to the swarm through the first manager: cut other nodes"),
        );
    }
    let cut_managers = managers.iter().filter(|m| cut.contains(&m.name)).count();
    if cut_managers * 2 >= managers.len() && cut_managers > 0 {
        p.push(
            Problem::new(
                format!(
                    "the cut takes {cut_managers} of {} manager(s): the rest loses quorum",
                    managers.len()
                ),
                span,
            )
            .help("cut fewer managers (losing quorum is what `quorum` checks)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_kinds::{CHECK_KINDS, COMMON_CHECK_KEYS};

    #[test]
    fn every_kind_has_a_validator_and_no_other_is_registered() {
        let names: Vec<&str> = VALIDATORS.iter().map(|(n, _)| *n).collect();
        let known: Vec<&str> = CHECK_KINDS.iter().map(|k| k.name).collect();
        assert_eq!(names, known);
    }

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
}
