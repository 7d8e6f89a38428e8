//! `node-restart` (disruptive): a node's engine stops and starts; its tasks run again
//! and names still resolve.

use super::probe::{replicas_of, wait_all_ready, wait_tasks};
use super::{CheckEnv, Outcome, no_control};
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::NodeRestart {
        node,
        service,
        from,
        network,
    } = &check.kind
    else {
        return Err(super::misrouted(check));
    };
    run(env, &check.name, node, service, from.as_deref(), network.as_deref()).await
}

/// Stops `node`'s engine and starts it again: afterwards every replica of `service`
/// runs and, with `from`/`network`, its name still resolves there.
pub(super) async fn run(
    env: &CheckEnv,
    check: &str,
    node: &str,
    service: &str,
    from: Option<&str>,
    network: Option<&str>,
) -> anyhow::Result<Outcome> {
    let Some(control) = &env.node_control else {
        return Ok(no_control("restarting a node", env.target));
    };
    let replicas = replicas_of(env, service);
    if let Err(m) = wait_tasks(
        env,
        service,
        &format!("{replicas} task(s) of `{service}` before the restart"),
        |_, r| r == replicas,
    )
    .await
    {
        return Ok(Outcome::Failed(m));
    }
    control.stop(node).await?;
    control.start(node).await?;
    let engine = &env.cluster.node(node).docker;
    if let Err(e) = crate::engine::wait_ready(engine, env.timeout).await {
        return Ok(Outcome::Failed(format!("{node}'s engine did not come back: {e:#}")));
    }
    if let Err(m) = wait_all_ready(env, env.timeout).await {
        return Ok(Outcome::Failed(m));
    }
    if let Err(m) = wait_tasks(
        env,
        service,
        &format!("all {replicas} task(s) of `{service}` running again after {node} restarted"),
        |_, r| r == replicas,
    )
    .await
    {
        return Ok(Outcome::Failed(m));
    }
    match (from, network) {
        (Some(from), Some(network)) => {
            let outcome = super::dns::run(env, check, from, network, service, service).await?;
            Ok(match outcome {
                Outcome::Failed(m) => Outcome::Failed(format!("after {node} restarted: {m}")),
                other => other,
            })
        }
        _ => Ok(Outcome::Passed),
    }
}
