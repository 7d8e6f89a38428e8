//! `cluster-state`: the cluster is as the scenario declares it, when the checks start and
//! again once the other checks ended: every node's role, availability, node labels,
//! engine labels, engine version, and that it is Ready. A drift names the node, the key,
//! the declared and the actual value (a label lost after formation passes every other
//! check: running tasks are not moved when their constraint stops holding).

use bollard::models::{NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState};
use swarm_e2e_model::{Role, Topology};

use super::{CheckEnv, Outcome};

/// What differs from the declaration, one line per node and key.
pub(super) async fn drift(env: &CheckEnv) -> anyhow::Result<Vec<String>> {
    if env.scenario.topology == Topology::Classic {
        return classic_drift(env).await;
    }
    // Any manager answers for the swarm: the first one may be the node that is down.
    let mut out = Vec::new();
    let mut listed = None;
    let mut silent = Vec::new();
    for manager in env.cluster.nodes.iter().filter(|n| n.role == Role::Manager) {
        match tokio::time::timeout(env.timeout, manager.docker.list_nodes(None)).await {
            Ok(Ok(l)) => {
                listed = Some((l, manager));
                break;
            }
            Ok(Err(e)) => silent.push(format!("{}: {e}", manager.name)),
            Err(_) => silent.push(format!(
                "{}: no answer within {:.0} s",
                manager.name,
                env.timeout.as_secs_f64()
            )),
        }
    }
    let Some((listed, manager)) = listed else {
        anyhow::bail!("no manager lists the swarm's nodes: {}", silent.join("; "));
    };
    let listed = past_unknown(env, manager, listed).await;
    for s in &silent {
        out.push(format!("manager {s}"));
    }
    let names = env.cluster.names_by_id();
    out.extend(strangers(&listed, &names));
    out.extend(ingress_drift(env, manager).await);
    for declared in &env.scenario.nodes {
        let node = listed
            .iter()
            .find(|n| n.id.as_ref().and_then(|id| names.get(id)) == Some(&declared.name));
        match node {
            Some(node) => node_drift(&mut out, declared, node),
            None => out.push(format!("{}: not in the swarm", declared.name)),
        }
    }
    Ok(out)
}

/// How long nodes may stay `unknown` to a manager. A leader just elected (after a
/// quorum check, or under load at 100 nodes) lists every node `unknown` until the node's
/// next heartbeat to it (every 5 s by default); one not heard within the dispatcher's
/// grace turns `down`, which is drift.
const UNKNOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// The manager's node list once no node is `unknown` to it (a healthy swarm's state
/// right after a leader change, not drift), or as it last was after [`UNKNOWN_GRACE`].
async fn past_unknown(
    env: &CheckEnv,
    manager: &crate::cluster::EngineNode,
    listed: Vec<bollard::models::Node>,
) -> Vec<bollard::models::Node> {
    let unknown = |l: &[bollard::models::Node]| {
        l.iter()
            .any(|n| n.status.as_ref().and_then(|s| s.state) == Some(NodeState::UNKNOWN))
    };
    if !unknown(&listed) {
        return listed;
    }
    tracing::debug!(
        "nodes unknown to {} (a new leader): waiting for their heartbeats",
        manager.name
    );
    let last = std::sync::Mutex::new(listed);
    let grace = UNKNOWN_GRACE.min(env.timeout);
    let _ = crate::wait::poll_until(grace, std::time::Duration::from_secs(1), || async {
        let l = manager.docker.list_nodes(None).await?;
        let settled = !unknown(&l);
        *last.lock().unwrap() = l;
        Ok(settled.then_some(()))
    })
    .await;
    last.into_inner().unwrap()
}

/// Nodes in the swarm that no scenario node is (a retried join leaves such entries).
fn strangers(listed: &[bollard::models::Node], names: &std::collections::HashMap<String, String>) -> Option<String> {
    let strangers: Vec<String> = listed
        .iter()
        .filter(|n| n.id.as_ref().is_none_or(|id| !names.contains_key(id)))
        .map(|n| {
            let host = n
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default();
            let state = n
                .status
                .as_ref()
                .and_then(|s| s.state)
                .map(|s| s.to_string())
                .unwrap_or_default();
            format!("{} (hostname `{host}`, {state})", n.id.clone().unwrap_or_default())
        })
        .collect();
    (!strangers.is_empty()).then(|| {
        format!(
            "swarm: {} node(s) that no scenario node is: {}",
            strangers.len(),
            strangers.join(", ")
        )
    })
}

/// Whether the ingress network is there exactly when declared.
async fn ingress_drift(env: &CheckEnv, manager: &crate::cluster::EngineNode) -> Option<String> {
    match tokio::time::timeout(env.timeout, manager.docker.list_networks(None)).await {
        Ok(Ok(networks)) => {
            let has_ingress = networks.iter().any(|n| n.ingress == Some(true));
            (has_ingress != env.scenario.ingress).then(|| {
                format!(
                    "swarm: ingress network (routing mesh): declared {}, actual {}",
                    if env.scenario.ingress {
                        "present"
                    } else {
                        "absent (`ingress = false`)"
                    },
                    if has_ingress { "present" } else { "absent" }
                )
            })
        }
        Ok(Err(e)) => Some(format!("manager {}: listing networks: {e}", manager.name)),
        Err(_) => Some(format!(
            "manager {}: listing networks: no answer within {:.0} s",
            manager.name,
            env.timeout.as_secs_f64()
        )),
    }
}

/// What differs on one declared node: role, availability, state, labels, version.
fn node_drift(out: &mut Vec<String>, declared: &swarm_e2e_model::Node, node: &bollard::models::Node) {
    let name = &declared.name;
    let spec = node.spec.clone().unwrap_or_default();
    let role = match spec.role {
        Some(NodeSpecRoleEnum::MANAGER) => "manager",
        Some(NodeSpecRoleEnum::WORKER) => "worker",
        _ => "none",
    };
    let want_role = match declared.role {
        Role::Manager => "manager",
        _ => "worker",
    };
    if role != want_role {
        out.push(format!("{name}: role: declared {want_role}, actual {role}"));
    }
    let availability = spec.availability.map(|a| a.to_string()).unwrap_or_default();
    if spec.availability != Some(NodeSpecAvailabilityEnum::ACTIVE) {
        out.push(format!("{name}: availability: declared active, actual {availability}"));
    }
    let state = node.status.as_ref().and_then(|s| s.state);
    if state != Some(NodeState::READY) {
        let why = if state == Some(NodeState::UNKNOWN) {
            format!(
                " (the manager has not heard from it for {} s: a leader elected since has had no heartbeat from it)",
                UNKNOWN_GRACE.as_secs()
            )
        } else {
            String::new()
        };
        let state = state.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
        out.push(format!("{name}: state: expected ready, actual {state}{why}"));
    }
    let engine = node
        .description
        .as_ref()
        .and_then(|d| d.engine.clone())
        .unwrap_or_default();
    compare_labels(
        out,
        name,
        "node label",
        &declared.labels,
        &spec.labels.unwrap_or_default(),
    );
    compare_labels(
        out,
        name,
        "engine label",
        &declared.engine_labels,
        &engine.labels.unwrap_or_default(),
    );
    compare_version(out, name, &declared.engine, &engine.engine_version.unwrap_or_default());
}

/// A classic cluster has no swarm to ask: each engine says its own labels and version.
async fn classic_drift(env: &CheckEnv) -> anyhow::Result<Vec<String>> {
    let infos = futures_util::future::join_all(env.scenario.nodes.iter().map(|declared| async move {
        let info = tokio::time::timeout(env.timeout, env.cluster.node(&declared.name).docker.info()).await;
        (declared, info)
    }))
    .await;
    let mut out = Vec::new();
    for (declared, info) in infos {
        let info = match info {
            Ok(Ok(i)) => i,
            Ok(Err(e)) => {
                out.push(format!("{}: engine: expected answering, actual {e}", declared.name));
                continue;
            }
            Err(_) => {
                out.push(format!(
                    "{}: engine: expected answering, actual no answer within {:.0} s",
                    declared.name,
                    env.timeout.as_secs_f64()
                ));
                continue;
            }
        };
        let labels = (info.labels.unwrap_or_default().iter())
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        compare_labels(
            &mut out,
            &declared.name,
            "engine label",
            &declared.engine_labels,
            &labels,
        );
        compare_version(
            &mut out,
            &declared.name,
            &declared.engine,
            &info.server_version.unwrap_or_default(),
        );
    }
    Ok(out)
}

/// A packaged release (MAJOR.MINOR) or a static image's version; an archive's URL or
/// path names no version to compare. The release number is compared; what follows it
/// (a distribution's `+dfsg1`, a pre-release tag a static image was named with) is not.
fn compare_version(out: &mut Vec<String>, node: &str, declared: &str, actual: &str) {
    if declared.contains('/') {
        return;
    }
    let number = |v: &str| -> String { v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect() };
    let (want, have) = (number(declared), number(actual));
    let same_release = have == want || have.strip_prefix(&want).is_some_and(|rest| rest.starts_with('.'));
    if want.is_empty() || !same_release {
        out.push(format!("{node}: engine version: declared {declared}, actual {actual}"));
    }
}

/// Every declared label must be there with its value (others may be added by checks).
fn compare_labels(
    out: &mut Vec<String>,
    node: &str,
    what: &str,
    declared: &std::collections::BTreeMap<String, String>,
    actual: &std::collections::HashMap<String, String>,
) {
    for (key, value) in declared {
        match actual.get(key) {
            Some(v) if v == value => {}
            other => out.push(format!(
                "{node}: {what} {key}: declared {value:?}, actual {}",
                other.map(|v| format!("{v:?}")).unwrap_or_else(|| "none".into())
            )),
        }
    }
}

/// Compares before (`at_start`, taken when the checks started) and now.
pub(super) async fn run(env: &CheckEnv, at_start: anyhow::Result<Vec<String>>) -> anyhow::Result<Outcome> {
    let at_start = at_start?;
    let after = drift(env).await?;
    let mut problems = Vec::new();
    if !at_start.is_empty() {
        problems.push(format!("when the checks started:\n  {}", at_start.join("\n  ")));
    }
    if !after.is_empty() {
        problems.push(format!("after the other checks:\n  {}", after.join("\n  ")));
    }
    Ok(if problems.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(format!("the cluster is not as declared {}", problems.join("\n")))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_release_number_is_compared_and_suffixes_are_not() {
        let drift = |declared: &str, actual: &str| {
            let mut out = Vec::new();
            super::compare_version(&mut out, "n", declared, actual);
            !out.is_empty()
        };
        assert!(!drift("20.10", "20.10.24+dfsg1"));
        assert!(!drift("20.10.24-rc.1", "20.10.24+dfsg1"));
        assert!(!drift("https://example.test/docker.tgz", "28.0.1"));
        assert!(drift("26.1", "20.10.24+dfsg1"));
        assert!(drift("20.1", "20.10.24"));
        assert!(drift("20.10.23", "20.10.24+dfsg1"));
    }
}
