//! `swarm-e2e matrix`: the same scenarios on several engines, compared.
//!
//! Each (scenario, engine) cell is an ordinary run (`run::run_scenario` on the scenario
//! with every node on that engine), so it provisions, checks and tears down exactly as
//! `run` does. The first engine is the baseline; a check that passes there and fails on
//! another engine is a regression.

pub mod page;

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use swarm_e2e_model::Scenario;
use tokio::runtime::Runtime;

use crate::exit;
use crate::report::{CheckOutcome, Phase, Reporter, RunSummary};
use crate::run::{Interrupt, RunOptions, run_scenarios};

/// One run of the matrix: a scenario on one engine.
#[derive(Debug, Clone)]
pub struct Cell {
    pub scenario: String,
    pub engine: String,
    pub summary: RunSummary,
}

/// How many clusters run at once when not told: one per two cores (a 3-node cluster
/// keeps about one core busy while it forms), and never more than the cells.
pub fn default_jobs(cells: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores / 2).clamp(1, cells.max(1))
}

/// Runs every scenario on every engine, `jobs` clusters at a time, in a stable order
/// (scenario-major). Stops handing out cells once interrupted. The run of a cell reports
/// to `reporter_for(label)`, its label being `scenario@engine`.
pub fn run_matrix(
    rt: &Runtime,
    scenarios: &[Scenario],
    engines: &[String],
    jobs: usize,
    opts: &RunOptions,
    reporter_for: &(dyn Fn(&str) -> Arc<dyn Reporter> + Sync),
    interrupt: &Interrupt,
) -> Vec<Cell> {
    let cells: Vec<(String, String)> = scenarios
        .iter()
        .flat_map(|s| engines.iter().map(move |e| (s.name.clone(), e.clone())))
        .collect();
    let runs = scenarios
        .iter()
        .flat_map(|s| engines.iter().map(move |e| s.with_engine(e)))
        .collect();
    let labels: Vec<String> = cells.iter().map(|(s, e)| format!("{s}@{e}")).collect();
    let summaries = run_scenarios(
        rt,
        runs,
        jobs,
        opts,
        &|i| reporter_for(&labels[i]),
        &|_, _| {},
        interrupt,
    );
    summaries
        .into_iter()
        .map(|(i, summary)| Cell {
            scenario: cells[i].0.clone(),
            engine: cells[i].1.clone(),
            summary,
        })
        .collect()
}

/// What became of a check on one engine: its outcome, or `not run` when that engine's
/// run never reached it.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum CellOutcome {
    Ran(CheckOutcome),
    NotRun(NotRun),
}

/// Serialized as `"not run"`.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema, PartialEq, Eq)]
pub enum NotRun {
    #[serde(rename = "not run")]
    NotRun,
}

impl CellOutcome {
    fn is(self, outcome: CheckOutcome) -> bool {
        self == CellOutcome::Ran(outcome)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CellOutcome::Ran(o) => o.as_str(),
            CellOutcome::NotRun(_) => "not run",
        }
    }
}

/// A check's outcome on one engine.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub outcome: CellOutcome,
    pub seconds: f64,
    pub message: Option<String>,
}

/// One check across the engines.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub scenario: String,
    pub check: String,
    /// Engine -> outcome; an engine whose run never reached the check says `not run`.
    pub outcomes: BTreeMap<String, Outcome>,
    /// The outcomes are not all the same.
    pub differs: bool,
    /// Engines on which the check failed although it passed on the baseline.
    pub regressions: Vec<String>,
}

/// One run's phases and engines, for the timing table.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRow {
    pub scenario: String,
    pub engine: String,
    pub run_id: String,
    /// When the run began (RFC 3339, UTC; a history orders runs by it).
    #[schemars(default)]
    pub started_at: String,
    pub exit_code: i32,
    pub error: Option<String>,
    /// What the engines reported (`docker version`), node by node.
    pub engine_versions: Vec<String>,
    pub phases: BTreeMap<&'static str, f64>,
    pub seconds: f64,
}

/// Bumped on any incompatible change of the matrix report.
pub const MATRIX_SCHEMA_VERSION: u32 = 1;

/// The comparison `matrix` prints and writes (`matrix --json PATH`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "swarm-e2e matrix report")]
pub struct Comparison {
    /// Changes on any incompatible change.
    #[schemars(extend("const" = MATRIX_SCHEMA_VERSION))]
    pub schema_version: u32,
    pub baseline: String,
    pub engines: Vec<String>,
    pub rows: Vec<Row>,
    pub runs: Vec<RunRow>,
    pub regressions: usize,
}

impl Comparison {
    /// Compares the cells check by check. `engines[0]` is the baseline.
    pub fn new(engines: &[String], cells: &[Cell]) -> Comparison {
        let mut rows: Vec<Row> = Vec::new();
        for cell in cells {
            for c in &cell.summary.checks {
                let row = match rows
                    .iter_mut()
                    .find(|r| r.scenario == cell.scenario && r.check == c.name)
                {
                    Some(r) => r,
                    None => {
                        rows.push(Row {
                            scenario: cell.scenario.clone(),
                            check: c.name.clone(),
                            outcomes: BTreeMap::new(),
                            differs: false,
                            regressions: Vec::new(),
                        });
                        rows.last_mut().unwrap()
                    }
                };
                row.outcomes.insert(
                    cell.engine.clone(),
                    Outcome {
                        outcome: CellOutcome::Ran(c.outcome),
                        seconds: c.duration.as_secs_f64(),
                        message: c.message.clone(),
                    },
                );
            }
        }
        let baseline = engines.first().cloned().unwrap_or_default();
        for row in &mut rows {
            for e in engines {
                row.outcomes.entry(e.clone()).or_insert_with(|| Outcome {
                    outcome: CellOutcome::NotRun(NotRun::NotRun),
                    seconds: 0.0,
                    message: None,
                });
            }
            let first = row.outcomes[&baseline].outcome;
            row.differs = row.outcomes.values().any(|o| o.outcome != first);
            if first.is(CheckOutcome::Passed) {
                row.regressions = engines[1..]
                    .iter()
                    .filter(|e| row.outcomes[*e].outcome.is(CheckOutcome::Failed))
                    .cloned()
                    .collect();
            }
        }
        let runs = cells
            .iter()
            .map(|c| RunRow {
                scenario: c.scenario.clone(),
                engine: c.engine.clone(),
                run_id: c.summary.run_id.clone(),
                started_at: humantime::format_rfc3339_seconds(c.summary.started_at).to_string(),
                exit_code: c.summary.exit_code,
                error: c.summary.error.clone(),
                engine_versions: c.summary.nodes.iter().map(|n| n.engine_version.clone()).collect(),
                phases: c
                    .summary
                    .timings
                    .phases
                    .iter()
                    .map(|(p, d)| (p.as_str(), d.as_secs_f64()))
                    .collect(),
                seconds: c.summary.timings.total().as_secs_f64(),
            })
            .collect();
        let regressions = rows.iter().map(|r| r.regressions.len()).sum();
        Comparison {
            schema_version: MATRIX_SCHEMA_VERSION,
            baseline,
            engines: engines.to_vec(),
            rows,
            runs,
            regressions,
        }
    }

    /// The exit code: a regression first; otherwise the worst run, where a scenario
    /// unsupported on an engine is an expected answer, not an error.
    pub fn exit_code(&self) -> i32 {
        if self.regressions > 0 {
            return exit::REGRESSION;
        }
        self.runs
            .iter()
            .map(|r| r.exit_code)
            .filter(|c| *c != exit::UNSUPPORTED)
            .fold(exit::OK, exit::worst)
    }

    /// The check x engine table, differences marked, then the per-engine phase timings.
    pub fn table(&self) -> String {
        let check_width = self
            .rows
            .iter()
            .map(|r| r.scenario.len() + r.check.len() + 2)
            .max()
            .unwrap_or(5)
            .max(5);
        let col = 20;
        let mut out = format!("{:<check_width$}", "check");
        for e in &self.engines {
            let head = if *e == self.baseline {
                format!("{e} (baseline)")
            } else {
                e.clone()
            };
            out.push_str(&format!("  {head:<col$}"));
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&format!("{:<check_width$}", format!("{}::{}", r.scenario, r.check)));
            for e in &self.engines {
                let o = &r.outcomes[e];
                let text = match o.outcome {
                    CellOutcome::Ran(CheckOutcome::Passed | CheckOutcome::Failed) => {
                        format!("{} {:.1}s", o.outcome.as_str(), o.seconds)
                    }
                    other => other.as_str().to_string(),
                };
                out.push_str(&format!("  {text:<col$}"));
            }
            if !r.regressions.is_empty() {
                out.push_str(&format!("  <- REGRESSION on {}", r.regressions.join(", ")));
            } else if r.differs {
                out.push_str("  <- differs");
            }
            out.push('\n');
        }
        let reasons: BTreeMap<&str, &str> = self
            .rows
            .iter()
            .flat_map(|r| r.outcomes.iter())
            .filter(|(_, o)| o.outcome.is(CheckOutcome::Unsupported))
            .filter_map(|(e, o)| Some((e.as_str(), o.message.as_deref()?)))
            .collect();
        for (engine, reason) in reasons {
            out.push_str(&format!("unsupported on {engine}: {reason}\n"));
        }
        out.push_str(&format!(
            "\n{:<28} {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  engines\n",
            "scenario", "engine", "provision", "ready", "formed", "checks", "teardown", "total"
        ));
        for r in &self.runs {
            let p = |phase: Phase| {
                r.phases
                    .get(phase.as_str())
                    .map(|s| format!("{s:.2}"))
                    .unwrap_or_else(|| "-".into())
            };
            let mut versions = r.engine_versions.clone();
            versions.dedup();
            out.push_str(&format!(
                "{:<28} {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.2}  {}\n",
                r.scenario,
                r.engine,
                p(Phase::Provision),
                p(Phase::EnginesReady),
                p(Phase::ClusterFormed),
                p(Phase::Checks),
                p(Phase::Teardown),
                r.seconds,
                if versions.is_empty() {
                    "-".to_string()
                } else {
                    versions.join(",")
                }
            ));
        }
        let differing = self.rows.iter().filter(|r| r.differs).count();
        out.push_str(&format!(
            "\n{} check(s) on {} engine(s): {differing} differ from the baseline {}, {} regression(s)\n",
            self.rows.len(),
            self.engines.len(),
            self.baseline,
            self.regressions
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CheckRecord;
    use std::time::Duration;

    fn cell(engine: &str, outcomes: &[(&str, &str)], exit_code: i32) -> Cell {
        Cell {
            scenario: "s".into(),
            engine: engine.into(),
            summary: RunSummary {
                run_id: "r".into(),
                started_at: std::time::UNIX_EPOCH,
                scenario: "s".into(),
                source: "s.toml".into(),
                target: "local".into(),
                exit_code,
                timings: Default::default(),
                checks: outcomes
                    .iter()
                    .map(|(name, o)| CheckRecord {
                        name: name.to_string(),
                        kind: "ping-by-name".into(),
                        outcome: serde_json::from_value(serde_json::json!(o)).unwrap(),
                        message: None,
                        duration: Duration::from_millis(500),
                        started: Duration::ZERO,
                        nodes: Vec::new(),
                        line: None,
                        failed_attempts: Vec::new(),
                        slowest_wait: None,
                        queued: Duration::ZERO,
                    })
                    .collect(),
                nodes: Vec::new(),
                declared_nodes: Vec::new(),
                networks: Vec::new(),
                stacks: Vec::new(),
                error: None,
                leftovers: Vec::new(),
                artifacts: None,
                digitalocean_requests: None,
            },
        }
    }

    #[test]
    fn passed_on_baseline_and_failed_on_candidate_is_a_regression() {
        let engines = vec!["20.10".to_string(), "26.1".to_string()];
        let cells = [
            cell(
                "20.10",
                &[("a", "passed"), ("b", "passed"), ("c", "failed")],
                exit::CHECK_FAILED,
            ),
            cell(
                "26.1",
                &[("a", "passed"), ("b", "failed"), ("c", "passed")],
                exit::CHECK_FAILED,
            ),
        ];
        let m = Comparison::new(&engines, &cells);
        assert_eq!(m.regressions, 1);
        assert_eq!(m.rows[1].regressions, vec!["26.1".to_string()]);
        assert!(!m.rows[0].differs && m.rows[2].differs && m.rows[2].regressions.is_empty());
        assert_eq!(m.exit_code(), exit::REGRESSION);
        let table = m.table();
        assert!(table.contains("REGRESSION on 26.1"), "{table}");
        assert!(table.contains("<- differs"), "{table}");
    }

    #[test]
    fn unsupported_on_a_candidate_differs_but_does_not_fail_the_matrix() {
        let engines = vec!["20.10".to_string(), "26.1".to_string()];
        let cells = [
            cell("20.10", &[("a", "passed")], exit::OK),
            cell("26.1", &[("a", "unsupported")], exit::UNSUPPORTED),
        ];
        let m = Comparison::new(&engines, &cells);
        assert_eq!(m.regressions, 0);
        assert!(m.rows[0].differs);
        assert_eq!(m.exit_code(), exit::OK);
    }

    #[test]
    fn outcomes_serialize_as_the_reports_spell_them() {
        let engines = vec!["20.10".to_string(), "26.1".to_string()];
        let cells = [cell("20.10", &[("a", "passed")], exit::OK)];
        let json = serde_json::to_value(Comparison::new(&engines, &cells)).unwrap();
        assert_eq!(json["rows"][0]["outcomes"]["20.10"]["outcome"], "passed");
        assert_eq!(json["rows"][0]["outcomes"]["26.1"]["outcome"], "not run");
        // ... and the checked-in schema (compared with the derived one in cli_shell)
        // holds the document, and refuses an outcome no report spells.
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/matrix-report.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let mut wrong = json.clone();
        wrong["rows"][0]["outcomes"]["26.1"]["outcome"] = "skipped".into();
        assert!(!validator.is_valid(&wrong));
    }
}
