//! The JSON report of finished runs, versioned by `schema_version`. Its schema is derived
//! from these types (`swarm-e2e schema run-report`, checked in as
//! `schemas/run-report.schema.json` and compared in the tests).

use schemars::JsonSchema;
use serde::Serialize;

use super::cause::CausePath;
use super::{NodeRecord, RunSummary, SlowestWait, StackRecord};

/// Bumped on any incompatible change of the JSON report.
/// 2: `outcome` may be `flaky`, and every check has `attempts`.
pub const SCHEMA_VERSION: u32 = 2;

/// Written by `swarm-e2e run --json PATH`: one entry per scenario run.
#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "swarm-e2e run report")]
pub struct JsonReport<'a> {
    /// Changes on any incompatible change.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    schema_version: u32,
    tool_version: &'static str,
    runs: Vec<JsonRun<'a>>,
}

#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JsonRun<'a> {
    #[schemars(pattern(r"^[a-z0-9]{8}$"))]
    run_id: &'a str,
    /// When the run began (RFC 3339, UTC); absent from reports before it was added.
    #[schemars(default)]
    started_at: String,
    #[schemars(extend("enum" = ["local", "do-fake", "digitalocean", "engines"]))]
    target: &'a str,
    scenario: &'a str,
    scenario_file: &'a str,
    /// The run's exit code (see `swarm-e2e --help`).
    #[schemars(extend("enum" = [0, 1, 2, 3, 4, 130]))]
    exit_code: i32,
    error: Option<&'a str>,
    nodes: &'a [NodeRecord],
    /// The overlay networks the scenario declares.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    #[schemars(default)]
    networks: &'a [String],
    /// Compose stacks deployed by the docker CLI (absent when the scenario has none).
    #[serde(skip_serializing_if = "<[StackRecord]>::is_empty")]
    #[schemars(default)]
    stacks: &'a [StackRecord],
    phases: Vec<JsonPhase>,
    checks: Vec<JsonCheck<'a>>,
    /// Resources teardown could not remove.
    leftovers: &'a [String],
    /// Requests to the DigitalOcean API by route (DigitalOcean targets only).
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    digitalocean_requests: Option<serde_json::Value>,
}

#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JsonPhase {
    #[schemars(extend("enum" = ["provision", "engines ready", "cluster formed", "checks", "teardown"]))]
    phase: &'static str,
    #[schemars(range(min = 0))]
    seconds: f64,
}

#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JsonCheck<'a> {
    name: &'a str,
    kind: &'a str,
    /// `passed`, `failed`, `ignored`, `unsupported`, or `flaky` (passed, but only on a
    /// retry: `--retries`, a check's `retries`).
    #[schemars(extend("enum" = ["passed", "failed", "ignored", "unsupported", "flaky"]))]
    outcome: &'static str,
    /// How often it ran (more than 1 with `--retries`).
    #[schemars(range(min = 1))]
    attempts: usize,
    /// The messages of the attempts that failed before the last one.
    #[serde(skip_serializing_if = "<[String]>::is_empty", default)]
    failed_attempts: &'a [String],
    message: Option<&'a str>,
    /// What a failure was traced to: the message's `cause:` line.
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'a str>,
    /// The cause as fields: the nodes it names, the broken path's direction and port,
    /// what became of a node (read from `cause` against the run's nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    cause_path: Option<CausePath>,
    /// The nodes it ran its probes on or acted on, as the scenario names them.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    #[schemars(default)]
    nodes: &'a [String],
    /// When the check started, in seconds from the start of the checks phase.
    #[schemars(range(min = 0))]
    #[serde(default)]
    started_seconds: f64,
    #[schemars(range(min = 0))]
    seconds: f64,
    /// How long it waited for its turn before `started_seconds` (a disruptive check runs
    /// once the others ended, one at a time); absent when it did not wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(default, range(min = 0))]
    queued_seconds: Option<f64>,
    /// Its longest bounded wait over all attempts, with the wait's bound and its place in
    /// the source: a clean run's margin to the bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(default)]
    slowest_wait: Option<&'a SlowestWait>,
}

pub fn render(runs: &[RunSummary]) -> anyhow::Result<String> {
    let report = JsonReport {
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION"),
        runs: runs
            .iter()
            .map(|r| JsonRun {
                run_id: &r.run_id,
                started_at: humantime::format_rfc3339_seconds(r.started_at).to_string(),
                target: &r.target,
                scenario: &r.scenario,
                scenario_file: &r.source,
                exit_code: r.exit_code,
                error: r.error.as_deref(),
                nodes: &r.nodes,
                networks: &r.networks,
                stacks: &r.stacks,
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
                        cause_path: c.cause_path(&r.nodes),
                        nodes: &c.nodes,
                        started_seconds: c.started.as_secs_f64(),
                        seconds: c.duration.as_secs_f64(),
                        slowest_wait: c.slowest_wait.as_ref(),
                        queued_seconds: (c.queued >= std::time::Duration::from_millis(50))
                            .then_some(c.queued.as_secs_f64()),
                    })
                    .collect(),
                leftovers: &r.leftovers,
                digitalocean_requests: r.digitalocean_requests.clone(),
            })
            .collect(),
    };
    Ok(serde_json::to_string_pretty(&report)?)
}
