//! `mtu` and `packet-loss`: a few MiB over TCP across the overlay, each way between a
//! probe on one node and a probe on another. A ping of any size is one
//! packet; a TCP stream fills every segment to the path's MTU and needs every one of
//! them delivered, so path-MTU black holes and heavy loss show only here.

use std::time::{Duration, Instant};

use anyhow::Context;
use swarm_e2e_model::BUSYBOX;

use super::datapath::Pinger;
use super::probe::{exec, remove_probe, run_container};
use super::{CheckEnv, Outcome, underlay};
use crate::netfault::{self, Owner, UnderlayFault};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for `mtu` and `packet-loss`: their keys out of the validated
/// check (a packet-loss check is an mtu check with a share of the underlay dropped).
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let (from, to, network, bytes, percent) = match &check.kind {
        CheckKind::Mtu {
            from,
            to,
            network,
            bytes,
        } => (from, to, network, bytes, None),
        CheckKind::PacketLoss {
            from,
            to,
            network,
            percent,
            bytes,
        } => (from, to, network, bytes, Some(*percent)),
        _ => return Err(super::misrouted(check)),
    };
    let t = Transfer {
        check: &check.name,
        from,
        to,
        network,
        bytes: *bytes,
    };
    match percent {
        None => mtu(env, &t).await,
        Some(percent) => packet_loss(env, &t, percent).await,
    }
}

/// The port the serving probe listens on (inside its own network namespace).
const PORT: u16 = 8080;

/// One transfer: `bytes` each way between probes on `from` and `to` across `network`.
pub(super) struct Transfer<'a> {
    pub check: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub network: &'a str,
    pub bytes: u64,
}

/// The two probes of a transfer: each serves the bytes and can fetch them from the
/// other, so both directions cross (a smaller MTU on one node loses only the packets
/// sent to it).
struct Probes {
    /// On `to`, and its address on the overlay.
    to: (String, String),
    /// On `from`, and its address on the overlay.
    from: (String, String),
    /// The overlay's MTU, as the probes' interface has it.
    overlay_mtu: u32,
}

/// Which way the bytes go.
#[derive(Clone, Copy)]
enum Direction {
    /// From the probe on `to` to the one on `from`.
    ToFrom,
    /// From the probe on `from` to the one on `to`.
    FromTo,
}

impl Transfer<'_> {
    async fn serving_probe(&self, env: &CheckEnv, node: &str) -> anyhow::Result<(String, String)> {
        let docker = &env.cluster.node(node).docker;
        let serve = format!(
            "mkdir -p /srv && head -c {} /dev/zero > /srv/blob && exec httpd -f -p {PORT} -h /srv",
            self.bytes
        );
        let id = run_container(
            docker,
            &env.cluster.run_id,
            &format!("transfer-{}-{node}", self.check),
            &env.image(BUSYBOX),
            &["sh".into(), "-c".into(), serve],
            Some(self.network),
        )
        .await
        .with_context(|| format!("starting a transfer probe on {node} attached to {}", self.network))?;
        match self.listening(docker, node, &id).await {
            Ok(address) => Ok((id, address)),
            Err(e) => {
                let _ = remove_probe(docker, &id).await;
                Err(e)
            }
        }
    }

    /// The probe's address on the overlay, once its httpd listens (a few ms; bounded).
    async fn listening(&self, docker: &bollard::Docker, node: &str, id: &str) -> anyhow::Result<String> {
        let inspected = docker.inspect_container(id, None).await?;
        let address = inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get(self.network).and_then(|e| e.ip_address.clone()))
            .filter(|a| !a.is_empty())
            .with_context(|| format!("the transfer probe on {node} has no address on {}", self.network))?;
        let listening = format!("netstat -ltn | grep -q ':{PORT} '");
        poll_until(Duration::from_secs(10), Duration::from_millis(50), || async {
            let (code, out) = exec(docker, id, &["sh", "-c", &listening]).await?;
            if code == 0 {
                Ok(Some(()))
            } else {
                anyhow::bail!("not listening on {PORT} yet: {}", out.trim())
            }
        })
        .await
        .with_context(|| format!("the transfer probe's httpd on {node}"))?;
        Ok(address)
    }

    async fn start(&self, env: &CheckEnv) -> anyhow::Result<Probes> {
        let (to, from) = tokio::join!(self.serving_probe(env, self.to), self.serving_probe(env, self.from));
        let (to, from) = match (to, from) {
            (Ok(t), Ok(f)) => (t, f),
            (t, f) => {
                if let Ok((id, _)) = &t {
                    let _ = remove_probe(&env.cluster.node(self.to).docker, id).await;
                }
                if let Ok((id, _)) = &f {
                    let _ = remove_probe(&env.cluster.node(self.from).docker, id).await;
                }
                return Err(t.err().or(f.err()).expect("one failed"));
            }
        };
        let mut probes = Probes {
            to,
            from,
            overlay_mtu: 0,
        };
        let docker = &env.cluster.node(self.from).docker;
        let read = exec(docker, &probes.from.0, &["cat", "/sys/class/net/eth0/mtu"]).await;
        match read {
            Ok((0, out)) if out.trim().parse::<u32>().is_ok() => {
                probes.overlay_mtu = out.trim().parse().expect("checked");
                Ok(probes)
            }
            other => {
                self.remove(env, &probes).await;
                let shown = match other {
                    Ok((code, out)) => format!("exit {code}: {}", out.trim()),
                    Err(e) => format!("{e:#}"),
                };
                anyhow::bail!("reading the overlay's MTU in the probe: {shown}")
            }
        }
    }

    async fn remove(&self, env: &CheckEnv, p: &Probes) {
        let _ = remove_probe(&env.cluster.node(self.to).docker, &p.to.0).await;
        let _ = remove_probe(&env.cluster.node(self.from).docker, &p.from.0).await;
    }

    /// (sender node, receiver node, receiving probe, sender's address)
    fn ends<'p>(&'p self, p: &'p Probes, d: Direction) -> (&'p str, &'p str, &'p str, &'p str) {
        match d {
            Direction::ToFrom => (self.to, self.from, &p.from.0, &p.to.1),
            Direction::FromTo => (self.from, self.to, &p.to.0, &p.from.1),
        }
    }

    /// Whether a small ping crosses between the probes (retried for a few seconds: the
    /// first packet over a fresh VXLAN path can be lost): when it does not, the
    /// transfer would only wait out its bound, so the check fails now with the cause.
    async fn unreachable(&self, env: &CheckEnv, p: &Probes) -> Option<String> {
        let docker = &env.cluster.node(self.from).docker;
        let address = &p.to.1;
        let crossed = poll_until(Duration::from_secs(8), Duration::from_millis(200), || async {
            match exec(docker, &p.from.0, &["ping", "-c", "1", "-W", "2", address]).await? {
                (0, _) => Ok(Some(())),
                (code, out) => anyhow::bail!("exit {code}: {}", out.trim()),
            }
        })
        .await;
        let e = crossed.err()?;
        let to = [self.to.to_string()];
        Some(format!(
            "the probe on {} gets no reply to `ping -c 1 {address}` (the probe on {} over {}), so no TCP \
             transfer can cross: {e:#}\n{}",
            self.from,
            self.to,
            self.network,
            underlay::path_cause(
                env,
                self.check,
                self.from,
                &to,
                self.network,
                &Pinger {
                    docker,
                    probe: &p.from.0,
                    target: address,
                }
            )
            .await
        ))
    }

    /// Moves the bytes each way, within `limit` each: how both went, or what arrived
    /// the first way that failed (with that direction).
    async fn both_ways(
        &self,
        env: &CheckEnv,
        p: &Probes,
        limit: Duration,
    ) -> anyhow::Result<Result<Vec<(Moved, Direction)>, (String, Direction)>> {
        let mut moved = Vec::new();
        for d in [Direction::ToFrom, Direction::FromTo] {
            match self.fetch(env, p, d, limit).await? {
                Ok(m) => moved.push((m, d)),
                Err(m) => return Ok(Err((m, d))),
            }
        }
        Ok(Ok(moved))
    }

    /// Moves the bytes once, within `limit`: how it went, or what arrived.
    async fn fetch(
        &self,
        env: &CheckEnv,
        p: &Probes,
        d: Direction,
        limit: Duration,
    ) -> anyhow::Result<Result<Moved, String>> {
        let (sender, receiver, probe, address) = self.ends(p, d);
        let docker = &env.cluster.node(receiver).docker;
        let sending = &env.cluster.node(sender).docker;
        let sending_probe = match d {
            Direction::ToFrom => &p.to.0,
            Direction::FromTo => &p.from.0,
        };
        let before = tcp_counters(sending, sending_probe).await?;
        let secs = limit.as_secs().max(1);
        let script = format!("timeout {secs} wget -q -O - http://{address}:{PORT}/blob | wc -c");
        let started = Instant::now();
        let (code, out) = tokio::time::timeout(
            limit + Duration::from_secs(5),
            exec(docker, probe, &["sh", "-c", &script]),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the transfer did not end within {secs} s"))??;
        let elapsed = started.elapsed();
        let after = tcp_counters(sending, sending_probe).await?;
        let got: u64 = out.trim().parse().unwrap_or(0);
        Ok(if code == 0 && got == self.bytes {
            Ok(Moved {
                elapsed,
                segments: after.0.saturating_sub(before.0),
                resent: after.1.saturating_sub(before.1),
                sender: sender.to_string(),
                receiver: receiver.to_string(),
            })
        } else {
            Err(format!(
                "{got} of {} bytes arrived over TCP from {sender} to {receiver} on {} in {:.1} s",
                self.bytes,
                self.network,
                elapsed.as_secs_f64()
            ))
        })
    }

    /// Why a transfer failed: the path itself (a small ping does not cross), or packets
    /// as large as the overlay's MTU are lost on the underlay (the receiver's first).
    async fn cause(&self, env: &CheckEnv, p: &Probes, d: Direction) -> String {
        let (sender, receiver, probe, address) = self.ends(p, d);
        let docker = &env.cluster.node(receiver).docker;
        let small = exec(docker, probe, &["ping", "-c", "1", "-W", "2", address]).await;
        if !matches!(small, Ok((0, _))) {
            let to = [sender.to_string()];
            let pinger = Pinger {
                docker,
                probe,
                target: address,
            };
            return underlay::path_cause(env, self.check, receiver, &to, self.network, &pinger).await;
        }
        let nodes = [receiver.to_string(), sender.to_string()];
        underlay::mtu_cause(env, self.check, &nodes, p.overlay_mtu).await
    }
}

/// How one direction of a transfer went.
struct Moved {
    elapsed: Duration,
    /// TCP segments the sender sent, and how many of them were resent.
    segments: u64,
    resent: u64,
    sender: String,
    receiver: String,
}

impl Moved {
    /// What a careful operator would call broken about a transfer that arrived: its
    /// segments were smaller than the overlay's MTU allows (the path is smaller than
    /// the overlay assumes, and TCP learned it only from losses). Resent segments alone
    /// are not: a loaded host drops some on a clean path (measured: 0-1 of 3000 idle,
    /// 23 of 3021 with 29 checks running at once).
    fn problem(&self, bytes: u64, overlay_mtu: u32) -> Option<String> {
        // IPv4 20, TCP 20, timestamps 12.
        let mss = u64::from(overlay_mtu.saturating_sub(52));
        let carried = bytes / self.segments.max(1);
        if carried * 100 < mss * FULL_SEGMENT_PERCENT {
            return Some(format!(
                "full-size TCP segments do not cross: from {} to {} they carried {carried} bytes on average, \
                 while the overlay's MTU ({overlay_mtu}) allows {mss} ({} of {} segments resent while the stack \
                 learned the smaller path)",
                self.sender, self.receiver, self.resent, self.segments
            ));
        }
        None
    }

    fn shown(&self) -> String {
        format!(
            "{} to {}: {:.1} s, {} of {} segments resent",
            self.sender,
            self.receiver,
            self.elapsed.as_secs_f64(),
            self.resent,
            self.segments
        )
    }
}

/// Segments of a bulk transfer carry nearly the full MSS (measured: 99.5 % on a clean
/// overlay, 83 % with a node's underlay at 1280 under a 1450 overlay).
const FULL_SEGMENT_PERCENT: u64 = 95;

/// The TCP counters of a probe's network namespace: (segments sent, segments resent).
async fn tcp_counters(docker: &bollard::Docker, probe: &str) -> anyhow::Result<(u64, u64)> {
    let (code, out) = exec(docker, probe, &["grep", "Tcp:", "/proc/net/snmp"]).await?;
    let mut lines = out.lines();
    let (Some(names), Some(values), 0) = (lines.next(), lines.next(), code) else {
        anyhow::bail!("unreadable TCP counters: exit {code}: {}", out.trim());
    };
    let field = |name: &str| {
        let at = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(at)?.parse::<u64>().ok()
    };
    match (field("OutSegs"), field("RetransSegs")) {
        (Some(sent), Some(resent)) => Ok((sent, resent)),
        _ => anyhow::bail!("unreadable TCP counters: {}", out.trim()),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// `mtu`: the bytes arrive, within the check's bound.
pub(super) async fn mtu(env: &CheckEnv, t: &Transfer<'_>) -> anyhow::Result<Outcome> {
    let probes = t.start(env).await?;
    if let Some(m) = t.unreachable(env, &probes).await {
        t.remove(env, &probes).await;
        return Ok(Outcome::Failed(m));
    }
    let limit = env.timeout.min(Duration::from_secs(30));
    let moved = t.both_ways(env, &probes, limit).await;
    let outcome = match moved {
        Ok(Ok(ways)) => {
            let mut problem = None;
            for (m, d) in &ways {
                tracing::debug!(check = t.check, "transfer {}", m.shown());
                if problem.is_none()
                    && let Some(p) = m.problem(t.bytes, probes.overlay_mtu)
                {
                    problem = Some((p, *d));
                }
            }
            match problem {
                None => Outcome::Passed,
                Some((p, d)) => Outcome::Failed(format!("{p}\n{}", t.cause(env, &probes, d).await)),
            }
        }
        Ok(Err((what, d))) => Outcome::Failed(format!(
            "a {} TCP transfer did not complete: {what} (overlay MTU {})\n{}",
            mib(t.bytes),
            probes.overlay_mtu,
            t.cause(env, &probes, d).await
        )),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    t.remove(env, &probes).await;
    Ok(outcome)
}

/// `packet-loss`: with `percent`% of the underlay packets from the other nodes dropped
/// on arrival at both ends, the bytes still arrive (TCP retransmits what is lost), and
/// the loss was really in effect (the drop counters moved).
pub(super) async fn packet_loss(env: &CheckEnv, t: &Transfer<'_>, percent: u32) -> anyhow::Result<Outcome> {
    let probes = t.start(env).await?;
    let limit = env.timeout.min(Duration::from_secs(60));
    let outcome = with_loss(env, t, &probes, percent, limit).await;
    t.remove(env, &probes).await;
    outcome
}

async fn with_loss(
    env: &CheckEnv,
    t: &Transfer<'_>,
    probes: &Probes,
    percent: u32,
    limit: Duration,
) -> anyhow::Result<Outcome> {
    // Without loss first: a path that is broken anyway is named as such.
    if let Some(m) = t.unreachable(env, probes).await {
        return Ok(Outcome::Failed(format!("before any loss: {m}")));
    }
    let baseline = match t.both_ways(env, probes, limit.min(Duration::from_secs(30))).await? {
        Ok(ways) => ways.iter().map(|(m, _)| m.elapsed).max().unwrap_or_default(),
        Err((what, d)) => {
            return Ok(Outcome::Failed(format!(
                "before any loss, a {} TCP transfer did not complete: {what}\n{}",
                mib(t.bytes),
                t.cause(env, probes, d).await
            )));
        }
    };
    let image = env.image(BUSYBOX);
    let ends = [env.cluster.node(t.from), env.cluster.node(t.to)];
    let healer = Healer::arm(env, &image);
    for node in ends {
        let others = env
            .cluster
            .nodes
            .iter()
            .filter(|n| n.name != node.name)
            .map(|n| n.address)
            .collect();
        let loss = UnderlayFault::Loss { percent, from: others };
        netfault::inject(node, &env.cluster.run_id, &image, &loss, Owner::Check).await?;
    }
    let lossy = t.both_ways(env, probes, limit).await;
    let mut dropped = 0;
    for node in ends {
        dropped += netfault::dropped(node, &env.cluster.run_id, &image).await.unwrap_or(0);
    }
    let healed = healer.heal(env).await;
    let lossy = lossy?;
    Ok(match (lossy, healed) {
        (_, Err(e)) => Outcome::Failed(format!("the injected loss could not be removed: {e}")),
        (Err((what, d)), Ok(())) => {
            // Once the loss is gone: was it the loss, or did the path break meanwhile?
            let after = match t.fetch(env, probes, d, Duration::from_secs(15)).await {
                Ok(Ok(m)) => format!("once the loss was removed the bytes crossed again ({})", m.shown()),
                Ok(Err(again)) => format!(
                    "the path stays broken without the loss: {again}\n{}",
                    t.cause(env, probes, d).await
                ),
                Err(e) => format!("once the loss was removed, the transfer could not be retried: {e:#}"),
            };
            Outcome::Failed(format!(
                "with {percent}% of the VXLAN packets between the nodes dropped, a {} TCP transfer did not complete \
                 within {:.0} s: {what} ({dropped} packets dropped; without loss it took {:.1} s each way at most); \
                 {after}",
                mib(t.bytes),
                limit.as_secs_f64(),
                baseline.as_secs_f64()
            ))
        }
        (Ok(_), Ok(())) if dropped == 0 => Outcome::Failed(format!(
            "the {percent}% loss was not in effect: no packet was dropped while {} crossed the underlay",
            mib(t.bytes)
        )),
        (Ok(_), Ok(())) => Outcome::Passed,
    })
}

/// Removes the faults a chaos check injected: explicitly when it ends, or (when its
/// future is dropped: an interrupt, a bound) on drop, in a task of its own.
pub(super) struct Healer {
    cluster: std::sync::Arc<crate::cluster::Cluster>,
    image: String,
    armed: bool,
}

impl Healer {
    pub(super) fn arm(env: &CheckEnv, image: &str) -> Healer {
        Healer {
            cluster: env.cluster.clone(),
            image: image.to_string(),
            armed: true,
        }
    }

    pub(super) async fn heal(mut self, env: &CheckEnv) -> Result<(), String> {
        self.armed = false;
        let nodes: Vec<&crate::cluster::EngineNode> = (self.cluster.nodes.iter())
            .filter(|n| !env.unhealed.contains(&n.name))
            .collect();
        netfault::heal_all(&nodes, &self.cluster.run_id, &self.image).await
    }
}

impl Drop for Healer {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (cluster, image) = (self.cluster.clone(), self.image.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let nodes: Vec<&crate::cluster::EngineNode> = cluster.nodes.iter().collect();
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    netfault::heal_all(&nodes, &cluster.run_id, &image),
                )
                .await;
            });
        }
    }
}
