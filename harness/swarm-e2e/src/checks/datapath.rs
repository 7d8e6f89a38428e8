//! Where overlay packets stop between two nodes, counted rather than guessed: while the
//! probe pings its target again, each node counts the VXLAN packets (udp/4789) it sends
//! to and receives from the other (iptables counters in the raw table, which sees a
//! packet before any filter rule can drop it), and every DROP/REJECT rule of the nodes'
//! filter tables that matched meanwhile is named. "The sender sends nothing", "nothing
//! arrives", "it arrives and the node's firewall drops it" and "it arrives and nothing
//! answers" are different faults with different fixes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::Docker;
use futures_util::future::join_all;

use super::CheckEnv;
use super::probe::exec;
use crate::netfault::{IPTABLES, as_root};

/// The overlay's data-path port (VXLAN).
const VXLAN_PORT: u16 = 4789;
/// The engines' gossip port (swarm networkdb and the classic overlay's serf).
const GOSSIP_PORT: u16 = 7946;

/// A probe that pings `target` from inside the overlay (its container on the sending
/// node), again while the packets are counted.
pub(super) struct Pinger<'a> {
    pub docker: &'a Docker,
    pub probe: &'a str,
    pub target: &'a str,
}

/// What one node counted toward and from one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    sent: u64,
    received: u64,
}

/// Counters on one node: per peer, and the drop rules' matches (rule text -> packets).
#[derive(Debug, Default)]
struct Reading {
    peers: Vec<Count>,
    drops: HashMap<String, u64>,
}

impl Reading {
    /// The drop rules that matched and can match packets of `proto`/`port`.
    fn drops_of(&self, proto: &str, port: u16) -> Vec<&str> {
        let mut rules: Vec<&str> = (self.drops.keys())
            .map(String::as_str)
            .filter(|r| can_match(r, proto, port))
            .collect();
        rules.sort();
        rules
    }
}

/// Whether a rule (iptables-save syntax) can match `proto` packets to `port`: it names
/// no other protocol and no destination port set without `port`.
fn can_match(rule: &str, proto: &str, port: u16) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let value = |flag: &str| words.windows(2).find(|w| w[0] == flag).map(|w| w[1]);
    if value("-p").is_some_and(|p| p != proto) {
        return false;
    }
    let ports = value("--dport").or_else(|| value("--dports"));
    ports.is_none_or(|list| {
        list.split(',').any(|p| match p.split_once(':') {
            Some((lo, hi)) => lo.parse().is_ok_and(|lo: u16| lo <= port) && hi.parse().is_ok_and(|hi: u16| port <= hi),
            None => p.parse() == Ok(port),
        })
    })
}

/// Runs the ping from `pinger` while `from` and the nodes in `to` count their VXLAN
/// packets to each other; returns the cause the counts show (a line starting with
/// `cause:` or `cause not found:`).
pub(super) async fn vxlan_cause(env: &CheckEnv, from: &str, to: &[&str], pinger: &Pinger<'_>) -> String {
    // Three pings, a second apart, each waiting a second for its reply.
    let counted = counted(env, from, to, pinger, &["-c", "3", "-W", "1"]).await;
    let (answered, readings) = match counted {
        Ok(c) => c,
        Err(e) => return not_counted(from, to, e),
    };
    if answered {
        return format!(
            "cause not found: the ping got its replies when it was tried again while the packets were counted: \
             the loss was transient ({})",
            summary(from, to, &readings)
        );
    }
    classify(env, from, to, &readings).await
}

fn not_counted(from: &str, to: &[&str], e: anyhow::Error) -> String {
    format!(
        "cause not found: the VXLAN packets between {from} and {} could not be counted: {e:#}",
        to.join(", ")
    )
}

/// Where a lossy path loses its packets: `pinger` sends a burst again (`ping_args`) while
/// `from` and `to` count their VXLAN packets; the direction that loses most is named,
/// with the firewall rules that dropped them.
pub(super) async fn loss_cause(
    env: &CheckEnv,
    from: &str,
    to: &[&str],
    pinger: &Pinger<'_>,
    ping_args: &[&str],
) -> String {
    match counted(env, from, to, pinger, ping_args).await {
        Ok((_, readings)) => attribute_loss(from, to, &readings),
        Err(e) => not_counted(from, to, e),
    }
}

/// The direction between `from` and a peer that lost the most VXLAN packets: on the
/// wire (sent, never counted on arrival) or in the receiver's firewall (counted on
/// arrival by the raw table, dropped by a filter rule after).
fn attribute_loss(from: &str, to: &[&str], readings: &[Reading]) -> String {
    let sender = &readings[0];
    let mut worst: Option<(u64, String)> = None;
    for (i, peer) in to.iter().enumerate() {
        let (out, back) = (sender.peers[i], readings[i + 1].peers[0]);
        let there = (from, *peer, out.sent, back.received, &readings[i + 1]);
        let home = (*peer, from, back.sent, out.received, sender);
        for (a, b, sent, arrived, at_b) in [there, home] {
            let rules = at_b.drops_of("udp", VXLAN_PORT);
            let dropped: u64 = rules.iter().map(|r| at_b.drops[*r]).sum();
            let on_wire = sent.saturating_sub(arrived);
            let lost = on_wire + dropped;
            if lost == 0 || worst.as_ref().is_some_and(|(w, _)| lost <= *w) {
                continue;
            }
            let said = if dropped > 0 {
                format!(
                    "cause: {b}'s firewall drops VXLAN packets (udp/{VXLAN_PORT}) from {a}: {a} sent {sent}, \
                     {arrived} arrived, {dropped} dropped at {b}{}",
                    firewall(b, &rules, "them")
                )
            } else {
                format!(
                    "cause: VXLAN packets (udp/{VXLAN_PORT}) from {a} to {b} are lost on the way: {a} sent {sent}, \
                     {arrived} arrived at {b} (no firewall rule of {b} dropped them)"
                )
            };
            worst = Some((lost, said));
        }
    }
    match worst {
        Some((_, said)) => format!("{said}; {}", summary(from, to, readings)),
        None => format!(
            "cause not found: every VXLAN packet of a second burst crossed both ways ({}): the loss was \
             transient, or inside an overlay's namespace or the target's container",
            summary(from, to, readings)
        ),
    }
}

/// Counts the VXLAN packets between `from` and `to` while `pinger` pings with
/// `ping_args`; whether the ping got its replies, and each node's reading (`from` first).
async fn counted(
    env: &CheckEnv,
    from: &str,
    to: &[&str],
    pinger: &Pinger<'_>,
    ping_args: &[&str],
) -> anyhow::Result<(bool, Vec<Reading>)> {
    let chain = format!("SWARM-E2E-D-{}", crate::marks::new_run_id());
    let address = |n: &str| env.cluster.node(n).address;
    let from_peers: Vec<IpAddr> = to.iter().map(|n| address(n)).collect();
    let mut nodes: Vec<(&str, Vec<IpAddr>)> = vec![(from, from_peers)];
    nodes.extend(to.iter().map(|n| (*n, vec![address(from)])));
    let image = env.image(swarm_e2e_model::BUSYBOX);
    let run_id = &env.cluster.run_id;
    let guard = Uncount {
        cluster: env.cluster.clone(),
        nodes: nodes.iter().map(|(n, _)| n.to_string()).collect(),
        chain: chain.clone(),
        image: image.clone(),
        armed: true,
    };
    let (image, chain) = (&image, &chain);
    let before = join_all(nodes.iter().map(|(n, peers)| async move {
        as_root(&env.cluster.node(n).docker, run_id, image, &install(chain, peers)).await
    }))
    .await;
    let mut before_drops = Vec::new();
    for (r, (n, _)) in before.into_iter().zip(&nodes) {
        let out = r.map_err(|e| anyhow::anyhow!("installing the counters on {n}: {e:#}"))?;
        before_drops.push(drop_counts(&out));
    }
    let mut args = vec!["ping"];
    args.extend(ping_args);
    args.push(pinger.target);
    let pinged = exec(pinger.docker, pinger.probe, &args).await;
    let script = read_and_remove(chain);
    let after = join_all(
        nodes
            .iter()
            .map(|(n, _)| as_root(&env.cluster.node(n).docker, run_id, image, &script)),
    )
    .await;
    guard.disarm();
    let mut readings = Vec::new();
    for ((r, (n, peers)), before) in after.into_iter().zip(&nodes).zip(before_drops) {
        let out = r.map_err(|e| anyhow::anyhow!("reading the counters on {n}: {e:#}"))?;
        let mut reading = parse_reading(&out, peers.len())
            .ok_or_else(|| anyhow::anyhow!("unreadable counters on {n}: {:?}", out.trim()))?;
        // What each rule dropped meanwhile.
        for (rule, after) in reading.drops.iter_mut() {
            *after = after.saturating_sub(before.get(rule).copied().unwrap_or(0));
        }
        reading.drops.retain(|_, dropped| *dropped > 0);
        readings.push(reading);
    }
    Ok((matches!(pinged, Ok((0, _))), readings))
}

/// Why the counts say the pings got no reply.
async fn classify(env: &CheckEnv, from: &str, to: &[&str], readings: &[Reading]) -> String {
    let sender = &readings[0];
    fn data(r: &Reading) -> Vec<&str> {
        r.drops_of("udp", VXLAN_PORT)
    }
    let gossip = |nodes: &[(&str, &Reading)]| -> String {
        (nodes.iter())
            .map(|(n, r)| {
                firewall(
                    n,
                    &[r.drops_of("tcp", GOSSIP_PORT), r.drops_of("udp", GOSSIP_PORT)].concat(),
                    "gossip",
                )
            })
            .collect()
    };
    let Some(i) = sender.peers.iter().position(|c| c.sent > 0) else {
        let learned = learned_by(env);
        let seen: Vec<(&str, &Reading)> = std::iter::once(from).chain(to.iter().copied()).zip(readings).collect();
        return format!(
            "cause: {from} sends no VXLAN packet (udp/{VXLAN_PORT}) to {} while its probe pings: {from}'s overlay \
             has no entry for where the target runs ({learned}){}{}",
            to.join(", "),
            gossip_blocked(env, from, to).await,
            gossip(&seen)
        );
    };
    let (peer, out, back) = (to[i], sender.peers[i], &readings[i + 1]);
    let at_peer = back.peers[0];
    if at_peer.received == 0 {
        return format!(
            "cause: udp/{VXLAN_PORT} from {from} to {peer} is dropped (VXLAN data path): {from} sent {} packet(s), \
             none arrived at {peer}{}",
            out.sent,
            firewall(from, &data(sender), "them")
        );
    }
    if at_peer.sent == 0 {
        if !data(back).is_empty() {
            return format!(
                "cause: udp/{VXLAN_PORT} from {from} to {peer} is dropped by {peer}'s firewall: {} packet(s) \
                 arrived, none was answered{}",
                at_peer.received,
                firewall(peer, &data(back), "them")
            );
        }
        let learned = learned_by(env);
        return format!(
            "cause: {peer} receives {from}'s VXLAN packets ({} of {}) but sends nothing back: {peer}'s overlay has \
             no entry for the probe on {from} ({learned}){}{}",
            at_peer.received,
            out.sent,
            gossip_blocked(env, peer, &[from]).await,
            gossip(&[(peer, back), (from, sender)])
        );
    }
    if out.received == 0 {
        return format!(
            "cause: udp/{VXLAN_PORT} from {peer} to {from} is dropped (VXLAN data path): {peer} answered with {} \
             packet(s), none arrived at {from}{}",
            at_peer.sent,
            firewall(peer, &data(back), "them")
        );
    }
    if !data(sender).is_empty() {
        return format!(
            "cause: {from}'s firewall drops the replies from {peer}: {} VXLAN packet(s) arrived{}",
            out.received,
            firewall(from, &data(sender), "them")
        );
    }
    format!(
        "cause not found: VXLAN packets cross both ways ({}), yet the probe gets no reply: they are lost inside an \
         overlay's namespace or the target's container",
        summary(from, to, readings)
    )
}

/// How the sending node learns where overlay addresses live.
fn learned_by(env: &CheckEnv) -> &'static str {
    match env.scenario.topology {
        swarm_e2e_model::Topology::Classic => {
            "a classic overlay learns its peers from the other engines over serf gossip, tcp+udp/7946"
        }
        swarm_e2e_model::Topology::Swarm => "an overlay learns its peers by swarm gossip, tcp+udp/7946",
    }
}

/// `; gossip (tcp/7946) from X to Y does not connect` for each direction between
/// `node` and `peers` that does not.
pub(super) async fn gossip_blocked(env: &CheckEnv, node: &str, peers: &[&str]) -> String {
    let pairs: Vec<(&str, &str)> = peers.iter().flat_map(|p| [(node, *p), (*p, node)]).collect();
    let tries = join_all(pairs.into_iter().map(|(from, to)| async move {
        let address = env.cluster.node(to).address;
        match tcp_connects(env, from, to, GOSSIP_PORT, "gossip").await {
            Ok(()) | Err(TcpTry::NotRun(_)) => None,
            Err(TcpTry::Refused(why)) => Some(format!(
                "; gossip (tcp/{GOSSIP_PORT}) from {from} to {to} ({address}) does not connect: {why}"
            )),
        }
    }))
    .await;
    tries.into_iter().flatten().collect()
}

/// Why a TCP connection did not open.
pub(super) enum TcpTry {
    /// It was tried and did not open (what `nc` said, and its exit code).
    Refused(String),
    /// The helper container that tries it did not run.
    NotRun(String),
}

/// Whether a TCP connection from `from`'s own network stack to `to`'s address on `port`
/// opens (a host-network helper on `from`, through its engine).
pub(super) async fn tcp_connects(env: &CheckEnv, from: &str, to: &str, port: u16, tag: &str) -> Result<(), TcpTry> {
    let address = env.cluster.node(to).address;
    // busybox `nc` has no -z: connected, it waits for input; `timeout` ends it then
    // (exit 143), while a connection that does not open exits 1 within `-w`.
    let script = format!("timeout 4 nc -w 2 {address} {port} </dev/null; echo \"rc=$?\"");
    match super::probe::on_host(env, from, tag, &script).await {
        Ok(o) if o.contains("rc=0") || o.contains("rc=143") => Ok(()),
        Ok(o) => Err(TcpTry::Refused(
            o.replace("rc=", "exit ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )),
        Err(e) => Err(TcpTry::NotRun(format!("{e:#}"))),
    }
}

/// `; X's firewall rules that dropped gossip: ...` for each of `nodes` whose filter
/// table has a DROP or REJECT rule that can match tcp or udp/7946 and matched packets
/// (udp is not probed by connecting: a rule that dropped it is the evidence).
pub(super) async fn gossip_dropped(env: &CheckEnv, nodes: &[&str]) -> String {
    let gossip = [("tcp", GOSSIP_PORT), ("udp", GOSSIP_PORT)];
    let mut found = String::new();
    for (node, rules) in nodes.iter().zip(rules_that_dropped(env, nodes, &gossip).await) {
        if !rules.is_empty() {
            found.push_str(&format!(
                "; {node}'s firewall rules that dropped gossip: {}",
                rules.join(", ")
            ));
        }
    }
    found
}

/// For each of `nodes`, its filter table's DROP and REJECT rules that name a port, can
/// match one of `ports` (protocol, port) and dropped packets: `` `RULE` (N packet(s)) ``,
/// sorted (none where the table could not be read).
pub(super) async fn rules_that_dropped(env: &CheckEnv, nodes: &[&str], ports: &[(&str, u16)]) -> Vec<Vec<String>> {
    let image = env.image(swarm_e2e_model::BUSYBOX);
    let saved = join_all(nodes.iter().map(|n| {
        let image = &image;
        async move { as_root(&env.cluster.node(n).docker, &env.cluster.run_id, image, SAVE_FILTER).await }
    }))
    .await;
    saved
        .into_iter()
        .map(|saved| saved.map(|s| port_drops(&s, ports)).unwrap_or_default())
        .collect()
}

/// The rules of a saved filter table (`iptables-save -c`) that name a port, can match
/// one of `ports` and dropped packets.
fn port_drops(saved: &str, ports: &[(&str, u16)]) -> Vec<String> {
    let drops = drop_counts(saved);
    let mut rules: Vec<String> = (drops.iter())
        .filter(|(rule, n)| **n > 0 && ports.iter().any(|(proto, port)| can_match(rule, proto, *port)))
        // A rule without a port (a catch-all, a policy) counts other traffic too.
        .filter(|(rule, _)| rule.contains("--dport"))
        .map(|(rule, n)| format!("`{rule}` ({n} packet(s))"))
        .collect();
    rules.sort();
    rules
}

/// `; X's firewall rules that dropped WHAT meanwhile: ...` when any did.
fn firewall(node: &str, rules: &[&str], what: &str) -> String {
    if rules.is_empty() {
        return String::new();
    }
    let rules: Vec<String> = rules.iter().map(|r| format!("`{r}`")).collect();
    format!(
        "; {node}'s firewall rules that dropped {what} meanwhile: {}",
        rules.join(", ")
    )
}

fn summary(from: &str, to: &[&str], readings: &[Reading]) -> String {
    to.iter()
        .enumerate()
        .map(|(i, peer)| {
            let (a, b) = (readings[0].peers[i], readings[i + 1].peers[0]);
            format!(
                "{from}->{peer}: {} sent, {} arrived; {peer}->{from}: {} sent, {} arrived",
                a.sent, b.received, b.sent, a.received
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Creates `chain` in the raw table with one counting rule (no target) per direction
/// and peer, jumped to first from PREROUTING and OUTPUT; prints the filter table with
/// its counters.
fn install(chain: &str, peers: &[IpAddr]) -> String {
    let raw = format!("{IPTABLES} -t raw");
    let rules: Vec<String> = peers
        .iter()
        .flat_map(|p| {
            [
                format!("{raw} -A {chain} -d {p} -p udp --dport {VXLAN_PORT}"),
                format!("{raw} -A {chain} -s {p} -p udp --dport {VXLAN_PORT}"),
            ]
        })
        .collect();
    format!(
        "{raw} -N {chain} && {} && {raw} -I PREROUTING 1 -j {chain} && {raw} -I OUTPUT 1 -j {chain} && {}",
        rules.join(" && "),
        SAVE_FILTER
    )
}

/// The filter table's rules with their counters.
const SAVE_FILTER: &str = concat!(crate::netfault::in_node!(), "iptables-save -c -t filter");

/// Prints the counters (`-L -v -x`, in rule order), then the filter table; removes the
/// chain.
fn read_and_remove(chain: &str) -> String {
    let raw = format!("{IPTABLES} -t raw");
    format!(
        "{raw} -L {chain} -v -x -n && echo '=== filter' && {SAVE_FILTER}; s=$?; \
         {raw} -D PREROUTING -j {chain}; {raw} -D OUTPUT -j {chain}; {raw} -F {chain}; {raw} -X {chain}; exit $s"
    )
}

/// The counters `read_and_remove` printed: the first column of each rule line, in
/// order (to, from) per peer.
fn parse_reading(out: &str, peers: usize) -> Option<Reading> {
    let (counters, filter) = out.split_once("=== filter")?;
    let packets: Vec<u64> = counters
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    if packets.len() != 2 * peers {
        return None;
    }
    Some(Reading {
        peers: packets
            .chunks(2)
            .map(|c| Count {
                sent: c[0],
                received: c[1],
            })
            .collect(),
        drops: drop_counts(filter),
    })
}

/// The filter table's DROP and REJECT rules (and DROP policies) on the paths into and
/// out of the node, with the packets each matched. The FORWARD path (containers on the
/// node's bridges, Docker's isolation rules) is not the overlay's and is left out.
fn drop_counts(saved: &str) -> HashMap<String, u64> {
    let mut drops = HashMap::new();
    for line in saved.lines() {
        if let Some(policy) = line.strip_prefix(':') {
            // `:INPUT DROP [12:3456]`
            let mut words = policy.split_whitespace();
            if let (Some(chain @ ("INPUT" | "OUTPUT")), Some("DROP"), Some(c)) =
                (words.next(), words.next(), words.next())
                && let Some(n) = packets(c)
            {
                drops.insert(format!("{chain} policy DROP"), n);
            }
            continue;
        }
        // `[12:3456] -A INPUT -p udp -m udp --dport 4789 -j DROP`
        let Some((c, rule)) = line.split_once(' ') else {
            continue;
        };
        let Some(n) = packets(c) else { continue };
        let chain = rule.split_whitespace().nth(1).unwrap_or("");
        let dropping = rule.ends_with("-j DROP") || rule.contains("-j REJECT");
        if dropping && !chain.starts_with("DOCKER") && chain != "FORWARD" {
            drops.insert(rule.to_string(), n);
        }
    }
    drops
}

/// `[12:3456]` -> 12.
fn packets(counter: &str) -> Option<u64> {
    counter.strip_prefix('[')?.split(':').next()?.parse().ok()
}

/// Removes the counting chain when the diagnosis's future is dropped before it did
/// (an interrupt, a bound), in a task of its own: counters do not change traffic, but
/// the user's engines must be left as they were.
struct Uncount {
    cluster: std::sync::Arc<crate::cluster::Cluster>,
    nodes: Vec<String>,
    chain: String,
    image: String,
    armed: bool,
}

impl Uncount {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Uncount {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (cluster, nodes, image) = (
            self.cluster.clone(),
            std::mem::take(&mut self.nodes),
            self.image.clone(),
        );
        let script = read_and_remove(&self.chain);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let removals = nodes
                    .iter()
                    .map(|n| as_root(&cluster.node(n).docker, &cluster.run_id, &image, &script));
                let _ = tokio::time::timeout(Duration::from_secs(20), join_all(removals)).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_matched_drop_rules_are_read_back() {
        let out = "Chain SWARM-E2E-D-x (2 references)\n    pkts      bytes target     prot opt in     out     source               destination\n       3      402            udp  --  *      *       0.0.0.0/0            10.0.0.3             udp dpt:4789\n       0        0            udp  --  *      *       10.0.0.3             0.0.0.0/0            udp dpt:4789\n=== filter\n*filter\n:INPUT ACCEPT [10:100]\n:FORWARD DROP [5:50]\n[2:300] -A SWARM-E2E-FAULT-IN -p udp -m udp --dport 4789 -j DROP\n[7:70] -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\nCOMMIT\n";
        let r = parse_reading(out, 1).expect("readable");
        assert_eq!(r.peers, vec![Count { sent: 3, received: 0 }]);
        assert_eq!(r.drops.len(), 1, "{:?}", r.drops);
        assert_eq!(r.drops["-A SWARM-E2E-FAULT-IN -p udp -m udp --dport 4789 -j DROP"], 2);
        assert!(
            parse_reading(out, 2).is_none(),
            "a missing peer's counters are an error"
        );
        assert_eq!(r.drops_of("udp", 4789).len(), 1);
        assert!(r.drops_of("udp", 7946).is_empty());
    }

    #[test]
    fn gossip_drops_are_rules_for_its_port_that_matched() {
        let saved = "*filter\n:INPUT DROP [40:4000]\n[36:2160] -A SWARM-E2E-FAULT-IN -p tcp -m tcp --dport 7946 -j DROP\n\
                     [71:9000] -A SWARM-E2E-FAULT-IN -p udp -m udp --dport 7946 -j DROP\n\
                     [0:0] -A SWARM-E2E-FAULT-OUT -p udp -m udp --dport 7946 -j DROP\n\
                     [9:900] -A INPUT -j DROP\n[5:500] -A INPUT -p udp -m udp --dport 4789 -j DROP\n\
                     [3:300] -A INPUT -p tcp -m multiport --dports 7000:8000 -j REJECT --reject-with tcp-reset\nCOMMIT\n";
        assert_eq!(
            port_drops(saved, &[("tcp", GOSSIP_PORT), ("udp", GOSSIP_PORT)]),
            vec![
                "`-A INPUT -p tcp -m multiport --dports 7000:8000 -j REJECT --reject-with tcp-reset` (3 packet(s))",
                "`-A SWARM-E2E-FAULT-IN -p tcp -m tcp --dport 7946 -j DROP` (36 packet(s))",
                "`-A SWARM-E2E-FAULT-IN -p udp -m udp --dport 7946 -j DROP` (71 packet(s))",
            ],
            "unmatched rules, catch-alls, policies and other ports are not blamed"
        );
        assert_eq!(
            port_drops(saved, &[("tcp", 2377)]),
            Vec::<String>::new(),
            "a range that does not hold the port is not blamed"
        );
    }

    #[test]
    fn a_rule_for_other_ports_or_protocols_is_not_blamed() {
        assert!(can_match("-A INPUT -j DROP", "udp", 4789));
        assert!(can_match("-A INPUT -s 10.0.0.2/32 -j DROP", "udp", 4789));
        assert!(!can_match("-A X -p udp -m udp --dport 7946 -j DROP", "udp", 4789));
        assert!(!can_match("-A X -p tcp -m tcp --dport 4789 -j DROP", "udp", 4789));
        assert!(can_match(
            "-A X -p udp -m multiport --dports 53,4789 -j REJECT",
            "udp",
            4789
        ));
        assert!(can_match("-A X -p udp -m udp --dport 4000:5000 -j DROP", "udp", 4789));
        assert!(!can_match("-A X -p udp -m udp --dport 5000:6000 -j DROP", "udp", 4789));
    }
}
