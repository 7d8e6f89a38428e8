//! The checks: a registry from check kind to its implementation (one file per kind),
//! the environment checks run in, and the order they run in: disruptive checks wait
//! until every other check has ended, then run one at a time. Each check observes the
//! real cluster and fails with what it expected and what it saw; none of them knows
//! which target built the cluster.

mod cluster_state;
pub mod control_plane;
mod datapath;
mod dns;
mod drain;
mod membership;
mod network;
mod node_restart;
mod partition;
mod pause;
mod pending;
mod ping_by_name;
mod placement;
pub mod probe;
mod quorum;
mod stack_converges;
mod stack_healthy;
mod stack_ports;
mod stack_reach;
mod stack_redeploy;
mod stack_removal;
mod stack_secrets;
mod stack_update;
mod starts_when_labelled;
mod transfer;
mod underlay;
pub mod workloads;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use swarm_e2e_model::{Check, CheckKind, Scenario};

use crate::cluster::Cluster;
use crate::targets::{KernelFacts, NodeControl};

pub use workloads::deploy_workloads;

/// The key of a stack in [`CheckEnv::deploy_errors`] (services are keyed by their name;
/// no service name has a space).
pub fn stack_deploy_key(stack: &str) -> String {
    format!("stack {stack}")
}

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
    /// What the nodes' kernel has (IPVS for VIP endpoint mode, ESP for encrypted
    /// overlays), as the target knows it.
    pub kernel: KernelFacts,
    /// Upper bound for each check's waits.
    pub timeout: Duration,
    /// Services or containers that failed to deploy, with the error.
    pub deploy_errors: HashMap<String, String>,
    /// The target's name, for reasons that depend on it.
    pub target: &'static str,
    /// Stops and starts node engines, where the target allows it.
    pub node_control: Option<Arc<dyn NodeControl>>,
    /// Test hook (`sticky-partition`): nodes a partition's heal leaves cut.
    pub unhealed: Vec<String>,
    /// Test hook (`--inject-attempt-failure`): checks whose first attempt fails after it
    /// ran, whatever it saw, so a retry that passes is flaky on every machine.
    pub failed_first_attempts: Vec<String>,
    /// The host's counters when the run started, where the nodes share its kernel: a
    /// node that stops answering may be a host limit, not a node.
    pub host_at_start: Option<crate::hostlimits::HostFacts>,
    /// Disruptive checks run one at a time (each holds this) ...
    pub disruption: tokio::sync::Mutex<()>,
    /// ... and only once the other checks that run have ended: how many are left.
    /// Their workloads must not be moved by a drain or a stopped node while observed.
    pub plain_left: tokio::sync::watch::Sender<usize>,
    /// The checks that run last and will run, in file order: they take their turns in
    /// this order, so a run's disruptions happen in the same order every time.
    pub last_order: Vec<String>,
    /// How many of `last_order` have ended.
    pub turn: tokio::sync::watch::Sender<usize>,
    /// Watches the nodes and the swarm while the checks run: a plain check whose wait has
    /// become impossible ends at once, with the cause.
    pub watchdog: crate::watchdog::Watchdog,
    /// Why the nodes the watchdog found Down are, once asked (checks it ends together
    /// share one diagnosis).
    pub control_plane: control_plane::Diagnoses,
    /// The docker CLI that deployed the stacks (their updates go through it too).
    pub docker_cli: Option<crate::stacks::DockerCli>,
}

/// Ends a check's turn among those that run last, also when its future is dropped.
struct TurnDone<'a>(&'a tokio::sync::watch::Sender<usize>, usize);

impl Drop for TurnDone<'_> {
    fn drop(&mut self) {
        let next = self.1 + 1;
        self.0.send_modify(|t| *t = (*t).max(next));
    }
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

/// How a check ended, and the failures of the attempts before (a check that passes after
/// failing is flaky).
pub struct Attempts {
    pub outcome: Outcome,
    pub failed: Vec<String>,
    /// When its first attempt began: a disruptive check first waits for the plain checks
    /// and its turn, which is not its own time. `None`: no attempt ran.
    pub began: Option<std::time::Instant>,
}

/// Runs one check against the cluster, bounded by `env.timeout`; a failure is tried
/// again up to `retries` times. The retries keep the check's place: a plain check still
/// counts as running (the disruptive ones wait for it), a disruptive one keeps its turn.
pub async fn run_check(env: &CheckEnv, check: &Check, retries: u32) -> Attempts {
    let stack = check.kind.stack().map(stack_deploy_key);
    for service in check.kind.services().into_iter().chain(stack.as_deref()) {
        if let Some(e) = env.deploy_errors.get(service) {
            let outcome = name_dead_nodes(
                env,
                Outcome::Failed(format!("workload `{service}` could not be deployed: {e}")),
            )
            .await;
            // It has ended: the checks that wait for it must not wait out their bound.
            if check.kind.runs_last() {
                if let Some(p) = env.last_order.iter().position(|n| *n == check.name) {
                    drop(TurnDone(&env.turn, p));
                }
            } else {
                drop(PlainDone(&env.plain_left));
            }
            // Deploying again is not what a retry of a check means.
            return Attempts {
                outcome,
                failed: Vec::new(),
                began: None,
            };
        }
    }
    // `cluster-state` looks once now, as the checks start, and again at the end.
    let at_start = match check.kind {
        CheckKind::ClusterState => Some(cluster_state::drift(env).await),
        _ => None,
    };
    // Disruptive checks (drain, node restarts, quorum loss) run alone, after the rest.
    let (_done, _exclusive, _turn) = if check.kind.runs_last() {
        let mut left = env.plain_left.subscribe();
        // Bounded: a check that never ends is already failing on its own bound.
        let _ = tokio::time::timeout(env.timeout * 2, left.wait_for(|n| *n == 0)).await;
        // In file order; bounded like the wait above, per check before this one (a
        // check that does not take its turn delays the next ones, never stops them).
        let position = env.last_order.iter().position(|n| *n == check.name);
        if let Some(p) = position {
            let mut turn = env.turn.subscribe();
            let limit = env.timeout * 4 * (p as u32 + 1);
            let _ = tokio::time::timeout(limit, turn.wait_for(|t| *t >= p)).await;
        }
        let turn = position.map(|p| TurnDone(&env.turn, p));
        (None, Some(env.disruption.lock().await), turn)
    } else {
        (Some(PlainDone(&env.plain_left)), None, None)
    };
    let mut at_start = at_start;
    let mut failed = Vec::new();
    let began = Some(std::time::Instant::now());
    loop {
        let mut outcome = attempt(env, check, at_start.take()).await;
        if failed.is_empty() && env.failed_first_attempts.contains(&check.name) {
            outcome = Outcome::Failed(format!(
                "attempt 1 failed by --inject-attempt-failure (test hook); it saw: {outcome:?}"
            ));
        }
        match outcome {
            Outcome::Failed(m) if failed.len() < retries as usize => {
                tracing::info!(check = %check.name, "attempt {} failed; trying again", failed.len() + 1);
                failed.push(m);
            }
            outcome => return Attempts { outcome, failed, began },
        }
    }
}

/// What `cluster-state` saw as the checks started (the other kinds take no first look).
type FirstLook = Option<anyhow::Result<Vec<String>>>;

/// Runs one check of a kind from its validated keys.
type Runner = for<'a> fn(&'a CheckEnv, &'a Check, FirstLook) -> BoxFuture<'a, anyhow::Result<Outcome>>;

/// The registry: one line per check kind of the model's `CHECK_KINDS` (by its name), one
/// file per implementation.
const REGISTRY: &[(&str, Runner)] = &[
    ("ping-by-name", |e, c, _| Box::pin(ping_by_name::check(e, c))),
    ("placement", |e, c, _| Box::pin(placement::check(e, c))),
    ("pending", |e, c, _| Box::pin(pending::check(e, c))),
    ("dns", |e, c, _| Box::pin(dns::check(e, c))),
    ("network", |e, c, _| Box::pin(network::check(e, c))),
    ("membership", |e, c, _| Box::pin(membership::check(e, c))),
    ("starts-when-labelled", |e, c, _| {
        Box::pin(starts_when_labelled::check(e, c))
    }),
    ("drain", |e, c, _| Box::pin(drain::check(e, c))),
    ("pause", |e, c, _| Box::pin(pause::check(e, c))),
    ("node-restart", |e, c, _| Box::pin(node_restart::check(e, c))),
    ("quorum", |e, c, _| Box::pin(quorum::check(e, c))),
    ("mtu", |e, c, _| Box::pin(transfer::check(e, c))),
    ("packet-loss", |e, c, _| Box::pin(transfer::check(e, c))),
    ("partition", |e, c, _| Box::pin(partition::check(e, c))),
    ("stack-converges", |e, c, _| Box::pin(stack_converges::check(e, c))),
    ("stack-reach", |e, c, _| Box::pin(stack_reach::check(e, c))),
    ("stack-ports", |e, c, _| Box::pin(stack_ports::check(e, c))),
    ("stack-healthy", |e, c, _| Box::pin(stack_healthy::check(e, c))),
    ("stack-secrets", |e, c, _| Box::pin(stack_secrets::check(e, c))),
    ("stack-redeploy", |e, c, _| Box::pin(stack_redeploy::check(e, c))),
    ("stack-update", |e, c, _| Box::pin(stack_update::check(e, c))),
    ("stack-removal", |e, c, _| Box::pin(stack_removal::check(e, c))),
    ("cluster-state", |e, _, first| {
        Box::pin(cluster_state::run(e, first.unwrap_or_else(|| Ok(Vec::new()))))
    }),
];

/// A check handed to a runner registered for another kind: a bug of the registry.
fn misrouted(check: &Check) -> anyhow::Error {
    anyhow::anyhow!(
        "check `{}` of kind `{}` reached another kind's runner: the registry in checks/mod.rs is wrong",
        check.name,
        check.kind.kind_name()
    )
}

/// One attempt of a check: its implementation, bounded by the check's own `timeout`.
async fn attempt(env: &CheckEnv, check: &Check, at_start: FirstLook) -> Outcome {
    let kind = check.kind.spec().name;
    let registry = async {
        match REGISTRY.iter().find(|(name, _)| *name == kind) {
            Some((_, runner)) => runner(env, check, at_start).await,
            None => Err(anyhow::anyhow!(
                "check kind `{kind}` has no implementation in checks/mod.rs"
            )),
        }
    };
    // A plain check ends as soon as the watchdog knows it cannot pass; disruptive ones
    // need nothing of it (they break nodes themselves).
    let needs = crate::watchdog::Needs::of(&check.kind, &env.scenario);
    let started = std::time::Instant::now();
    let watched = async {
        tokio::select! {
            r = registry => r,
            why = env.watchdog.until_impossible(&needs) => {
                let ended = started.elapsed().as_secs_f64();
                let cause = control_plane::cause(env, &needs).await;
                Ok(Outcome::Failed(format!("{why}{cause}\n(ended by the watchdog {ended:.1} s into the check)")))
            }
        }
    };
    // A check's own `timeout` ends it wherever it is; what it changed is healed by the
    // guards its future drops (underlay faults, counting rules, drained nodes).
    let result = match check.timeout {
        None => watched.await,
        Some(limit) => match tokio::time::timeout(limit, watched).await {
            Ok(r) => r,
            Err(_) => Ok(Outcome::Failed(format!(
                "no verdict within {} (the check's `timeout`)",
                humantime::format_duration(limit)
            ))),
        },
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    name_dead_nodes(env, outcome).await
}

/// A node that died explains most failures: a failure says so, with the reason where
/// the target can see it, instead of leaving a riddle.
pub(crate) async fn name_dead_nodes(env: &CheckEnv, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Failed(m) => {
            let down = env.cluster.unresponsive().await;
            if down.is_empty() {
                return Outcome::Failed(m);
            }
            let mut reasons = Vec::new();
            for node in &down {
                let why = match &env.node_control {
                    Some(c) => c.why_silent(node).await,
                    None => None,
                };
                if let Some(why) = why {
                    reasons.push(format!("{node}: {why}"));
                }
            }
            let reasons = if reasons.is_empty() {
                String::new()
            } else {
                format!("\n{}", reasons.join("\n"))
            };
            let nodes = env.scenario.nodes.len() as u64;
            let full = (env.host_at_start.as_ref()).and_then(|b| crate::hostlimits::neighbour_table_cause(b, nodes));
            if let Some(cause) = full {
                return Outcome::Failed(format!(
                    "{m}\nnode(s) not answering: {}{reasons}\n{cause}",
                    down.join(", ")
                ));
            }
            Outcome::Failed(format!(
                "{m}\nnode(s) not answering: {} (the engine does not answer /_ping: the node died or was stopped){reasons}",
                down.join(", ")
            ))
        }
        other => other,
    }
}

/// The outcome of a disruptive check on a target that cannot stop engines.
fn no_control(what: &str, target: &str) -> Outcome {
    Outcome::Ignored(format!(
        "{what} needs to stop and start node engines, which target {target} cannot do (local and do-fake can)"
    ))
}

#[cfg(test)]
mod tests {
    use super::REGISTRY;
    use swarm_e2e_model::CHECK_KINDS;

    /// Every kind the model knows runs, and nothing else is registered.
    #[test]
    fn the_registry_holds_every_check_kind_once() {
        let registered: Vec<&str> = REGISTRY.iter().map(|(name, _)| *name).collect();
        let known: Vec<&str> = CHECK_KINDS.iter().map(|k| k.name).collect();
        assert_eq!(
            registered, known,
            "REGISTRY in checks/mod.rs must list CHECK_KINDS in their order"
        );
    }
}
