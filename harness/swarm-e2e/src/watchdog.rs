//! The run's watchdog: from the cluster formed to the end of the checks it watches every
//! node's engine (`/_ping`, every second) and the swarm as a manager sees it, and
//! publishes facts with their causes (`swarm-demo-3: its node container is paused`,
//! `swarm-demo-2: drained`). A check that depends on a node ends the moment a fact makes
//! what it waits for impossible, with that cause, instead of waiting out its bound;
//! checks that do not depend on the broken node carry on.
//!
//! A fact is published only when it is certain: the target says why an engine is silent
//! (its container exited or is paused, its engine was stopped), or the silence or the
//! swarm's verdict lasted several rounds. A healthy cluster must never produce one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::models::{NodeSpecAvailabilityEnum, NodeState};
use swarm_e2e_model::{CheckKind, Role, Scenario, Topology};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::targets::NodeControl;

/// How often every node is looked at.
const ROUND: Duration = Duration::from_secs(1);
/// How long an engine may take to answer `/_ping` in a round.
const PING_LIMIT: Duration = Duration::from_secs(1);
/// Rounds an engine may stay silent without a certain cause before it counts as silent
/// (a loaded 2-core host delays single answers by a second or more).
const SILENT_ROUNDS: u32 = 10;
/// Rounds a node may be Down in the swarm while its engine answers (a heartbeat missed
/// under load) before it counts.
const DOWN_ROUNDS: u32 = 3;
/// Bound on one question to the target or a manager.
const ASK_LIMIT: Duration = Duration::from_secs(3);

/// What is wrong with a node, as far as the watchdog knows for certain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// Its engine does not answer: nothing can be asked of it and no task runs there.
    Silent(String),
    /// Drained: the swarm runs no task on it.
    Drained,
    /// Down in the swarm while its engine answers: the managers do not hear it, so the
    /// swarm places nothing there. (Said once: how long it lasts is not a new fact.)
    Down,
    /// Paused availability: it keeps its tasks and takes no new ones. Said, never
    /// decisive (a task already there keeps running).
    Paused,
}

impl Trouble {
    /// Whether a workload can still be started on the node.
    fn takes_tasks(&self) -> bool {
        matches!(self, Trouble::Paused)
    }

    fn describe(&self) -> String {
        match self {
            Trouble::Silent(why) => why.clone(),
            Trouble::Drained => "drained (availability `drain`): the swarm runs no task on it".into(),
            Trouble::Down => format!(
                "Down in the swarm for {DOWN_ROUNDS} s or more while its engine answers: the managers do not hear \
                 it (the control plane, tcp/2377 to the managers)"
            ),
            Trouble::Paused => "paused (availability `pause`): it takes no new task".into(),
        }
    }
}

/// What the watchdog knows: the nodes in trouble (the others are fine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub troubles: BTreeMap<String, Trouble>,
    /// The swarm has no leader (raft lost its quorum): why, as a manager said it.
    pub leaderless: Option<String>,
    /// The round these facts come from (counted from 1).
    pub round: u64,
}

/// What a check depends on: the engines it talks to and where the workloads it waits for
/// can run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Nodes whose engines the check asks.
    pub engines: BTreeSet<String>,
    /// Workloads the check waits for, each with the nodes it may run on: impossible
    /// when none of them takes tasks.
    pub runs_on: Vec<(String, Vec<String>)>,
    /// Nodes that must run a task of the check's workload.
    pub hosts: BTreeSet<String>,
    /// Whether the check asks the swarm's managers (tasks, nodes): impossible without a
    /// leader.
    pub swarm: bool,
}

impl Needs {
    /// Whether the check depends on `node` in any way.
    pub fn names(&self, node: &str) -> bool {
        self.engines.contains(node)
            || self.hosts.contains(node)
            || self.runs_on.iter().any(|(_, nodes)| nodes.iter().any(|n| n == node))
    }

    /// What a check of `kind` depends on in `scenario`. Disruptive checks break nodes
    /// themselves and `cluster-state` reports what it finds: they need nothing.
    pub fn of(kind: &CheckKind, scenario: &Scenario) -> Needs {
        let mut needs = Needs::default();
        if kind.is_disruptive() {
            return needs;
        }
        needs.swarm = scenario.topology != Topology::Classic;
        if matches!(kind, CheckKind::ClusterState) {
            // It reports broken nodes as what it found; only a swarm without a leader
            // leaves it nothing to read.
            return needs;
        }
        // Swarm API calls go to the first manager (classic: the node the networks were
        // created on).
        let first = match scenario.topology {
            Topology::Classic => scenario.nodes.first(),
            _ => scenario.nodes.iter().find(|n| n.role == Role::Manager),
        };
        needs.engines.extend(first.map(|n| n.name.clone()));
        let all = || scenario.nodes.iter().map(|n| n.name.clone());
        match kind {
            CheckKind::PingByName { from, target, .. } => {
                needs.engines.insert(from.clone());
                needs.runs_on.push((target.clone(), where_runs(scenario, target)));
            }
            CheckKind::Dns { from, service, .. } => {
                needs.engines.insert(from.clone());
                needs.runs_on.push((service.clone(), where_runs(scenario, service)));
            }
            CheckKind::Placement {
                service, expect_counts, ..
            } => {
                needs.runs_on.push((service.clone(), where_runs(scenario, service)));
                let counted = expect_counts.iter().flatten();
                needs
                    .hosts
                    .extend(counted.filter(|(_, n)| **n > 0).map(|(node, _)| node.clone()));
            }
            CheckKind::StartsWhenLabelled { node, .. } => {
                needs.hosts.insert(node.clone());
            }
            CheckKind::Network { .. }
            | CheckKind::Membership
            | CheckKind::StackReach { .. }
            | CheckKind::StackPorts { .. }
            | CheckKind::StackHealthy { .. }
            | CheckKind::StackSecrets { .. } => needs.engines.extend(all()),
            CheckKind::Mtu { from, to, .. } => needs.engines.extend([from.clone(), to.clone()]),
            _ => {}
        }
        needs
    }
}

/// The nodes a workload may run on: a container's node, a service's eligible nodes (all
/// of them when a constraint is decided only at run time).
fn where_runs(scenario: &Scenario, workload: &str) -> Vec<String> {
    if let Some(c) = scenario.container(workload) {
        return vec![c.node.clone()];
    }
    let eligible = scenario.service(workload).and_then(|s| scenario.eligible_nodes(s));
    eligible.unwrap_or_else(|| scenario.nodes.iter().map(|n| n.name.clone()).collect())
}

impl Facts {
    /// Why what `needs` waits for cannot happen any more, if it cannot.
    pub fn impossible(&self, needs: &Needs) -> Option<String> {
        let trouble = |node: &str| self.troubles.get(node);
        let mut causes = Vec::new();
        if let Some(why) = self.leaderless.as_ref().filter(|_| needs.swarm) {
            causes.push(format!("the check asks the swarm's managers, and {why}"));
        }
        for node in &needs.engines {
            if let Some(t @ Trouble::Silent(_)) = trouble(node) {
                causes.push(format!("the check asks {node}'s engine, and {node}: {}", t.describe()));
            }
        }
        for node in &needs.hosts {
            if let Some(t) = trouble(node).filter(|t| !t.takes_tasks()) {
                causes.push(format!(
                    "the check needs a task on {node}, and {node}: {}",
                    t.describe()
                ));
            }
        }
        for (workload, nodes) in &needs.runs_on {
            let blocked: Vec<String> = (nodes.iter())
                .filter_map(|n| {
                    trouble(n)
                        .filter(|t| !t.takes_tasks())
                        .map(|t| format!("{n}: {}", t.describe()))
                })
                .collect();
            if !nodes.is_empty() && blocked.len() == nodes.len() {
                causes.push(format!(
                    "`{workload}` can run only on [{}], and none of them can run it: {}",
                    nodes.join(", "),
                    blocked.join("; ")
                ));
            }
        }
        (!causes.is_empty()).then(|| causes.join("\n"))
    }
}

/// Hears each new fact, said as `NODE: CAUSE`.
pub type Tell = Box<dyn Fn(String) + Send + Sync>;

/// The watchdog of one run: its task ends when this is dropped.
pub struct Watchdog {
    facts: watch::Receiver<Facts>,
    /// Rounds begun so far.
    begun: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watchdog {
    /// Starts watching `cluster` on `runtime`; `control` says why a silent engine is, and
    /// `tell` hears each new fact (`wd-2: drained …`) as it is learnt.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        cluster: Arc<Cluster>,
        control: Option<Arc<dyn NodeControl>>,
        swarm: bool,
        tell: Tell,
    ) -> Watchdog {
        let (send, facts) = watch::channel(Facts::default());
        let begun = Arc::new(AtomicU64::new(0));
        let task = runtime.spawn(watch_cluster(cluster, control, swarm, send, tell, begun.clone()));
        Watchdog { facts, begun, task }
    }

    /// What is known now.
    pub fn facts(&self) -> Facts {
        self.facts.borrow().clone()
    }

    /// Returns, with the cause, once what `needs` waits for has become impossible; never
    /// returns while it stays possible.
    /// Only facts of a round begun after the call count: what a round saw before (a
    /// node a disruptive check had just stopped and restored) is not held against a
    /// check that starts later.
    pub async fn until_impossible(&self, needs: &Needs) -> String {
        let mut facts = self.facts.clone();
        let begun = self.begun.load(Ordering::SeqCst);
        loop {
            if let Some(why) = Some(facts.borrow_and_update())
                .filter(|f| f.round > begun)
                .and_then(|f| f.impossible(needs))
            {
                return why;
            }
            if facts.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// How long each node has been in a state that needs several rounds to count.
#[derive(Default)]
struct Streaks {
    silent: HashMap<String, u32>,
    down: HashMap<String, u32>,
    leaderless: u32,
}

async fn watch_cluster(
    cluster: Arc<Cluster>,
    control: Option<Arc<dyn NodeControl>>,
    swarm: bool,
    send: watch::Sender<Facts>,
    tell: Tell,
    begun: Arc<AtomicU64>,
) {
    let mut streaks = Streaks::default();
    loop {
        let round = Instant::now();
        let number = begun.fetch_add(1, Ordering::SeqCst) + 1;
        let mut facts = look(&cluster, control.as_deref(), swarm, &mut streaks).await;
        facts.round = number;
        send.send_modify(|known| {
            for (node, t) in &facts.troubles {
                if known.troubles.get(node) != Some(t) {
                    tell(format!("{node}: {}", t.describe()));
                }
            }
            if let Some(why) = facts.leaderless.as_ref().filter(|_| known.leaderless.is_none()) {
                tell(why.clone());
            }
            *known = facts;
        });
        tokio::time::sleep(ROUND.saturating_sub(round.elapsed())).await;
    }
}

/// One round: every engine pinged at once, a silent one's cause asked of the target, and
/// the swarm's node list read from a manager that answered.
async fn look(cluster: &Cluster, control: Option<&dyn NodeControl>, swarm: bool, streaks: &mut Streaks) -> Facts {
    let pings = futures_util::future::join_all(cluster.nodes.iter().map(|n| async move {
        let answered = matches!(tokio::time::timeout(PING_LIMIT, n.docker.ping()).await, Ok(Ok(_)));
        if answered {
            return (n.name.clone(), None);
        }
        let certain = match control {
            Some(c) => tokio::time::timeout(ASK_LIMIT, c.certain_silence(&n.name))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        (n.name.clone(), Some(certain))
    }))
    .await;
    let mut facts = Facts::default();
    let mut answering = BTreeSet::new();
    for (node, silence) in pings {
        match silence {
            None => {
                streaks.silent.remove(&node);
                answering.insert(node);
            }
            Some(certain) => {
                let rounds = streaks.silent.entry(node.clone()).or_default();
                *rounds += 1;
                let why = certain.or_else(|| {
                    // Worded the same every round: a silence going on is one fact, said once.
                    (*rounds >= SILENT_ROUNDS)
                        .then(|| format!("its engine has not answered /_ping for {SILENT_ROUNDS} s or more"))
                });
                if let Some(why) = why {
                    facts.troubles.insert(node, Trouble::Silent(why));
                }
            }
        }
    }
    if swarm {
        facts.leaderless = quorum_gone(cluster, &facts);
        if facts.leaderless.is_none() {
            swarm_view(cluster, &answering, streaks, &mut facts).await;
        }
    }
    facts
}

/// Raft's quorum is gone for certain when half of the managers or more are certainly
/// silent (their engines stopped, their containers exited or paused): no election can
/// be won, whatever the remaining managers say yet.
fn quorum_gone(cluster: &Cluster, facts: &Facts) -> Option<String> {
    let managers: Vec<&str> = (cluster.nodes.iter())
        .filter(|n| n.role == Role::Manager)
        .map(|n| n.name.as_str())
        .collect();
    let silent: Vec<&str> = (managers.iter().copied())
        .filter(|m| matches!(facts.troubles.get(*m), Some(Trouble::Silent(_))))
        .collect();
    (managers.len() > 1 && silent.len() * 2 >= managers.len()).then(|| {
        format!(
            "the swarm has no leader: raft lost its quorum ({} of its {} managers [{}] are silent, and more than \
             half must be reachable)",
            silent.len(),
            managers.len(),
            managers.join(", ")
        )
    })
}

/// Each node's availability and status as the first answering manager lists them.
async fn swarm_view(cluster: &Cluster, answering: &BTreeSet<String>, streaks: &mut Streaks, facts: &mut Facts) {
    let managers = cluster.nodes.iter().filter(|n| n.role == Role::Manager);
    let Some(manager) = managers.into_iter().find(|m| answering.contains(&m.name)) else {
        return;
    };
    let listed = match tokio::time::timeout(ASK_LIMIT, manager.docker.list_nodes(None)).await {
        Ok(Ok(listed)) => listed,
        Ok(Err(e)) if e.to_string().contains("does not have a leader") => {
            streaks.leaderless += 1;
            if streaks.leaderless >= DOWN_ROUNDS {
                let managers: Vec<&str> = (cluster.nodes.iter())
                    .filter(|n| n.role == Role::Manager)
                    .map(|n| n.name.as_str())
                    .collect();
                let reachable = managers.iter().filter(|m| answering.contains(**m)).count();
                facts.leaderless = Some(format!(
                    "the swarm has no leader: raft lost its quorum ({} says so; the engines of {reachable} of its \
                     {} managers [{}] answer, and more than half must be reachable)",
                    manager.name,
                    managers.len(),
                    managers.join(", ")
                ));
            }
            return;
        }
        _ => return,
    };
    streaks.leaderless = 0;
    let names = cluster.names_by_id();
    for node in listed {
        let Some(name) = node.id.as_ref().and_then(|id| names.get(id)) else {
            continue;
        };
        if facts.troubles.contains_key(name) {
            continue;
        }
        let availability = node.spec.as_ref().and_then(|s| s.availability);
        let state = node.status.as_ref().and_then(|s| s.state);
        let down = state == Some(NodeState::DOWN) && answering.contains(name);
        let rounds = if down {
            let r = streaks.down.entry(name.clone()).or_default();
            *r += 1;
            *r
        } else {
            streaks.down.remove(name);
            0
        };
        let trouble = match availability {
            Some(NodeSpecAvailabilityEnum::DRAIN) => Some(Trouble::Drained),
            _ if rounds >= DOWN_ROUNDS => Some(Trouble::Down),
            Some(NodeSpecAvailabilityEnum::PAUSE) => Some(Trouble::Paused),
            _ => None,
        };
        if let Some(t) = trouble {
            facts.troubles.insert(name.clone(), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        swarm_e2e_model::parse_scenario("t.toml", text).expect("valid scenario")
    }

    const SEED: &str = r#"
name = "t"
[[nodes]]
name = "n-1"
role = "manager"
[[nodes]]
name = "n-2"
[[nodes]]
name = "n-3"
[[networks]]
name = "net"
[[services]]
name = "foo"
networks = ["net"]
constraints = ["node.hostname==n-2"]
[[checks]]
name = "ping"
kind = "ping-by-name"
from = "n-3"
network = "net"
target = "foo"
[[checks]]
kind = "drain"
service = "foo"
node = "n-2"
"#;

    fn facts(troubles: &[(&str, Trouble)]) -> Facts {
        Facts {
            troubles: troubles.iter().map(|(n, t)| (n.to_string(), t.clone())).collect(),
            leaderless: None,
            round: 1,
        }
    }

    #[test]
    fn a_ping_ends_when_its_target_can_run_nowhere_or_its_source_is_silent() {
        let s = scenario(SEED);
        let needs = Needs::of(&s.checks[0].kind, &s);
        assert_eq!(needs.engines, BTreeSet::from(["n-1".to_string(), "n-3".to_string()]));
        assert_eq!(needs.runs_on, vec![("foo".to_string(), vec!["n-2".to_string()])]);
        assert_eq!(Facts::default().impossible(&needs), None);
        let drained = facts(&[("n-2", Trouble::Drained)]).impossible(&needs).unwrap();
        assert!(
            drained.contains("`foo` can run only on [n-2]") && drained.contains("n-2: drained"),
            "{drained}"
        );
        let paused = facts(&[("n-2", Trouble::Paused)]);
        assert_eq!(paused.impossible(&needs), None, "a paused node keeps its tasks");
        let silent = facts(&[("n-3", Trouble::Silent("its node container is paused".into()))]);
        let why = silent.impossible(&needs).unwrap();
        assert!(why.contains("n-3: its node container is paused"), "{why}");
        let elsewhere = facts(&[("n-1", Trouble::Drained)]);
        assert_eq!(
            elsewhere.impossible(&needs),
            None,
            "a drained manager still answers the API"
        );
        let leaderless = Facts {
            leaderless: Some("the swarm has no leader".into()),
            ..Facts::default()
        };
        let why = leaderless.impossible(&needs).unwrap();
        assert!(
            why.contains("asks the swarm's managers, and the swarm has no leader"),
            "{why}"
        );
    }

    #[test]
    fn disruptive_checks_need_nothing() {
        let s = scenario(SEED);
        assert_eq!(Needs::of(&s.checks[1].kind, &s), Needs::default());
    }
}
