//! `stack-redeploy`: the stack deployed again from the same files changes nothing: no
//! service's task spec differs, no update starts and no task is replaced. CI pipelines
//! run `docker stack deploy` on every push; a redeploy that restarts tasks is an outage
//! per push (a timestamp in the spec, an image resolved to a new digest, a secret
//! rotated by accident).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::models::{TaskSpec, TaskState};

use super::probe::{start_bound, state_of};
use super::stack_update::{specs, update_started};
use super::{CheckEnv, Outcome};
use crate::stacks::{self, short_name};
use swarm_e2e_model::{Check, CheckKind};

/// Bound on the redeploy itself (the CLI returns once the specs are sent).
const REDEPLOY_LIMIT: Duration = Duration::from_secs(60);

/// How long the tasks are watched after the redeploy: the orchestrator starts an update
/// within a second of a changed spec; no change by then is none at all.
const WATCH: Duration = Duration::from_secs(3);

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackRedeploy { stack } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let Some(cli) = &env.docker_cli else {
        return Ok(Outcome::Failed("no docker CLI to redeploy the stack with".into()));
    };
    let declared = env.scenario.stack(stack).expect("validated stack");
    if let Err(m) = super::stack_converges::converged(env, stack, &declared.services, start_bound(env)).await {
        return Ok(Outcome::Failed(format!("cannot redeploy: {m}")));
    }
    let manager = &env.cluster.manager().docker;
    let services = stacks::services(manager, stack).await?;
    let before = specs(&services);
    let updates: HashMap<String, Option<String>> = (services.iter())
        .filter_map(|s| Some((s.spec.as_ref()?.name.clone()?, update_started(s))))
        .collect();
    let tasks_before = running_tasks(env, stack).await?;
    let deployed = stacks::redeploy(cli, &env.cluster, declared, &[], REDEPLOY_LIMIT).await;
    if let Err(e) = deployed {
        return Ok(Outcome::Failed(format!("deploying stack {stack} again: {e:#}")));
    }
    let after = stacks::services(manager, stack).await?;
    let changed: Vec<String> = (specs(&after).into_iter())
        .filter_map(|(name, spec)| {
            let was = before.get(&name)?;
            (was != &spec).then(|| format!("{} ({})", short_name(stack, &name), differences(was, &spec).join(", ")))
        })
        .collect();
    if !changed.is_empty() {
        return Ok(Outcome::Failed(format!(
            "the same files deployed again changed the task spec of {}: their tasks are replaced. Either the \
             deploy is not repeatable, or the running services were changed since they were deployed (by hand, \
             `docker service update`) and the files do not have the change",
            changed.join("; ")
        )));
    }
    let started = Instant::now();
    while started.elapsed() < WATCH {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for s in stacks::services(manager, stack).await? {
            let name = s.spec.as_ref().and_then(|x| x.name.clone()).unwrap_or_default();
            if updates.get(&name).is_some_and(|u| *u != update_started(&s)) {
                return Ok(Outcome::Failed(format!(
                    "the same files deployed again started an update of {}",
                    short_name(stack, &name)
                )));
            }
        }
        let now = running_tasks(env, stack).await?;
        let replaced: Vec<&String> = tasks_before.difference(&now).collect();
        if !replaced.is_empty() {
            return Ok(Outcome::Failed(format!(
                "the same files deployed again stopped {} running task(s): {}",
                replaced.len(),
                replaced.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(Outcome::Passed)
}

/// The fields of a task spec that differ (`ContainerSpec.Env`, `Placement`), as the
/// Engine API names them.
fn differences(a: &TaskSpec, b: &TaskSpec) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let mut out = Vec::new();
    differing("", &a, &b, &mut out);
    out
}

fn differing(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = serde_json::Value::Null;
                let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                differing(&path, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
            }
        }
        (x, y) if x != y => out.push(at.to_string()),
        _ => {}
    }
}

/// The running tasks of the stack, as `SERVICE.SLOT` (or `SERVICE.NODE` when global)
/// with the task ID: a task replaced shows as a new ID.
async fn running_tasks(env: &CheckEnv, stack: &str) -> anyhow::Result<BTreeSet<String>> {
    let manager = &env.cluster.manager().docker;
    let mut out = BTreeSet::new();
    for s in stacks::services(manager, stack).await? {
        let name = s.spec.as_ref().and_then(|x| x.name.clone()).unwrap_or_default();
        for t in stacks::tasks(manager, s.id.as_deref().unwrap_or_default()).await? {
            if t.desired_state == Some(TaskState::RUNNING) && state_of(&t) == TaskState::RUNNING {
                let id = t.id.as_deref().unwrap_or_default();
                out.insert(format!("{} ({})", short_name(stack, &name), &id[..id.len().min(12)]));
            }
        }
    }
    Ok(out)
}
