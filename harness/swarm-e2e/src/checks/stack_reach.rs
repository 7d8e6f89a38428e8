//! `stack-reach`: from every node, each service of a stack resolves by name on each of
//! its networks (`tasks.NAME`: exactly one address per running task) and every address
//! answers a ping. Stack networks are rarely attachable, so the probes are a global
//! service per network (a service may join any swarm overlay), one task per node.
//! `NAME` itself (the VIP) is not asked: without IPVS in the nodes' kernel a VIP
//! resolves but never answers.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::{
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, TaskSpec, TaskSpecContainerSpec, TaskState,
};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use futures_util::future::join_all;

use super::probe::{answers, node_of, service_tasks, start_bound, state_of};
use super::{CheckEnv, Outcome};
use crate::engine::exec;
use crate::images::BUSYBOX_IMAGE;
use crate::stacks::{self, short_name};
use crate::wait::poll_until;
use swarm_e2e_model::{Check, CheckKind};

/// How long a name may take to list every running task once they all run (a task joins
/// DNS once it is healthy), and a ping to get through once it resolved.
const SETTLE: Duration = Duration::from_secs(20);

/// How long a ping goes unanswered before the path is diagnosed.
const FIRST_TRY: Duration = Duration::from_secs(5);

/// The registry's entry for this kind: its keys out of the validated check.
pub(super) async fn check(env: &CheckEnv, check: &Check) -> anyhow::Result<Outcome> {
    let CheckKind::StackReach { stack, max_loss } = &check.kind else {
        return Err(super::misrouted(check));
    };
    let expected = &env.scenario.stack(stack).expect("validated stack").services;
    // Whether the stack runs is `stack-converges`' verdict; here it is the precondition.
    if let Err(m) = super::stack_converges::converged(env, stack, expected, start_bound(env)).await {
        return Ok(Outcome::Failed(format!("cannot check reach: {m}")));
    }
    let manager = &env.cluster.manager().docker;
    let targets = targets(manager, stack).await?;
    if targets.is_empty() {
        return Ok(Outcome::Failed(format!(
            "stack {stack} has no service on an overlay network: nothing to reach by name"
        )));
    }
    let mut probes = Probes::new(manager.clone());
    for (network_id, (network, _)) in &targets {
        probes
            .create(&probe_name(network_id), network_id, &env.cluster.run_id)
            .await
            .with_context(|| format!("creating the probe service on {network}"))?;
    }
    let reach = Reach {
        env,
        check: &check.name,
        stack,
        max_loss: *max_loss,
        diagnosing: tokio::sync::Mutex::new(()),
    };
    let per_network = join_all(
        (targets.iter()).map(|(network_id, (network, services))| reach.on_network(network_id, network, services)),
    )
    .await;
    let failures: Vec<String> = per_network.into_iter().flatten().collect();
    probes.remove().await;
    Ok(if failures.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed(failures.join("\n"))
    })
}

/// The stack's overlay networks (by ID: name, and the services on it).
type Targets = HashMap<String, (String, Vec<String>)>;

async fn targets(manager: &Docker, stack: &str) -> anyhow::Result<Targets> {
    let networks = manager
        .list_networks(Some(ListNetworksOptionsBuilder::new().build()))
        .await
        .context("listing networks")?;
    let name_of: HashMap<String, String> = networks.into_iter().filter_map(|n| Some((n.id?, n.name?))).collect();
    let mut out: Targets = HashMap::new();
    for s in stacks::services(manager, stack).await? {
        let spec = s.spec.unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let attached = spec.task_template.and_then(|t| t.networks).unwrap_or_default();
        for a in attached {
            let Some(id) = a.target else { continue };
            let network = name_of.get(&id).cloned().unwrap_or_else(|| id.clone());
            out.entry(id)
                .or_insert_with(|| (network, Vec::new()))
                .1
                .push(name.clone());
        }
    }
    Ok(out)
}

/// The probe service on the network with ID `network_id`.
fn probe_name(network_id: &str) -> String {
    format!("swarm-e2e-reach-{}", &network_id[..network_id.len().min(12)])
}

/// The probe services a check made, removed when it ends (also when it is dropped).
struct Probes {
    docker: Docker,
    ids: Vec<String>,
}

impl Probes {
    fn new(docker: Docker) -> Probes {
        Probes {
            docker,
            ids: Vec::new(),
        }
    }

    async fn create(&mut self, name: &str, network_id: &str, run_id: &str) -> anyhow::Result<()> {
        let labels = crate::marks::workload_labels(run_id);
        let spec = ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    labels: Some(labels),
                    image: Some(BUSYBOX_IMAGE.to_string()),
                    command: Some(vec!["sleep".into(), "3600".into()]),
                    init: Some(true),
                    stop_grace_period: Some(1_000_000_000),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(network_id.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.docker.create_service(spec, None).await?;
        self.ids.extend(created.id);
        Ok(())
    }

    async fn remove(mut self) {
        for id in std::mem::take(&mut self.ids) {
            let _ = self.docker.delete_service(&id).await;
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        let (docker, ids) = (self.docker.clone(), std::mem::take(&mut self.ids));
        if !ids.is_empty()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                for id in ids {
                    let _ = docker.delete_service(&id).await;
                }
            });
        }
    }
}

/// The probe's running container on every node: (node, container id).
async fn probe_containers(env: &CheckEnv, probe: &str) -> anyhow::Result<Vec<(String, String)>> {
    let names = env.cluster.names_by_id();
    let manager = &env.cluster.manager().docker;
    let all = env.cluster.nodes.len();
    poll_until(start_bound(env), Duration::from_millis(200), || async {
        let tasks = service_tasks(manager, probe).await?;
        let running: Vec<(String, String)> = tasks
            .iter()
            .filter(|t| state_of(t) == TaskState::RUNNING)
            .filter_map(|t| {
                let id = t.status.as_ref()?.container_status.as_ref()?.container_id.clone()?;
                Some((node_of(t, &names), id))
            })
            .collect();
        if running.len() >= all {
            return Ok(Some(running));
        }
        anyhow::bail!(
            "{} of {all} probe task(s) of {probe} running: {}",
            running.len(),
            super::probe::describe_tasks(&tasks, &names)
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("the probes on every node did not start: {e:#}"))
}

/// What every probe of one check shares.
struct Reach<'a> {
    env: &'a CheckEnv,
    check: &'a str,
    stack: &'a str,
    /// The share of each path's loss burst that may be lost (percent).
    max_loss: u32,
    /// Diagnoses count VXLAN packets and read filter counters on the nodes: two at once
    /// would count each other's packets.
    diagnosing: tokio::sync::Mutex<()>,
}

impl Reach<'_> {
    /// From the probe on every node, the services on one network: the failures.
    async fn on_network(&self, network_id: &str, network: &str, services: &[String]) -> Vec<String> {
        match probe_containers(self.env, &probe_name(network_id)).await {
            Ok(on_nodes) => {
                join_all((on_nodes.iter()).map(|(node, container)| self.from(node, container, network, services)))
                    .await
                    .into_iter()
                    .flatten()
                    .collect()
            }
            Err(e) => vec![format!("{e:#}")],
        }
    }

    /// From the probe on `node`: every service of `services` on the network resolves to its
    /// running tasks' addresses there, each answering a ping. The failures, one line each.
    async fn from(&self, node: &str, container: &str, network: &str, services: &[String]) -> Vec<String> {
        let (env, stack) = (self.env, self.stack);
        let docker = &env.cluster.node(node).docker;
        let mut failures = Vec::new();
        let mut unanswered: HashMap<String, String> = HashMap::new();
        for service in services {
            let short = short_name(stack, service);
            let query = format!("tasks.{short}");
            let resolved = poll_until(SETTLE, Duration::from_millis(250), || async {
                let expected = super::probe::task_addresses_by_node(env, service, network).await?;
                let (_, out) = exec(docker, container, &["nslookup", &query]).await?;
                let got: BTreeSet<String> = answers(&out).into_iter().collect();
                if got == expected.keys().cloned().collect::<BTreeSet<_>>() && !got.is_empty() {
                    return Ok(Some(expected));
                }
                anyhow::bail!(
                    "`{query}` resolved to [{}], the running tasks' addresses on {network} are [{}]",
                    got.into_iter().collect::<Vec<_>>().join(", "),
                    expected.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .await;
            let expected = match resolved {
                Ok(e) => e,
                Err(e) => {
                    failures.push(format!("from {node} on {network}: {e:#}"));
                    continue;
                }
            };
            for (address, target_node) in &expected {
                // One path that does not answer is diagnosed once: the other tasks behind it
                // are named, not waited for again.
                if let Some(first) = unanswered.get(target_node.as_str()) {
                    failures.push(format!(
                        "from {node} on {network}: {short}'s task {address} on {target_node} is behind the same path \
                     as {first}"
                    ));
                    continue;
                }
                let pinger = super::datapath::Pinger {
                    docker,
                    probe: container,
                    target: address,
                };
                let path = Path {
                    reach: self,
                    from: node,
                    to: target_node,
                    network,
                    pinger: &pinger,
                };
                let failure = match answers_ping(&path).await {
                    Err(why) => Some(format!("does not answer: {why}")),
                    Ok(()) => path.loss().await,
                };
                if let Some(why) = failure {
                    failures.push(format!(
                        "from {node} on {network}: {short}'s task {address} on {target_node} {why}"
                    ));
                    unanswered.insert(target_node.clone(), format!("{short}'s task {address}"));
                }
            }
        }
        failures
    }
}

/// The path from a probe to one task address, and how to diagnose it.
struct Path<'a> {
    reach: &'a Reach<'a>,
    from: &'a str,
    to: &'a str,
    network: &'a str,
    pinger: &'a super::datapath::Pinger<'a>,
}

impl Path<'_> {
    /// Once the address answers, a burst of pings: the failure when it loses more than
    /// `max_loss` percent (one ping retried until it gets through hides a lossy path),
    /// with the direction and the rule that dropped the packets.
    async fn loss(&self) -> Option<String> {
        let counts = match super::ping_by_name::burst(self.pinger).await {
            Ok(c) => c,
            Err(e) => return Some(format!("answers, but its loss burst could not be read: {e:#}")),
        };
        // Counting the drops on both ends must not mix with another path's diagnosis.
        let _alone = self.reach.diagnosing.lock().await;
        let lossy = super::ping_by_name::LossyPath {
            from: self.from,
            network: self.network,
            target_nodes: &[self.to.to_string()],
            max_loss: self.reach.max_loss,
        };
        super::ping_by_name::judge_loss(self.reach.env, self.pinger, &lossy, counts)
            .await
            .map(|m| format!("answers, but {m}"))
    }
}

/// Pings until the address answers. After [`FIRST_TRY`] without a reply the path is
/// diagnosed: a cause found ends the wait at once; otherwise (a fresh overlay still
/// learning where the task is) it waits up to [`SETTLE`] and looks again.
async fn answers_ping(path: &Path<'_>) -> Result<(), String> {
    let ping = |limit| {
        poll_until(limit, Duration::from_millis(500), || async {
            let p = path.pinger;
            match exec(p.docker, p.probe, &["ping", "-c", "1", "-W", "2", p.target]).await? {
                (0, _) => Ok(Some(())),
                (code, _) => anyhow::bail!("ping exited {code}"),
            }
        })
    };
    let diagnose = || async {
        let _alone = path.reach.diagnosing.lock().await;
        let to = [path.to.to_string()];
        let reach = path.reach;
        super::underlay::path_cause(reach.env, reach.check, path.from, &to, path.network, path.pinger).await
    };
    let started = std::time::Instant::now();
    if ping(FIRST_TRY).await.is_ok() {
        return Ok(());
    }
    let cause = diagnose().await;
    if cause.starts_with("cause: ") {
        return Err(format!(
            "no reply for {:.1} s\n{cause}",
            started.elapsed().as_secs_f64()
        ));
    }
    if ping(SETTLE.saturating_sub(started.elapsed())).await.is_ok() {
        return Ok(());
    }
    let cause = diagnose().await;
    Err(format!(
        "no reply for {:.1} s\n{cause}",
        started.elapsed().as_secs_f64()
    ))
}
