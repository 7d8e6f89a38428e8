//! Diagnosis of the underlay between nodes, through the Engine API only: a short-lived
//! host-network helper container (the busybox test image) on a node reads what the
//! node's kernel says. The same code works on every target, real droplets included.

use std::collections::BTreeSet;

use super::CheckEnv;
use super::probe::{on_host, service_tasks, state_of};
use bollard::models::TaskState;

/// Bytes VXLAN over IPv4 adds to an overlay packet: inner Ethernet 14, VXLAN 8, UDP 8,
/// IP 20.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The nodes `target` (a service, a container or a container's alias) runs on.
pub(super) async fn nodes_of(env: &CheckEnv, target: &str) -> Vec<String> {
    if env.scenario.service(target).is_some() {
        let names = env.cluster.names_by_id();
        let tasks = service_tasks(&env.cluster.manager().docker, target)
            .await
            .unwrap_or_default();
        return tasks
            .iter()
            .filter(|t| state_of(t) == TaskState::RUNNING)
            .map(|t| super::probe::node_of(t, &names))
            .filter(|n| !n.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    env.scenario
        .containers
        .iter()
        .filter(|c| c.name == target || c.aliases.iter().any(|a| a == target))
        .map(|c| c.node.clone())
        .collect()
}

/// A node's underlay interface (the one holding the address the cluster knows it by)
/// and its MTU.
async fn underlay_mtu(env: &CheckEnv, node: &str, tag: &str) -> anyhow::Result<(String, u32)> {
    let address = env.cluster.node(node).address;
    let script = format!(
        "{}; echo \"$dev $(cat /sys/class/net/$dev/mtu)\"",
        crate::netfault::underlay_dev(address)
    );
    let out = on_host(env, node, tag, &script).await?;
    let mut words = out.split_whitespace();
    match (words.next(), words.next().and_then(|m| m.parse().ok())) {
        (Some(dev), Some(mtu)) => Ok((dev.to_string(), mtu)),
        _ => anyhow::bail!("unreadable answer {:?}", out.trim()),
    }
}

/// Why packets of `overlay_mtu` bytes are lost between `nodes`: the first node whose
/// underlay cannot carry them with VXLAN's overhead, or what was ruled out.
pub(super) async fn mtu_cause(env: &CheckEnv, check: &str, nodes: &[String], overlay_mtu: u32) -> String {
    let needed = overlay_mtu + VXLAN_OVERHEAD;
    let mut seen = Vec::new();
    for node in nodes {
        match underlay_mtu(env, node, check).await {
            Ok((dev, mtu)) if mtu < needed => {
                return format!(
                    "cause: the underlay MTU of {node} is {mtu} ({dev}), below the {needed} bytes the overlay's \
                     {overlay_mtu}-byte packets need with VXLAN's {VXLAN_OVERHEAD}: packets over {} bytes are lost",
                    mtu.saturating_sub(VXLAN_OVERHEAD)
                );
            }
            Ok((dev, mtu)) => seen.push(format!("{node} {dev} {mtu}")),
            Err(e) => seen.push(format!("{node}: not read ({e:#})")),
        }
    }
    format!(
        "cause not found: every node's underlay carries {needed} bytes ({}); something between them drops large \
         or fragmented packets",
        seen.join(", ")
    )
}

/// The overlay's peers as `node` sees them (gossip's view): their addresses.
async fn peers_seen(env: &CheckEnv, node: &str, network: &str) -> anyhow::Result<BTreeSet<String>> {
    let inspected = env
        .cluster
        .node(node)
        .docker
        .inspect_network(network, None::<bollard::query_parameters::InspectNetworkOptions>)
        .await?;
    Ok(inspected
        .peers
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.ip)
        .collect())
}

/// What gossip between two nodes on an overlay shows.
pub(super) enum Gossip {
    /// Each lists the other (or the topology learns peers another way).
    Learned,
    /// A list lacks the other and the path says why (tcp/7946 does not connect, or a
    /// firewall rule dropped gossip): final, worth failing at once.
    Cut(String),
    /// A list lacks the other, yet nothing blocks gossip: it has not converged (yet).
    /// A cause only once the check's bound ran out.
    Unlearned(String),
}

/// Whether `a` and `b` know each other on `network`, as their peer lists show it (each
/// must list the other: both take part in `network`); when not, whether the path is
/// cut. A missing peer alone is no cut: a node that just joined the swarm (or rejoined
/// it after a leave) can take several seconds to be gossiped about.
pub(super) async fn gossip_between(env: &CheckEnv, a: &str, b: &str, network: &str) -> Gossip {
    if env.scenario.topology == swarm_e2e_model::Topology::Classic {
        // Classic overlays learn peers from the cluster store, not from swarm gossip.
        return Gossip::Learned;
    }
    for (seer, seen) in [(a, b), (b, a)] {
        let address = env.cluster.node(seen).address.to_string();
        match peers_seen(env, seer, network).await {
            Ok(peers) if !peers.contains(&address) => {
                let view = if peers.is_empty() {
                    format!(
                        "{seer} lists no peer of {network}, not even itself: it has not joined the network's gossip"
                    )
                } else {
                    let list: Vec<&str> = peers.iter().map(String::as_str).collect();
                    format!(
                        "{seer} lists {network}'s peers as [{}], without {seen} ({address})",
                        list.join(", ")
                    )
                };
                let (peer, both) = ([seen], [seer, seen]);
                let (blocked, dropped) = futures_util::join!(
                    super::datapath::gossip_blocked(env, seer, &peer),
                    super::datapath::gossip_dropped(env, &both)
                );
                if !blocked.is_empty() || !dropped.is_empty() {
                    return Gossip::Cut(format!(
                        "cause: gossip (tcp+udp/7946) between {a} and {b} is cut: {view}{blocked}{dropped}"
                    ));
                }
                return Gossip::Unlearned(format!(
                    "cause: {view}, though gossip (tcp/7946) connects both ways between {a} and {b} and no firewall \
                     rule dropped it: the overlay's gossip has not converged (an engine that left a swarm with \
                     containers still on its overlays and joined another can stay so until it restarts: \
                     moby/moby#30314)"
                ));
            }
            _ => {}
        }
    }
    Gossip::Learned
}

/// Why overlay packets between `from` and the nodes `to` get no reply: gossip first
/// (the peer lists), then the underlay (ICMP between the hosts), then the VXLAN packets
/// themselves, counted on both sides while `pinger` pings again.
pub(super) async fn path_cause(
    env: &CheckEnv,
    check: &str,
    from: &str,
    to: &[String],
    network: &str,
    pinger: &super::datapath::Pinger<'_>,
) -> String {
    let others: Vec<&str> = to.iter().map(String::as_str).filter(|n| *n != from).collect();
    let Some(node) = others.first().copied() else {
        return "cause not found: the target runs on the probing node itself, so no packet crossed the underlay"
            .to_string();
    };
    // After the wait for a reply, a peer still not learned is the cause too.
    if let Gossip::Cut(cause) | Gossip::Unlearned(cause) = gossip_between(env, from, node, network).await {
        return cause;
    }
    let address = env.cluster.node(node).address;
    if let Err(e) = on_host(env, from, check, &format!("ping -c 1 -W 2 {address}")).await {
        return format!("cause: the underlay does not carry ICMP from {from} to {node} ({address}): {e:#}");
    }
    super::datapath::vxlan_cause(env, from, &others, pinger).await
}
