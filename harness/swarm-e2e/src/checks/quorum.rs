//! `quorum` (disruptive): with most managers stopped the swarm refuses changes; with
//! one back it accepts them again.

use std::time::Duration;

use bollard::models::{ServiceSpec, TaskSpec, TaskSpecContainerSpec};
use swarm_e2e_model::BUSYBOX;

use super::probe::wait_all_ready;
use super::{CheckEnv, Outcome, no_control};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Quorum = &check.kind else {
        return Err(super::misrouted(check));
    };
    run(env).await
}

fn probe_service(name: &str, image: &str, run_id: &str) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(crate::marks::workload_labels(run_id)),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                labels: Some(crate::marks::workload_labels(run_id)),
                image: Some(image.to_string()),
                command: Some(vec!["top".into()]),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The least time a quorum restored by one manager's return is given to elect a leader.
const RECOVERY_BOUND: Duration = Duration::from_secs(120);

/// All managers but the one the harness talks to stop: creating a service must fail
/// for lack of quorum; one back, it must work. Everything is started again after.
pub(super) async fn run(env: &CheckEnv) -> anyhow::Result<Outcome> {
    let Some(control) = &env.node_control else {
        return Ok(no_control("losing quorum", env.target));
    };
    let leader = env.cluster.manager();
    let others: Vec<String> = env
        .cluster
        .nodes
        .iter()
        .filter(|n| n.role == swarm_e2e_model::Role::Manager && n.name != leader.name)
        .map(|n| n.name.clone())
        .collect();
    let image = env.image(BUSYBOX);
    for n in &others {
        control.stop(n).await?;
    }
    let mut attempt = 0;
    let blocked = poll_until(env.timeout, Duration::from_millis(500), || {
        attempt += 1;
        let name = format!("quorum-probe-{attempt}");
        let spec = probe_service(&name, &image, &env.cluster.run_id);
        async move {
            let asked = std::time::Instant::now();
            let answer = tokio::time::timeout(Duration::from_secs(20), leader.docker.create_service(spec, None)).await;
            tracing::debug!(
                "quorum: service create {attempt} answered after {:.1}s: {:?}",
                asked.elapsed().as_secs_f64(),
                answer
                    .as_ref()
                    .map(|r| r.as_ref().map(|_| "created").map_err(|e| e.to_string()))
            );
            match answer {
                // Either answer refuses the write for lack of quorum: the leader steps
                // down once it no longer hears a majority (raft's check-quorum, about
                // 10 s), which fails the write in flight with "node lost leader status"
                // (13.5 s after the stop, measured); a write asked after that says "does
                // not have a leader … more than half of the managers". Waiting for the
                // second cost 20 s more: the write asked in between hung for 20 s.
                Ok(Err(e)) if refused_for_lack_of_quorum(&e.to_string()) => Ok(Some(())),
                Ok(Err(e)) => anyhow::bail!("{e}"),
                Ok(Ok(_)) => {
                    // Quorum not lost yet (the managers' absence is not noticed at once).
                    let _ = leader.docker.delete_service(&name).await;
                    anyhow::bail!("the service was created")
                }
                Err(_) => anyhow::bail!("service create hung for 20 s"),
            }
        }
    })
    .await;
    // One manager back: quorum (2 of 3) again. How soon is raft's: the engine boots, then
    // an election with randomized timeouts of 10-20 s that two candidates can split and
    // repeat (17-43 s measured on clean runs), so the wait is at least RECOVERY_BOUND.
    control.start(&others[0]).await?;
    let recovered = poll_until(env.timeout.max(RECOVERY_BOUND), Duration::from_millis(500), || {
        let spec = probe_service("quorum-recovered", &image, &env.cluster.run_id);
        async move {
            match leader.docker.create_service(spec, None).await {
                Ok(_) => Ok(Some(())),
                Err(e) => anyhow::bail!("{e}"),
            }
        }
    })
    .await;
    let _ = leader.docker.delete_service("quorum-recovered").await;
    for n in &others[1..] {
        control.start(n).await?;
    }
    for n in &others {
        let _ = crate::engine::wait_ready(&env.cluster.node(n).docker, env.timeout).await;
    }
    let restored = wait_all_ready(env, env.timeout).await;
    Ok(match (blocked, recovered, restored) {
        (Err(e), _, _) => Outcome::Failed(format!(
            "with {} of {} managers stopped, creating a service should be refused for lack of quorum (\"node lost \
             leader status\", or \"more than half of the managers are online\"); {e:#}",
            others.len(),
            others.len() + 1
        )),
        (Ok(()), Err(e), _) => Outcome::Failed(format!("with quorum restored, creating a service still failed; {e:#}")),
        (Ok(()), Ok(()), Err(m)) => Outcome::Failed(m),
        (Ok(()), Ok(()), Ok(())) => Outcome::Passed,
    })
}

/// Whether an engine's answer to a write refuses it for lack of quorum.
fn refused_for_lack_of_quorum(answer: &str) -> bool {
    answer.contains("more than half of the managers") || answer.contains("node lost leader status")
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_answers_of_a_leader_without_quorum_refuse_the_write() {
        let refused = super::refused_for_lack_of_quorum;
        assert!(refused(
            "Docker responded with status code 500: rpc error: code = Unknown desc = raft: failed to process the \
             request: node lost leader status"
        ));
        assert!(refused(
            "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers \
             are online. Make sure more than half of the managers are online."
        ));
        assert!(!refused(
            "Docker responded with status code 409: service quorum-probe-1 already exists"
        ));
    }
}
