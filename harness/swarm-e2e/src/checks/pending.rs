//! `pending`: a service whose constraints no node satisfies stays pending, with the
//! scheduler saying so.

use std::time::Duration;

use bollard::models::TaskState;

use super::probe::{describe_tasks, node_of, service_tasks, state_of};
use super::{CheckEnv, Outcome};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Pending { service, .. } = &check.kind else {
        return Err(super::misrouted(check));
    };
    run(env, service).await
}

/// The `pending` check, for checks that start from a pending service.
pub(super) async fn run_pending(env: &CheckEnv, service: &str) -> Outcome {
    run(env, service)
        .await
        .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")))
}

pub(super) async fn run(env: &CheckEnv, service: &str) -> anyhow::Result<Outcome> {
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let waited = poll_until(env.timeout, Duration::from_millis(50), || async {
        let tasks = service_tasks(manager, service).await?;
        if let Some(t) = tasks.iter().find(|t| state_of(t) == TaskState::RUNNING) {
            let node = node_of(t, &names);
            return Ok(Some(Err(format!(
                "expected `{service}` to stay pending, but a task runs on {node}"
            ))));
        }
        let unsatisfied = tasks.iter().find(|t| {
            state_of(t) == TaskState::PENDING
                && t.status
                    .as_ref()
                    .and_then(|s| s.err.as_deref())
                    .is_some_and(|e| e.contains("constraints not satisfied"))
        });
        match unsatisfied {
            Some(_) => Ok(Some(Ok(()))),
            None => anyhow::bail!(
                "expected a pending task of `{service}` whose error says the constraints are not satisfied; saw {}",
                describe_tasks(&tasks, &names)
            ),
        }
    })
    .await;
    Ok(match waited {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(m)) => Outcome::Failed(m),
        Err(e) => Outcome::Failed(format!("{e:#}")),
    })
}
