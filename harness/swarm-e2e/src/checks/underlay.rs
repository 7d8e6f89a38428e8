//! Diagnosis of the underlay between nodes, through the Engine API only: a short-lived
//! host-network helper container (the busybox test image) on a node reads what the
//! node's kernel says. The same code works on every target, real droplets included.

use std::collections::BTreeSet;

use swarm_e2e_model::BUSYBOX;

use super::CheckEnv;
use super::probe::{exec, remove_probe, run_container, service_tasks, state_of};
use bollard::models::TaskState;

/// Bytes VXLAN over IPv4 adds to an overlay packet: inner Ethernet 14, VXLAN 8, UDP 8,
/// IP 20.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Runs `script` with `sh -c` in a host-network helper on `node`; returns its output.
pub(super) async fn on_host(env: &CheckEnv, node: &str, tag: &str, script: &str) -> anyhow::Result<String> {
    let docker = &env.cluster.node(node).docker;
    let helper = run_container(
        docker,
        &env.cluster.run_id,
        &format!("underlay-{tag}"),
        &env.image(BUSYBOX),
        &["top".to_string()],
        Some("host"),
    )
    .await?;
    let result = exec(docker, &helper, &["sh", "-c", script]).await;
    let _ = remove_probe(docker, &helper).await;
    let (code, out) = result?;
    if code != 0 {
        anyhow::bail!("exit {code}: {}", out.trim());
    }
    Ok(out)
}

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

/// Whether gossip between `a` and `b` is cut, as the overlay's peer lists show it:
/// each side must list the other (both take part in `network`).
pub(super) async fn gossip_cause(env: &CheckEnv, a: &str, b: &str, network: &str) -> Option<String> {
    if env.scenario.topology == swarm_e2e_model::Topology::Classic {
        // Classic overlays learn peers from the cluster store, not from swarm gossip.
        return None;
    }
    for (seer, seen) in [(a, b), (b, a)] {
        let address = env.cluster.node(seen).address.to_string();
        match peers_seen(env, seer, network).await {
            Ok(peers) if !peers.contains(&address) => {
                let list: Vec<&str> = peers.iter().map(String::as_str).collect();
                return Some(format!(
                    "cause: gossip (tcp+udp/7946) between {a} and {b} is cut: {seer} lists {network}'s peers as [{}], \
                     without {seen} ({address})",
                    list.join(", ")
                ));
            }
            _ => {}
        }
    }
    None
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
    if let Some(cause) = gossip_cause(env, from, node, network).await {
        return cause;
    }
    let address = env.cluster.node(node).address;
    if let Err(e) = on_host(env, from, check, &format!("ping -c 1 -W 2 {address}")).await {
        return format!("cause: the underlay does not carry ICMP from {from} to {node} ({address}): {e:#}");
    }
    super::datapath::vxlan_cause(env, from, &others, pinger).await
}
