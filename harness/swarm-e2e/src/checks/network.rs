//! `network`: an overlay as each node that sees it reports it (driver, scope,
//! attachability, subnet, encryption).

use anyhow::Context;
use bollard::query_parameters::InspectNetworkOptions;

use super::{CheckEnv, Outcome};
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::Network { network } = &check.kind else {
        return Err(super::misrouted(check));
    };
    run(env, network).await
}

/// The overlay as each node that sees it reports it.
pub(super) async fn run(env: &CheckEnv, network: &str) -> anyhow::Result<Outcome> {
    let declared = env.scenario.network(network).context("validated network")?;
    let classic = env.scenario.topology == swarm_e2e_model::Topology::Classic;
    let want_scope = if classic { "global" } else { "swarm" };
    let mut problems = Vec::new();
    let mut seen_on = Vec::new();
    // Every node at once, each bounded by the check's bound: a node that does not answer
    // costs that bound once, not the client's request timeout per node.
    let inspections = futures_util::future::join_all(env.cluster.nodes.iter().map(|node| async move {
        let inspect = node.docker.inspect_network(network, None::<InspectNetworkOptions>);
        match tokio::time::timeout(env.timeout, inspect).await {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        }
    }))
    .await;
    for (node, inspected) in env.cluster.nodes.iter().zip(inspections) {
        let inspected = match inspected {
            Ok(n) => n,
            Err(None) => {
                problems.push(format!(
                    "{}: inspect failed: no answer within {:.0} s",
                    node.name,
                    env.timeout.as_secs_f64()
                ));
                continue;
            }
            // Swarm workers learn an overlay only when something of theirs attaches to
            // it; classic engines all learn it from the cluster store.
            Err(Some(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }))
                if node.role != swarm_e2e_model::Role::Manager && !classic =>
            {
                continue;
            }
            Err(Some(e)) => {
                problems.push(format!("{}: inspect failed: {e}", node.name));
                continue;
            }
        };
        seen_on.push(node.name.clone());
        let driver = inspected.driver.unwrap_or_default();
        let scope = inspected.scope.unwrap_or_default();
        let attachable = inspected.attachable.unwrap_or(false);
        let subnets: Vec<String> = inspected
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .collect();
        if driver != "overlay" {
            problems.push(format!("{}: driver `{driver}`, expected `overlay`", node.name));
        }
        if scope != want_scope {
            problems.push(format!("{}: scope `{scope}`, expected `{want_scope}`", node.name));
        }
        if !classic && attachable != declared.attachable {
            problems.push(format!(
                "{}: attachable = {attachable}, declared {}",
                node.name, declared.attachable
            ));
        }
        if let Some(want) = &declared.subnet
            && !subnets.contains(want)
        {
            problems.push(format!("{}: subnets {subnets:?}, declared {want}", node.name));
        }
        if declared.encrypted && !inspected.options.as_ref().is_some_and(|o| o.contains_key("encrypted")) {
            problems.push(format!("{}: not marked encrypted", node.name));
        }
    }
    if seen_on.is_empty() {
        problems.push("no node lists the network".into());
    }
    Ok(if problems.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(format!(
            "overlay `{network}` as the nodes see it:\n  {}",
            problems.join("\n  ")
        ))
    })
}
