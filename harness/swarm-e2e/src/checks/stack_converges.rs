//! `stack-converges`: every service of a stack runs its desired tasks (global: one per
//! eligible node, as the swarm counts them) with its update completed. A cause the
//! cluster will not undo by itself ends the wait at once, named with the task's own
//! error: an image on no node, no suitable node, a task that keeps failing (a failing
//! healthcheck among them), an update rolled back or paused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::{Service, Task, TaskState};

use super::probe::{failed_tasks, node_of, state_of};
use super::{CheckEnv, Outcome};
use crate::stacks::{self, short_name};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// How long the scheduler may keep a task pending with "no suitable node" before that is
/// the answer: it decides again only when a node changes, and the nodes are all Ready.
const UNSCHEDULABLE_FOR: Duration = Duration::from_secs(3);

/// Failed attempts of one service's tasks that make a restart loop the answer.
const FAILED_TASKS_FINAL: usize = 3;

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackConverges { stack } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let expected = &env.scenario.stack(stack).expect("validated stack").services;
    Ok(match converged(env, stack, expected, env.timeout).await {
        Ok(()) => Outcome::Passed,
        Err(m) => Outcome::Failed(m),
    })
}

/// Waits until every service `expected` of `stack` has converged, at most `limit`; the
/// failure says which service, on which node, and why.
pub(super) async fn converged(env: &CheckEnv, stack: &str, expected: &[String], limit: Duration) -> Result<(), String> {
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let pending = expected_pending(env, stack);
    let expected: Vec<&String> = expected
        .iter()
        .filter(|s| !pending.contains(&format!("{stack}_{s}")))
        .collect();
    let unschedulable_since: Mutex<HashMap<String, Instant>> = Mutex::new(HashMap::new());
    let waited = poll_until(limit, Duration::from_millis(250), || {
        let (names, unschedulable_since, pending, expected) = (&names, &unschedulable_since, &pending, &expected);
        async move {
            let services = stacks::services(manager, stack)
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let missing: Vec<&str> = expected
                .iter()
                .filter(|s| {
                    !services
                        .iter()
                        .any(|x| short_name(stack, service_name(x)) == s.as_str())
                })
                .map(|s| s.as_str())
                .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "service(s) {} of stack {stack} not in the swarm (the CLI created {} service(s) with label \
                     {}={stack})",
                    missing.join(", "),
                    services.len(),
                    stacks::NAMESPACE_LABEL
                );
            }
            let mut waiting = Vec::new();
            for s in services
                .iter()
                .filter(|s| !pending.iter().any(|p| p == service_name(s)))
            {
                let tasks = stacks::tasks(manager, s.id.as_deref().unwrap_or_default()).await?;
                match verdict(s, &tasks, names, &mut unschedulable_since.lock().unwrap()) {
                    Verdict::Converged => {}
                    Verdict::Waiting(why) => waiting.push(why),
                    Verdict::Final(why) => return Ok(Some(Err(why))),
                }
            }
            if waiting.is_empty() {
                return Ok(Some(Ok(())));
            }
            anyhow::bail!("{}", waiting.join("; "))
        }
    })
    .await;
    match waited {
        Ok(r) => r,
        Err(e) => Err(format!("stack {stack} did not converge: {e:#}")),
    }
}

/// The services of `stack` a `pending` check expects never to run (swarm names): they
/// are not waited for.
fn expected_pending(env: &CheckEnv, stack: &str) -> Vec<String> {
    (env.scenario.checks.iter())
        .filter_map(|c| match &c.kind {
            CheckKind::Pending {
                service,
                stack: Some(s),
            } if s == stack => Some(service.clone()),
            _ => None,
        })
        .collect()
}

fn service_name(s: &Service) -> &str {
    s.spec.as_ref().and_then(|x| x.name.as_deref()).unwrap_or_default()
}

enum Verdict {
    Converged,
    Waiting(String),
    /// The cluster will not get there by itself: the cause.
    Final(String),
}

/// Where one service stands: its running tasks against the desired count, its update,
/// and its tasks' errors.
fn verdict(
    s: &Service,
    tasks: &[Task],
    names: &HashMap<String, String>,
    unschedulable_since: &mut HashMap<String, Instant>,
) -> Verdict {
    let name = service_name(s);
    let update = s.update_status.as_ref().and_then(|u| u.state.map(|st| st.to_string()));
    if let Some(state) = update
        .as_deref()
        .filter(|st| matches!(*st, "paused" | "rollback_paused" | "rollback_completed"))
    {
        let message = s
            .update_status
            .as_ref()
            .and_then(|u| u.message.clone())
            .unwrap_or_default();
        return Verdict::Final(format!("service {name}: update {state} ({message})"));
    }
    let desired_now = |t: &&Task| t.desired_state.is_some_and(|d| d == TaskState::RUNNING);
    let current: Vec<&Task> = tasks.iter().filter(desired_now).collect();
    let running = current.iter().filter(|t| state_of(t) == TaskState::RUNNING).count();
    let desired = s
        .service_status
        .as_ref()
        .and_then(|st| st.desired_tasks)
        .unwrap_or(current.len() as u64) as usize;
    // The image: tasks rejected because no node has it (no registry to pull from).
    let error_of = |t: &Task| {
        t.status
            .as_ref()
            .and_then(|st| st.err.clone())
            .filter(|e| !e.is_empty())
    };
    if let Some((t, e)) = tasks
        .iter()
        .filter_map(|t| error_of(t).map(|e| (t, e)))
        .find(|(_, e)| e.contains("No such image"))
    {
        return Verdict::Final(format!(
            "service {name}: a task on {} was rejected: {e} (the image is not on that node and no registry \
             serves it: load it onto every node)",
            on(t, names)
        ));
    }
    let pending: Vec<(&Task, String)> = current
        .iter()
        .filter(|t| state_of(t) == TaskState::PENDING)
        .filter_map(|t| error_of(t).map(|e| (*t, e)))
        .filter(|(_, e)| e.contains("no suitable node"))
        .collect();
    match pending.first() {
        Some((_, e)) => {
            let since = *unschedulable_since.entry(name.to_string()).or_insert_with(Instant::now);
            if since.elapsed() >= UNSCHEDULABLE_FOR {
                return Verdict::Final(format!(
                    "service {name}: {running} of {desired} task(s) running; {} task(s) pending for {:.0} s: {e}",
                    pending.len(),
                    since.elapsed().as_secs_f64()
                ));
            }
        }
        None => {
            unschedulable_since.remove(name);
        }
    }
    if let (failed, Some((node, why))) = failed_tasks(tasks, names)
        && running < desired
        && failed.len() >= FAILED_TASKS_FINAL
    {
        return Verdict::Final(format!(
            "service {name}: {running} of {desired} task(s) running; {} task(s) failed, the last on {node}: {why}",
            failed.len()
        ));
    }
    if running == desired && update.as_deref().is_none_or(|st| st == "completed") {
        return Verdict::Converged;
    }
    let states: Vec<String> = current
        .iter()
        .filter(|t| state_of(t) != TaskState::RUNNING)
        .map(|t| format!("{} on {}", state_of(t), on(t, names)))
        .collect();
    let update = update.map(|u| format!(", update {u}")).unwrap_or_default();
    Verdict::Waiting(format!(
        "service {name}: {running} of {desired} task(s) running{update}{}",
        if states.is_empty() {
            String::new()
        } else {
            format!(" ({})", states.join(", "))
        }
    ))
}

/// The node a task is on, for a message.
fn on(t: &Task, names: &HashMap<String, String>) -> String {
    match node_of(t, names) {
        n if n.is_empty() => "no node yet".to_string(),
        n => n,
    }
}
