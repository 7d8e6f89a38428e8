//! Workloads and checks. Each check observes the real cluster and fails with what it
//! expected and what it saw; none of them knows which target built the cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSpec, EndpointSpecModeEnum, HostConfig, NetworkAttachmentConfig, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskState,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListTasksOptionsBuilder};
use futures_util::StreamExt;
use futures_util::future::join_all;
use swarm_e2e_model::{BUSYBOX, Check, CheckKind, EndpointMode, Scenario, ServiceMode};

use crate::cluster::Cluster;
use crate::wait::poll_until;

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// The check cannot run here; the reason says why. Never counted as passed.
    Ignored(String),
}

/// What checks need to know about where they run.
pub struct CheckEnv {
    pub scenario: Arc<Scenario>,
    pub cluster: Arc<Cluster>,
    /// Image references by scenario image name (`busybox` -> the local test image).
    pub images: HashMap<String, String>,
    /// Whether the nodes' kernel has IPVS (needed by VIP endpoint mode).
    pub ipvs: bool,
    /// Whether the nodes' kernel has IPsec ESP (needed by encrypted overlays).
    pub esp: bool,
    /// Upper bound for each check's waits.
    pub timeout: Duration,
    /// Services or containers that failed to deploy, with the error.
    pub deploy_errors: HashMap<String, String>,
    /// Stops and starts node engines, where the target allows it.
    pub node_control: Option<crate::conformance::NodeControl>,
    /// Disruptive checks run one at a time (each holds this) ...
    pub disruption: tokio::sync::Mutex<()>,
    /// ... and only once the other checks that run have ended: how many are left.
    /// Their workloads must not be moved by a drain or a stopped node while observed.
    pub plain_left: tokio::sync::watch::Sender<usize>,
}

/// Counts a non-disruptive check as ended, also when its future is dropped or panics.
struct PlainDone<'a>(&'a tokio::sync::watch::Sender<usize>);

impl Drop for PlainDone<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl CheckEnv {
    pub(crate) fn image(&self, name: &str) -> String {
        self.images.get(name).cloned().unwrap_or_else(|| name.to_string())
    }
}

/// Whether this kernel has IPVS (local nodes share the host kernel).
/// Whether this kernel has IPsec ESP, which encrypted overlays need (local nodes share
/// the host kernel). Read from the kernel configuration; unknown counts as present, so
/// the check runs and says what it saw.
pub fn host_has_esp() -> bool {
    use std::io::Read;
    if std::path::Path::new("/sys/module/esp4").exists() {
        return true;
    }
    let Ok(file) = std::fs::File::open("/proc/config.gz") else {
        return true;
    };
    let mut config = String::new();
    if flate2::read::GzDecoder::new(file).read_to_string(&mut config).is_err() {
        return true;
    }
    config.lines().any(|l| l == "CONFIG_INET_ESP=y")
}

pub fn host_has_ipvs() -> bool {
    std::path::Path::new("/proc/net/ip_vs").exists() || std::path::Path::new("/sys/module/ip_vs").exists()
}

const WORKLOAD_LABEL: &str = "swarm-e2e.workload";

/// Creates every service (on the first manager) and plain container (on its node) of
/// the scenario, concurrently. Returns the ones that failed, by name.
pub async fn deploy_workloads(
    scenario: &Scenario,
    cluster: &Cluster,
    images: &HashMap<String, String>,
) -> HashMap<String, String> {
    let image = |n: &str| images.get(n).cloned().unwrap_or_else(|| n.to_string());
    let manager = &cluster.manager().docker;
    let services = scenario.services.iter().map(|s| {
        let spec = ServiceSpec {
            name: Some(s.name.clone()),
            labels: Some(HashMap::from([(WORKLOAD_LABEL.to_string(), "true".to_string())])),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image(&s.image)),
                    command: Some(s.command.clone()),
                    // busybox `top` as PID 1 ignores SIGTERM; an init stops it at once.
                    init: Some(true),
                    stop_grace_period: Some(1_000_000_000),
                    ..Default::default()
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: Some(s.constraints.iter().map(|c| c.to_string()).collect()),
                    preferences: Some(
                        s.preferences
                            .iter()
                            .map(|p| TaskSpecPlacementPreferences {
                                spread: Some(TaskSpecPlacementSpread {
                                    spread_descriptor: p.strip_prefix("spread=").map(str::to_string),
                                }),
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                networks: Some(
                    s.networks
                        .iter()
                        .map(|n| NetworkAttachmentConfig {
                            target: Some(n.clone()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            mode: Some(match s.mode {
                ServiceMode::Replicated { replicas } => ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas as i64),
                    }),
                    ..Default::default()
                },
                ServiceMode::Global => ServiceSpecMode {
                    global: Some(HashMap::new()),
                    ..Default::default()
                },
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(match s.endpoint_mode {
                    EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
                    EndpointMode::Vip => EndpointSpecModeEnum::VIP,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        async move {
            let r = manager.create_service(spec, None).await;
            (
                s.name.clone(),
                r.map(|_| ()).map_err(|e| format!("creating service {}: {e}", s.name)),
            )
        }
    });
    let containers = scenario.containers.iter().map(|c| {
        let docker = cluster.node(&c.node).docker.clone();
        let img = image(&c.image);
        async move {
            let r = run_container_with_aliases(
                &docker,
                &c.name,
                &img,
                &c.command,
                c.networks.first().map(String::as_str),
                &c.aliases,
            )
            .await
            .map(|_| ());
            (
                c.name.clone(),
                r.map_err(|e| format!("starting container {} on {}: {e:#}", c.name, c.node)),
            )
        }
    });
    let mut failed = HashMap::new();
    let (a, b) = futures_util::join!(join_all(services), join_all(containers));
    for (name, r) in a.into_iter().chain(b) {
        if let Err(e) = r {
            failed.insert(name, e);
        }
    }
    failed
}

pub(crate) async fn run_container(
    docker: &Docker,
    name: &str,
    image: &str,
    command: &[String],
    network: Option<&str>,
) -> anyhow::Result<String> {
    run_container_with_aliases(docker, name, image, command, network, &[]).await
}

async fn run_container_with_aliases(
    docker: &Docker,
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
        labels: Some(HashMap::from([(WORKLOAD_LABEL.to_string(), "true".to_string())])),
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

/// Runs a command in a container; returns exit code and combined output.
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> anyhow::Result<(i64, String)> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&created.id, None).await? {
        while let Some(chunk) = output.next().await {
            text.push_str(&chunk?.to_string());
        }
    }
    let code = docker.inspect_exec(&created.id).await?.exit_code.unwrap_or(-1);
    Ok((code, text))
}

/// Runs one check against the cluster, bounded by `env.timeout`.
pub async fn run_check(env: &CheckEnv, check: &Check) -> Outcome {
    for service in check.kind.services() {
        if let Some(e) = env.deploy_errors.get(service) {
            return name_dead_nodes(
                env,
                Outcome::Failed(format!("workload `{service}` could not be deployed: {e}")),
            )
            .await;
        }
    }
    // Disruptive checks (drain, node restarts, quorum loss) run alone, after the rest.
    let (_done, _exclusive) = if check.kind.is_disruptive() {
        let mut left = env.plain_left.subscribe();
        // Bounded: a check that never ends is already failing on its own bound.
        let _ = tokio::time::timeout(env.timeout * 2, left.wait_for(|n| *n == 0)).await;
        (None, Some(env.disruption.lock().await))
    } else {
        (Some(PlainDone(&env.plain_left)), None)
    };
    use crate::conformance as c;
    let result = match &check.kind {
        CheckKind::PingByName { from, network, target } => ping_by_name(env, &check.name, from, network, target).await,
        CheckKind::Placement {
            service,
            expect_nodes,
            expect_counts,
        } => placement(env, service, expect_nodes, expect_counts.as_ref()).await,
        CheckKind::Pending { service } => pending(env, service).await,
        CheckKind::Dns {
            from,
            network,
            query,
            service,
        } => c::dns(env, &check.name, from, network, query, service).await,
        CheckKind::Network { network } => c::network(env, network).await,
        CheckKind::Membership => c::membership(env).await,
        CheckKind::StartsWhenLabelled { service, node, label } => {
            c::starts_when_labelled(env, service, node, label).await
        }
        CheckKind::Drain { service, node } => c::drain(env, service, node).await,
        CheckKind::Pause { service, node } => c::pause(env, service, node).await,
        CheckKind::NodeRestart {
            node,
            service,
            from,
            network,
        } => c::node_restart(env, &check.name, node, service, from.as_deref(), network.as_deref()).await,
        CheckKind::Quorum => c::quorum(env).await,
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    name_dead_nodes(env, outcome).await
}

/// A node that died explains most failures: a failure says so instead of leaving a
/// riddle.
async fn name_dead_nodes(env: &CheckEnv, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Failed(m) => {
            let down = env.cluster.unresponsive().await;
            if down.is_empty() {
                Outcome::Failed(m)
            } else {
                Outcome::Failed(format!(
                    "{m}\nnode(s) not answering: {} (the engine does not answer /_ping: the node died or was stopped)",
                    down.join(", ")
                ))
            }
        }
        other => other,
    }
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

async fn placement(
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

/// The `pending` check, for checks that start from a pending service.
pub(crate) async fn run_pending(env: &CheckEnv, service: &str) -> Outcome {
    pending(env, service)
        .await
        .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")))
}

async fn pending(env: &CheckEnv, service: &str) -> anyhow::Result<Outcome> {
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

/// The headline check: `from` resolves `target` by name over `network` and pings it.
async fn ping_by_name(env: &CheckEnv, check: &str, from: &str, network: &str, target: &str) -> anyhow::Result<Outcome> {
    if let Some(service) = env.scenario.service(target)
        && service.endpoint_mode == EndpointMode::Vip
        && !env.ipvs
    {
        return Ok(Outcome::Ignored(format!(
            "`{target}` uses VIP endpoint mode, which needs IPVS; this kernel has none (use endpoint_mode = \"dnsrr\")"
        )));
    }
    if env.scenario.network(network).is_some_and(|n| n.encrypted) && !env.esp {
        return Ok(Outcome::Ignored(format!(
            "`{network}` is an encrypted overlay (IPsec ESP between nodes), and this kernel has no ESP \
             (CONFIG_INET_ESP is not set): encrypted overlays cannot carry traffic here"
        )));
    }
    if let Some(e) = env.deploy_errors.get(target) {
        return Ok(Outcome::Failed(format!("target `{target}` could not be deployed: {e}")));
    }
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let node = env.cluster.node(from);
    let probe_name = format!("probe-{check}");
    let image = env.image(BUSYBOX);
    // A name only resolves once the target runs somewhere. The probe is attached only
    // after that: attaching a container to the overlay on a worker while the swarm is
    // still allocating the service's tasks failed now and then (measured: 2 of 7 runs,
    // "attaching to network failed ... context deadline exceeded" after 20 s).
    if env.scenario.service(target).is_some() {
        let ready = poll_until(env.timeout, Duration::from_millis(50), || async {
            let tasks = service_tasks(manager, target).await?;
            if tasks.iter().any(|t| state_of(t) == TaskState::RUNNING) {
                Ok(Some(()))
            } else {
                anyhow::bail!("no running task of `{target}`: {}", describe_tasks(&tasks, &names))
            }
        })
        .await;
        if let Err(e) = ready {
            return Ok(Outcome::Failed(format!("target never ran: {e:#}")));
        }
    }
    let probe = run_container(&node.docker, &probe_name, &image, &["top".to_string()], Some(network))
        .await
        .with_context(|| format!("starting probe container `{probe_name}` on {from} attached to {network}"))?;
    let outcome = probe_ping(env, &node.docker, &probe, from, network, target).await;
    let _ = remove_probe(&node.docker, &probe).await;
    outcome
}

pub(crate) async fn remove_probe(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .build();
    docker.remove_container(id, Some(opts)).await
}

async fn probe_ping(
    env: &CheckEnv,
    docker: &Docker,
    probe: &str,
    from: &str,
    network: &str,
    target: &str,
) -> anyhow::Result<Outcome> {
    // Step 1: name resolution (the embedded DNS learns remote names by gossip).
    let resolved = poll_until(env.timeout, Duration::from_millis(100), || async {
        let (code, out) = exec(docker, probe, &["nslookup", target]).await?;
        let addrs = answers(&out);
        if code == 0 && !addrs.is_empty() {
            Ok(Some(addrs))
        } else {
            anyhow::bail!("exit {code}: {}", out.trim())
        }
    })
    .await;
    let addrs = match resolved {
        Ok(a) => a,
        Err(e) => {
            return Ok(Outcome::Failed(format!(
                "name resolution failed: `{target}` did not resolve from {from} on {network}: {e:#}"
            )));
        }
    };
    // Step 2: reachability. The first packet over a fresh VXLAN path can be lost while
    // the peer's entry propagates, so a few tries are allowed within the bound.
    let reach_limit = env.timeout.min(Duration::from_secs(15));
    let pinged = poll_until(reach_limit, Duration::from_millis(200), || async {
        let (code, out) = exec(docker, probe, &["ping", "-c", "1", "-W", "2", target]).await?;
        if code == 0 {
            Ok(Some(()))
        } else {
            anyhow::bail!("exit {code}: {}", out.trim())
        }
    })
    .await;
    Ok(match pinged {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!(
            "reachability failed: `{target}` resolved to {} from {from}, but `ping -c 1 {target}` got no reply: {e:#}",
            addrs.join(", ")
        )),
    })
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
