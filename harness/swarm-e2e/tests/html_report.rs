//! The HTML pages in a real browser, without a cluster: the browser check itself (it must
//! catch a fetch and a script error), and the history of many nightly reports
//! (`swarm-e2e report`), 30 nights × 50 checks, valid against the run-report schema.
//! Pages of real runs are loaded by the cluster tests (`local_target`: broken fixtures,
//! the engine matrix).

mod support;

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use support::{browser_load, command, screenshot_dir, valid_document};

/// A browser check that cannot fail proves nothing: a page that fetches and one whose
/// script throws are both refused.
#[test]
fn the_browser_check_catches_a_fetch_and_a_script_error() {
    let dir = tempfile::tempdir().unwrap();
    let csp =
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'\">";
    let cases = [
        (
            "fetch",
            format!("<!doctype html>{csp}<img src=\"http://example.invalid/x.png\">"),
            "violates",
        ),
        (
            "script",
            format!("<!doctype html>{csp}<script>nope()</script>"),
            "nope is not defined",
        ),
    ];
    for (name, html, want) in cases {
        let page = dir.path().join(format!("{name}.html"));
        std::fs::write(&page, html).unwrap();
        let err = browser_load(&page, &dir.path().join(format!("{name}.png")))
            .err()
            .unwrap_or_else(|| panic!("the {name} page passed the browser check"));
        assert!(err.contains(want), "{name}: {err}");
    }
}

/// One generated nightly run report: 50 checks; `check-07` turns flaky every 5th night,
/// `check-13` fails from night 24 on (when the engine changes), `check-21` fails on
/// odd nights.
fn night(n: usize) -> serde_json::Value {
    let engine = if n >= 24 { "26.1.5" } else { "20.10.24" };
    let checks: Vec<serde_json::Value> = (0..50)
        .map(|c| {
            let (outcome, attempts) = match c {
                7 if n.is_multiple_of(5) => ("flaky", 2),
                13 if n >= 24 => ("failed", 1),
                21 if n % 2 == 1 => ("failed", 1),
                _ => ("passed", 1),
            };
            serde_json::json!({
                "name": format!("check-{c:02}"),
                "kind": "ping-by-name",
                "outcome": outcome,
                "attempts": attempts,
                "message": (outcome == "failed").then_some("cause: udp/4789 from n-3 to n-2 is dropped by n-2's firewall"),
                "started_seconds": c as f64 * 0.2,
                "seconds": 1.0 + (c as f64 * 0.1) + (n as f64 * 0.05),
            })
        })
        .collect();
    let started = UNIX_EPOCH + Duration::from_secs(1_790_000_000 + n as u64 * 86_400);
    serde_json::json!({
        "schema_version": 2,
        "tool_version": "0.1.0",
        "runs": [{
            "run_id": format!("night{n:03}"),
            "started_at": humantime::format_rfc3339_seconds(started).to_string(),
            "target": "local",
            "scenario": "nightly",
            "scenario_file": "scenarios/nightly.toml",
            "exit_code": if checks.iter().any(|c| c["outcome"] == "failed") { 1 } else { 0 },
            "error": null,
            "nodes": (1..=3).map(|i| serde_json::json!({
                "name": format!("n-{i}"), "role": if i == 1 { "manager" } else { "worker" },
                "address": format!("10.0.0.{i}"), "engine_version": engine,
            })).collect::<Vec<_>>(),
            "phases": [{"phase": "checks", "seconds": 20.0}],
            "checks": checks,
            "leftovers": [],
            "digitalocean_requests": null,
        }],
    })
}

fn report(args: &[&str]) -> (i32, String, String) {
    let out = command(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_history_of_30_nights_and_50_checks_renders_in_under_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("nightlies");
    // Written out of order, in folders: the history orders by `started_at`.
    for n in (0..30).rev() {
        let doc = night(n);
        valid_document("run-report", &doc).unwrap();
        let sub = reports.join(format!("week-{}", n / 7));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("run-{n}.json")), serde_json::to_string(&doc).unwrap()).unwrap();
    }
    let html = dir.path().join("history.html");
    let (code, stdout, stderr) = report(&[
        "report",
        reports.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let h: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(h["nights"].as_array().unwrap().len(), 30);
    assert_eq!(h["nights"][0]["id"], "night000");
    let checks = h["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 50);
    // The flakiest first: odd nights failing (29 flips), then the retried one, then the
    // one that broke once and stayed broken.
    assert_eq!(checks[0]["check"], "check-21");
    assert_eq!(checks[1]["check"], "check-07");
    assert_eq!(checks[1]["flaky"], 6);
    let broke = checks.iter().find(|c| c["check"] == "check-13").unwrap();
    assert_eq!(broke["failing_since"], 24);
    assert_eq!(h["nights"][24]["engines"][0], "26.1.5");

    let loaded = browser_load(&html, &screenshot_dir().join("history-30-nights-50-checks.png")).unwrap();
    let ms = loaded.render_ms().expect("the page's script sets data-render-ms");
    assert!(ms < 1000, "rendered in {ms} ms");
    assert!(
        loaded.dom.contains("since night 25"),
        "check-13's streak begins on night 25 (1-based)"
    );
    assert!(loaded.dom.contains("26.1.5"));
    eprintln!(
        "history: {} bytes, rendered in {ms} ms, browser {:.2} s",
        std::fs::metadata(&html).unwrap().len(),
        loaded.wall.as_secs_f64()
    );
}

#[test]
fn a_report_of_a_newer_schema_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.json");
    std::fs::write(&path, r#"{"schema_version": 7, "tool_version": "9.1.0", "runs": []}"#).unwrap();
    let (code, _, stderr) = report(&["report", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("schema 7, written by a newer swarm-e2e (9.1.0)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: read it with the swarm-e2e that wrote it"),
        "{stderr}"
    );
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"hello": 1}"#).unwrap();
    let (code, _, stderr) = report(&["report", other.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("neither a run report"), "{stderr}");
    assert!(Path::new(&path).exists());
}
