//! Machine-readable reports of finished runs: JUnit XML (one testsuite per scenario, one
//! testcase per check) and JSON (schema in `report.schema.json`, versioned by
//! `schema_version`). Both are written on success, on failure and after an interrupt.

use std::path::Path;

use anyhow::Context;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::run::RunSummary;

/// Bumped on any incompatible change of the JSON report.
pub const JSON_SCHEMA_VERSION: u32 = 1;

pub fn junit(runs: &[RunSummary]) -> anyhow::Result<String> {
    let mut report = Report::new("swarm-e2e");
    for run in runs {
        let mut suite = TestSuite::new(run.scenario.clone());
        suite.add_property(Property::new("run_id", run.run_id.clone()));
        suite.add_property(Property::new("target", run.target.clone()));
        suite.add_property(Property::new("scenario_file", run.source.clone()));
        suite.add_property(Property::new("exit_code", run.exit_code.to_string()));
        for n in &run.nodes {
            suite.add_property(Property::new(format!("engine.{}", n.name), n.engine_version.clone()));
        }
        suite.set_time(run.timings.total());
        for c in &run.checks {
            let status = match c.outcome.as_str() {
                "passed" => TestCaseStatus::success(),
                "ignored" | "unsupported" => {
                    let mut s = TestCaseStatus::skipped();
                    if let Some(m) = &c.message {
                        s.set_message(if c.outcome == "unsupported" {
                            format!("unsupported: {m}")
                        } else {
                            m.clone()
                        });
                    }
                    s
                }
                _ => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    if let Some(m) = &c.message {
                        s.set_message(first_line(m));
                        s.set_description(m.clone());
                    }
                    s
                }
            };
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(format!("{}.{}", run.scenario, c.kind));
            case.set_time(c.duration);
            if let Some(m) = &c.message {
                case.set_system_out(m.clone());
            }
            suite.add_test_case(case);
        }
        // A run that never reached its checks still shows up, as one failing case.
        if let Some(e) = &run.error
            && run.checks.is_empty()
        {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(first_line(e));
            status.set_description(e.clone());
            suite.add_test_case(TestCase::new("run", status));
        }
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

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
    nodes: &'a [crate::run::NodeRecord],
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
    outcome: &'a str,
    message: Option<&'a str>,
    seconds: f64,
}

pub fn json(runs: &[RunSummary]) -> anyhow::Result<String> {
    let report = JsonReport {
        schema_version: JSON_SCHEMA_VERSION,
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
                        outcome: &c.outcome,
                        message: c.message.as_deref(),
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

pub fn write(path: &Path, body: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))
}
