//! Conformance checks beyond the headline ones: behaviours moby tests on one host
//! (see `../shared/reference/conformance-behaviours.md`), checked across real hosts.
//! Each says what it expected and what it saw. Disruptive ones (drain, pause, node
//! restarts, quorum loss) restore the cluster before they return.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::{
    NodeSpecAvailabilityEnum, NodeState, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::{InspectNetworkOptions, ListNodesOptions};
use swarm_e2e_model::{BUSYBOX, ServiceMode};

use crate::checks::{
    CheckEnv, Outcome, answers, describe_tasks, exec, node_of, remove_probe, run_container, service_tasks, state_of,
};
use crate::cluster::update_node_spec;
use crate::wait::poll_until;

/// Stops and starts node engines: on targets whose nodes are containers on the host
/// engine (local, and do-fake's backed droplets).
#[derive(Clone)]
pub struct NodeControl {
    pub host: Docker,
    pub run_id: String,
}

impl NodeControl {
    fn container(&self, node: &str) -> String {
        crate::local::node_container_name(&self.run_id, node)
    }

    async fn node_exec(&self, node: &str, script: &str) -> anyhow::Result<()> {
        let (code, out) = exec(&self.host, &self.container(node), &["sh", "-c", script]).await?;
        if code != 0 {
            anyhow::bail!("exit {code}: {}", out.trim());
        }
        Ok(())
    }

    /// Stops the node's engine (SIGTERM, as a shutdown does) and waits until it is gone.
    /// The node container stays, so the node keeps its address, as a rebooted host does.
    pub async fn stop(&self, node: &str) -> anyhow::Result<()> {
        self.node_exec(
            node,
            "touch /run/swarm-e2e/engine-stopped && kill -TERM \"$(cat /var/run/docker.pid)\" && \
             i=0; while [ -e /var/run/docker.pid ] && [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done; \
             [ ! -e /var/run/docker.pid ]",
        )
        .await
        .with_context(|| format!("stopping the engine of node {node} (bounded: 30 s)"))
    }

    /// Starts the node's engine again (it answers some time later).
    pub async fn start(&self, node: &str) -> anyhow::Result<()> {
        self.node_exec(node, "rm -f /run/swarm-e2e/engine-stopped")
            .await
            .with_context(|| format!("starting the engine of node {node}"))
    }
}

fn no_control(what: &str) -> Outcome {
    Outcome::Ignored(format!(
        "{what} needs to stop and start node engines, which this target cannot do yet (local and do-fake can)"
    ))
}

/// The running task containers of `service`: (node, container id).
async fn task_containers(env: &CheckEnv, service: &str) -> anyhow::Result<Vec<(String, String)>> {
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
async fn task_addresses(
    env: &CheckEnv,
    service: &str,
    network: &str,
    replicas: usize,
) -> anyhow::Result<BTreeSet<String>> {
    let containers = task_containers(env, service).await?;
    if containers.len() < replicas {
        anyhow::bail!("{} of {replicas} task(s) of `{service}` running", containers.len());
    }
    let mut out = BTreeSet::new();
    for (node, id) in containers {
        let inspected = env.cluster.node(&node).docker.inspect_container(&id, None).await?;
        let ip = inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| n.get(network).and_then(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty())
            .with_context(|| format!("task container {id} on {node} has no address on {network}"))?;
        out.insert(ip);
    }
    Ok(out)
}

fn replicas_of(env: &CheckEnv, service: &str) -> usize {
    match env.scenario.service(service).map(|s| s.mode) {
        Some(ServiceMode::Replicated { replicas }) => replicas as usize,
        _ => env.cluster.nodes.len(),
    }
}

/// `query` resolves, from `from` on `network`, to exactly the addresses of `service`'s
/// tasks: one record per task (tasks.<svc>, or the name of a dnsrr service).
pub async fn dns(
    env: &CheckEnv,
    check: &str,
    from: &str,
    network: &str,
    query: &str,
    service: &str,
) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    let expected = match poll_until(env.timeout, Duration::from_millis(100), || async {
        task_addresses(env, service, network, replicas).await.map(Some)
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            return Ok(Outcome::Failed(format!(
                "the tasks of `{service}` never all ran: {e:#}"
            )));
        }
    };
    let node = env.cluster.node(from);
    let probe_name = format!("probe-{check}");
    let probe = run_container(
        &node.docker,
        &probe_name,
        &env.image(BUSYBOX),
        &["top".to_string()],
        Some(network),
    )
    .await
    .with_context(|| format!("starting probe container `{probe_name}` on {from}"))?;
    let result = poll_until(env.timeout, Duration::from_millis(200), || {
        let (expected, probe) = (&expected, &probe);
        async move {
            let (code, out) = exec(&node.docker, probe, &["nslookup", query]).await?;
            let got: BTreeSet<String> = answers(&out).into_iter().collect();
            if code == 0 && &got == expected {
                Ok(Some(()))
            } else {
                anyhow::bail!("the embedded DNS answered {got:?}")
            }
        }
    })
    .await;
    let _ = remove_probe(&node.docker, &probe).await;
    Ok(match result {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!(
            "`{query}` from {from} on {network}: expected the {} task address(es) of `{service}` {expected:?}; {e:#}",
            expected.len()
        )),
    })
}

/// The overlay as each node that sees it reports it.
pub async fn network(env: &CheckEnv, network: &str) -> anyhow::Result<Outcome> {
    let declared = env.scenario.network(network).context("validated network")?;
    let classic = env.scenario.topology == swarm_e2e_model::Topology::Classic;
    let want_scope = if classic { "global" } else { "swarm" };
    let mut problems = Vec::new();
    let mut seen_on = Vec::new();
    for node in &env.cluster.nodes {
        let inspected = match node
            .docker
            .inspect_network(network, None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => n,
            // Swarm workers learn an overlay only when something of theirs attaches to
            // it; classic engines all learn it from the cluster store.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
                if node.role != swarm_e2e_model::Role::Manager && !classic =>
            {
                continue;
            }
            Err(e) => {
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

/// The manager lists exactly the declared nodes, with the IDs their engines report,
/// and every node knows a manager's address.
pub async fn membership(env: &CheckEnv) -> anyhow::Result<Outcome> {
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

/// Waits until the running tasks of `service` per node satisfy `ok`; returns them.
async fn wait_tasks(
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

/// Pending until `node` gets `label`, then running there. The label is removed again.
pub async fn starts_when_labelled(env: &CheckEnv, service: &str, node: &str, label: &str) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    if let Outcome::Failed(m) = crate::checks::run_pending(env, service).await {
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

async fn set_availability(env: &CheckEnv, node: &str, a: NodeSpecAvailabilityEnum) -> anyhow::Result<()> {
    let id = env.cluster.node(node).node_id.clone();
    update_node_spec(&env.cluster.manager().docker, &id, |s| s.availability = Some(a))
        .await
        .with_context(|| format!("setting {node} to {a}"))
}

/// Draining `node` moves every task of `service` off it, all replicas keep running.
pub async fn drain(env: &CheckEnv, service: &str, node: &str) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    let before = wait_tasks(
        env,
        service,
        &format!("a task of `{service}` on {node} before draining"),
        |p, r| r == replicas && p.get(node).is_some_and(|n| *n > 0),
    )
    .await;
    if let Err(m) = before {
        return Ok(Outcome::Failed(m));
    }
    set_availability(env, node, NodeSpecAvailabilityEnum::DRAIN).await?;
    let after = wait_tasks(
        env,
        service,
        &format!("all {replicas} task(s) of `{service}` running, none on the drained {node}"),
        |p, r| r == replicas && !p.contains_key(node),
    )
    .await;
    set_availability(env, node, NodeSpecAvailabilityEnum::ACTIVE).await?;
    Ok(match after {
        Ok(_) => Outcome::Passed,
        Err(m) => Outcome::Failed(m),
    })
}

async fn scale(env: &CheckEnv, service: &str, replicas: u64) -> anyhow::Result<()> {
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

/// Pausing `node` keeps its tasks; a new replica goes elsewhere. Scales back after.
pub async fn pause(env: &CheckEnv, service: &str, node: &str) -> anyhow::Result<Outcome> {
    let replicas = replicas_of(env, service);
    let before = match wait_tasks(
        env,
        service,
        &format!("a task of `{service}` on {node} before pausing"),
        |p, r| r == replicas && p.get(node).is_some_and(|n| *n > 0),
    )
    .await
    {
        Ok(b) => b,
        Err(m) => return Ok(Outcome::Failed(m)),
    };
    let on_node = before[node];
    set_availability(env, node, NodeSpecAvailabilityEnum::PAUSE).await?;
    scale(env, service, replicas as u64 + 1).await?;
    let after = wait_tasks(
        env,
        service,
        &format!(
            "{} task(s) of `{service}` running, still exactly {on_node} on the paused {node}",
            replicas + 1
        ),
        |p, r| r == replicas + 1 && p.get(node).copied().unwrap_or(0) == on_node,
    )
    .await;
    set_availability(env, node, NodeSpecAvailabilityEnum::ACTIVE).await?;
    scale(env, service, replicas as u64).await?;
    Ok(match after {
        Ok(_) => Outcome::Passed,
        Err(m) => Outcome::Failed(m),
    })
}

/// Waits until every engine answers and the manager sees every node Ready (after a
/// disruption).
async fn wait_all_ready(env: &CheckEnv, limit: Duration) -> Result<(), String> {
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

/// Stops `node`'s engine and starts it again: afterwards every replica of `service`
/// runs and, with `from`/`network`, its name still resolves there.
pub async fn node_restart(
    env: &CheckEnv,
    check: &str,
    node: &str,
    service: &str,
    from: Option<&str>,
    network: Option<&str>,
) -> anyhow::Result<Outcome> {
    let Some(control) = &env.node_control else {
        return Ok(no_control("restarting a node"));
    };
    let replicas = replicas_of(env, service);
    if let Err(m) = wait_tasks(
        env,
        service,
        &format!("{replicas} task(s) of `{service}` before the restart"),
        |_, r| r == replicas,
    )
    .await
    {
        return Ok(Outcome::Failed(m));
    }
    control.stop(node).await?;
    control.start(node).await?;
    let engine = &env.cluster.node(node).docker;
    if let Err(e) = crate::engine::wait_ready(engine, env.timeout).await {
        return Ok(Outcome::Failed(format!("{node}'s engine did not come back: {e:#}")));
    }
    if let Err(m) = wait_all_ready(env, env.timeout).await {
        return Ok(Outcome::Failed(m));
    }
    if let Err(m) = wait_tasks(
        env,
        service,
        &format!("all {replicas} task(s) of `{service}` running again after {node} restarted"),
        |_, r| r == replicas,
    )
    .await
    {
        return Ok(Outcome::Failed(m));
    }
    match (from, network) {
        (Some(from), Some(network)) => {
            let outcome = dns(env, check, from, network, service, service).await?;
            Ok(match outcome {
                Outcome::Failed(m) => Outcome::Failed(format!("after {node} restarted: {m}")),
                other => other,
            })
        }
        _ => Ok(Outcome::Passed),
    }
}

fn probe_service(name: &str, image: &str) -> ServiceSpec {
    ServiceSpec {
        name: Some(name.to_string()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
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

/// All managers but the one the harness talks to stop: creating a service must fail
/// for lack of quorum; one back, it must work. Everything is started again after.
pub async fn quorum(env: &CheckEnv) -> anyhow::Result<Outcome> {
    let Some(control) = &env.node_control else {
        return Ok(no_control("losing quorum"));
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
        let spec = probe_service(&name, &image);
        async move {
            match tokio::time::timeout(Duration::from_secs(20), leader.docker.create_service(spec, None)).await {
                Ok(Err(e)) if e.to_string().contains("more than half of the managers") => Ok(Some(())),
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
    // One manager back: quorum (2 of 3) again.
    control.start(&others[0]).await?;
    let recovered = poll_until(env.timeout, Duration::from_millis(500), || {
        let spec = probe_service("quorum-recovered", &image);
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
            "with {} of {} managers stopped, creating a service should fail with \"more than half of the managers \
             are online\"; {e:#}",
            others.len(),
            others.len() + 1
        )),
        (Ok(()), Err(e), _) => Outcome::Failed(format!("with quorum restored, creating a service still failed; {e:#}")),
        (Ok(()), Ok(()), Err(m)) => Outcome::Failed(m),
        (Ok(()), Ok(()), Ok(())) => Outcome::Passed,
    })
}
