//! `stack-update`: the stack redeployed with more Compose files merged over its own (a
//! new image tag, environment, command), judged by each changed service's own update
//! status, never by the CLI's exit code (it exits 0 on a rollback, docker/cli#6752).
//! While the update runs, the running tasks are counted: a service never has more tasks
//! down at once than its `update_config` allows (parallelism, and none with
//! `order: start-first`), observed rather than assumed.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    Service, ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, Task, TaskSpec, TaskState,
};

use super::probe::{start_bound, state_of};
use super::{CheckEnv, Outcome};
use crate::stacks::{self, short_name};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind, UpdateOutcome};

/// Bound on the redeploy itself (the CLI returns once the specs are sent).
const REDEPLOY_LIMIT: Duration = Duration::from_secs(60);

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackUpdate { stack, files, expect } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let Some(cli) = &env.docker_cli else {
        return Ok(Outcome::Failed("no docker CLI to redeploy the stack with".into()));
    };
    let declared = env.scenario.stack(stack).expect("validated stack");
    if let Err(m) = super::stack_converges::converged(env, stack, &declared.services, start_bound(env)).await {
        return Ok(Outcome::Failed(format!("cannot update: {m}")));
    }
    let manager = &env.cluster.manager().docker;
    let services = stacks::services(manager, stack).await?;
    let before = specs(&services);
    // An earlier update's status stays until this one starts: only a newer one counts.
    let started_before: HashMap<String, String> = services
        .iter()
        .filter_map(|s| Some((s.spec.as_ref()?.name.clone()?, update_started(s)?)))
        .collect();
    let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    if let Err(e) = stacks::redeploy(cli, &env.cluster, declared, files, REDEPLOY_LIMIT).await {
        return Ok(Outcome::Failed(format!(
            "redeploying stack {stack} with {}: {e:#}",
            shown.join(", ")
        )));
    }
    // Read at once: what the update asks for (a rollback later restores the old spec).
    let intended = specs(&stacks::services(manager, stack).await?);
    let changed: Vec<String> = intended
        .iter()
        .filter(|(name, spec)| before.get(*name) != Some(spec))
        .map(|(name, _)| name.clone())
        .collect();
    if changed.is_empty() {
        return Ok(Outcome::Failed(format!(
            "{} change(s) no service of stack {stack}: nothing was updated",
            shown.join(", ")
        )));
    }
    let ended = watch_updates(env, stack, &changed, &started_before).await;
    let ended = match ended {
        Ok(e) => e,
        Err(m) => return Ok(Outcome::Failed(m)),
    };
    Ok(verdict(stack, &ended, &before, *expect))
}

/// Each service's task template by service name: what an update changes.
pub(super) fn specs(services: &[Service]) -> HashMap<String, TaskSpec> {
    services
        .iter()
        .filter_map(|s| {
            let spec = s.spec.as_ref()?;
            let mut template = spec.task_template.clone()?;
            // The CLI's own bookkeeping, not the user's change.
            template.force_update = None;
            Some((spec.name.clone()?, template))
        })
        .collect()
}

/// How one changed service's update ended, and what was seen on the way.
struct Ended {
    service: Service,
    state: ServiceUpdateStatusStateEnum,
    /// The fewest tasks running at once while it updated, of `replicas`.
    fewest_running: usize,
    replicas: Option<usize>,
    /// The last failed task's error and node (why an update failed).
    last_failure: Option<String>,
}

/// Polls until every service in `changed` ended its update (completed, paused, rolled
/// back), counting its running tasks on every round.
async fn watch_updates(
    env: &CheckEnv,
    stack: &str,
    changed: &[String],
    started_before: &HashMap<String, String>,
) -> Result<Vec<Ended>, String> {
    let manager = &env.cluster.manager().docker;
    let names = env.cluster.names_by_id();
    let fewest: std::sync::Mutex<HashMap<String, usize>> = Default::default();
    let waited = poll_until(env.timeout, Duration::from_millis(250), || async {
        let services = stacks::services(manager, stack).await?;
        let mut ended = Vec::new();
        let mut waiting = Vec::new();
        for name in changed {
            let s = services
                .iter()
                .find(|s| s.spec.as_ref().and_then(|x| x.name.as_ref()) == Some(name))
                .ok_or_else(|| anyhow::anyhow!("service {name} is gone"))?;
            let tasks = stacks::tasks(manager, s.id.as_deref().unwrap_or_default()).await?;
            let running = tasks
                .iter()
                .filter(|t| t.desired_state == Some(TaskState::RUNNING) && state_of(t) == TaskState::RUNNING)
                .count();
            let seen = *fewest
                .lock()
                .unwrap()
                .entry(name.clone())
                .and_modify(|f| *f = (*f).min(running))
                .or_insert(running);
            let fresh = update_started(s).is_some_and(|t| started_before.get(name) != Some(&t));
            let state = s.update_status.as_ref().and_then(|u| u.state).filter(|_| fresh);
            use ServiceUpdateStatusStateEnum as U;
            match state {
                Some(st @ (U::COMPLETED | U::ROLLBACK_COMPLETED | U::PAUSED | U::ROLLBACK_PAUSED)) => {
                    ended.push(Ended {
                        service: s.clone(),
                        state: st,
                        fewest_running: seen,
                        replicas: replicas(s),
                        last_failure: last_failure(&tasks, &names),
                    })
                }
                other => waiting.push(format!(
                    "service {name}: update {} ({running} task(s) running)",
                    other.map(|o| o.to_string()).unwrap_or_else(|| "not started".into())
                )),
            }
        }
        if waiting.is_empty() {
            return Ok(Some(ended));
        }
        anyhow::bail!("{}", waiting.join("; "))
    })
    .await;
    waited.map_err(|e| format!("the update of stack {stack} did not end: {e:#}"))
}

/// When the service's last update started, as the swarm reports it.
pub(super) fn update_started(s: &Service) -> Option<String> {
    let started = s.update_status.as_ref()?.started_at.as_ref()?;
    Some(format!("{started:?}"))
}

fn replicas(s: &Service) -> Option<usize> {
    let mode = s.spec.as_ref()?.mode.as_ref()?;
    mode.replicated.as_ref()?.replicas.map(|r| r as usize)
}

fn last_failure(tasks: &[Task], names: &HashMap<String, String>) -> Option<String> {
    let (_, last) = super::probe::failed_tasks(tasks, names);
    last.map(|(node, why)| format!("a task on {node} failed: {why}"))
}

/// The check's verdict from how the updates ended.
fn verdict(stack: &str, ended: &[Ended], before: &HashMap<String, TaskSpec>, expect: UpdateOutcome) -> Outcome {
    use ServiceUpdateStatusStateEnum as U;
    let mut problems = Vec::new();
    for e in ended {
        let spec = e.service.spec.as_ref();
        let name = spec.and_then(|s| s.name.clone()).unwrap_or_default();
        let short = short_name(stack, &name);
        let message = (e.service.update_status.as_ref())
            .and_then(|u| u.message.clone())
            .unwrap_or_default();
        let why = e.last_failure.as_deref().map(|f| format!("; {f}")).unwrap_or_default();
        match (expect, e.state) {
            (UpdateOutcome::Completed, U::COMPLETED) => {
                if let Some(p) = too_many_down(e) {
                    problems.push(format!("service {short}: {p}"));
                }
            }
            (UpdateOutcome::Completed, state) => {
                problems.push(format!("service {short}: update {state} ({message}){why}"));
            }
            (UpdateOutcome::RolledBack, U::ROLLBACK_COMPLETED) => {
                let mut now = spec.and_then(|s| s.task_template.clone());
                if let Some(t) = now.as_mut() {
                    t.force_update = None;
                }
                if now.as_ref() != before.get(&name) {
                    problems.push(format!(
                        "service {short}: rolled back, but its spec is not the one it ran before the update"
                    ));
                }
            }
            (UpdateOutcome::RolledBack, state) => problems.push(format!(
                "service {short}: expected its update to roll back; it ended {state} ({message})"
            )),
        }
    }
    if problems.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(problems.join("\n"))
    }
}

/// More tasks down at once than the service's `update_config` allows, as observed.
fn too_many_down(e: &Ended) -> Option<String> {
    let replicas = e.replicas?;
    let config = e.service.spec.as_ref()?.update_config.as_ref();
    let parallelism = config.and_then(|c| c.parallelism).unwrap_or(1);
    if parallelism == 0 {
        return None;
    }
    let start_first = config.and_then(|c| c.order) == Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST);
    let allowed = if start_first { 0 } else { parallelism as usize };
    let down = replicas.saturating_sub(e.fewest_running);
    (down > allowed).then(|| {
        format!(
            "{down} of {replicas} task(s) were down at once during its update; its update_config allows {allowed} \
             (parallelism {parallelism}, order {})",
            if start_first { "start-first" } else { "stop-first" }
        )
    })
}
