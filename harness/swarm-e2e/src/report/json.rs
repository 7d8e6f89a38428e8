//! The JSON report of finished runs (schema in `report.schema.json`, versioned by
//! `schema_version`).

use serde::Serialize;

use super::{NodeRecord, RunSummary};

/// Bumped on any incompatible change of the JSON report.
/// 2: `outcome` may be `flaky`, and every check has `attempts`.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Serialize)]
struct JsonReport<'a> {
    schema_version: u32,
    tool_version: &'static str,
    runs: Vec<JsonRun<'a>>,
}

#[derive(Serialize)]
struct JsonRun<'a> {
    run_id: &'a str,
    target: &'a str,
    scenario: &'a str,
    scenario_file: &'a str,
    exit_code: i32,
    error: Option<&'a str>,
    nodes: &'a [NodeRecord],
    phases: Vec<JsonPhase>,
    checks: Vec<JsonCheck<'a>>,
    leftovers: &'a [String],
    digitalocean_requests: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct JsonPhase {
    phase: &'static str,
    seconds: f64,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    name: &'a str,
    kind: &'a str,
    /// `passed`, `failed`, `ignored`, `unsupported`, or `flaky` (passed on a retry).
    outcome: &'static str,
    /// How often it ran (more than 1 with `--retries`).
    attempts: usize,
    /// The messages of the attempts that failed before the last one.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    failed_attempts: &'a [String],
    message: Option<&'a str>,
    /// What a failure was traced to: the message's `cause:` line.
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'a str>,
    seconds: f64,
}

pub fn render(runs: &[RunSummary]) -> anyhow::Result<String> {
    let report = JsonReport {
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION"),
        runs: runs
            .iter()
            .map(|r| JsonRun {
                run_id: &r.run_id,
                target: &r.target,
                scenario: &r.scenario,
                scenario_file: &r.source,
                exit_code: r.exit_code,
                error: r.error.as_deref(),
                nodes: &r.nodes,
                phases: r
                    .timings
                    .phases
                    .iter()
                    .map(|(p, d)| JsonPhase {
                        phase: p.as_str(),
                        seconds: d.as_secs_f64(),
                    })
                    .collect(),
                checks: r
                    .checks
                    .iter()
                    .map(|c| JsonCheck {
                        name: &c.name,
                        kind: &c.kind,
                        outcome: if c.flaky() { "flaky" } else { c.outcome.as_str() },
                        attempts: c.attempts(),
                        failed_attempts: &c.failed_attempts,
                        message: c.message.as_deref(),
                        cause: c.cause(),
                        seconds: c.duration.as_secs_f64(),
                    })
                    .collect(),
                leftovers: &r.leftovers,
                digitalocean_requests: r.digitalocean_requests.clone(),
            })
            .collect(),
    };
    Ok(serde_json::to_string_pretty(&report)?)
}
