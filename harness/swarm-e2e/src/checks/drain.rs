//! `drain` (disruptive): draining a node moves every task off it; all replicas keep
//! running.

use bollard::models::NodeSpecAvailabilityEnum;

use super::probe::{replicas_of, set_availability, wait_tasks};
use super::{CheckEnv, Outcome};
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Drain { service, node } = &check.kind else {
        return Err(super::misrouted(check));
    };
    run(env, service, node).await
}

/// Draining `node` moves every task of `service` off it, all replicas keep running.
pub(super) async fn run(env: &CheckEnv, service: &str, node: &str) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    let before = wait_tasks(
        env,
        service,
        &format!("a task of `{service}` on {node} before draining"),
        |p, r| r == replicas && p.get(node).is_some_and(|n| *n > 0),
    )
    .await;
    if let Err(m) = before {
        return Ok(Outcome::Failed(m));
    }
    set_availability(env, node, NodeSpecAvailabilityEnum::DRAIN).await?;
    let after = wait_tasks(
        env,
        service,
        &format!("all {replicas} task(s) of `{service}` running, none on the drained {node}"),
        |p, r| r == replicas && !p.contains_key(node),
    )
    .await;
    set_availability(env, node, NodeSpecAvailabilityEnum::ACTIVE).await?;
    Ok(match after {
        Ok(_) => Outcome::Passed,
        Err(m) => Outcome::Failed(m),
    })
}
