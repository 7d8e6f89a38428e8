//! `partition` (disruptive): some nodes are cut from the rest at the underlay until the
//! swarm notices (it reports them Down), then the cut heals. Afterwards every node must
//! be Ready again and a name across the cut must resolve and answer, within the bound:
//! the class of moby#53142, "service names NXDOMAIN after a transient node failure".

use std::time::{Duration, Instant};

use bollard::models::NodeState;
use swarm_e2e_model::{BUSYBOX, Payload};

use super::probe::wait_all_ready;
use super::transfer::Healer;
use super::{CheckEnv, Outcome, ping_by_name};
use crate::netfault::{self, Owner, UnderlayFault};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Partition {
        nodes,
        from,
        network,
        target,
    } = &check.kind
    else {
        return Err(super::misrouted(check));
    };
    let p = Partition {
        check: &check.name,
        cut: nodes,
        from,
        network,
        target,
    };
    run(env, &p).await
}

/// What one partition check asks for.
pub(super) struct Partition<'a> {
    pub check: &'a str,
    pub cut: &'a [String],
    pub from: &'a str,
    pub network: &'a str,
    pub target: &'a str,
}

impl Partition<'_> {
    /// The ping across: it must answer (loss is the `packet-loss` check's business).
    fn ping(&self, payload: Payload) -> ping_by_name::Ping<'_> {
        ping_by_name::Ping {
            check: self.check,
            from: self.from,
            network: self.network,
            target: self.target,
            payload,
            max_loss: None,
        }
    }
}

pub(super) async fn run(env: &CheckEnv, p: &Partition<'_>) -> anyhow::Result<Outcome> {
    // The name answers before the cut, or the check would blame the partition for it.
    match ping_by_name::run(env, &p.ping(Payload::Off)).await? {
        Outcome::Passed => {}
        Outcome::Failed(m) => return Ok(Outcome::Failed(format!("before the partition: {m}"))),
        ignored => return Ok(ignored),
    }
    let image = env.image(BUSYBOX);
    let (cut, rest): (Vec<_>, Vec<_>) = env.cluster.nodes.iter().partition(|n| p.cut.contains(&n.name));
    let healer = Healer::arm(env, &image);
    let started = Instant::now();
    let injected = futures_util::future::try_join_all(
        cut.iter()
            .map(|n| (n, &rest))
            .chain(rest.iter().map(|n| (n, &cut)))
            .map(|(node, other)| {
                let fault = UnderlayFault::Cut(other.iter().map(|o| o.address).collect());
                let image = image.clone();
                async move { netfault::inject(node, &env.cluster.run_id, &image, &fault, Owner::Check).await }
            }),
    )
    .await;
    let noticed = match injected {
        Ok(_) => noticed_down(env, p.cut).await,
        Err(e) => Err(format!("{e:#}")),
    };
    let held = started.elapsed();
    let healed = healer.heal(env).await;
    if let Err(e) = healed {
        return Ok(Outcome::Failed(format!(
            "the partition could not be healed (the cluster stays cut): {e}"
        )));
    }
    if let Err(m) = noticed {
        return Ok(Outcome::Failed(format!(
            "the swarm did not notice {} cut from the rest within {:.0} s: {m}",
            p.cut.join(", "),
            env.timeout.as_secs_f64()
        )));
    }
    let healing = Instant::now();
    if let Err(m) = recovered(env, p.cut).await {
        return Ok(Outcome::Failed(format!(
            "after the partition ({:.1} s, until the swarm saw {} Down) healed: {m}",
            held.as_secs_f64(),
            p.cut.join(", ")
        )));
    }
    Ok(match ping_by_name::run(env, &p.ping(Payload::OverlayMtu)).await? {
        Outcome::Failed(m) => Outcome::Failed(format!(
            "{:.1} s after the partition of {} healed: {m}",
            healing.elapsed().as_secs_f64(),
            p.cut.join(", ")
        )),
        other => other,
    })
}

/// Waits until every node is Ready again. While a cut node stays Down, its underlay
/// path from the first manager is probed every few seconds: a cut that stays fails the
/// check then, with its cause, instead of when the bound runs out.
async fn recovered(env: &CheckEnv, cut: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let manager = env.cluster.manager().name.clone();
    loop {
        let round = Duration::from_secs(5).min(env.timeout.saturating_sub(started.elapsed()));
        match wait_all_ready(env, round).await {
            Ok(()) => return Ok(()),
            Err(m) if started.elapsed() >= env.timeout => return Err(m),
            Err(m) => {
                for node in cut {
                    let address = env.cluster.node(node).address;
                    let script = format!("ping -c 1 -W 2 {address}");
                    if let Err(e) = super::probe::on_host(env, &manager, "partition", &script).await {
                        return Err(format!(
                            "{m}\ncause: the underlay still does not carry ICMP from {manager} to {node} \
                             ({address}): the cut did not heal ({e:#})"
                        ));
                    }
                }
            }
        }
    }
}

/// Waits until the manager reports every cut node Down.
async fn noticed_down(env: &CheckEnv, cut: &[String]) -> Result<(), String> {
    let manager = &env.cluster.manager().docker;
    let names = env.cluster.names_by_id();
    poll_until(env.timeout, Duration::from_millis(250), || async {
        let listed = manager.list_nodes(None).await?;
        let up: Vec<String> = listed
            .iter()
            .filter(|n| {
                n.id.as_ref()
                    .and_then(|id| names.get(id))
                    .is_some_and(|name| cut.contains(name))
            })
            .filter(|n| n.status.as_ref().and_then(|s| s.state) != Some(NodeState::DOWN))
            .filter_map(|n| n.id.as_ref().and_then(|id| names.get(id)).cloned())
            .collect();
        if up.is_empty() {
            Ok(Some(()))
        } else {
            anyhow::bail!("still not Down: {}", up.join(", "))
        }
    })
    .await
    .map_err(|e| format!("{e:#}"))
}
