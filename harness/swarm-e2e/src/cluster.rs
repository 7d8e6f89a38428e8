//! Swarm formation over the node engines: target-independent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{
    Ipam, IpamConfig, NetworkCreateRequest, NodeSpec, NodeState, SwarmInitRequest, SwarmJoinRequest,
};
use bollard::query_parameters::UpdateNodeOptionsBuilder;
use futures_util::future::{join_all, try_join_all};
use futures_util::{StreamExt, TryStreamExt};
use swarm_e2e_model::{Network, Role, Scenario, Topology};

use crate::wait::poll_until;

/// One node engine the harness can talk to.
#[derive(Clone)]
pub struct EngineNode {
    pub name: String,
    pub role: Role,
    pub address: IpAddr,
    pub docker: Docker,
    /// Filled when the engine answers: `docker version`'s server version.
    pub engine_version: String,
    /// Filled when the node is part of the swarm.
    pub node_id: String,
    /// How the docker CLI reaches this engine (`DOCKER_HOST`), with `client` as its
    /// `DOCKER_CERT_PATH`: stacks are deployed by the real CLI.
    pub cli_host: String,
    pub client: std::sync::Arc<crate::pki::CertBundle>,
}

impl std::fmt::Debug for EngineNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineNode")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("engine_version", &self.engine_version)
            .finish()
    }
}

/// The formed cluster the checks run against.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The run that formed it: what the run creates inside carries this id.
    pub run_id: String,
    pub nodes: Vec<EngineNode>,
}

impl Cluster {
    pub fn node(&self, name: &str) -> &EngineNode {
        self.nodes.iter().find(|n| n.name == name).expect("validated node name")
    }

    /// The engine to send swarm API calls to (in a classic cluster, which has no swarm,
    /// the node its networks were created on).
    pub fn manager(&self) -> &EngineNode {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Manager)
            .or(self.nodes.first())
            .expect("validated node")
    }

    /// Nodes whose engine does not answer `/_ping` within two seconds.
    pub async fn unresponsive(&self) -> Vec<String> {
        let pings = futures_util::future::join_all(
            self.nodes
                .iter()
                .map(|n| async move { (n.name.clone(), answers_ping(&n.docker).await) }),
        )
        .await;
        pings.into_iter().filter(|(_, ok)| !ok).map(|(n, _)| n).collect()
    }

    /// Swarm node ID -> scenario node name.
    pub fn names_by_id(&self) -> HashMap<String, String> {
        self.nodes.iter().map(|n| (n.node_id.clone(), n.name.clone())).collect()
    }
}

/// Whether `engine` answers `/_ping` within two seconds.
pub(crate) async fn answers_ping(engine: &Docker) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(2), engine.ping()).await,
        Ok(Ok(_))
    )
}

const SWARM_PORT: u16 = 2377;

/// Forms the scenario's cluster from engines that answer: a swarm, or (classic
/// topology) engines sharing a cluster store.
pub async fn form(
    scenario: &Scenario,
    run_id: &str,
    nodes: Vec<EngineNode>,
    limit: Duration,
) -> anyhow::Result<Cluster> {
    let cluster = Cluster {
        run_id: run_id.to_string(),
        nodes,
    };
    match scenario.topology {
        Topology::Swarm => form_swarm(scenario, cluster, limit).await,
        Topology::Classic => form_classic(scenario, cluster, limit).await,
    }
}

/// The 2015 flow: every engine already points at the key-value store (daemon.json), so
/// forming is creating the overlay networks on one node and waiting, bounded, until
/// every engine sees each of them with global scope (they learn it from the store).
async fn form_classic(scenario: &Scenario, cluster: Cluster, limit: Duration) -> anyhow::Result<Cluster> {
    let first = cluster.manager();
    for net in &scenario.networks {
        // An engine connects to the store in the background after it starts answering;
        // until then a global-scope network cannot be created.
        poll_until(limit, Duration::from_millis(100), || async {
            match first
                .docker
                .create_network(network_request(scenario, &cluster.run_id, net))
                .await
            {
                Ok(_) => Ok(Some(())),
                Err(e) if e.to_string().contains("already exists") => Ok(Some(())),
                Err(e) => Err(anyhow::anyhow!("{e}")),
            }
        })
        .await
        .with_context(|| format!("creating global overlay network {} on {}", net.name, first.name))?;
    }
    for net in &scenario.networks {
        try_join_all(cluster.nodes.iter().map(|n| async move {
            poll_until(limit, Duration::from_millis(100), || async {
                let found = n
                    .docker
                    .inspect_network(&net.name, None::<bollard::query_parameters::InspectNetworkOptions>)
                    .await?;
                match found.scope.as_deref() {
                    Some("global") => Ok(Some(())),
                    other => bail!("scope {other:?}, expected global"),
                }
            })
            .await
            .with_context(|| {
                format!(
                    "{} never saw overlay network {} from the cluster store",
                    n.name, net.name
                )
            })
        }))
        .await?;
    }
    Ok(cluster)
}

/// Joins in flight at once. The leader's CA signs each joining node's certificate and
/// raft stores the node; with 57 joins at once on 2 cores, certificate requests timed
/// out and the joining agents asked again, and every retry left a second node entry (no
/// hostname, state unknown, never removed): 22 of them at 60 nodes. Sixteen at once
/// joined every node on its first attempt (60 nodes: 27 s of joins; 8 at once: 33 s).
const JOINS_IN_FLIGHT: usize = 16;

/// Time left until `deadline` (zero once it passed: a poll then tries once more).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// How long one node's step may take is not known in advance: at 100 nodes on a loaded
/// 2-core host a node waited for its ID longer than the whole formation takes on an idle
/// one, while a node that cannot join at all should not hold the run for the phase's
/// bound. So formation waits as long as the cluster progresses (a node's engine reports
/// its node ID, the leader sees a node Ready) and gives up once nothing has moved for its stall window, or at
/// the phase's bound. The window is 30 s, or three times the longest pause between two
/// steps seen so far when that is longer: a host that is slow but moving calibrates its
/// own patience (the host's load average cannot: in a container it counts other tenants'
/// tasks, 30 on an idle 2-core machine here).
struct Formation {
    started: Instant,
    /// A little inside the phase's bound, so a step that runs out says which it was
    /// before the phase's own timeout (which names no step) fires.
    deadline: Instant,
    limit: Duration,
    stall: Duration,
    /// When a node last made a step, and the longest pause between two steps.
    progress: std::sync::Mutex<(Instant, Duration)>,
}

/// Nothing moving for this long ends formation (unless steps already paused longer): at
/// 100 nodes on a 2-core host, nodes stepped every second or so.
const FORMATION_STALL: Duration = Duration::from_secs(30);

impl Formation {
    fn new(limit: Duration) -> Self {
        Formation::with_stall(limit, FORMATION_STALL)
    }

    fn with_stall(limit: Duration, stall: Duration) -> Self {
        let started = Instant::now();
        Formation {
            started,
            deadline: started + limit.saturating_sub((limit / 20).min(Duration::from_secs(2))),
            limit,
            stall,
            progress: std::sync::Mutex::new((started, Duration::ZERO)),
        }
    }

    /// A node made a step: the stall window starts again.
    fn progressed(&self) {
        let mut progress = self.progress.lock().expect("formation progress lock");
        let (last, longest) = *progress;
        *progress = (Instant::now(), longest.max(last.elapsed()));
    }

    /// Why waiting on is pointless: nothing progressed for the stall window.
    fn stalled(&self) -> Option<String> {
        let (last, longest) = *self.progress.lock().expect("formation progress lock");
        let idle = last.elapsed();
        (idle >= self.stall.max(longest * 3)).then(|| {
            let since = if last == self.started {
                "since formation began".to_string()
            } else {
                format!("since {:.1} s into formation", (last - self.started).as_secs_f64())
            };
            format!(
                "no node has made progress (got its node ID or became Ready) for {:.0} s, {since}",
                idle.as_secs_f64(),
            )
        })
    }

    /// [`poll_until`] for a formation step: ends with the last error once the formation
    /// stalled or reached its bound.
    async fn wait<T, F, Fut>(&self, interval: Duration, mut probe: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        poll_until(left(self.deadline), interval, || {
            let attempt = probe();
            async move {
                match attempt.await {
                    Ok(Some(v)) => Ok(Some(Ok(v))),
                    Ok(None) => Ok(None),
                    Err(e) => match self.stalled() {
                        Some(why) => Ok(Some(Err(anyhow::anyhow!("{why}; last error: {e:#}")))),
                        None => Err(e),
                    },
                }
            }
        })
        .await
        .with_context(|| {
            format!(
                "formation reached its bound of {:.0} s (`[timeouts] cluster_formed`) while nodes were still \
                 progressing; hint: raise it for a cluster this size on a host this busy",
                self.limit.as_secs_f64()
            )
        })?
    }
}

/// Initialises the swarm on the first manager, joins the other managers one at a time
/// (each is a raft membership change) and then the workers a few at a time, applies node
/// labels, creates the scenario's overlay networks, and waits until the manager sees
/// every node Ready with the right manager count: as long as nodes progress, up to
/// `limit` in total (see [`Formation`]), so giving up names the step it ended in.
async fn form_swarm(scenario: &Scenario, mut cluster: Cluster, limit: Duration) -> anyhow::Result<Cluster> {
    let nodes = &mut cluster.nodes;
    let formation = Formation::new(limit);
    let started = formation.started;
    let first = scenario.first_manager().name.clone();
    let leader = nodes
        .iter()
        .find(|n| n.name == first)
        .expect("first manager provisioned")
        .clone();
    let (worker_token, manager_token) = init_swarm(&leader).await?;
    // Every node asks its own engine for its ID, so at 100 nodes a short interval alone
    // is hundreds of `docker info` calls a second on the engines' cores.
    let id_interval = Duration::from_millis(200).max(Duration::from_millis(10) * nodes.len() as u32);
    let remote = format!("{}:{SWARM_PORT}", leader.address);
    if !scenario.ingress {
        remove_ingress(&leader, &formation).await?;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "swarm initialised on {}", leader.name);

    let join = |n: &EngineNode| {
        let token = if n.role == Role::Manager {
            &manager_token
        } else {
            &worker_token
        };
        let request = SwarmJoinRequest {
            listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
            advertise_addr: Some(format!("{}:{SWARM_PORT}", n.address)),
            remote_addrs: Some(vec![remote.clone()]),
            join_token: Some(token.clone()),
            ..Default::default()
        };
        let n = n.clone();
        let formation = &formation;
        async move {
            // A join the leader is too busy to accept in time is retried, bounded.
            formation
                .wait(Duration::from_millis(200), || {
                    let request = request.clone();
                    let n = &n;
                    async move {
                        match n.docker.join_swarm(request).await {
                            Ok(()) => Ok(Some(())),
                            // An attempt answered 503 ("will continue in the background")
                            // is still pending: its node ID tells when it completes.
                            Err(e) if e.to_string().contains("already part of a swarm") => Ok(Some(())),
                            Err(e) => {
                                tracing::debug!("{} join attempt failed: {e}", n.name);
                                Err(anyhow::anyhow!("{e}"))
                            }
                        }
                    }
                })
                .await
                .with_context(|| format!("{} joining the swarm as {}", n.name, n.role.as_str()))?;
            // The join slot stays taken until the join completed, so the joins in
            // flight are what the leader's CA works on, and each node's ID is the step
            // the formation's progress counts.
            let id = node_id(&n, formation, id_interval).await?;
            tracing::debug!(elapsed = ?started.elapsed(), "{} joined as {}", n.name, n.role.as_str());
            anyhow::Ok((n.name.clone(), id))
        }
    };
    let mut ids = HashMap::from([(leader.name.clone(), node_id(&leader, &formation, id_interval).await?)]);
    for n in nodes
        .iter()
        .filter(|n| n.name != leader.name && n.role == Role::Manager)
    {
        ids.extend([join(n).await?]);
    }
    ids.extend(
        futures_util::stream::iter(nodes.iter().filter(|n| n.role != Role::Manager).map(join))
            .buffer_unordered(JOINS_IN_FLIGHT)
            .try_collect::<Vec<(String, String)>>()
            .await?,
    );
    for n in nodes.iter_mut() {
        n.node_id = ids.remove(&n.name).expect("every node joined or initialised the swarm");
    }
    tracing::debug!(elapsed = ?started.elapsed(), "every node joined and has its node ID");

    let ghosts = every_node_ready(scenario, &cluster, &leader, &formation).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "every node Ready");
    remove_ghosts(&leader, &ghosts).await;

    label_nodes(scenario, &cluster).await?;
    create_networks(scenario, &cluster).await?;
    Ok(cluster)
}

/// `swarm init` on the first manager; its worker and manager join tokens.
async fn init_swarm(leader: &EngineNode) -> anyhow::Result<(String, String)> {
    leader
        .docker
        .init_swarm(SwarmInitRequest {
            listen_addr: Some(format!("0.0.0.0:{SWARM_PORT}")),
            advertise_addr: Some(format!("{}:{SWARM_PORT}", leader.address)),
            ..Default::default()
        })
        .await
        .with_context(|| format!("swarm init on {}", leader.name))?;
    let swarm = leader.docker.inspect_swarm().await.context("reading join tokens")?;
    let tokens = swarm.join_tokens.context("the swarm reported no join tokens")?;
    Ok((
        tokens.worker.context("no worker token")?,
        tokens.manager.context("no manager token")?,
    ))
}

/// A node's swarm node ID, as its own engine reports it once its join has completed: a
/// join retried after a slow first attempt answers "already part of a swarm" while the
/// first is still pending (measured at 60 nodes), so the ID is awaited, bounded.
async fn node_id(n: &EngineNode, formation: &Formation, interval: Duration) -> anyhow::Result<String> {
    formation
        .wait(interval, || async {
            let info = n
                .docker
                .info()
                .await
                .with_context(|| format!("docker info on {}", n.name))?;
            let swarm = info.swarm.unwrap_or_default();
            match swarm.node_id.filter(|id| !id.is_empty()) {
                Some(id) => {
                    formation.progressed();
                    Ok(Some(id))
                }
                None => anyhow::bail!(
                    "no swarm node ID yet (local state {}{}){}",
                    swarm.local_node_state.map(|s| s.to_string()).unwrap_or_default(),
                    swarm
                        .error
                        .filter(|e| !e.is_empty())
                        .map(|e| format!(", error: {e}"))
                        .unwrap_or_default(),
                    if swarm.local_node_state == Some(bollard::models::LocalNodeState::PENDING) {
                        "; hint: a pending join has not reached the manager: can this node reach its tcp/2377?"
                    } else {
                        ""
                    }
                ),
            }
        })
        .await
        .with_context(|| format!("{} reports no swarm node ID after joining", n.name))
}

/// Removes the swarm's routing-mesh network before any node joins, so no node builds an
/// ingress sandbox (`ingress = false`). `swarm init` creates it in the background: until
/// then the removal answers "not found", so that answer is waited out, bounded. A removal
/// counts only once the leader no longer lists it: a CI run saw a removal answered OK and
/// the network still there at the checks.
async fn remove_ingress(leader: &EngineNode, formation: &Formation) -> anyhow::Result<()> {
    let removed = std::sync::atomic::AtomicBool::new(false);
    formation
        .wait(Duration::from_millis(100), || async {
            let networks = leader
                .docker
                .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
                .await?;
            let Some(ingress) = networks.iter().find(|n| n.ingress == Some(true)) else {
                if removed.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(Some(()));
                }
                anyhow::bail!("the swarm has not created its ingress network yet");
            };
            leader
                .docker
                .remove_network(ingress.id.as_deref().unwrap_or("ingress"))
                .await?;
            removed.store(true, std::sync::atomic::Ordering::Relaxed);
            anyhow::bail!("ingress network removed; waiting until the leader no longer lists it")
        })
        .await
        .with_context(|| format!("removing the ingress network on {} (`ingress = false`)", leader.name))
}

/// Waits until the leader lists every engine's node Ready and the right managers.
/// Returns the IDs of the other entries it lists: nodes that no engine owns, which a
/// join whose certificate request was retried leaves behind (see [`JOINS_IN_FLIGHT`]).
async fn every_node_ready(
    scenario: &Scenario,
    cluster: &Cluster,
    leader: &EngineNode,
    formation: &Formation,
) -> anyhow::Result<Vec<String>> {
    let names = cluster.names_by_id();
    let managers = scenario.manager_count();
    let most_ready = std::sync::atomic::AtomicUsize::new(0);
    formation
        .wait(Duration::from_millis(100), || async {
            let listed = leader
                .docker
                .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
                .await?;
            let (ours, ghosts): (Vec<_>, Vec<_>) = listed
                .iter()
                .partition(|n| n.id.as_ref().is_some_and(|id| names.contains_key(id)));
            let not_ready: Vec<String> = cluster
                .nodes
                .iter()
                .filter_map(|engine| {
                    let entry = ours.iter().find(|n| n.id.as_deref() == Some(engine.node_id.as_str()));
                    let state = entry.and_then(|n| n.status.as_ref()).and_then(|s| s.state);
                    match state {
                        Some(NodeState::READY) => None,
                        Some(s) => Some(format!("{} ({s})", engine.name)),
                        None => Some(format!("{} (not listed)", engine.name)),
                    }
                })
                .collect();
            let mgrs = ours.iter().filter(|n| n.manager_status.is_some()).count();
            if not_ready.is_empty() && mgrs == managers {
                return Ok(Some(ghosts.iter().filter_map(|n| n.id.clone()).collect()));
            }
            let ready = cluster.nodes.len() - not_ready.len();
            if most_ready.fetch_max(ready, std::sync::atomic::Ordering::Relaxed) < ready {
                formation.progressed();
            }
            tracing::trace!(
                "{ready}/{} nodes ready, {mgrs}/{managers} managers",
                cluster.nodes.len()
            );
            let mut shown: Vec<String> = not_ready.iter().take(5).cloned().collect();
            if not_ready.len() > 5 {
                shown.push(format!("{} more", not_ready.len() - 5));
            }
            bail!(
                "{ready}/{} nodes Ready, {mgrs}/{managers} managers{}",
                cluster.nodes.len(),
                if shown.is_empty() {
                    String::new()
                } else {
                    format!("; not Ready: {}", shown.join(", "))
                }
            )
        })
        .await
        .context("waiting for every node to be Ready")
}

/// Removes node entries no engine owns (they never had an agent: no hostname, state
/// unknown). Left in place they would count as nodes of the swarm: a global service
/// gets a task for each, and the declared state would see nodes nobody declared.
async fn remove_ghosts(leader: &EngineNode, ghosts: &[String]) {
    if ghosts.is_empty() {
        return;
    }
    let removed = join_all(ghosts.iter().map(|id| async move {
        let options = bollard::query_parameters::DeleteNodeOptionsBuilder::new()
            .force(true)
            .build();
        match leader.docker.delete_node(id, Some(options)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("removing node entry {id}, which no engine owns: {e}");
                false
            }
        }
    }))
    .await;
    tracing::warn!(
        "removed {} of {} node entries no engine owns (a join whose certificate request was retried leaves one)",
        removed.iter().filter(|r| **r).count(),
        ghosts.len()
    );
}

async fn label_nodes(scenario: &Scenario, cluster: &Cluster) -> anyhow::Result<()> {
    let manager = &cluster.manager().docker;
    try_join_all(
        scenario
            .nodes
            .iter()
            .filter(|n| !n.labels.is_empty())
            .map(|declared| async move {
                let id = &cluster.node(&declared.name).node_id;
                update_node_spec(manager, id, |spec| {
                    let labels = spec.labels.get_or_insert_with(HashMap::new);
                    labels.extend(declared.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                })
                .await
                .with_context(|| format!("labelling node {}", declared.name))
            }),
    )
    .await?;
    Ok(())
}

/// Changes a swarm node's spec (labels, availability) at its current version.
pub async fn update_node_spec(
    manager: &Docker,
    node_id: &str,
    mut change: impl FnMut(&mut NodeSpec),
) -> anyhow::Result<()> {
    // An update names the version it read; the swarm bumps a node's version on its own
    // (status, description) and refuses a stale one with "update out of sequence"
    // (seen once in 10 conformance runs, a label added as the checks started): read it
    // again and retry.
    let mut tries = 0;
    loop {
        tries += 1;
        let node = manager.inspect_node(node_id).await?;
        let version = node.version.and_then(|v| v.index).context("node has no version")?;
        let mut spec: NodeSpec = node.spec.unwrap_or_default();
        change(&mut spec);
        let options = UpdateNodeOptionsBuilder::new().version(version as i64).build();
        match manager.update_node(node_id, spec, options).await {
            Err(e) if tries < 5 && e.to_string().contains("update out of sequence") => {
                tracing::debug!(node_id, "node update out of sequence; reading its version again");
            }
            r => return Ok(r?),
        }
    }
}

async fn create_networks(scenario: &Scenario, cluster: &Cluster) -> anyhow::Result<()> {
    let manager = &cluster.manager().docker;
    for net in &scenario.networks {
        manager
            .create_network(network_request(scenario, &cluster.run_id, net))
            .await
            .with_context(|| format!("creating overlay network {}", net.name))?;
    }
    Ok(())
}

/// The create request of one of the scenario's overlay networks (swarm or global scope:
/// the engine decides by whether it is a swarm manager or has a cluster store).
fn network_request(scenario: &Scenario, run_id: &str, net: &Network) -> NetworkCreateRequest {
    let mut labels = crate::marks::workload_labels(run_id);
    labels.insert(crate::marks::SCENARIO.to_string(), scenario.name.clone());
    let mut options = HashMap::new();
    if net.encrypted {
        options.insert("encrypted".to_string(), String::new());
    }
    NetworkCreateRequest {
        name: net.name.clone(),
        driver: Some("overlay".into()),
        // Attachability is a swarm-scope notion; global-scope networks take any container.
        attachable: (scenario.topology == Topology::Swarm).then_some(net.attachable),
        options: Some(options),
        ipam: net.subnet.as_ref().map(|s| Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(s.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        labels: Some(labels),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn formation_gives_up_once_nothing_progresses_not_at_its_bound() {
        let formation = Formation::with_stall(Duration::from_secs(60), Duration::from_millis(300));
        let started = Instant::now();
        let err = formation
            .wait::<(), _, _>(Duration::from_millis(20), || async {
                anyhow::bail!("no swarm node ID yet (local state pending)")
            })
            .await
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited {:?}",
            started.elapsed()
        );
        assert!(text.contains("no node has made progress"), "{text}");
        assert!(text.contains("local state pending"), "{text}");
    }

    #[tokio::test]
    async fn formation_waits_past_the_stall_window_while_nodes_progress() {
        let formation = Formation::with_stall(Duration::from_secs(60), Duration::from_millis(300));
        let polls = AtomicU32::new(0);
        let started = Instant::now();
        let done = formation
            .wait(Duration::from_millis(50), || async {
                // One node steps every 100 ms; the awaited state holds after 1 s.
                if polls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                    formation.progressed();
                }
                if started.elapsed() >= Duration::from_secs(1) {
                    Ok(Some("formed"))
                } else {
                    anyhow::bail!("not every node Ready")
                }
            })
            .await
            .unwrap();
        assert_eq!(done, "formed");
    }

    #[test]
    fn a_host_that_paused_long_between_steps_before_gets_that_much_more_patience() {
        let formation = Formation::with_stall(Duration::from_secs(60), Duration::from_secs(30));
        let quiet_for = |idle: u64, longest: u64| {
            *formation.progress.lock().unwrap() =
                (Instant::now() - Duration::from_secs(idle), Duration::from_secs(longest));
            formation.stalled()
        };
        assert_eq!(quiet_for(29, 0), None);
        assert!(quiet_for(31, 0).unwrap().contains("for 31 s"));
        assert_eq!(
            quiet_for(31, 12),
            None,
            "three times the longest pause (36 s) not reached"
        );
        assert!(quiet_for(37, 12).is_some());
    }

    #[tokio::test]
    async fn formation_at_its_bound_says_so_and_what_to_raise() {
        let formation = Formation::with_stall(Duration::from_millis(300), Duration::from_secs(60));
        let err = formation
            .wait::<(), _, _>(Duration::from_millis(20), || async {
                formation.progressed();
                anyhow::bail!("3/4 nodes Ready")
            })
            .await
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("`[timeouts] cluster_formed`"), "{text}");
        assert!(text.contains("3/4 nodes Ready"), "{text}");
    }
}
