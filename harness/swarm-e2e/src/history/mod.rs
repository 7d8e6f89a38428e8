//! A history of many reports (`swarm-e2e report`): the nightlies' JSON run and matrix
//! reports read back, each run a night, and per check its outcome every night, its
//! duration, how flaky it is, and for a check failing now the night its failures began
//! with the engines of that night. Reads run reports of schema 1 and 2 and matrix
//! reports of schema 1; a newer report is refused with a message that says so.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;

pub mod page;

use crate::matrix::MATRIX_SCHEMA_VERSION;
use crate::report::json::SCHEMA_VERSION;

/// Bumped on any incompatible change of `report --format json`.
pub const HISTORY_SCHEMA_VERSION: u32 = 1;

/// One run read from a report: a column of the history.
#[derive(Debug, Clone, Serialize)]
pub struct Night {
    /// The run's id (a matrix run: its id and engine).
    pub id: String,
    /// When the run began: the report's `started_at`, else the file's modification time.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
    pub source: PathBuf,
    pub scenario: String,
    /// The engine versions the nodes reported, each once.
    pub engines: Vec<String>,
    pub exit_code: i64,
}

/// One check across the nights.
#[derive(Debug, Clone, Serialize)]
pub struct CheckHistory {
    pub scenario: String,
    pub check: String,
    /// One per night: `passed`, `failed`, `flaky`, `ignored`, `unsupported`, `not run`.
    pub outcomes: Vec<String>,
    /// Seconds per night (`null` when it did not run).
    pub seconds: Vec<Option<f64>>,
    /// Nights it passed only on a retry.
    pub flaky: usize,
    /// How often it went from passing to failing or back between nights it ran.
    pub flips: usize,
    /// Failing on the last night it ran: the index of the night that failure streak
    /// began.
    pub failing_since: Option<usize>,
}

impl CheckHistory {
    /// How unstable the check has been: retries that saved it, and changes of mind.
    pub fn flakiness(&self) -> usize {
        self.flaky + self.flips
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub schema_version: u32,
    pub nights: Vec<Night>,
    /// The flakiest first, then those failing now, then by name.
    pub checks: Vec<CheckHistory>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
}

/// The JSON files among `paths`: files as given, folders searched (to a depth of 4) for
/// `*.json`.
pub fn report_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() && depth > 0 {
                walk(&p, depth - 1, out)?;
            } else if p.extension().is_some_and(|e| e == "json") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, 4, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{} does not exist", p.display());
        }
    }
    Ok(out)
}

/// One check's outcome in one night, as read.
#[derive(Debug)]
struct Seen {
    scenario: String,
    check: String,
    outcome: String,
    seconds: f64,
}

/// Reads every report and builds the history. A file that is not a swarm-e2e report,
/// or one of a newer schema, is an error naming the file.
pub fn read(files: &[PathBuf]) -> anyhow::Result<History> {
    let mut nights: Vec<(Night, Vec<Seen>)> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON (a swarm-e2e run or matrix report?)", file.display()))?;
        let mtime = std::fs::metadata(file)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let read = if doc.get("rows").is_some() && doc.get("engines").is_some() {
            matrix_nights(&doc, file, mtime)
        } else if doc.get("runs").is_some() {
            run_nights(&doc, file, mtime)
        } else {
            bail!(
                "{} is neither a run report (`run --json`) nor a matrix report (`matrix --json`)",
                file.display()
            )
        };
        nights.extend(read.with_context(|| format!("reading {}", file.display()))?);
    }
    nights.sort_by(|a, b| a.0.at.cmp(&b.0.at).then_with(|| a.0.id.cmp(&b.0.id)));
    Ok(build(nights))
}

fn schema(doc: &Value, newest: u32, what: &str) -> anyhow::Result<()> {
    let v = doc.get("schema_version").and_then(Value::as_u64).unwrap_or(0);
    if v == 0 {
        bail!("it has no schema_version: not a swarm-e2e {what} report");
    }
    if v > u64::from(newest) {
        bail!(
            "it is a {what} report of schema {v}, written by a newer swarm-e2e ({}); this one ({}) reads schemas 1 to {newest}\nhint: read it with the swarm-e2e that wrote it, or a newer one",
            doc.get("tool_version")
                .and_then(Value::as_str)
                .unwrap_or("version unknown"),
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Engine versions, sorted, each once.
fn each_once<'a>(versions: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = versions.collect();
    set.into_iter().map(str::to_string).collect()
}

fn list<'a>(doc: &'a Value, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    doc.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("`{key}` is not a list"))
}

fn run_nights(doc: &Value, file: &Path, mtime: SystemTime) -> anyhow::Result<Vec<(Night, Vec<Seen>)>> {
    schema(doc, SCHEMA_VERSION, "run")?;
    let runs = list(doc, "runs")?;
    Ok(runs
        .iter()
        .map(|run| {
            let at = humantime::parse_rfc3339(str_of(run, "started_at")).unwrap_or(mtime);
            let nodes = run.get("nodes").and_then(Value::as_array).into_iter().flatten();
            let engines = each_once(nodes.map(|n| str_of(n, "engine_version")));
            let scenario = str_of(run, "scenario").to_string();
            let seen = run
                .get("checks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| Seen {
                    scenario: scenario.clone(),
                    check: str_of(c, "name").to_string(),
                    outcome: str_of(c, "outcome").to_string(),
                    seconds: c.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
                })
                .collect();
            let night = Night {
                id: str_of(run, "run_id").to_string(),
                at,
                source: file.to_path_buf(),
                scenario,
                engines,
                exit_code: run.get("exit_code").and_then(Value::as_i64).unwrap_or(-1),
            };
            (night, seen)
        })
        .collect())
}

/// A matrix report: each engine's run is a night (at its `started_at`; reports from
/// before it was written: the file's time, in engine order).
fn matrix_nights(doc: &Value, file: &Path, mtime: SystemTime) -> anyhow::Result<Vec<(Night, Vec<Seen>)>> {
    schema(doc, MATRIX_SCHEMA_VERSION, "matrix")?;
    let (runs, rows) = (list(doc, "runs")?, list(doc, "rows")?);
    Ok(runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let engine = str_of(run, "engine");
            let scenario = str_of(run, "scenario").to_string();
            let versions = run
                .get("engine_versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            let engines = each_once(versions.filter_map(Value::as_str));
            let seen = rows
                .iter()
                .filter(|r| str_of(r, "scenario") == scenario)
                .filter_map(|r| {
                    let o = r.get("outcomes")?.get(engine)?;
                    Some(Seen {
                        scenario: scenario.clone(),
                        check: str_of(r, "check").to_string(),
                        outcome: str_of(o, "outcome").to_string(),
                        seconds: o.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
                    })
                })
                .collect();
            let night = Night {
                id: format!("{} ({engine})", str_of(run, "run_id")),
                at: humantime::parse_rfc3339(str_of(run, "started_at"))
                    .unwrap_or(mtime + std::time::Duration::from_millis(i as u64)),
                source: file.to_path_buf(),
                scenario,
                engines,
                exit_code: run.get("exit_code").and_then(Value::as_i64).unwrap_or(-1),
            };
            (night, seen)
        })
        .collect())
}

fn build(read: Vec<(Night, Vec<Seen>)>) -> History {
    let n = read.len();
    let mut checks: Vec<CheckHistory> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> = std::collections::HashMap::new();
    for (night, (_, seen)) in read.iter().enumerate() {
        for s in seen {
            let key = (s.scenario.clone(), s.check.clone());
            let at = *index.entry(key).or_insert_with(|| {
                checks.push(CheckHistory {
                    scenario: s.scenario.clone(),
                    check: s.check.clone(),
                    outcomes: vec!["not run".into(); n],
                    seconds: vec![None; n],
                    flaky: 0,
                    flips: 0,
                    failing_since: None,
                });
                checks.len() - 1
            });
            checks[at].outcomes[night] = s.outcome.clone();
            checks[at].seconds[night] = Some(s.seconds);
        }
    }
    for c in &mut checks {
        c.flaky = c.outcomes.iter().filter(|o| *o == "flaky").count();
        let judged: Vec<(usize, bool)> = c
            .outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o.as_str() {
                "passed" | "flaky" => Some((i, true)),
                "failed" => Some((i, false)),
                _ => None,
            })
            .collect();
        c.flips = judged.windows(2).filter(|w| w[0].1 != w[1].1).count();
        if judged.last().is_some_and(|(_, ok)| !ok) {
            let streak = judged.iter().rev().take_while(|(_, ok)| !ok).last();
            c.failing_since = streak.map(|(i, _)| *i);
        }
    }
    checks.sort_by(|a, b| {
        b.flakiness()
            .cmp(&a.flakiness())
            .then_with(|| b.failing_since.is_some().cmp(&a.failing_since.is_some()))
            .then_with(|| (&a.scenario, &a.check).cmp(&(&b.scenario, &b.check)))
    });
    History {
        schema_version: HISTORY_SCHEMA_VERSION,
        nights: read.into_iter().map(|(n, _)| n).collect(),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn night(i: u64) -> Night {
        Night {
            id: format!("n{i}"),
            at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i),
            source: PathBuf::new(),
            scenario: "s".into(),
            engines: vec![format!("20.10.{i}")],
            exit_code: 0,
        }
    }

    fn seen(check: &str, outcome: &str) -> Seen {
        Seen {
            scenario: "s".into(),
            check: check.into(),
            outcome: outcome.into(),
            seconds: 1.0,
        }
    }

    #[test]
    fn the_flakiest_come_first_and_a_failure_names_its_first_night() {
        let outcomes = [
            ("steady", ["passed", "passed", "passed", "passed"]),
            ("broke", ["passed", "passed", "failed", "failed"]),
            ("wobbly", ["passed", "failed", "flaky", "passed"]),
        ];
        let read = (0..4)
            .map(|i| {
                (
                    night(i as u64),
                    outcomes.iter().map(|(c, o)| seen(c, o[i])).collect::<Vec<_>>(),
                )
            })
            .collect();
        let h = build(read);
        let names: Vec<&str> = h.checks.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(names, ["wobbly", "broke", "steady"]);
        assert_eq!((h.checks[0].flaky, h.checks[0].flips), (1, 2));
        assert_eq!(h.checks[1].failing_since, Some(2));
        assert_eq!(h.checks[2].failing_since, None);
    }

    #[test]
    fn a_newer_report_is_refused_with_what_to_do() {
        let doc: Value = serde_json::json!({"schema_version": 99, "tool_version": "9.0.0", "runs": []});
        let err = run_nights(&doc, Path::new("r.json"), SystemTime::UNIX_EPOCH).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("schema 99, written by a newer swarm-e2e (9.0.0)"),
            "{text}"
        );
        assert!(text.contains("hint:"), "{text}");
    }

    #[test]
    fn a_matrix_report_is_a_night_per_engine_at_its_start() {
        let doc = serde_json::json!({
            "schema_version": 1, "baseline": "20.10", "engines": ["20.10", "26.1"], "regressions": 1,
            "rows": [{"scenario": "s", "check": "ping", "differs": true, "regressions": ["26.1"], "outcomes": {
                "20.10": {"outcome": "passed", "seconds": 1.5, "message": null},
                "26.1": {"outcome": "failed", "seconds": 2.5, "message": "no reply"}}}],
            "runs": [
                {"scenario": "s", "engine": "20.10", "run_id": "aaaa1111", "started_at": "2026-12-01T02:00:00Z",
                 "exit_code": 0, "error": null, "engine_versions": ["20.10.24"], "phases": {}, "seconds": 9.0},
                {"scenario": "s", "engine": "26.1", "run_id": "bbbb2222", "exit_code": 1, "error": null,
                 "engine_versions": ["26.1.5", "26.1.5"], "phases": {}, "seconds": 9.0}],
        });
        let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7);
        let nights = matrix_nights(&doc, Path::new("m.json"), mtime).unwrap();
        assert_eq!(nights.len(), 2);
        assert_eq!(nights[0].0.id, "aaaa1111 (20.10)");
        assert_eq!(
            nights[0].0.at,
            humantime::parse_rfc3339("2026-12-01T02:00:00Z").unwrap()
        );
        // A run without `started_at` (older reports) is at the file's time.
        assert_eq!(nights[1].0.at, mtime + std::time::Duration::from_millis(1));
        assert_eq!(nights[1].0.engines, ["26.1.5"]);
        assert_eq!(
            (nights[1].1[0].outcome.as_str(), nights[1].1[0].seconds),
            ("failed", 2.5)
        );
    }
}
