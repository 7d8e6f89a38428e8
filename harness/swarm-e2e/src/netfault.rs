//! Faults of a node's underlay, made through the node's own Engine API: a short-lived
//! helper container (the busybox test image) in the node's network and PID namespaces
//! changes the underlay interface with busybox's `ip`, and runs the node's own
//! `iptables` by entering the mount namespace of the node's PID 1 (`nsenter`). Node
//! containers, the fake's droplets, real droplets and the user's engines are all
//! reached the same way; nothing needs a shell on the host.
//!
//! Every rule goes into chains of ours (jumped to first from INPUT and OUTPUT), so
//! [`heal`] removes all of them at once and leaves the node's own rules as they were.
//! A chaos check's rules and the faults the project's tests break a cluster with live
//! in separate chains: healing after a check leaves the injected faults in place.

use std::net::IpAddr;

use anyhow::Context;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use crate::cluster::EngineNode;
use crate::engine::exec;

/// Whose rules a chain holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A chaos check's, removed when it ends.
    Check,
    /// The run's injected faults (`--inject-fault`), kept until teardown.
    Run,
}

impl Owner {
    /// The inbound and outbound chains.
    fn chains(self) -> (&'static str, &'static str) {
        match self {
            Owner::Check => ("SWARM-E2E-CHAOS-IN", "SWARM-E2E-CHAOS-OUT"),
            Owner::Run => ("SWARM-E2E-FAULT-IN", "SWARM-E2E-FAULT-OUT"),
        }
    }
}

/// A fault of one node's underlay.
#[derive(Debug, Clone, PartialEq)]
pub enum UnderlayFault {
    /// The interface holding the node's address carries at most this many bytes.
    Mtu(u32),
    /// Inbound packets to this UDP/TCP port are dropped.
    DropInbound { proto: &'static str, port: u16 },
    /// Nothing is sent to or received from these addresses (one side of a partition).
    Cut(Vec<IpAddr>),
    /// This share (percent) of the overlay's data-path packets (udp/4789, VXLAN) from
    /// these addresses (none: from anywhere) is dropped on arrival (iptables' statistic match: the kernel may
    /// have no netem). Gossip and the managers' traffic are spared: losing them is a
    /// different fault (see `DropInbound`), which memberlist reacts to by itself.
    Loss { percent: u32, from: Vec<IpAddr> },
}

impl std::fmt::Display for UnderlayFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |a: &[IpAddr]| a.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
        match self {
            UnderlayFault::Mtu(m) => write!(f, "underlay MTU {m}"),
            UnderlayFault::DropInbound { proto, port } => write!(f, "inbound {proto}/{port} dropped"),
            UnderlayFault::Cut(a) => write!(f, "cut from [{}]", list(a)),
            UnderlayFault::Loss { percent, from } if from.is_empty() => {
                write!(f, "{percent}% of arriving VXLAN packets dropped")
            }
            UnderlayFault::Loss { percent, from } => {
                write!(f, "{percent}% of VXLAN packets from [{}] dropped", list(from))
            }
        }
    }
}

/// Runs a command of the node's own in the mount and network namespaces of its PID 1.
macro_rules! in_node {
    () => {
        "nsenter -t 1 -m -n -- "
    };
}
pub(crate) use in_node;

/// The node's `iptables`, run in the namespaces of its PID 1.
pub(crate) const IPTABLES: &str = concat!(in_node!(), "iptables -w 5");

/// Creates `owner`'s chains and the jumps to them (idempotent).
fn chains(owner: Owner) -> String {
    let (chain_in, chain_out) = owner.chains();
    format!(
        "for c in {chain_in}:INPUT {chain_out}:OUTPUT; do chain=${{c%%:*}}; hook=${{c##*:}}; \
         {IPTABLES} -N $chain 2>/dev/null; \
         {IPTABLES} -C $hook -j $chain 2>/dev/null || {IPTABLES} -I $hook 1 -j $chain || exit 1; done"
    )
}

/// The shell (busybox `sh` and `ip`) that finds the interface holding `address` into
/// `$dev`, or exits 1 saying none does.
pub(crate) fn underlay_dev(address: IpAddr) -> String {
    format!(
        "dev=$(ip -o addr show | while read -r _ d _ a _; do [ \"${{a%/*}}\" = {address} ] && echo \"${{d%%@*}}\" && break; done); \
         [ -n \"$dev\" ] || {{ echo 'no interface holds {address}'; exit 1; }}"
    )
}

fn script(node: &EngineNode, fault: &UnderlayFault, owner: Owner) -> String {
    let (chain_in, chain_out) = owner.chains();
    let rules = |chain: &str, rules: Vec<String>| {
        rules
            .iter()
            .map(|r| format!("{IPTABLES} -A {chain} {r}"))
            .collect::<Vec<_>>()
            .join(" && ")
    };
    match fault {
        UnderlayFault::Mtu(mtu) => format!("{}; ip link set \"$dev\" mtu {mtu}", underlay_dev(node.address)),
        UnderlayFault::DropInbound { proto, port } => format!(
            "{} && {}",
            chains(owner),
            rules(chain_in, vec![format!("-p {proto} --dport {port} -j DROP")])
        ),
        UnderlayFault::Cut(peers) => format!(
            "{} && {} && {}",
            chains(owner),
            rules(chain_in, peers.iter().map(|p| format!("-s {p} -j DROP")).collect()),
            rules(chain_out, peers.iter().map(|p| format!("-d {p} -j DROP")).collect()),
        ),
        UnderlayFault::Loss { percent, from } => {
            let p = f64::from((*percent).min(100)) / 100.0;
            let drop = format!("-p udp --dport 4789 -m statistic --mode random --probability {p:.2} -j DROP");
            let sources: Vec<String> = match from.as_slice() {
                [] => vec![drop],
                from => from.iter().map(|a| format!("-s {a} {drop}")).collect(),
            };
            format!("{} && {}", chains(owner), rules(chain_in, sources))
        }
    }
}

/// Applies `fault` to `node`'s underlay.
pub async fn inject(
    node: &EngineNode,
    run_id: &str,
    image: &str,
    fault: &UnderlayFault,
    owner: Owner,
) -> anyhow::Result<()> {
    as_root(&node.docker, run_id, image, &script(node, fault, owner))
        .await
        .map(drop)
        .with_context(|| format!("injecting a fault into {}'s underlay ({fault})", node.name))
}

/// Removes every rule a chaos check added on `node`.
pub async fn heal(node: &EngineNode, run_id: &str, image: &str) -> anyhow::Result<()> {
    let (chain_in, chain_out) = Owner::Check.chains();
    let script = format!(
        "for c in {chain_in}:INPUT {chain_out}:OUTPUT; do chain=${{c%%:*}}; hook=${{c##*:}}; \
         while {IPTABLES} -D $hook -j $chain 2>/dev/null; do :; done; \
         {IPTABLES} -F $chain 2>/dev/null; {IPTABLES} -X $chain 2>/dev/null; done; \
         ! {IPTABLES} -S 2>/dev/null | grep -q -- '-N SWARM-E2E-CHAOS-'"
    );
    as_root(&node.docker, run_id, image, &script)
        .await
        .map(drop)
        .with_context(|| format!("removing the injected faults from {}'s underlay", node.name))
}

/// How many packets a chaos check's inbound rules on `node` dropped so far.
pub async fn dropped(node: &EngineNode, run_id: &str, image: &str) -> anyhow::Result<u64> {
    let chain_in = Owner::Check.chains().0;
    let script = format!("{IPTABLES} -L {chain_in} -v -x -n | awk 'NR > 2 {{ n += $1 }} END {{ print n + 0 }}'");
    let out = as_root(&node.docker, run_id, image, &script).await?;
    out.trim()
        .parse()
        .with_context(|| format!("reading {}'s drop counters: {:?}", node.name, out.trim()))
}

/// Runs `script` in a helper with the node's network and PID namespaces and the
/// capabilities to change them; returns its output.
pub async fn as_root(docker: &Docker, run_id: &str, image: &str, script: &str) -> anyhow::Result<String> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["top".into()]),
        labels: Some(crate::marks::workload_labels(run_id)),
        host_config: Some(HostConfig {
            init: Some(true),
            network_mode: Some("host".into()),
            pid_mode: Some("host".into()),
            cap_add: Some(vec!["NET_ADMIN".into(), "SYS_ADMIN".into(), "SYS_PTRACE".into()]),
            security_opt: Some(vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Several helpers may run on one node at once (a heal beside an inject).
    let name = format!("netfault-{}", crate::marks::new_run_id());
    let created = docker
        .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
        .await?;
    let result = async {
        docker.start_container(&created.id, None).await?;
        exec(docker, &created.id, &["sh", "-c", script]).await
    }
    .await;
    let _ = crate::engine::remove_forced(docker, &created.id).await;
    let (code, out) = result?;
    if code != 0 {
        anyhow::bail!("exit {code}: {}", out.trim());
    }
    Ok(out)
}

/// Heals every node of the run (after a chaos check, also when it failed).
pub async fn heal_all(nodes: &[&EngineNode], run_id: &str, image: &str) -> Result<(), String> {
    let healed = futures_util::future::join_all(nodes.iter().map(|n| heal(n, run_id, image))).await;
    let errors: Vec<String> = healed
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
