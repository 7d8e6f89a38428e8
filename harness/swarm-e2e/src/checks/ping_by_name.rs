//! `ping-by-name`, the headline check: a probe on `from` resolves `target` by name over
//! the overlay and pings it.

use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::TaskState;
use swarm_e2e_model::{BUSYBOX, EndpointMode, Payload};

use super::probe::{answers, describe_tasks, exec, remove_probe, run_container, service_tasks, state_of};
use super::{CheckEnv, Outcome, underlay};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::PingByName {
        from,
        network,
        target,
        payload,
        max_loss,
    } = &check.kind
    else {
        return Err(super::misrouted(check));
    };
    let ping = Ping {
        check: &check.name,
        from,
        network,
        target,
        payload: *payload,
        max_loss: Some(*max_loss),
    };
    run(env, &ping).await
}

/// The headline check: `from` resolves `target` by name over `network` and pings it.
pub(super) async fn run(env: &CheckEnv, ping: &Ping<'_>) -> anyhow::Result<Outcome> {
    let Ping {
        check,
        from,
        network,
        target,
        ..
    } = *ping;
    if let Some(service) = env.scenario.service(target)
        && service.endpoint_mode == EndpointMode::Vip
        && !env.kernel.ipvs
    {
        return Ok(Outcome::Ignored(format!(
            "`{target}` uses VIP endpoint mode, which needs IPVS; this kernel has none (use endpoint_mode = \"dnsrr\")"
        )));
    }
    if env.scenario.network(network).is_some_and(|n| n.encrypted) && !env.kernel.esp {
        return Ok(Outcome::Ignored(format!(
            "`{network}` is an encrypted overlay (IPsec ESP between nodes), and this kernel has no ESP \
             (CONFIG_INET_ESP is not set): encrypted overlays cannot carry traffic here"
        )));
    }
    // A target may be a container's alias: its deploy error is under the container's name.
    let deployed_as = (env.scenario.containers.iter())
        .find(|c| c.aliases.iter().any(|a| a == target))
        .map_or(target, |c| c.name.as_str());
    if let Some(e) = env.deploy_errors.get(deployed_as) {
        return Ok(Outcome::Failed(format!("target `{target}` could not be deployed: {e}")));
    }
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let node = env.cluster.node(from);
    let probe_name = format!("probe-{check}");
    let image = env.image(BUSYBOX);
    // A name only resolves once the target runs somewhere. The probe is attached only
    // after that: attaching a container to the overlay on a worker while the swarm is
    // still allocating the service's tasks failed now and then (measured: 2 of 7 runs,
    // "attaching to network failed ... context deadline exceeded" after 20 s).
    if env.scenario.service(target).is_some() {
        let ready = poll_until(super::probe::start_bound(env), Duration::from_millis(50), || async {
            let tasks = service_tasks(manager, target).await?;
            if tasks.iter().any(|t| state_of(t) == TaskState::RUNNING) {
                Ok(Some(()))
            } else {
                anyhow::bail!("no running task of `{target}`: {}", describe_tasks(&tasks, &names))
            }
        })
        .await;
        if let Err(e) = ready {
            return Ok(Outcome::Failed(format!("target never ran: {e:#}")));
        }
    }
    let starting = std::time::Instant::now();
    let probe = run_container(
        &node.docker,
        &env.cluster.run_id,
        &probe_name,
        &image,
        &["top".to_string()],
        Some(network),
    )
    .await
    .with_context(|| format!("starting probe container `{probe_name}` on {from} attached to {network}"))?;
    tracing::debug!(check, "probe started in {:.2}s", starting.elapsed().as_secs_f64());
    let outcome = probe_ping(env, &node.docker, &probe, ping).await;
    let _ = remove_probe(&node.docker, &probe).await;
    outcome
}

/// What one ping-by-name asks for.
pub(super) struct Ping<'a> {
    pub check: &'a str,
    pub from: &'a str,
    pub network: &'a str,
    pub target: &'a str,
    pub payload: Payload,
    /// The share of a burst that may be lost (percent); `None`: no burst (a path just
    /// healed is asked only to answer).
    pub max_loss: Option<u32>,
}

/// How long a name may take to resolve before gossip is looked at.
const GOSSIP_GRACE: Duration = Duration::from_secs(5);
/// How long a resolved name may take to answer a ping while the overlay's gossip has
/// converged (a fresh VXLAN path's first packets).
const REACH_LIMIT: Duration = Duration::from_secs(15);

/// Whether gossip between `from` and the target's nodes on `network` is still
/// converging: a peer list lacks the other while nothing blocks gossip. Once nodes come
/// back from a partition, the engine's network database relearns which peers take part
/// in a network when a node rejoins by itself (memberlist) only at its next push/pull
/// exchange with that peer (every 30 s, with a random peer), so a healthy path can take
/// well over REACH_LIMIT to answer; the check waits for it up to its bound, and a cut
/// or converged gossip ends the wait at once.
async fn converging(env: &CheckEnv, from: &str, nodes: &[String], network: &str) -> bool {
    for node in nodes.iter().filter(|n| n.as_str() != from) {
        match underlay::gossip_between(env, from, node, network).await {
            underlay::Gossip::Unlearned(_) => return true,
            underlay::Gossip::Cut(_) => return false,
            underlay::Gossip::Learned => {}
        }
    }
    false
}

async fn probe_ping(env: &CheckEnv, docker: &Docker, probe: &str, ping: &Ping<'_>) -> anyhow::Result<Outcome> {
    let Ping {
        from, network, target, ..
    } = *ping;
    // Step 1: name resolution (the embedded DNS learns remote names by gossip). While
    // there is no answer, gossip between the nodes is looked at every few seconds: a
    // cut fails the check at once, with its cause, instead of waiting out the bound; a
    // peer not learned while nothing blocks gossip is waited for, and named if the
    // bound runs out.
    // The nodes the target runs on: where a diagnosis looks (the target already runs).
    let nodes = underlay::nodes_of(env, target).await;
    let started = std::time::Instant::now();
    // Gossip is looked at every GOSSIP_GRACE (its failure detection takes seconds).
    let looked = std::sync::atomic::AtomicU64::new(0);
    let unlearned = std::sync::Mutex::new(None::<String>);
    let resolved = poll_until(env.timeout, Duration::from_millis(100), || {
        let (nodes, looked, unlearned) = (&nodes, &looked, &unlearned);
        async move {
            let (code, out) = exec(docker, probe, &["nslookup", target]).await?;
            let addrs = answers(&out);
            if code == 0 && !addrs.is_empty() {
                return Ok(Some(Ok(addrs)));
            }
            let round = started.elapsed().as_secs() / GOSSIP_GRACE.as_secs();
            if round > looked.swap(round, std::sync::atomic::Ordering::Relaxed) {
                let mut seen = None;
                for node in nodes.iter().filter(|n| n.as_str() != from) {
                    match underlay::gossip_between(env, from, node, network).await {
                        underlay::Gossip::Cut(c) => return Ok(Some(Err(format!("exit {code}: {}\n{c}", out.trim())))),
                        underlay::Gossip::Unlearned(c) => seen = seen.or(Some(c)),
                        underlay::Gossip::Learned => {}
                    }
                }
                *unlearned.lock().unwrap() = seen;
            }
            anyhow::bail!("exit {code}: {}", out.trim())
        }
    })
    .await;
    tracing::debug!(
        check = ping.check,
        "name resolution ended after {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let addrs = match resolved {
        Ok(Ok(a)) => a,
        Ok(Err(why)) => {
            return Ok(Outcome::Failed(format!(
                "name resolution failed: `{target}` did not resolve from {from} on {network} within {:.0}s: {why}",
                started.elapsed().as_secs_f64()
            )));
        }
        Err(e) => {
            let cause = unlearned
                .into_inner()
                .unwrap()
                .map(|c| format!("\n{c}"))
                .unwrap_or_default();
            return Ok(Outcome::Failed(format!(
                "name resolution failed: `{target}` did not resolve from {from} on {network}: {e:#}{cause}"
            )));
        }
    };
    // Step 2: reachability. The first packet over a fresh VXLAN path can be lost while
    // the peer's entry propagates, so a few tries are allowed within REACH_LIMIT; past
    // it, only while the overlay's gossip is still converging (see `converging`).
    let reaching = std::time::Instant::now();
    let next_look = std::sync::Mutex::new(REACH_LIMIT);
    let pinged = poll_until(env.timeout, Duration::from_millis(200), || async {
        let (code, out) = exec(docker, probe, &["ping", "-c", "1", "-W", "2", target]).await?;
        let waited = reaching.elapsed();
        tracing::debug!(check = ping.check, code, "ping after {:.2}s", waited.as_secs_f64());
        if code == 0 {
            return Ok(Some(Ok(())));
        }
        let due = *next_look.lock().unwrap();
        if waited >= due {
            if !converging(env, from, &nodes, network).await {
                return Ok(Some(Err(format!("exit {code}: {}", out.trim()))));
            }
            *next_look.lock().unwrap() = waited + GOSSIP_GRACE;
        }
        anyhow::bail!("exit {code}: {}", out.trim())
    })
    .await
    .and_then(|r| r.map_err(anyhow::Error::msg));
    tracing::debug!(
        check = ping.check,
        answered = pinged.is_ok(),
        "reachability ended after {:.2}s",
        reaching.elapsed().as_secs_f64()
    );
    let pinger = super::datapath::Pinger { docker, probe, target };
    if let Err(e) = pinged {
        let cause = underlay::path_cause(env, ping.check, from, &nodes, network, &pinger).await;
        return Ok(Outcome::Failed(format!(
            "reachability failed: `{target}` resolved to {} from {from}, but `ping -c 1 {target}` got no reply: {e:#}\n{cause}",
            addrs.join(", ")
        )));
    }
    size_and_loss(env, &pinger, ping, &nodes).await
}

/// Steps 3 and 4 once the target answers: a full-size ping and a loss burst, side by
/// side (a clean run pays for the slower of the two).
async fn size_and_loss(
    env: &CheckEnv,
    pinger: &super::datapath::Pinger<'_>,
    ping: &Ping<'_>,
    nodes: &[String],
) -> anyhow::Result<Outcome> {
    let burst = async {
        match ping.max_loss {
            Some(_) => Some(burst(pinger).await),
            None => None,
        }
    };
    let (large, counts) = tokio::join!(large_ping(env, pinger, ping, nodes), burst);
    match (large?, counts, ping.max_loss) {
        (Outcome::Passed, Some(counts), Some(max_loss)) => {
            let path = LossyPath {
                from: ping.from,
                network: ping.network,
                target_nodes: nodes,
                max_loss,
            };
            Ok(match judge_loss(env, pinger, &path, counts?).await {
                Some(failure) => Outcome::Failed(failure),
                None => Outcome::Passed,
            })
        }
        (large, ..) => Ok(large),
    }
}

/// How many pings the burst sends, and how far apart (0.2 s in all).
const BURST: &[&str] = &["-q", "-c", "40", "-i", "0.005", "-W", "1"];

/// Step 4, loss: a burst of small pings (sent while the large ping crosses); (sent,
/// received).
pub(super) async fn burst(pinger: &super::datapath::Pinger<'_>) -> anyhow::Result<(u64, u64)> {
    let mut args = vec!["ping"];
    args.extend(BURST);
    args.push(pinger.target);
    let (_, out) = exec(pinger.docker, pinger.probe, &args).await?;
    burst_counts(&out).with_context(|| format!("reading the burst's summary in the probe: {}", out.trim()))
}

/// A path whose loss is judged: from a probe on `from` to a target on `network` that
/// runs on `target_nodes`.
pub(super) struct LossyPath<'a> {
    pub from: &'a str,
    pub network: &'a str,
    pub target_nodes: &'a [String],
    /// The share of the burst that may be lost (percent).
    pub max_loss: u32,
}

/// When more than `max_loss` percent of the burst got no reply, the failure naming the
/// path, with the drops attributed by counting the VXLAN packets of a second burst on
/// both ends; `None` within `max_loss`.
pub(super) async fn judge_loss(
    env: &CheckEnv,
    pinger: &super::datapath::Pinger<'_>,
    path: &LossyPath<'_>,
    (sent, received): (u64, u64),
) -> Option<String> {
    let lost = sent.saturating_sub(received);
    let percent = (lost * 100).checked_div(sent).unwrap_or(100);
    tracing::debug!(from = path.from, target = pinger.target, sent, received, "burst");
    if percent <= u64::from(path.max_loss) {
        return None;
    }
    let others: Vec<&str> = (path.target_nodes.iter())
        .map(String::as_str)
        .filter(|n| *n != path.from)
        .collect();
    let cause = if others.is_empty() {
        format!(
            "cause not found: the target runs on {} itself: no underlay between them",
            path.from
        )
    } else {
        super::datapath::loss_cause(env, path.from, &others, pinger, BURST).await
    };
    Some(format!(
        "loss on the path: {lost} of {sent} pings from {} to `{}` on {} got no reply ({percent}%, `max_loss` is \
         {}%)\n{cause}",
        path.from, pinger.target, path.network, path.max_loss
    ))
}

/// `40 packets transmitted, 38 packets received, 5% packet loss` -> (40, 38).
fn burst_counts(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(',')
        .map(|part| part.split_whitespace().next()?.parse::<u64>().ok());
    Some((numbers.next()??, numbers.next()??))
}

/// Step 3: a packet as large as the overlay carries (or `payload` bytes). An underlay
/// smaller than the overlay assumes lets the small ping through and loses this one.
async fn large_ping(
    env: &CheckEnv,
    pinger: &super::datapath::Pinger<'_>,
    ping: &Ping<'_>,
    target_nodes: &[String],
) -> anyhow::Result<Outcome> {
    let (docker, probe) = (pinger.docker, pinger.probe);
    let (code, out) = exec(docker, probe, &["cat", "/sys/class/net/eth0/mtu"]).await?;
    let overlay_mtu: u32 = match out.trim().parse() {
        Ok(m) if code == 0 => m,
        _ => anyhow::bail!("reading the overlay's MTU in the probe: exit {code}: {}", out.trim()),
    };
    let size = match ping.payload {
        Payload::Off => return Ok(Outcome::Passed),
        Payload::Bytes(n) => n,
        // 20 bytes of IP and 8 of ICMP header.
        Payload::OverlayMtu => overlay_mtu.saturating_sub(28),
    };
    let size_arg = size.to_string();
    let target = ping.target;
    let limit = env.timeout.min(Duration::from_secs(8));
    let crossed = poll_until(limit, Duration::from_millis(200), || async {
        let (code, out) = exec(docker, probe, &["ping", "-c", "1", "-W", "2", "-s", &size_arg, target]).await?;
        if code == 0 {
            Ok(Some(()))
        } else {
            anyhow::bail!("exit {code}: {}", out.trim())
        }
    })
    .await;
    let Err(e) = crossed else {
        return Ok(Outcome::Passed);
    };
    let mut nodes = vec![ping.from.to_string()];
    nodes.extend(target_nodes.iter().filter(|n| n.as_str() != ping.from).cloned());
    let cause = underlay::mtu_cause(env, ping.check, &nodes, (size + 28).min(overlay_mtu)).await;
    Ok(Outcome::Failed(format!(
        "large packets are lost: `ping -s {size} {target}` ({} bytes on {}) from {} got no reply, while a \
         56-byte ping crosses: {e:#}\n{cause}",
        size + 28,
        ping.network,
        ping.from
    )))
}

#[cfg(test)]
mod tests {
    use super::burst_counts;

    #[test]
    fn the_burst_summary_is_read() {
        let out = "\n--- foo ping statistics ---\n40 packets transmitted, 23 packets received, 42% packet loss\n\
                   round-trip min/avg/max = 0.070/0.140/0.533 ms\n";
        assert_eq!(burst_counts(out), Some((40, 23)));
        assert_eq!(burst_counts("ping: bad address 'foo'"), None);
    }
}
