//! `starts-when-labelled`: a service pending for a node label starts on the node once it
//! gets the label.

use std::collections::HashMap;

use anyhow::Context;

use super::probe::{replicas_of, wait_tasks};
use super::{CheckEnv, Outcome};
use crate::cluster::update_node_spec;
use swarm_e2e_model::{Check, CheckKind};

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StartsWhenLabelled { service, node, label } = &check.kind else {
        return Err(super::misrouted(check));
    };
    run(env, service, node, label).await
}

/// Pending until `node` gets `label`, then running there. The label is removed again.
pub(super) async fn run(env: &CheckEnv, service: &str, node: &str, label: &str) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    if let Outcome::Failed(m) = super::pending::run_pending(env, service).await {
        return Ok(Outcome::Failed(format!("before labelling: {m}")));
    }
    let (key, value) = label.split_once('=').context("validated label")?;
    let manager = &env.cluster.manager().docker;
    let id = env.cluster.node(node).node_id.clone();
    update_node_spec(manager, &id, |s| {
        s.labels
            .get_or_insert_with(HashMap::new)
            .insert(key.into(), value.into());
    })
    .await?;
    let placed = wait_tasks(
        env,
        service,
        &format!("{replicas} task(s) of `{service}` running on {node} once labelled {label}"),
        |per_node, running| running == replicas && per_node.keys().all(|n| n == node),
    )
    .await;
    update_node_spec(manager, &id, |s| {
        s.labels.get_or_insert_with(HashMap::new).remove(key);
    })
    .await?;
    Ok(match placed {
        Ok(_) => Outcome::Passed,
        Err(m) => Outcome::Failed(m),
    })
}
