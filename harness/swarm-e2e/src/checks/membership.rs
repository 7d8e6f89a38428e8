//! `membership`: the manager lists exactly the declared nodes, and every node knows a
//! manager.

use std::collections::BTreeSet;

use bollard::query_parameters::ListNodesOptions;

use super::{CheckEnv, Outcome};
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Membership = &check.kind else {
        return Err(super::misrouted(check));
    };
    run(env).await
}

/// The manager lists exactly the declared nodes, with the IDs their engines report,
/// and every node knows a manager's address.
pub(super) async fn run(env: &CheckEnv) -> anyhow::Result<Outcome> {
    let manager = &env.cluster.manager().docker;
    let listed = manager.list_nodes(None::<ListNodesOptions>).await?;
    let listed_ids: BTreeSet<String> = listed.iter().filter_map(|n| n.id.clone()).collect();
    let mut problems = Vec::new();
    if listed.len() != env.scenario.nodes.len() {
        problems.push(format!(
            "the manager lists {} node(s), the scenario declares {}",
            listed.len(),
            env.scenario.nodes.len()
        ));
    }
    let manager_addrs: BTreeSet<String> = listed
        .iter()
        .filter_map(|n| n.manager_status.as_ref()?.addr.clone())
        .collect();
    for node in &env.cluster.nodes {
        let info = node.docker.info().await?;
        let swarm = info.swarm.unwrap_or_default();
        let id = swarm.node_id.unwrap_or_default();
        if !listed_ids.contains(&id) {
            problems.push(format!(
                "{} says its node ID is `{id}`, which the manager does not list",
                node.name
            ));
        }
        let remotes: Vec<String> = swarm
            .remote_managers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.addr)
            .collect();
        if !remotes.iter().any(|a| manager_addrs.contains(a)) {
            problems.push(format!(
                "{} knows managers at {remotes:?}, none of the managers' addresses {manager_addrs:?}",
                node.name
            ));
        }
    }
    Ok(if problems.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(problems.join("\n"))
    })
}
