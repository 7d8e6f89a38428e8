//! `placement`: every task of a service runs on a node its constraints allow, spread as
//! expected.

use std::time::Duration;

use anyhow::Context;
use bollard::models::{Task, TaskState};
use swarm_e2e_model::ServiceMode;

use super::probe::{describe_tasks, node_of, service_tasks, state_of};
use super::{CheckEnv, Outcome};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Placement {
        service,
        expect_nodes,
        expect_counts,
        ..
    } = &check.kind
    else {
        return Err(super::misrouted(check));
    };
    run(env, service, expect_nodes, expect_counts.as_ref()).await
}

pub(super) async fn run(
    env: &CheckEnv,
    service: &str,
    expect_nodes: &[String],
    expect_counts: Option<&std::collections::BTreeMap<String, u64>>,
) -> anyhow::Result<Outcome> {
    let declared = env.scenario.service(service).context("validated service")?;
    let expected_count = match declared.mode {
        ServiceMode::Replicated { replicas } => replicas as usize,
        ServiceMode::Global => expect_nodes.len(),
    };
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let constraints: Vec<String> = declared.constraints.iter().map(|c| c.to_string()).collect();
    let mut misplaced: Option<String> = None;
    let waited = poll_until(env.timeout, Duration::from_millis(50), || async {
        let tasks = service_tasks(manager, service).await?;
        let running: Vec<&Task> = tasks.iter().filter(|t| state_of(t) == TaskState::RUNNING).collect();
        for t in &running {
            let node = node_of(t, &names);
            if !expect_nodes.contains(&node) {
                return Ok(Some(Some(format!(
                    "a task of `{service}` runs on {node}, but it may only run on [{}] (constraints: [{}])",
                    expect_nodes.join(", "),
                    constraints.join(", ")
                ))));
            }
        }
        if running.len() == expected_count {
            // Every task is placed: now the spread must be exactly as expected (and a
            // global service has one task per node).
            let mut seen: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
            for t in &running {
                *seen.entry(node_of(t, &names)).or_default() += 1;
            }
            if let Some(problem) = unspread(env, declared, expect_nodes, expect_counts, &seen) {
                return Ok(Some(Some(problem)));
            }
            let wanted: std::collections::BTreeMap<String, u64> = match expect_counts {
                Some(c) => c
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
                None if declared.mode == ServiceMode::Global => expect_nodes.iter().map(|n| (n.clone(), 1)).collect(),
                None => return Ok(Some(None)),
            };
            if seen != wanted {
                let show = |m: &std::collections::BTreeMap<String, u64>| {
                    m.iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Ok(Some(Some(format!(
                    "tasks of `{service}` per node: expected {{{}}}, saw {{{}}}",
                    show(&wanted),
                    show(&seen)
                ))));
            }
            return Ok(Some(None));
        }
        tracing::trace!("{} of {expected_count} task(s) of `{service}` running", running.len());
        anyhow::bail!(
            "expected {expected_count} running task(s) of `{service}` on [{}], saw {}: {}",
            expect_nodes.join(", "),
            running.len(),
            describe_tasks(&tasks, &names)
        )
    })
    .await;
    match waited {
        Ok(Some(problem)) => misplaced = Some(problem),
        Ok(None) => {}
        Err(e) => return Ok(Outcome::Failed(format!("{e:#}"))),
    }
    Ok(match misplaced {
        Some(m) => Outcome::Failed(m),
        None => Outcome::Passed,
    })
}

/// Swarm spreads a replicated service over the nodes it may use: with at least as many
/// replicas as eligible nodes (and no spread preference of the scenario's own), every
/// eligible node runs one. A node that gets none is not taking work (paused by hand, out
/// of resources, its engine refusing tasks), which the constraints alone do not show.
fn unspread(
    env: &CheckEnv,
    declared: &swarm_e2e_model::Service,
    expect_nodes: &[String],
    expect_counts: Option<&std::collections::BTreeMap<String, u64>>,
    seen: &std::collections::BTreeMap<String, u64>,
) -> Option<String> {
    let ServiceMode::Replicated { replicas } = declared.mode else {
        return None;
    };
    if expect_counts.is_some() || !declared.preferences.is_empty() {
        return None;
    }
    let eligible: Vec<String> = env
        .scenario
        .eligible_nodes(declared)?
        .into_iter()
        .filter(|n| expect_nodes.contains(n))
        .collect();
    if (replicas as usize) < eligible.len() {
        return None;
    }
    let idle: Vec<&str> = eligible
        .iter()
        .filter(|n| !seen.contains_key(*n))
        .map(String::as_str)
        .collect();
    if idle.is_empty() {
        return None;
    }
    let per_node: Vec<String> = seen.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    Some(format!(
        "{} got no task of `{}` although its {replicas} replica(s) are at least its {} eligible node(s) [{}] \
         (swarm spreads replicas over the nodes it may use): tasks per node {{{}}}",
        idle.join(", "),
        declared.name,
        eligible.len(),
        eligible.join(", "),
        per_node.join(", ")
    ))
}
