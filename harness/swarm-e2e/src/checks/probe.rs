//! Helpers every check shares: containers and execs on a node, tasks of a service as
//! the manager sees them, waits on task placement, node availability.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, NodeSpecAvailabilityEnum, NodeState, ServiceSpecMode, ServiceSpecModeReplicated,
    Task, TaskState,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListNodesOptions, ListTasksOptionsBuilder};
use swarm_e2e_model::ServiceMode;

use super::CheckEnv;
use crate::cluster::update_node_spec;
pub use crate::engine::exec;
pub(crate) use crate::engine::remove_forced as remove_probe;
use crate::wait::poll_until;

pub(crate) async fn run_container(
    docker: &Docker,
    run_id: &str,
    name: &str,
    image: &str,
    command: &[String],
    network: Option<&str>,
) -> anyhow::Result<String> {
    run_container_with_aliases(docker, run_id, name, image, command, network, &[]).await
}

pub(super) async fn run_container_with_aliases(
    docker: &Docker,
    run_id: &str,
    name: &str,
    image: &str,
    command: &[String],
    network: Option<&str>,
    aliases: &[String],
) -> anyhow::Result<String> {
    let networking_config = match (network, aliases.is_empty()) {
        (Some(n), false) => Some(bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                n.to_string(),
                bollard::models::EndpointSettings {
                    aliases: Some(aliases.to_vec()),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };
    let body = ContainerCreateBody {
        networking_config,
        image: Some(image.to_string()),
        cmd: Some(command.to_vec()),
        labels: Some(crate::marks::workload_labels(run_id)),
        host_config: Some(HostConfig {
            init: Some(true),
            network_mode: network.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(CreateContainerOptionsBuilder::new().name(name).build()), body)
        .await?;
    docker.start_container(&created.id, None).await?;
    Ok(created.id)
}

pub(crate) async fn service_tasks(docker: &Docker, service: &str) -> anyhow::Result<Vec<Task>> {
    let filters = HashMap::from([
        ("service".to_string(), vec![service.to_string()]),
        ("desired-state".to_string(), vec!["running".to_string()]),
    ]);
    Ok(docker
        .list_tasks(Some(ListTasksOptionsBuilder::new().filters(&filters).build()))
        .await?)
}

/// The scenario name of the node a task is on ("" when unassigned).
pub(crate) fn node_of(t: &Task, names: &HashMap<String, String>) -> String {
    t.node_id
        .as_ref()
        .and_then(|id| names.get(id))
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn state_of(t: &Task) -> TaskState {
    t.status.as_ref().and_then(|s| s.state).unwrap_or(TaskState::NEW)
}

pub(crate) fn describe_tasks(tasks: &[Task], names: &HashMap<String, String>) -> String {
    if tasks.is_empty() {
        return "no tasks".into();
    }
    tasks
        .iter()
        .map(|t| {
            let node = t
                .node_id
                .as_ref()
                .filter(|id| !id.is_empty())
                .map(|id| names.get(id).cloned().unwrap_or_else(|| id.clone()))
                .unwrap_or_else(|| "no node".into());
            let status = t.status.as_ref();
            let err = status.and_then(|s| s.err.clone()).filter(|e| !e.is_empty());
            let msg = status.and_then(|s| s.message.clone()).unwrap_or_default();
            match err {
                Some(e) => format!("{} on {node} ({e})", state_of(t)),
                None => format!("{} on {node} ({msg})", state_of(t)),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The tasks that failed or were rejected, and the newest of them as `(node, "its
/// error, exit code N")`: why a service does not run (or an update failed).
pub(crate) fn failed_tasks<'a>(
    tasks: &'a [Task],
    names: &HashMap<String, String>,
) -> (Vec<&'a Task>, Option<(String, String)>) {
    let failed: Vec<&Task> = (tasks.iter())
        .filter(|t| matches!(state_of(t), TaskState::FAILED | TaskState::REJECTED))
        .collect();
    let last = failed.iter().max_by_key(|t| t.updated_at).map(|t| {
        let status = t.status.as_ref();
        let err = status.and_then(|s| s.err.clone()).filter(|e| !e.is_empty());
        let exit = (status.and_then(|s| s.container_status.as_ref()))
            .and_then(|c| c.exit_code)
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default();
        let node = match node_of(t, names) {
            n if n.is_empty() => "no node yet".to_string(),
            n => n,
        };
        (
            node,
            format!("{}{exit}", err.unwrap_or_else(|| state_of(t).to_string())),
        )
    });
    (failed, last)
}

/// Addresses in the answer section of busybox `nslookup` output.
pub(crate) fn answers(out: &str) -> Vec<String> {
    let mut in_answer = false;
    let mut addrs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if line.starts_with("Name:") {
            in_answer = true;
        } else if in_answer
            && let Some(a) = line
                .strip_prefix("Address:")
                .or_else(|| line.strip_prefix("Address 1:"))
        {
            addrs.push(a.trim().to_string());
        }
    }
    addrs
}

/// The running task containers of `service`: (node, container id).
pub(super) async fn task_containers(env: &CheckEnv, service: &str) -> anyhow::Result<Vec<(String, String)>> {
    let names = env.cluster.names_by_id();
    let tasks = service_tasks(&env.cluster.manager().docker, service).await?;
    Ok(tasks
        .iter()
        .filter(|t| state_of(t) == TaskState::RUNNING)
        .filter_map(|t| {
            let id = t.status.as_ref()?.container_status.as_ref()?.container_id.clone()?;
            Some((node_of(t, &names), id))
        })
        .collect())
}

/// Addresses of `service`'s running tasks on `network`, read from each task container
/// on its own node.
pub(super) async fn task_addresses(
    env: &CheckEnv,
    service: &str,
    network: &str,
    replicas: usize,
) -> anyhow::Result<BTreeSet<String>> {
    let containers = task_containers(env, service).await?;
    if containers.len() < replicas {
        // What the others are doing (preparing, rejected, ...) says why they do not run.
        let tasks = service_tasks(&env.cluster.manager().docker, service).await?;
        anyhow::bail!(
            "{} of {replicas} task(s) of `{service}` running: {}",
            containers.len(),
            describe_tasks(&tasks, &env.cluster.names_by_id())
        );
    }
    Ok(addresses_of(env, containers, network).await?.into_keys().collect())
}

/// The running tasks of `service`'s addresses on `network`, each with its node.
pub(super) async fn task_addresses_by_node(
    env: &CheckEnv,
    service: &str,
    network: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    addresses_of(env, task_containers(env, service).await?, network).await
}

/// Each (node, container)'s address on `network`, read on its own node.
async fn addresses_of(
    env: &CheckEnv,
    containers: Vec<(String, String)>,
    network: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (node, id) in containers {
        let inspected = env.cluster.node(&node).docker.inspect_container(&id, None).await?;
        let ip = inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get(network).and_then(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty())
            .with_context(|| format!("task container {id} on {node} has no address on {network}"))?;
        out.insert(ip, node);
    }
    Ok(out)
}

pub(super) fn replicas_of(env: &CheckEnv, service: &str) -> usize {
    match env.scenario.service(service).map(|s| s.mode) {
        Some(ServiceMode::Replicated { replicas }) => replicas as usize,
        _ => env.cluster.nodes.len(),
    }
}

/// How long a check waits for the workload it looks at to start before it looks: its
/// own bound, but never under a minute. Tasks starting is the cluster converging after
/// the deploy, not what the check asserts, so a short bound (a fixture that expects the
/// check itself to fail) must not turn a slow start on a loaded host into a failure of
/// another kind: CI once saw `1 of 2 task(s) of `web` running` after 15 s there. A node
/// that cannot run them still ends the wait at once (the watchdog).
pub(super) fn start_bound(env: &CheckEnv) -> Duration {
    env.timeout.max(Duration::from_secs(60))
}

/// Waits until the running tasks of `service` per node satisfy `ok`; returns them.
pub(super) async fn wait_tasks(
    env: &CheckEnv,
    service: &str,
    what: &str,
    ok: impl Fn(&BTreeMap<String, u64>, usize) -> bool,
) -> Result<BTreeMap<String, u64>, String> {
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let r = poll_until(env.timeout, Duration::from_millis(100), || {
        let (ok, names) = (&ok, &names);
        async move {
            let tasks = service_tasks(manager, service).await?;
            let mut per_node = BTreeMap::new();
            let mut running = 0;
            for t in tasks.iter().filter(|t| state_of(t) == TaskState::RUNNING) {
                *per_node.entry(node_of(t, names)).or_insert(0u64) += 1;
                running += 1;
            }
            if ok(&per_node, running) {
                Ok(Some(per_node))
            } else {
                anyhow::bail!("saw {}", describe_tasks(&tasks, names))
            }
        }
    })
    .await;
    r.map_err(|e| format!("expected {what}; {e:#}"))
}

/// Waits until every engine answers and the manager sees every node Ready (after a
/// disruption).
pub(super) async fn wait_all_ready(env: &CheckEnv, limit: Duration) -> Result<(), String> {
    let manager = &env.cluster.manager().docker;
    let n = env.cluster.nodes.len();
    poll_until(limit, Duration::from_millis(200), || async {
        let silent = env.cluster.unresponsive().await;
        if !silent.is_empty() {
            anyhow::bail!("not answering: {}", silent.join(", "));
        }
        let nodes = manager.list_nodes(None::<ListNodesOptions>).await?;
        let ready = nodes
            .iter()
            .filter(|x| x.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY))
            .count();
        if ready == n {
            Ok(Some(()))
        } else {
            anyhow::bail!("{ready} of {n} nodes Ready")
        }
    })
    .await
    .map_err(|e| format!("the cluster did not recover: {e:#}"))
}

pub(super) async fn set_availability(env: &CheckEnv, node: &str, a: NodeSpecAvailabilityEnum) -> anyhow::Result<()> {
    let id = env.cluster.node(node).node_id.clone();
    update_node_spec(&env.cluster.manager().docker, &id, |s| s.availability = Some(a))
        .await
        .with_context(|| format!("setting {node} to {a}"))
}

pub(super) async fn scale(env: &CheckEnv, service: &str, replicas: u64) -> anyhow::Result<()> {
    let manager = &env.cluster.manager().docker;
    let current = manager.inspect_service(service, None).await?;
    let version = current
        .version
        .and_then(|v| v.index)
        .context("service has no version")?;
    let mut spec = current.spec.context("service has no spec")?;
    spec.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(replicas as i64),
        }),
        ..Default::default()
    });
    manager
        .update_service(
            service,
            spec,
            bollard::query_parameters::UpdateServiceOptionsBuilder::new()
                .version(version as i32)
                .build(),
            None,
        )
        .await
        .with_context(|| format!("scaling `{service}` to {replicas}"))?;
    Ok(())
}

/// Runs `script` with `sh -c` in a host-network helper on `node`; returns its output.
pub(crate) async fn on_host(env: &CheckEnv, node: &str, tag: &str, script: &str) -> anyhow::Result<String> {
    let docker = &env.cluster.node(node).docker;
    let helper = run_container(
        docker,
        &env.cluster.run_id,
        &format!("underlay-{tag}"),
        &env.image(swarm_e2e_model::BUSYBOX),
        &["top".to_string()],
        Some("host"),
    )
    .await?;
    let result = exec(docker, &helper, &["sh", "-c", script]).await;
    let _ = remove_probe(docker, &helper).await;
    let (code, out) = result?;
    if code != 0 {
        anyhow::bail!("exit {code}: {}", out.trim());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nslookup_answers() {
        let out = "Server:\t\t127.0.0.11\nAddress:\t127.0.0.11:53\n\nNon-authoritative answer:\nName:\tfoo\nAddress: 10.77.0.3\n";
        assert_eq!(answers(out), vec!["10.77.0.3"]);
        assert!(answers("Server: 127.0.0.11\nAddress: 127.0.0.11:53\n** server can't find foo: NXDOMAIN\n").is_empty());
    }
}
