//! Scenario files and fixtures as trials: every file of `scenarios/` on local and do-fake,
//! every broken fixture failing as its `.expect` says, bad input exiting 2 with a location,
//! and the outcomes a run must report (a check's own timeout, flakes, a wrong expectation,
//! a node that dies, artefacts of a frozen node).

use std::path::PathBuf;
use std::process::Command;

use libtest_mimic::{Failed, Trial};
use swarm_e2e_model::IMPLICIT_STATE_CHECK;

use crate::common::*;
use crate::support::*;

/// The `.toml` files of a folder of the repository, sorted.
fn files_in(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

pub fn trials() -> Vec<Trial> {
    let mut trials: Vec<Trial> = (files_in("scenarios").iter())
        .flat_map(|p| ["local", "do-fake"].map(|t| scenario_trial(p.clone(), t)))
        .collect();
    trials.extend(files_in("fixtures/broken").into_iter().map(broken_trial));
    trials.extend([
        Trial::test(
            "bad-scenarios-exit-2-with-locations",
            bad_scenarios_exit_2_with_locations,
        ),
        Trial::test(
            "check-timeout::a-check-ends-at-its-own-timeout",
            a_check_ends_at_its_own_timeout,
        ),
        Trial::test(
            "wrong-expectation-fails-clearly-with-reports-and-artifacts",
            wrong_expectation_fails_clearly_with_reports_and_artifacts,
        ),
        Trial::test("node-death-is-named-in-the-failure", node_death_is_named_in_the_failure),
        Trial::test(
            "watchdog::checks-that-cannot-pass-end-with-the-cause",
            checks_that_cannot_pass_end_with_the_cause,
        ),
    ]);
    for flaky_fails in [false, true] {
        let name = if flaky_fails {
            "flaky::flaky-fails-turns-it-into-a-failure"
        } else {
            "flaky::a-check-that-passes-on-a-retry-is-flaky-in-every-report"
        };
        trials.push(Trial::test(name, move || flaky_placement(flaky_fails)));
    }
    for interrupted in [false, true] {
        let name = if interrupted {
            "artifacts::sigint-during-collection-tears-down"
        } else {
            "artifacts::a-frozen-node-is-skipped-after-its-first-request"
        };
        trials.push(Trial::test(name, move || frozen_node_artifacts(interrupted)));
    }
    trials
}

fn bad_scenarios_exit_2_with_locations() -> Result<(), Failed> {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("fixtures/bad")).unwrap() {
        let path = entry.unwrap().path();
        // Scenarios only: `stacks/` holds the Compose files they name.
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rel = format!("fixtures/bad/{}", path.file_name().unwrap().to_string_lossy());
        for sub in ["validate", "run"] {
            let out = run(&[sub, &rel], None);
            expect_code(&out, 2)?;
            let located = out.stderr.lines().any(|l| {
                l.strip_prefix(&format!("{rel}:"))
                    .and_then(|r| r.split(':').next())
                    .is_some_and(|line| line.parse::<u32>().is_ok())
            });
            if !located || out.stderr.contains("panicked") {
                return Err(format!("`{sub} {rel}` gave no file:line:column\n{}", out.context()).into());
            }
            n += 1;
        }
    }
    if n < 20 {
        return Err(format!("only {n} bad inputs tried").into());
    }
    Ok(())
}

fn a_check_ends_at_its_own_timeout() -> Result<(), Failed> {
    node_image()?;
    let out = run(
        &[
            "run",
            "--inject-fault",
            "drop-vxlan@ct-3",
            "fixtures/run-outcomes/check-timeout.toml",
        ],
        None,
    );
    expect_code(&out, 1)?;
    let said = "no verdict within 2s (the check's `timeout`)";
    let failed = (out.stdout.lines()).any(|l| l.contains("check-timeout::ping-far ") && l.ends_with("FAILED"));
    if !out.stdout.contains(said) || !failed {
        return Err(format!(
            "the ping check did not end on its own timeout (`{said}`)\n{}",
            out.context()
        )
        .into());
    }
    assert_clean(&out)
}

fn wrong_expectation_fails_clearly_with_reports_and_artifacts() -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let (junit, json, artifacts, job_summary) = (
        dir.path().join("r.xml"),
        dir.path().join("r.json"),
        dir.path().join("art"),
        dir.path().join("step-summary.md"),
    );
    let out = run_env(
        &[
            "run",
            "--junit",
            junit.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--artifacts",
            artifacts.to_str().unwrap(),
            WRONG,
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", job_summary.to_str().unwrap()),
        ],
    );
    expect_code(&out, 1)?;
    let said = "a task of `pinned` runs on wp-2, but it may only run on [wp-1]";
    if !out.stdout.contains(said) {
        return Err(format!("the failure does not say `{said}`\n{}", out.context()).into());
    }

    // GitHub Actions: one annotation, on the failing check's `[[checks]]` line,
    // and a job summary with every check and the phases.
    let header = std::fs::read_to_string(repo().join(WRONG))
        .unwrap()
        .lines()
        .position(|l| l == "[[checks]]")
        .unwrap()
        + 1;
    let annotations: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("::error ")).collect();
    let expected =
        format!("::error file={WRONG},line={header},title=wrong-placement%3A%3Aplacement-claims-node-1 failed::");
    if annotations.len() != 1 || !annotations[0].starts_with(&expected) || !annotations[0].contains("wp-2") {
        return Err(format!("expected one annotation starting `{expected}`, got {annotations:#?}").into());
    }
    let md = std::fs::read_to_string(&job_summary).map_err(|e| format!("no job summary: {e}"))?;
    for needle in [
        "### swarm-e2e: `wrong-placement` on local",
        "| placement-claims-node-1 | ❌ failed |",
        "| declared-state | ✅ passed |",
        "| cluster formed |",
        "| **total** |",
    ] {
        if !md.contains(needle) {
            return Err(format!("the job summary lacks `{needle}`:\n{md}").into());
        }
    }
    assert_clean(&out)?;
    let run_id = out.run_id().unwrap();

    // JUnit: parses, one failing testcase with the message (beside the implicit
    // `declared-state`, which passes), engine versions as properties.
    let xml = std::fs::read_to_string(&junit).map_err(|e| format!("no JUnit file: {e}"))?;
    let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("JUnit does not parse: {e}"))?;
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    let case = cases
        .iter()
        .find(|c| c.attribute("name") == Some("placement-claims-node-1"));
    let failure = case.and_then(|c| c.children().find(|n| n.has_tag_name("failure")));
    let failing = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .count();
    if cases.len() != 2
        || failing != 1
        || !failure
            .and_then(|f| f.attribute("message"))
            .is_some_and(|m| m.contains(said))
    {
        return Err(format!("JUnit does not match the run:\n{xml}").into());
    }
    let props: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("property")).collect();
    let engine = props.iter().find(|p| p.attribute("name") == Some("engine.wp-1"));
    if !engine
        .and_then(|p| p.attribute("value"))
        .is_some_and(|v| v.starts_with("20.10"))
    {
        return Err(format!("no engine version property:\n{xml}").into());
    }

    // JSON: valid against the published schema, and says what happened.
    let report = read_report(&json, "run-report")?;
    let run0 = &report["runs"][0];
    if run0["run_id"] != run_id.as_str()
        || run0["exit_code"] != 1
        || !(run0["checks"].as_array().into_iter().flatten())
            .any(|c| c["name"] == "placement-claims-node-1" && c["outcome"] == "failed")
    {
        return Err(format!("JSON report does not match the run: {report:#}").into());
    }

    // Artefacts: per node engine log, and the swarm's view of tasks.
    let root = artifacts.join(&run_id);
    for f in [
        "summary.txt",
        "wp-1/engine.log",
        "wp-2/info.json",
        "swarm/tasks.json",
        "swarm/nodes.json",
    ] {
        let p = root.join(f);
        if !p.is_file() || std::fs::metadata(&p).unwrap().len() == 0 {
            return Err(format!("artefact {} missing or empty", p.display()).into());
        }
    }
    if !out.stderr.contains(&root.display().to_string()) {
        return Err(format!("artefact path not printed\n{}", out.context()).into());
    }
    Ok(())
}

fn node_death_is_named_in_the_failure() -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node-dies.toml");
    let text = std::fs::read_to_string(repo().join(WRONG))
        .unwrap()
        .replace("expect_nodes = [\"wp-1\"]", "expect_nodes = [\"wp-2\"]");
    std::fs::write(&file, format!("{text}\n[timeouts]\nchecks = \"10s\"\n")).unwrap();
    // Kill node 2's container as soon as the cluster is formed.
    let out = run_with_action(&["run", file.to_str().unwrap()], "✓ cluster formed", |run_id| {
        let name = swarm_e2e::marks::node_container_name(run_id, "wp-2");
        let _ = Command::new("docker").args(["kill", &name]).output();
    });
    expect_code(&out, 1)?;
    if !out.stdout.contains("not answering: wp-2") {
        return Err(format!("the failure does not name the dead node\n{}", out.context()).into());
    }
    assert_clean(&out)
}

/// A drained node, a stopped engine and a frozen node while the checks run: each check
/// that depends on one ends within seconds with that node's cause (the run's watchdog),
/// far inside its 120 s bound, and the check among healthy nodes passes.
fn checks_that_cannot_pass_end_with_the_cause() -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = run(
        &[
            "run",
            "--inject-fault",
            "drain@wd-2",
            "--inject-stopped-engine",
            "wd-3",
            "--inject-fault",
            "freeze@wd-4",
            "--json",
            json.to_str().unwrap(),
            "fixtures/run-outcomes/watchdog.toml",
        ],
        None,
    );
    expect_code(&out, 1)?;
    let report = read_report(&json, "run-report")?;
    let checks = report["runs"][0]["checks"].as_array().cloned().unwrap_or_default();
    // The pings would wait for a task or an answer; membership's refused connection
    // fails it by itself, and the cause is named either way.
    let expected = [
        ("reach-the-drained", "failed", "wd-2: drained", true),
        (
            "reach-from-the-frozen",
            "failed",
            "wd-4: its node container is paused",
            true,
        ),
        ("membership", "failed", "wd-3: its engine was stopped", false),
        ("reach-among-the-healthy", "passed", "", false),
    ];
    for (name, outcome, said, by_watchdog) in expected {
        let Some(c) = checks.iter().find(|c| c["name"] == name) else {
            return Err(format!("no record of check `{name}`\n{}", out.context()).into());
        };
        let message = c["message"].as_str().unwrap_or_default();
        let seconds = c["seconds"].as_f64().unwrap_or(f64::MAX);
        let ended_early =
            outcome == "passed" || (seconds < 30.0 && (!by_watchdog || message.contains("ended by the watchdog")));
        if c["outcome"] != outcome || !message.contains(said) || !ended_early {
            return Err(format!(
                "check `{name}`: expected {outcome} naming `{said}` within 30 s, got {} after {seconds:.1} s: {message}\n{}",
                c["outcome"],
                out.context()
            )
            .into());
        }
    }
    assert_clean(&out)
}

fn scenario_trial(path: PathBuf, target: &'static str) -> Trial {
    let name = format!("scenario::{}::{target}", path.file_stem().unwrap().to_string_lossy());
    Trial::test(name, move || {
        let scenario = swarm_e2e_model::parse_scenario_file(&path).map_err(|e| e.to_string())?;
        node_image()?;
        for engine in scenario.engines() {
            node_image_for(&engine)?;
        }
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("report.json");
        let out = run(
            &[
                "run",
                "--target",
                target,
                "--timings",
                "--json",
                json.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
            None,
        );
        expect_code(&out, 0)?;
        let report = read_report(&json, "run-report")?;
        let dry = report["runs"][0]["checks"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["message"].as_str().is_some_and(|m| m.contains("--no-engines")))
        });
        if !out.stdout.contains("test result: ok.") || dry {
            return Err(format!("no passing summary\n{}", out.context()).into());
        }
        // Each node runs the engine the scenario gives it (mixed versions included).
        let nodes = report["runs"][0]["nodes"].as_array().cloned().unwrap_or_default();
        for declared in &scenario.nodes {
            let reported = nodes
                .iter()
                .find(|n| n["name"] == declared.name.as_str())
                .and_then(|n| n["engine_version"].as_str())
                .unwrap_or_default();
            if !reported.starts_with(&declared.engine) {
                return Err(format!(
                    "{} runs engine {reported:?}, declared {}",
                    declared.name, declared.engine
                )
                .into());
            }
        }
        if target == "do-fake" {
            // Real engines answered behind the droplets (not the fake's loopback addresses),
            // in a request budget of 2N + 15 (and the preflight's scope probes and settings check).
            let report = &report["runs"][0];
            if nodes
                .iter()
                .any(|n| n["address"].as_str().is_none_or(|a| a.starts_with("127.")))
            {
                return Err(format!("droplets were not backed by engines: {nodes:?}").into());
            }
            let requests = report["digitalocean_requests"]["fake"]["total"]
                .as_u64()
                .unwrap_or(u64::MAX);
            // The classic topology's key-value store is a droplet too.
            let classic = scenario.topology == swarm_e2e_model::Topology::Classic;
            let budget =
                swarm_e2e::targets::digitalocean::plan::request_budget(nodes.len() + usize::from(classic)) as u64;
            if requests > budget {
                return Err(format!("{requests} API requests for {} droplets (budget {budget})", nodes.len()).into());
            }
            return assert_fake_clean(&out);
        }
        assert_clean(&out)
    })
}

/// A scenario whose checks must fail (`fixtures/broken/NAME.toml`), with `NAME.expect`
/// naming each check's failure: proves every check can fail, and says why it did.
fn broken_trial(path: PathBuf) -> Trial {
    let name = format!("broken::{}", path.file_stem().unwrap().to_string_lossy());
    Trial::test(name, move || {
        node_image()?;
        let expect = Expect::of(&path)?;
        let failures = &expect.failures;
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("report.json");
        let html = dir.path().join("report.html");
        let mut args = vec!["run".to_string(), "--json".into(), json.to_str().unwrap().into()];
        args.extend(["--html".into(), html.to_str().unwrap().into()]);
        args.extend(expect.args.iter().cloned());
        args.push(path.to_str().unwrap().into());
        let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        // A cluster broken before its checks fails the run (`exit`, `error` in the file).
        let code = expect.exit.unwrap_or(1);
        expect_code(&out, code)?;
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        if let Some(want) = expect.error.as_deref() {
            let error = report["runs"][0]["error"].as_str().unwrap_or_default();
            if !error.contains(want) {
                return Err(format!("expected the run's error to contain {want:?}\n{}", out.context()).into());
            }
        }
        let checks = report["runs"][0]["checks"].as_array().cloned().unwrap_or_default();
        // Every check of the file must fail as listed; only the implicit checks (the
        // `declared-state`, a stack's `stack-converges-NAME`) may pass unlisted: a fault
        // that leaves the declared state intact, a stack that runs but cannot be reached.
        let implicit_passed = |c: &serde_json::Value| {
            let name = c["name"].as_str().unwrap_or_default();
            let implicit = name == IMPLICIT_STATE_CHECK
                || (c["kind"] == "stack-converges" && name.starts_with("stack-converges-"));
            implicit && c["outcome"] == "passed" && !failures.contains_key(name)
        };
        let listed = checks.iter().filter(|c| !implicit_passed(c)).count();
        if listed != failures.len() {
            return Err(format!(
                "{listed} checks ran (besides passing implicit ones), {} expected to fail\n{}",
                failures.len(),
                out.context()
            )
            .into());
        }
        for c in checks.iter().filter(|c| !implicit_passed(c)) {
            let check = c["name"].as_str().unwrap_or_default();
            let want = failures
                .get(check)
                .ok_or_else(|| format!("check `{check}` has no expected failure in the .expect file"))?;
            let message = c["message"].as_str().unwrap_or_default();
            // An unsupported scenario (exit 4) reports every check unsupported, with why.
            let outcome = if expect.exit == Some(4) {
                "unsupported"
            } else {
                "failed"
            };
            if c["outcome"] != outcome || !message.contains(want) {
                return Err(format!(
                    "check `{check}`: expected a failure containing {want:?}, got {} with {message:?}",
                    c["outcome"]
                )
                .into());
            }
        }
        page_draws_the_causes(&html, &checks, &path)?;
        if expect.exit == Some(4) {
            // Refused before a run began: no run id, nothing to leave.
            if !out.stderr.contains("nothing was provisioned") {
                return Err(format!("an unsupported run must say nothing was provisioned\n{}", out.context()).into());
            }
            return Ok(());
        }
        assert_clean(&out)
    })
}

/// The run's HTML page in a browser: no console error, nothing fetched, and every
/// failing check's cause on the drawing (a path as a red edge between its nodes, the
/// cause's words in the legend). A screenshot of each is kept.
fn page_draws_the_causes(
    html: &std::path::Path,
    checks: &[serde_json::Value],
    fixture: &std::path::Path,
) -> Result<(), Failed> {
    let name = fixture.file_stem().unwrap().to_string_lossy();
    let page = browser_load(html, &screenshot_dir().join(format!("broken-{name}.png")))?;
    for c in checks.iter().filter(|c| c["outcome"] == "failed") {
        let Some(cause) = c["cause"].as_str() else { continue };
        // As the browser serializes text: only `&`, `<` and `>` escaped.
        let text = cause.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        if !page.dom.contains(&text) {
            return Err(format!("the page of {name} does not show the cause {cause:?}").into());
        }
        let path = &c["cause_path"];
        if path["kind"] == "path" {
            let edge = |a: &str, b: &str| format!("class=\"broken-path\" data-from=\"{a}\" data-to=\"{b}\"");
            let node = |i: usize| path["nodes"][i].as_str().unwrap_or_default();
            let drawn = match (path["from"].as_str(), path["to"].as_str()) {
                (Some(from), Some(to)) => page.dom.contains(&edge(from, to)),
                // Undirected: either way round.
                _ => page.dom.contains(&edge(node(0), node(1))) || page.dom.contains(&edge(node(1), node(0))),
            };
            if !drawn {
                return Err(format!("the page of {name} does not draw the broken path {path} of {cause:?}").into());
            }
        }
    }
    Ok(())
}

/// A check that passes on its retry is flaky in every report; with `--flaky-fails` it
/// is a failure.
fn flaky_placement(flaky_fails: bool) -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let (junit, json) = (dir.path().join("r.xml"), dir.path().join("r.json"));
    let mut args = vec![
        "run",
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    if flaky_fails {
        args.push("--flaky-fails");
    }
    args.extend(["--inject-attempt-failure", "placement-spread"]);
    args.push("fixtures/run-outcomes/flaky-placement.toml");
    let out = run(&args, None);
    expect_code(&out, if flaky_fails { 1 } else { 0 })?;
    assert_clean(&out)?;
    // Human: the note, and the summary's flaky column.
    if !out
        .stderr
        .contains("flaky-placement::placement-spread is flaky: passed on attempt")
    {
        return Err(format!("no flaky note\n{}", out.context()).into());
    }
    // JSON: outcome flaky (or failed), attempts, the failed attempt's message.
    let report = read_report(&json, "run-report")?;
    let check = report["runs"][0]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "placement-spread"))
        .cloned()
        .unwrap_or_default();
    let attempts = check["attempts"].as_u64().unwrap_or(0);
    let first = check["failed_attempts"][0].as_str().unwrap_or_default();
    let want = if flaky_fails { "failed" } else { "flaky" };
    if check["outcome"] != want || attempts != 2 || !first.contains("--inject-attempt-failure") {
        return Err(format!("JSON check is not {want} with its attempts: {check:#}").into());
    }
    // JUnit: flakyFailure in a passing case (rerunFailure in a failing one).
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("JUnit does not parse: {e}"))?;
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("placement-spread"))
        .ok_or("no testcase")?;
    let tag = if flaky_fails { "rerunFailure" } else { "flakyFailure" };
    let reruns = case.children().filter(|n| n.has_tag_name(tag)).count() as u64;
    let failed = case.children().any(|n| n.has_tag_name("failure"));
    if reruns != attempts - 1 || failed != flaky_fails {
        return Err(format!("JUnit: {reruns} <{tag}> for {attempts} attempts, failure {failed}:\n{xml}").into());
    }
    Ok(())
}

/// Failure artefacts with a node that accepts connections and never answers (its
/// container paused): collected from every node at once, the frozen one skipped
/// after its first request, so teardown is not held up; and an interrupt during the
/// collection still ends the run (130) with nothing left.
fn frozen_node_artifacts(interrupted: bool) -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let frozen = "fixtures/run-outcomes/frozen-node.toml";
    let html = dir.path().join("page.html");
    let args = [
        "run",
        "--inject-fault",
        "freeze@fz-3",
        "--artifacts",
        artifacts.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        frozen,
    ];
    if interrupted {
        let out = run_signalled(&args, "… failure artefacts", "INT");
        expect_code(&out, 130)?;
        // The page is written after an interrupt too, and says so.
        let page = std::fs::read_to_string(&html).unwrap_or_default();
        if !page.contains("130 — interrupted") {
            return Err(format!(
                "no page saying the run was interrupted at {}\n{}",
                html.display(),
                out.context()
            )
            .into());
        }
        return assert_clean(&out);
    }
    let out = run(&args, None);
    expect_code(&out, 1)?;
    let root = artifacts.join(out.run_id().unwrap_or_default());
    let errors = std::fs::read_to_string(root.join("errors.txt")).unwrap_or_default();
    let skipped = errors.contains("fz-3/info.json: no answer within 5 s")
        && errors.contains("fz-3/containers.json: skipped: fz-3 did not answer before");
    let others = [
        "fz-1/info.json",
        "fz-2/containers.json",
        "fz-3/engine.log",
        "swarm/tasks.json",
    ];
    let others = (others.iter()).all(|f| std::fs::read_to_string(root.join(f)).is_ok_and(|t| !t.trim().is_empty()));
    if !skipped || !others {
        return Err(format!("artefacts not as expected; errors.txt:\n{errors}\n{}", out.context()).into());
    }
    assert_clean(&out)
}
