//! What a finished run is, for reporters, the matrix and the CLI: its checks, nodes,
//! phase timings and exit code.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Phase;

/// How one check ended, as reports spell it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CheckOutcome {
    Passed,
    Failed,
    /// Could not run here (a reason says why); never counted as passed.
    Ignored,
    /// The scenario cannot run on its engines or target; nothing was provisioned.
    Unsupported,
}

impl CheckOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Passed => "passed",
            CheckOutcome::Failed => "failed",
            CheckOutcome::Ignored => "ignored",
            CheckOutcome::Unsupported => "unsupported",
        }
    }

    /// Ignored and unsupported checks: JUnit's `skipped`.
    pub fn is_skipped(self) -> bool {
        matches!(self, CheckOutcome::Ignored | CheckOutcome::Unsupported)
    }
}

impl std::fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRecord {
    pub name: String,
    pub kind: String,
    pub outcome: CheckOutcome,
    pub message: Option<String>,
    pub duration: Duration,
    /// When its first attempt started, counted from the start of the checks phase (the
    /// timeline); `duration` runs from there.
    pub started: Duration,
    /// How long it waited for its turn before (disruptive checks run after the others,
    /// one at a time).
    pub queued: Duration,
    /// The nodes it ran its probes on or acted on, as the scenario names them.
    pub nodes: Vec<String>,
    /// The scenario file's line of the check (see `swarm_e2e_model::Check::line`).
    #[serde(skip)]
    pub line: Option<usize>,
    /// The failures of the attempts before the last one (`--retries`).
    pub failed_attempts: Vec<String>,
    /// Its longest bounded wait, over all attempts: how close a clean run came to a bound.
    pub slowest_wait: Option<SlowestWait>,
}

/// One bounded wait of a check: how long it took, its bound, and the wait's place in the
/// source (`src/checks/dns.rs:88`), so a wait that nears its bound can be found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlowestWait {
    #[schemars(range(min = 0))]
    pub seconds: f64,
    #[schemars(range(min = 0))]
    pub bound_seconds: f64,
    pub at: String,
}

impl CheckRecord {
    /// Passed, but only after failing: what release engineers want to see apart.
    pub fn flaky(&self) -> bool {
        self.outcome == CheckOutcome::Passed && !self.failed_attempts.is_empty()
    }

    /// How often the check ran.
    pub fn attempts(&self) -> usize {
        self.failed_attempts.len() + 1
    }

    /// What a failure was traced to: its message's `cause: …` line (diagnosis of the
    /// underlay, a node gone), when there is one.
    pub fn cause(&self) -> Option<&str> {
        self.message.as_deref()?.lines().find_map(|l| l.strip_prefix("cause: "))
    }

    /// The cause as fields (nodes, direction, port), read against the run's nodes.
    pub fn cause_path(&self, nodes: &[NodeRecord]) -> Option<super::cause::CausePath> {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        self.cause().map(|c| super::cause::read(c, &names))
    }
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub name: String,
    #[schemars(extend("enum" = ["manager", "worker"]))]
    pub role: String,
    pub address: String,
    pub engine_version: String,
    /// The swarm node labels the scenario declares (`node.labels.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(default)]
    pub labels: BTreeMap<String, String>,
    /// The engine labels the scenario declares (`engine.labels.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(default)]
    pub engine_labels: BTreeMap<String, String>,
}

impl NodeRecord {
    /// A node as the scenario declares it, with what its engine answered.
    pub fn declared(node: &swarm_e2e_model::Node, address: &str, engine_version: &str) -> NodeRecord {
        NodeRecord {
            name: node.name.clone(),
            role: node.role.as_str().into(),
            address: address.to_string(),
            engine_version: engine_version.to_string(),
            labels: node.labels.clone(),
            engine_labels: node.engine_labels.clone(),
        }
    }
}

/// A stack of the scenario as the docker CLI deployed it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackRecord {
    pub name: String,
    /// The Compose files, merged in this order.
    pub files: Vec<String>,
    /// The docker CLI that deployed it (`docker --version`).
    pub cli_version: String,
    /// How long `docker stack deploy` took, when it succeeded.
    pub deploy_seconds: Option<f64>,
    /// What the CLI said besides creating things: ignored keys (`build`,
    /// `container_name`, …), deprecations, notices.
    pub cli_messages: Vec<String>,
    /// Why the deploy failed, when it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    /// When the run began (the history orders runs by it).
    pub started_at: std::time::SystemTime,
    pub scenario: String,
    /// The scenario file, as given.
    pub source: String,
    pub target: String,
    pub exit_code: i32,
    pub timings: Timings,
    pub checks: Vec<CheckRecord>,
    pub nodes: Vec<NodeRecord>,
    /// The nodes the scenario declares (no address; the engine it asks for), so a page
    /// can draw the nodes that never answered too.
    pub declared_nodes: Vec<NodeRecord>,
    /// The overlay networks the scenario declares, by name.
    pub networks: Vec<String>,
    /// The scenario's stacks, once deployed (or tried).
    pub stacks: Vec<StackRecord>,
    pub error: Option<String>,
    pub leftovers: Vec<String>,
    /// Where failure artefacts were written, if any.
    pub artifacts: Option<std::path::PathBuf>,
    /// DigitalOcean API requests of the run (DigitalOcean targets only).
    pub digitalocean_requests: Option<serde_json::Value>,
}

impl RunSummary {
    pub fn new(run_id: &str, scenario: &swarm_e2e_model::Scenario, target: &str) -> RunSummary {
        RunSummary {
            run_id: run_id.to_string(),
            started_at: std::time::SystemTime::now(),
            scenario: scenario.name.clone(),
            source: scenario.source.clone(),
            target: target.to_string(),
            exit_code: crate::exit::OK,
            timings: Timings::default(),
            checks: Vec::new(),
            nodes: Vec::new(),
            declared_nodes: (scenario.nodes.iter())
                .map(|n| NodeRecord::declared(n, "", &n.engine))
                .collect(),
            networks: scenario.networks.iter().map(|n| n.name.clone()).collect(),
            stacks: Vec::new(),
            error: None,
            leftovers: Vec::new(),
            artifacts: None,
            digitalocean_requests: None,
        }
    }

    pub fn count(&self, outcome: CheckOutcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }
}

/// Phase timings of one run, for `--timings` and reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub phases: Vec<(Phase, Duration)>,
}

impl Timings {
    pub fn record(&mut self, phase: Phase, d: Duration) {
        self.phases.push((phase, d));
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }

    pub fn table(&self) -> String {
        let mut out = String::from("phase            seconds\n");
        for (p, d) in &self.phases {
            out.push_str(&format!("{:<15}{:>9.2}\n", p.as_str(), d.as_secs_f64()));
        }
        out.push_str(&format!("{:<15}{:>9.2}\n", "total", self.total().as_secs_f64()));
        out
    }
}

/// One line per scenario run: what ran, how it ended, how long it took.
pub fn summary_table(runs: &[RunSummary]) -> String {
    let mut out = format!(
        "{:<28} {:<9} {:>7} {:>6} {:>7} {:>8} {:>8}\n",
        "scenario", "run", "passed", "flaky", "failed", "skipped", "seconds"
    );
    for r in runs {
        let flaky = r.checks.iter().filter(|c| c.flaky()).count();
        out.push_str(&format!(
            "{:<28} {:<9} {:>7} {:>6} {:>7} {:>8} {:>8.2}\n",
            r.scenario,
            r.run_id,
            r.count(CheckOutcome::Passed) - flaky,
            flaky,
            r.count(CheckOutcome::Failed),
            r.count(CheckOutcome::Ignored) + r.count(CheckOutcome::Unsupported),
            r.timings.total().as_secs_f64()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_traced_to_its_cause_says_so() {
        let record = |message: &str| CheckRecord {
            name: "c".into(),
            kind: "ping-by-name".into(),
            outcome: CheckOutcome::Failed,
            message: Some(message.into()),
            duration: Duration::ZERO,
            started: Duration::ZERO,
            nodes: Vec::new(),
            line: None,
            failed_attempts: Vec::new(),
            slowest_wait: None,
            queued: Duration::ZERO,
        };
        let traced = record("reachability failed: …\ncause: udp/4789 between a and b is dropped (VXLAN data path)");
        assert_eq!(
            traced.cause(),
            Some("udp/4789 between a and b is dropped (VXLAN data path)")
        );
        assert_eq!(record("reachability failed\ncause not found: …").cause(), None);
    }
}
