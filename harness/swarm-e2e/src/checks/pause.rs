//! `pause` (disruptive): a paused node keeps its tasks; a new replica goes elsewhere.

use bollard::models::NodeSpecAvailabilityEnum;

use super::probe::{replicas_of, scale, set_availability, wait_tasks};
use super::{CheckEnv, Outcome};
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Pause { service, node } = &check.kind else {
        return Err(super::misrouted(check));
    };
    run(env, service, node).await
}

/// Pausing `node` keeps its tasks; a new replica goes elsewhere. Scales back after.
pub(super) async fn run(env: &CheckEnv, service: &str, node: &str) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    let before = match wait_tasks(
        env,
        service,
        &format!("a task of `{service}` on {node} before pausing"),
        |p, r| r == replicas && p.get(node).is_some_and(|n| *n > 0),
    )
    .await
    {
        Ok(b) => b,
        Err(m) => return Ok(Outcome::Failed(m)),
    };
    let on_node = before[node];
    set_availability(env, node, NodeSpecAvailabilityEnum::PAUSE).await?;
    scale(env, service, replicas as u64 + 1).await?;
    let after = wait_tasks(
        env,
        service,
        &format!(
            "{} task(s) of `{service}` running, still exactly {on_node} on the paused {node}",
            replicas + 1
        ),
        |p, r| r == replicas + 1 && p.get(node).copied().unwrap_or(0) == on_node,
    )
    .await;
    set_availability(env, node, NodeSpecAvailabilityEnum::ACTIVE).await?;
    scale(env, service, replicas as u64).await?;
    Ok(match after {
        Ok(_) => Outcome::Passed,
        Err(m) => Outcome::Failed(m),
    })
}
