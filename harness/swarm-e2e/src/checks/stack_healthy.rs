//! `stack-healthy`: every running task of every stack service with a healthcheck (its
//! Compose `healthcheck:` or its image's `HEALTHCHECK`) reaches `healthy`, as each task's
//! own engine reports it. A task whose healthcheck has failed (unhealthy, or killed by
//! the swarm for it) is the answer at once, named with its node and its last probe's
//! exit code and output: the swarm would only replace it with another that fails alike.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{Health as EngineHealth, HealthStatusEnum, Service, Task, TaskState};

use super::probe::{node_of, start_bound, state_of};
use super::{CheckEnv, Outcome};
use crate::stacks::{self, short_name};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackHealthy { stack } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let declared = env.scenario.stack(stack).expect("validated stack");
    // Health is judged on a stack that runs, but a task killed as unhealthy is the answer
    // at once, not after the swarm's third restart makes the stack fail to converge.
    let converging = super::stack_converges::converged(env, stack, &declared.services, start_bound(env));
    tokio::select! {
        converged = converging => {
            if let Err(m) = converged && !m.contains("unhealthy") {
                return Ok(Outcome::Failed(format!("cannot check health: {m}")));
            }
        }
        why = first_unhealthy(env, stack) => return Ok(Outcome::Failed(why)),
    }
    let waited = poll_until(env.timeout, Duration::from_millis(500), || async {
        match look(env, stack).await? {
            Health::Unhealthy(why) => Ok(Some(Err(why))),
            Health::Waiting(waiting) if waiting.is_empty() => Ok(Some(Ok(()))),
            Health::Waiting(waiting) => anyhow::bail!("not healthy yet: {}", waiting.join("; ")),
            Health::Unchecked => Ok(Some(Err(format!(
                "no running task of stack {stack} has a healthcheck: nothing to check (give a service a Compose \
                 `healthcheck:`, or drop this check)"
            )))),
        }
    })
    .await;
    Ok(match waited {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(m)) => Outcome::Failed(m),
        Err(e) => Outcome::Failed(format!("stack {stack}: {e:#}")),
    })
}

/// Where the health of a stack's running tasks stands.
enum Health {
    /// A task is unhealthy, or was stopped for it: why, with its last probe.
    Unhealthy(String),
    /// The tasks with a healthcheck that are not healthy yet, each with its state
    /// (none: all are healthy).
    Waiting(Vec<String>),
    /// No running task has a healthcheck.
    Unchecked,
}

/// Returns once a task of `stack` is unhealthy or was stopped for it, with why; looks
/// every half second (errors are looked past: the main wait reports those).
async fn first_unhealthy(env: &CheckEnv, stack: &str) -> String {
    loop {
        if let Ok(Health::Unhealthy(why)) = look(env, stack).await {
            return why;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The health of every running task of `stack`, as each task's own engine reports it.
async fn look(env: &CheckEnv, stack: &str) -> anyhow::Result<Health> {
    let manager = &env.cluster.manager().docker;
    let names = env.cluster.names_by_id();
    let (mut waiting, mut checked) = (Vec::new(), 0usize);
    for s in stacks::services(manager, stack).await? {
        let name = short_name(stack, service_name(&s)).to_string();
        let tasks = stacks::tasks(manager, s.id.as_deref().unwrap_or_default()).await?;
        if let Some(why) = killed_unhealthy(env, &name, &tasks, &names).await {
            return Ok(Health::Unhealthy(why));
        }
        for t in tasks.iter().filter(|t| runs(t)) {
            let node = node_of(t, &names);
            let Some(health) = health_of(&env.cluster.node(&node).docker, t).await? else {
                continue;
            };
            checked += 1;
            match health.status {
                Some(HealthStatusEnum::HEALTHY) => {}
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Ok(Health::Unhealthy(format!(
                        "service {name}: its task on {node} is unhealthy ({} failing probe(s) in a row); {}",
                        health.failing_streak.unwrap_or_default(),
                        last_probe(&health)
                    )));
                }
                other => waiting.push(format!(
                    "{name} on {node}: {} ({})",
                    other.map(|h| h.to_string()).unwrap_or_else(|| "no health yet".into()),
                    last_probe(&health)
                )),
            }
        }
    }
    Ok(if checked == 0 {
        Health::Unchecked
    } else {
        Health::Waiting(waiting)
    })
}

fn service_name(s: &Service) -> &str {
    s.spec.as_ref().and_then(|x| x.name.as_deref()).unwrap_or_default()
}

/// A task the swarm wants running and that runs.
fn runs(t: &Task) -> bool {
    t.desired_state == Some(TaskState::RUNNING) && state_of(t) == TaskState::RUNNING
}

/// The health its engine reports for a task's container; `None` without a healthcheck.
async fn health_of(docker: &Docker, t: &Task) -> anyhow::Result<Option<EngineHealth>> {
    let Some(id) = (t.status.as_ref())
        .and_then(|s| s.container_status.as_ref())
        .and_then(|c| c.container_id.clone())
    else {
        return Ok(None);
    };
    let inspected = docker.inspect_container(&id, None).await?;
    Ok(inspected.state.and_then(|s| s.health))
}

/// The newest task the swarm stopped because its container was unhealthy, named with
/// its last probe (read from the dead container, which the task history keeps).
async fn killed_unhealthy(
    env: &CheckEnv,
    service: &str,
    tasks: &[Task],
    names: &HashMap<String, String>,
) -> Option<String> {
    let killed: Vec<&Task> = (tasks.iter())
        .filter(|t| (t.status.as_ref().and_then(|s| s.err.as_deref())).is_some_and(|e| e.contains("unhealthy")))
        .collect();
    let newest = killed.iter().max_by_key(|t| t.updated_at)?;
    let node = node_of(newest, names);
    let probe = match health_of(&env.cluster.node(&node).docker, newest).await {
        Ok(Some(h)) => last_probe(&h),
        Ok(None) => "its container reports no health".to_string(),
        Err(e) => format!("its container is gone ({e:#}), its last probe with it"),
    };
    Some(format!(
        "service {service}: {} task(s) stopped by the swarm as unhealthy, the newest on {node}; {probe}",
        killed.len()
    ))
}

/// The last probe's exit code and output, for a message.
fn last_probe(h: &EngineHealth) -> String {
    match h.log.as_ref().and_then(|l| l.last()) {
        Some(r) => format!(
            "the last probe exited {}: {}",
            r.exit_code.unwrap_or_default(),
            match r.output.as_deref().map(str::trim) {
                Some(o) if !o.is_empty() => o.replace('\n', " | "),
                _ => "(no output)".to_string(),
            }
        ),
        None => "no probe has run yet".to_string(),
    }
}
