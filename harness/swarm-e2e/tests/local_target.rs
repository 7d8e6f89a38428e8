//! End-to-end tests against real engines on this machine (the local target).
//!
//! Every file in `scenarios/` is a test case: adding a file adds a trial here. The other
//! trials prove the promises around a run: a wrong expectation fails clearly, panics and
//! SIGINT still tear everything down, bad input exits 2, a kept cluster is reachable
//! with the docker CLI and `down` removes it. After every run the test asks the host
//! engine (and /sys/fs/cgroup, and the temp dir) for anything still carrying the run id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use swarm_e2e_model::IMPLICIT_STATE_CHECK;

mod support;

use support::*;

/// Everything still labelled (or named) with the run id.
fn leftovers(run_id: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = swarm_e2e::engine::host_engine().unwrap();
        swarm_e2e::targets::node_containers::resources::find_resources(&host, Some(run_id))
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {}", r.kind.as_str(), r.name))
            .collect()
    })
}

fn assert_clean(out: &Output) -> Result<(), Failed> {
    let Some(run_id) = out.run_id() else {
        return Err(format!("no run id in the output\n{}", out.context()).into());
    };
    let left = leftovers(&run_id);
    if !left.is_empty() {
        return Err(format!(
            "run {run_id} left {} resource(s): {left:?}\n{}",
            left.len(),
            out.context()
        )
        .into());
    }
    Ok(())
}

/// A matrix report that validates against its checked-in (derived) schema.
fn valid_matrix_report(report: &serde_json::Value) -> Result<(), Failed> {
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schemas/matrix-report.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(report).map(|e| e.to_string()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("the matrix report violates its schema: {errors:?}\n{report:#}").into())
    }
}

fn expect_code(out: &Output, code: i32) -> Result<(), Failed> {
    if out.code != code {
        return Err(format!("expected exit code {code}\n{}", out.context()).into());
    }
    Ok(())
}

/// The default engine's node image, built once per test process (a no-op when cached).
fn node_image() -> Result<(), Failed> {
    node_image_for("20.10")
}

/// The node image of a packaged engine release, built once per test process.
fn node_image_for(engine: &str) -> Result<(), Failed> {
    static BUILT: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    built
        .entry(engine.to_string())
        .or_insert_with(|| {
            let out = run(&["node-image", "build", "--engine", engine], None);
            if out.code == 0 {
                Ok(())
            } else {
                Err(format!("node image build for {engine} failed\n{}", out.context()))
            }
        })
        .clone()
        .map_err(Failed::from)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
    }
    out
}

/// A do-fake run must also leave nothing on the fake (the run checks that itself and
/// says so) and finish its teardown.
fn assert_fake_clean(out: &Output) -> Result<(), Failed> {
    if out.stderr.contains("left on the fake") || !out.stderr.contains("✓ teardown") {
        return Err(format!("the fake was not left empty\n{}", out.context()).into());
    }
    assert_clean(out)
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
        let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../schemas/run-report.schema.json")).unwrap();
        if !jsonschema::is_valid(&schema, &report) {
            return Err(format!("JSON report violates its schema: {report:#}").into());
        }
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

/// Removes the named images from the host engine when dropped.
struct RemoveImagesOnDrop(&'static [&'static str]);

impl Drop for RemoveImagesOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "--force"])
            .args(self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An unsupported run: exit 4, every check reported unsupported with a reason, and no
/// run started (so nothing could be left).
fn expect_unsupported(out: &Output, json: &Path, checks: usize) -> Result<(), Failed> {
    expect_code(out, 4)?;
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(include_str!("../schemas/run-report.schema.json")).unwrap();
    if !jsonschema::is_valid(&schema, &report) {
        return Err(format!("JSON report violates its schema: {report:#}").into());
    }
    let listed = report["runs"][0]["checks"].as_array().cloned().unwrap_or_default();
    let all_unsupported = listed.len() == checks
        && listed
            .iter()
            .all(|c| c["outcome"] == "unsupported" && c["message"].as_str().is_some_and(|m| !m.is_empty()));
    if !all_unsupported || out.run_id().is_some() || !out.stderr.contains("nothing was provisioned") {
        return Err(format!(
            "not reported unsupported before provisioning: {report:#}\n{}",
            out.context()
        )
        .into());
    }
    Ok(())
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
        let mut args = vec!["run".to_string(), "--json".into(), json.to_str().unwrap().into()];
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
        // Every check of the file must fail as listed; only the implicit `declared-state`
        // may pass unlisted (a fault that leaves the declared state intact).
        let implicit_passed = |c: &serde_json::Value| {
            c["name"] == IMPLICIT_STATE_CHECK
                && c["outcome"] == "passed"
                && !failures.contains_key(IMPLICIT_STATE_CHECK)
        };
        let listed = checks.iter().filter(|c| !implicit_passed(c)).count();
        if listed != failures.len() {
            return Err(format!(
                "{listed} checks ran (besides a passing `{IMPLICIT_STATE_CHECK}`), {} expected to fail\n{}",
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
            if c["outcome"] != "failed" || !message.contains(want) {
                return Err(format!(
                    "check `{check}`: expected a failure containing {want:?}, got {} with {message:?}",
                    c["outcome"]
                )
                .into());
            }
        }
        assert_clean(&out)
    })
}

fn main() {
    swarm_e2e::install_crypto_provider();
    let mut args = Arguments::from_args();
    // Clusters share two cores: one at a time unless asked otherwise.
    args.test_threads.get_or_insert(1);

    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(repo().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    scenarios.sort();
    let mut trials: Vec<Trial> = scenarios
        .iter()
        .flat_map(|p| ["local", "do-fake"].map(|t| scenario_trial(p.clone(), t)))
        .collect();
    let wrong = "fixtures/run-outcomes/wrong-placement.toml";
    let mut broken: Vec<PathBuf> = std::fs::read_dir(repo().join("fixtures/broken"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    broken.sort();
    trials.extend(broken.into_iter().map(broken_trial));

    trials.push(Trial::test("bad-scenarios-exit-2-with-locations", || {
        let mut n = 0;
        for entry in std::fs::read_dir(repo().join("fixtures/bad")).unwrap() {
            let path = entry.unwrap().path();
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
    }));

    trials.push(Trial::test("check-timeout::a-check-ends-at-its-own-timeout", || {
        node_image()?;
        let out = run(
            &[
                "run",
                "--inject-fault",
                "freeze@ct-3",
                "fixtures/run-outcomes/check-timeout.toml",
            ],
            None,
        );
        expect_code(&out, 1)?;
        let said = "no verdict within 2s (the check's `timeout`)";
        if !out.stdout.contains(said) || !out.stdout.contains("check-timeout::network-ct-net ... FAILED") {
            return Err(format!(
                "the network check did not end on its own timeout (`{said}`)\n{}",
                out.context()
            )
            .into());
        }
        assert_clean(&out)
    }));

    for flaky_fails in [false, true] {
        let name = if flaky_fails {
            "flaky::flaky-fails-turns-it-into-a-failure"
        } else {
            "flaky::a-check-that-passes-on-a-retry-is-flaky-in-every-report"
        };
        trials.push(Trial::test(name, move || {
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
            let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            let schema: serde_json::Value =
                serde_json::from_str(include_str!("../schemas/run-report.schema.json")).unwrap();
            let validator = jsonschema::validator_for(&schema).map_err(|e| format!("schema: {e}"))?;
            if let Some(e) = validator.iter_errors(&report).next() {
                return Err(format!("JSON report violates its schema: {e}").into());
            }
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
                return Err(
                    format!("JUnit: {reruns} <{tag}> for {attempts} attempts, failure {failed}:\n{xml}").into(),
                );
            }
            Ok(())
        }));
    }

    trials.push(Trial::test("down-with-an-unknown-run-id-is-a-usage-error", || {
        // Run ids are 8 letters and digits; this one no run ever gets.
        let out = run(&["down", "zz0unkn0"], None);
        expect_code(&out, 2)?;
        if !out.stderr.contains("nothing labelled swarm-e2e.run=zz0unkn0") || !out.stderr.contains("swarm-e2e ls") {
            return Err(format!("no reason and hint\n{}", out.context()).into());
        }
        Ok(())
    }));

    trials.push(Trial::test(
        "wrong-expectation-fails-clearly-with-reports-and-artifacts",
        move || {
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
                    wrong,
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
            let header = std::fs::read_to_string(repo().join(wrong))
                .unwrap()
                .lines()
                .position(|l| l == "[[checks]]")
                .unwrap()
                + 1;
            let annotations: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("::error ")).collect();
            let expected = format!(
                "::error file={wrong},line={header},title=wrong-placement%3A%3Aplacement-claims-node-1 failed::"
            );
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
            let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            let schema: serde_json::Value =
                serde_json::from_str(include_str!("../schemas/run-report.schema.json")).unwrap();
            let validator = jsonschema::validator_for(&schema).map_err(|e| format!("schema: {e}"))?;
            let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
            if !errors.is_empty() {
                return Err(format!("JSON report violates its schema: {errors:?}").into());
            }
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
        },
    ));

    trials.push(Trial::test(
        "keep-prints-working-docker-cli-lines-and-down-removes",
        move || {
            node_image()?;
            // Kept even though its check fails: a kept cluster is for inspecting failures.
            let out = run(&["run", "--keep", wrong], None);
            let run_id = out.run_id();
            let result = (|| -> Result<(), Failed> {
                expect_code(&out, 1)?;
                let export = export_line(&out)?;
                // `swarm-e2e env RUN NODE` prints the same line for the first node (wp-1).
                let env = run(&["env", out.run_id().as_deref().unwrap_or_default(), "wp-1"], None);
                expect_code(&env, 0)?;
                if env.stdout.trim() != export.trim() {
                    return Err(format!("`env` printed {:?}, `run --keep` printed {export:?}", env.stdout).into());
                }
                let info = docker_cli_for(export)
                    .args(["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&info.stdout);
                if !info.status.success() || !text.contains("active 2") {
                    return Err(format!(
                        "docker CLI with the printed lines: {text} {}\n{}",
                        String::from_utf8_lossy(&info.stderr),
                        out.context()
                    )
                    .into());
                }
                Ok(())
            })();
            let run_id = run_id.ok_or_else(|| format!("no run id\n{}", out.context()))?;
            let down = run(&["down", &run_id], None);
            result?;
            expect_code(&down, 0)?;
            let left = leftovers(&run_id);
            if !left.is_empty() {
                return Err(format!("down left {left:?}").into());
            }
            Ok(())
        },
    ));

    // A kept run on DigitalOcean, against the fake served on its own with real engines
    // behind its droplets: the printed lines reach a droplet's engine with the docker CLI
    // (which verifies the address: each droplet minted its certificate with it), `env`
    // prints the same, `down --target digitalocean` removes the droplets and with them
    // what backs them.
    trials.push(Trial::test(
        "digitalocean-keep-prints-working-docker-cli-lines-and-down-removes",
        || {
            node_image()?;
            // The serving fake records its exchanges here: held against the spec (and
            // removed) once it has stopped.
            let exchanges = exchanges_file();
            let mut serve = command(&["fake-do", "serve", "--port", "0", "--backed"])
                .env(swarm_e2e_digitalocean::fake::EXCHANGES_ENV, &exchanges)
                .spawn()
                .unwrap();
            let stop_serve = |serve: &mut std::process::Child| {
                let _ = Command::new("kill").args(["-INT", &serve.id().to_string()]).status();
                serve.wait().map(|s| s.success()).unwrap_or(false)
            };
            let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let Some(url) = first.strip_prefix("fake DigitalOcean API: ").map(str::to_string) else {
                stop_serve(&mut serve);
                let _ = std::fs::remove_file(&exchanges);
                return Err(format!("fake-do serve printed {first:?}").into());
            };
            let env = [
                ("DIGITALOCEAN_API_URL", url.as_str()),
                ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_fake"),
            ];
            let out = run_env(
                &[
                    "run",
                    "--target",
                    "digitalocean",
                    "--keep",
                    "fixtures/engines/overlay-ping.toml",
                ],
                &env,
            );
            let result = (|| -> Result<(), Failed> {
                expect_code(&out, 0)?;
                let export = export_line(&out)?;
                let run_id = out.run_id().unwrap_or_default();
                let printed = run_env(&["env", &run_id, "probe-1", "--target", "digitalocean"], &env);
                expect_code(&printed, 0)?;
                if printed.stdout.trim() != export.trim() {
                    return Err(format!("`env` printed {:?}, `run --keep` printed {export:?}", printed.stdout).into());
                }
                let info = docker_cli_for(export)
                    .args([
                        "info",
                        "--format",
                        "{{.Name}} {{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}",
                    ])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&info.stdout);
                if !info.status.success() || text.trim() != "probe-1 active 2" {
                    return Err(format!(
                        "docker CLI with the printed lines: {text} {}\n{}",
                        String::from_utf8_lossy(&info.stderr),
                        out.context()
                    )
                    .into());
                }
                let down = run_env(&["down", &run_id, "--target", "digitalocean"], &env);
                expect_code(&down, 0)?;
                if !down.stdout.contains("removed droplet probe-2") {
                    return Err(format!("down did not remove the droplets\n{}", down.context()).into());
                }
                Ok(())
            })();
            let stopped = stop_serve(&mut serve);
            let conform = fake_exchanges_conform(&exchanges);
            result?;
            if !stopped {
                return Err("fake-do serve did not stop cleanly on SIGINT".into());
            }
            if let Err(deviations) = conform {
                return Err(deviations.into());
            }
            assert_clean(&out)
        },
    ));

    trials.push(Trial::test(
        "crash-leftovers-are-found-and-swept-and-nothing-else",
        move || {
            node_image()?;
            // Decoys that look like ours but carry no mark: the sweeper must leave them.
            let decoy_dir = std::env::temp_dir().join("swarm-e2e-decoy-dir");
            std::fs::create_dir_all(&decoy_dir).unwrap();
            let docker = |args: &[&str]| Command::new("docker").args(args).output().unwrap();
            docker(&["network", "create", "--internal", "swarm-e2e-decoy"]);
            // SIGKILL: no teardown at all, as when CI kills a job.
            let mut child = command(&["run", wrong]).spawn().unwrap();
            let stderr = BufReader::new(child.stderr.take().unwrap());
            let mut run_id = None;
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("swarm-e2e: run ").and_then(|r| r.split(':').next()) {
                    run_id = Some(id.to_string());
                }
                if line.contains("✓ cluster formed") {
                    let _ = child.kill();
                    break;
                }
            }
            let _ = child.wait();
            let run_id = run_id.ok_or("no run id")?;
            let result = (|| -> Result<(), Failed> {
                let left = leftovers(&run_id);
                if left.len() < 5 {
                    return Err(format!("a killed run should leave its resources, found {left:?}").into());
                }
                let dry = run(&["sweep"], None);
                expect_code(&dry, 0)?;
                if !dry.stdout.contains(&run_id)
                    || !dry.stdout.contains("dry run")
                    || leftovers(&run_id).len() != left.len()
                {
                    return Err(format!("the dry run must list and keep everything\n{}", dry.context()).into());
                }
                let swept = run(&["sweep", "--yes"], None);
                expect_code(&swept, 0)?;
                let after = leftovers(&run_id);
                if !after.is_empty() {
                    return Err(format!("sweep left {after:?}\n{}", swept.context()).into());
                }
                let decoy = docker(&["network", "inspect", "swarm-e2e-decoy"]);
                if !decoy.status.success() || !decoy_dir.is_dir() {
                    return Err("the sweeper removed resources without the swarm-e2e marks".into());
                }
                Ok(())
            })();
            docker(&["network", "rm", "swarm-e2e-decoy"]);
            let _ = std::fs::remove_dir(&decoy_dir);
            result
        },
    ));

    trials.push(Trial::test(
        "private-keys-never-appear-in-output-logs-or-reports",
        move || {
            node_image()?;
            let dir = tempfile::tempdir().unwrap();
            let (junit, json, artifacts) = (
                dir.path().join("r.xml"),
                dir.path().join("r.json"),
                dir.path().join("art"),
            );
            let mut cmd = command(&[
                "run",
                "--keep",
                "--junit",
                junit.to_str().unwrap(),
                "--json",
                json.to_str().unwrap(),
                "--artifacts",
                artifacts.to_str().unwrap(),
                wrong,
            ]);
            cmd.env("RUST_LOG", "trace");
            let child = cmd.spawn().unwrap();
            let output = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).to_string();
            let stderr = String::from_utf8_lossy(&output.stderr).to_string();
            let run_id = stderr
                .lines()
                .find_map(|l| l.strip_prefix("swarm-e2e: run ").and_then(|r| r.split(':').next()))
                .ok_or("no run id")?
                .to_string();
            let result = (|| -> Result<(), Failed> {
                if stderr.lines().filter(|l| l.contains("TRACE")).count() < 10 {
                    return Err("RUST_LOG=trace produced no trace output".into());
                }
                // The keys of this run: the client's and each node's server key.
                let client = std::fs::read_to_string(swarm_e2e::marks::run_dir(&run_id).join("certs/key.pem")).unwrap();
                let mut keys = vec![client];
                for node in ["wp-1", "wp-2"] {
                    let name = swarm_e2e::marks::node_container_name(&run_id, node);
                    let out = Command::new("docker")
                        .args(["exec", &name, "cat", "/etc/swarm-e2e/key.pem"])
                        .output()
                        .unwrap();
                    keys.push(String::from_utf8_lossy(&out.stdout).to_string());
                }
                let mut texts = vec![
                    ("stdout".to_string(), stdout.clone()),
                    ("stderr".to_string(), stderr.clone()),
                ];
                for f in [&junit, &json] {
                    texts.push((f.display().to_string(), std::fs::read_to_string(f).unwrap_or_default()));
                }
                for entry in walk(&artifacts) {
                    texts.push((
                        entry.display().to_string(),
                        std::fs::read_to_string(&entry).unwrap_or_default(),
                    ));
                }
                if texts.len() < 8 {
                    return Err(format!("expected reports and artefacts to scan, got {}", texts.len()).into());
                }
                for key in &keys {
                    let body: Vec<&str> = key
                        .lines()
                        .filter(|l| !l.starts_with("-----") && l.len() > 20)
                        .collect();
                    if body.is_empty() {
                        return Err("could not read a key to look for".into());
                    }
                    for (name, text) in &texts {
                        if text.contains("PRIVATE KEY") || body.iter().any(|b| text.contains(b)) {
                            return Err(format!("private key material found in {name}").into());
                        }
                    }
                }
                Ok(())
            })();
            let down = run(&["down", &run_id], None);
            result?;
            expect_code(&down, 0)
        },
    ));

    trials.push(Trial::test(
        "nodes-reach-their-run-network-and-nothing-else",
        move || {
            node_image()?;
            let out = run(&["run", "--keep", wrong], None);
            let run_id = out.run_id().ok_or_else(|| format!("no run id\n{}", out.context()))?;
            let docker = |args: &[&str]| Command::new("docker").args(args).output().unwrap();
            let outside_net = format!("swarm-e2e-{run_id}-outside");
            let outside = format!("swarm-e2e-{run_id}-outside-ctr");
            let result = (|| -> Result<(), Failed> {
                let node1 = swarm_e2e::marks::node_container_name(&run_id, "wp-1");
                let node2 = swarm_e2e::marks::node_container_name(&run_id, "wp-2");
                // Engine 20.10 still gives containers on an --internal network a default
                // route; the isolation is the host engine's filtering, which this proves.
                // A listener of our own on a network of our own, outside the run network.
                let label = format!("swarm-e2e.run={run_id}");
                docker(&["network", "create", "--label", &label, &outside_net]);
                let started = docker(&[
                    "run",
                    "-d",
                    "--name",
                    &outside,
                    "--label",
                    &label,
                    "--network",
                    &outside_net,
                    swarm_e2e::images::BUSYBOX_IMAGE,
                    "httpd",
                    "-f",
                    "-p",
                    "8080",
                ]);
                if !started.status.success() {
                    return Err(format!("outside listener: {}", String::from_utf8_lossy(&started.stderr)).into());
                }
                let ip_of = |c: &str| {
                    let o = docker(&[
                        "inspect",
                        "-f",
                        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                        c,
                    ]);
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string()
                };
                let connect = |ip: &str, port: &str| {
                    let script = format!("timeout 3 bash -c 'echo > /dev/tcp/{ip}/{port}'");
                    docker(&["exec", &node1, "bash", "-c", &script])
                };
                let peer = connect(&ip_of(&node2), "2376");
                if !peer.status.success() {
                    return Err(
                        format!("node 1 cannot reach node 2: {}", String::from_utf8_lossy(&peer.stderr)).into(),
                    );
                }
                let out_ip = ip_of(&outside);
                // Control: the listener answers (from the host), so a refusal below means
                // isolation, not a dead listener.
                let addr: std::net::SocketAddr =
                    format!("{out_ip}:8080").parse().map_err(|e| format!("{out_ip}: {e}"))?;
                let reachable = swarm_e2e::wait::poll_until_blocking(Duration::from_secs(5), || {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                });
                if !reachable {
                    return Err(
                        format!("control failed: the outside listener at {addr} does not answer the host").into(),
                    );
                }
                let escaped = connect(&out_ip, "8080");
                if escaped.status.success() {
                    return Err(format!("node 1 reached {out_ip}, outside its run network").into());
                }
                Ok(())
            })();
            docker(&["rm", "-f", &outside]);
            docker(&["network", "rm", &outside_net]);
            let down = run(&["down", &run_id], None);
            result?;
            expect_code(&down, 0)
        },
    ));

    // The interrupt matrix: every phase x {SIGINT, SIGTERM, panic, phase timeout}, and a
    // signal during teardown itself. Each run must end with the documented exit code and
    // leave nothing carrying its run id.
    const PHASES: [(&str, &str, &str); 4] = [
        ("provision", "… provision", "provision"),
        ("engines-ready", "… engines ready", "engines_ready"),
        ("cluster-formed", "… cluster formed", "cluster_formed"),
        ("checks", "… checks", "checks"),
    ];
    for ((phase, marker, timeout_key), target) in PHASES.into_iter().flat_map(|p| [(p, "local"), (p, "do-fake")]) {
        let clean = move |out: &Output| {
            if target == "do-fake" {
                assert_fake_clean(out)
            } else {
                assert_clean(out)
            }
        };
        for signal in ["INT", "TERM"] {
            trials.push(Trial::test(
                format!("matrix::{target}::{phase}::sig{}", signal.to_lowercase()),
                move || {
                    node_image()?;
                    let out = run_signalled(&["run", "--target", target, wrong], marker, signal);
                    expect_code(&out, 130)?;
                    clean(&out)
                },
            ));
        }
        trials.push(Trial::test(format!("matrix::{target}::{phase}::panic"), move || {
            node_image()?;
            let out = run(&["run", "--target", target, "--inject-panic", phase, wrong], None);
            // A panic inside a check fails that check; anywhere else it is an internal error.
            expect_code(&out, if phase == "checks" { 1 } else { 3 })?;
            if !out.stderr.contains("injected panic") {
                return Err(format!("the panic was not reported\n{}", out.context()).into());
            }
            clean(&out)
        }));
        trials.push(Trial::test(format!("matrix::{target}::{phase}::timeout"), move || {
            node_image()?;
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("timeout.toml");
            let text = std::fs::read_to_string(repo().join(wrong)).unwrap();
            std::fs::write(&file, format!("{text}\n[timeouts]\n{timeout_key} = \"1ms\"\n")).unwrap();
            let out = run(&["run", "--target", target, file.to_str().unwrap()], None);
            if phase == "checks" {
                // The bound applies to each check's waits: the check fails, saying so.
                expect_code(&out, 1)?;
                if !out.stdout.contains("gave up after") {
                    return Err(format!("the failure does not say it gave up\n{}", out.context()).into());
                }
            } else {
                expect_code(&out, 3)?;
                // Either the phase bound fires, or a wait inside it (bounded by the same
                // limit) gives up first, naming the node and the last error it saw.
                let phase_name = phase.replace('-', " ");
                let timed_out = out.stderr.contains(&format!("phase `{phase_name}` timed out"));
                let gave_up = out.stderr.contains(&format!("phase `{phase_name}` failed"))
                    && out.stderr.contains("gave up after")
                    && out.stderr.contains("node wp-");
                if !timed_out && !gave_up {
                    return Err(format!("the error does not say `{phase_name}` timed out\n{}", out.context()).into());
                }
            }
            clean(&out)
        }));
    }
    trials.push(Trial::test(
        "do-fake::scenario-faults-are-survived-with-real-engines",
        || {
            node_image()?;
            let out = run(&["run", "--target", "do-fake", "fixtures/do-fake/flaky-api.toml"], None);
            expect_code(&out, 0)?;
            // A duplicate droplet (the lost create retried blindly) would be backed too.
            if !out.stderr.contains("3 droplet(s) active, 3 backed by containers") {
                return Err(format!("not exactly the 3 declared droplets\n{}", out.context()).into());
            }
            if !out.stderr.contains("retried") || out.stderr.contains(" 0 retried") {
                return Err(format!("no fault fired\n{}", out.context()).into());
            }
            assert_fake_clean(&out)
        },
    ));
    trials.push(Trial::test(
        "do-fake::wrong-expectation-fails-with-artifacts",
        move || {
            node_image()?;
            let dir = tempfile::tempdir().unwrap();
            let artifacts = dir.path().join("artifacts");
            let out = run(
                &[
                    "run",
                    "--target",
                    "do-fake",
                    "--artifacts",
                    artifacts.to_str().unwrap(),
                    wrong,
                ],
                None,
            );
            expect_code(&out, 1)?;
            let run_id = out.run_id().unwrap_or_default();
            let root = artifacts.join(&run_id);
            for f in ["summary.txt", "wp-1/engine.log", "wp-2/info.json", "swarm/tasks.json"] {
                let text = std::fs::read_to_string(root.join(f)).unwrap_or_default();
                if text.trim().is_empty() {
                    return Err(format!("artifact {f} is missing or empty\n{}", out.context()).into());
                }
            }
            // A droplet's logs come through its own engine (a helper container mounting
            // its /var/log), as on a real droplet: the engine's log file and the boot
            // script's output, not the fake's host-side view.
            for (f, want) in [
                ("wp-1/engine.log", "API listen on"),
                ("wp-2/cloud-init-output.log", "swarm-e2e: boot script done"),
            ] {
                let text = std::fs::read_to_string(root.join(f)).unwrap_or_default();
                if !text.contains(want) || text.contains("read from the droplet's node container instead") {
                    return Err(format!("{f} was not read through the engine:\n{text}\n{}", out.context()).into());
                }
            }
            assert_fake_clean(&out)
        },
    ));
    // The droplets run their own boot script: one that fails fails provisioning (exit 3),
    // naming the droplet, the script's status and its last lines, and the whole output is
    // in the artefacts; nothing is left.
    trials.push(Trial::test(
        "do-fake::a-broken-boot-script-fails-provisioning-with-its-output",
        || {
            node_image()?;
            let dir = tempfile::tempdir().unwrap();
            let artifacts = dir.path().join("artifacts");
            let json = dir.path().join("r.json");
            let out = run(
                &[
                    "run",
                    "--target",
                    "do-fake",
                    "--artifacts",
                    artifacts.to_str().unwrap(),
                    "--json",
                    json.to_str().unwrap(),
                    "fixtures/do-fake/broken-boot-script.toml",
                ],
                None,
            );
            expect_code(&out, 3)?;
            for want in [
                "phase `provision` failed: backing droplet broken-boot-",
                "its boot script (user_data) exited with status 2",
                "ls: cannot access '/swarm-e2e-no-such-path'",
                "cloud-init-output.log",
            ] {
                if !out.stderr.contains(want) {
                    return Err(format!("the failure lacks `{want}`\n{}", out.context()).into());
                }
            }
            let report: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default()).unwrap_or_default();
            if report["runs"][0]["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["phase"] == "engines-ready")
            {
                return Err(format!("the run went past provisioning: {report:#}").into());
            }
            let root = artifacts.join(out.run_id().unwrap_or_default());
            for node in ["broken-boot-1", "broken-boot-2"] {
                let log = std::fs::read_to_string(root.join(node).join("cloud-init-output.log")).unwrap_or_default();
                let whole = log.contains(&format!("configuration of {node} written"))
                    && log.contains("boot command 2/2: ls /swarm-e2e-no-such-path")
                    && !log.contains("boot script done");
                if !whole {
                    return Err(format!(
                        "{node}'s boot output in the artefacts is not the script's:\n{log}\n{}",
                        out.context()
                    )
                    .into());
                }
            }
            assert_fake_clean(&out)
        },
    ));
    // A size this host's kernel cannot hold is refused before anything is created, naming
    // the limit and the sysctl that raises it; `doctor --nodes N` says the same. The size
    // comes from the host's real neighbour-table limit.
    trials.push(Trial::test(
        "preflight::a-host-too-small-is-refused-with-the-sysctl",
        || {
            let facts = swarm_e2e::hostlimits::HostFacts::read();
            let Some(max) = facts.neigh_max else {
                return Err("this kernel's neighbour-table limit is unreadable".into());
            };
            // A margin over what the host holds now, which other trials change meanwhile:
            // the run must be refused, never provisioned.
            let nodes = (2..=swarm_e2e_model::MAX_NODES as u64)
                .find(|n| swarm_e2e::hostlimits::neighbour_entries_needed(*n) > max + 1000)
                .ok_or_else(|| {
                    format!(
                        "gc_thresh3 = {max} holds {} nodes: no refusal to show",
                        swarm_e2e_model::MAX_NODES
                    )
                })?;
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("too-big.toml");
            let mut text = String::from("name = \"too-big\"\n");
            for i in 1..=nodes {
                let role = if i == 1 { "role = \"manager\"\n" } else { "" };
                text.push_str(&format!("[[nodes]]\nname = \"tb-{i}\"\n{role}"));
            }
            std::fs::write(&file, text).unwrap();
            let out = run(&["run", file.to_str().unwrap()], None);
            expect_code(&out, 3)?;
            let refused = out.stderr.contains(&format!(
                "this host cannot hold {nodes} node containers; nothing was created"
            )) && out.stderr.contains("neighbour table")
                && out.stderr.contains("sysctl -w net.ipv4.neigh.default.gc_thresh1=");
            if !refused || out.run_id().is_some() {
                return Err(format!("not refused before provisioning\n{}", out.context()).into());
            }
            let doctor = run(&["doctor", "--nodes", &nodes.to_string()], None);
            expect_code(&doctor, 3)?;
            if !doctor.stdout.contains("✗ neighbour table") || !doctor.stdout.contains("gc_thresh3=") {
                return Err(format!("doctor does not name the limit\n{}", doctor.context()).into());
            }
            Ok(())
        },
    ));
    // Failure artefacts with a node that accepts connections and never answers (its
    // container paused): collected from every node at once, the frozen one skipped
    // after its first request, so teardown is not held up; and an interrupt during the
    // collection still ends the run (130) with nothing left.
    for interrupted in [false, true] {
        let name = if interrupted {
            "artifacts::sigint-during-collection-tears-down"
        } else {
            "artifacts::a-frozen-node-is-skipped-after-its-first-request"
        };
        trials.push(Trial::test(name, move || {
            node_image()?;
            let dir = tempfile::tempdir().unwrap();
            let artifacts = dir.path().join("artifacts");
            let frozen = "fixtures/run-outcomes/frozen-node.toml";
            let args = [
                "run",
                "--inject-fault",
                "freeze@fz-3",
                "--artifacts",
                artifacts.to_str().unwrap(),
                frozen,
            ];
            if interrupted {
                let out = run_signalled(&args, "… failure artefacts", "INT");
                expect_code(&out, 130)?;
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
            let others =
                (others.iter()).all(|f| std::fs::read_to_string(root.join(f)).is_ok_and(|t| !t.trim().is_empty()));
            if !skipped || !others {
                return Err(format!("artefacts not as expected; errors.txt:\n{errors}\n{}", out.context()).into());
            }
            assert_clean(&out)
        }));
    }
    for target in ["local", "do-fake"] {
        trials.push(Trial::test(format!("matrix::{target}::teardown::sigint"), move || {
            node_image()?;
            let out = run_signalled(
                &["run", "--target", target, "scenarios/swarm-demo.toml"],
                "… teardown",
                "INT",
            );
            expect_code(&out, 130)?;
            if target == "do-fake" {
                return assert_fake_clean(&out);
            }
            if !out.stderr.contains("✓ teardown") {
                return Err(format!("teardown did not finish after the signal\n{}", out.context()).into());
            }
            assert_clean(&out)
        }));
    }

    trials.push(Trial::test("node-death-is-named-in-the-failure", move || {
        node_image()?;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node-dies.toml");
        let text = std::fs::read_to_string(repo().join(wrong))
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
    }));

    trials.push(Trial::test(
        "engines::classic-on-28.5-is-unsupported-before-provisioning",
        || {
            let classic = "scenarios/swarm-demo-classic.toml";
            for target in ["local", "do-fake"] {
                let dir = tempfile::tempdir().unwrap();
                let json = dir.path().join("report.json");
                // No 28.5 image is needed: nothing is provisioned.
                let out = run(
                    &[
                        "run",
                        "--target",
                        target,
                        "--engine",
                        "28.5",
                        "--json",
                        json.to_str().unwrap(),
                        classic,
                    ],
                    None,
                );
                expect_unsupported(&out, &json, 4)?;
                if !out.stderr.contains("Engine 23.0 removed") {
                    return Err(format!("the reason is not given\n{}", out.context()).into());
                }
            }
            Ok(())
        },
    ));

    trials.push(Trial::test(
        "engines::matrix-seed-and-classic-on-20.10-and-26.1",
        || {
            node_image_for("20.10")?;
            node_image_for("26.1")?;
            let dir = tempfile::tempdir().unwrap();
            let json = dir.path().join("matrix.json");
            let junit = dir.path().join("matrix.xml");
            let out = run(
                &[
                    "matrix",
                    "--engine",
                    "20.10",
                    "--engine",
                    "26.1",
                    "--json",
                    json.to_str().unwrap(),
                    "--junit",
                    junit.to_str().unwrap(),
                    "scenarios/swarm-demo.toml",
                    "scenarios/swarm-demo-classic.toml",
                ],
                None,
            );
            expect_code(&out, 0)?;
            let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            valid_matrix_report(&m)?;
            let rows = m["rows"].as_array().cloned().unwrap_or_default();
            let outcome =
                |row: &serde_json::Value, e: &str| row["outcomes"][e]["outcome"].as_str().unwrap_or("").to_string();
            let seed: Vec<_> = rows.iter().filter(|r| r["scenario"] == "swarm-demo").collect();
            let classic: Vec<_> = rows.iter().filter(|r| r["scenario"] == "swarm-demo-classic").collect();
            // The files' checks and the implicit `declared-state` of each.
            let ok = seed.len() == 8
                && seed
                    .iter()
                    .all(|r| outcome(r, "20.10") == "passed" && outcome(r, "26.1") == "passed")
                && classic.len() == 4
                && classic.iter().all(|r| {
                    outcome(r, "20.10") == "passed"
                        && outcome(r, "26.1") == "unsupported"
                        && r["outcomes"]["26.1"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("23.0"))
                        && r["differs"] == true
                })
                && m["regressions"] == 0;
            if !ok || !out.stdout.contains("<- differs") {
                return Err(format!("unexpected comparison: {m:#}\n{}", out.context()).into());
            }
            // JUnit: one testsuite per scenario and engine, unsupported checks skipped.
            let xml = std::fs::read_to_string(&junit).map_err(|e| format!("no JUnit file: {e}"))?;
            let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("JUnit does not parse: {e}"))?;
            let suites: Vec<&str> = doc
                .descendants()
                .filter(|n| n.has_tag_name("testsuite"))
                .filter_map(|n| n.attribute("name"))
                .collect();
            let skipped = doc.descendants().filter(|n| n.has_tag_name("skipped")).count();
            let want = [
                "swarm-demo@20.10",
                "swarm-demo@26.1",
                "swarm-demo-classic@20.10",
                "swarm-demo-classic@26.1",
            ];
            if suites != want || skipped != 4 {
                return Err(format!("JUnit suites {suites:?} with {skipped} skipped:\n{xml}").into());
            }
            // The engines that answered are the ones asked for, and every run left nothing.
            for r in m["runs"].as_array().cloned().unwrap_or_default() {
                let engine = r["engine"].as_str().unwrap_or_default();
                let versions = r["engine_versions"].as_array().cloned().unwrap_or_default();
                let provisioned = r["exit_code"] != 4;
                if provisioned
                    && (versions.len() != 3
                        || !versions
                            .iter()
                            .all(|v| v.as_str().is_some_and(|v| v.starts_with(engine))))
                {
                    return Err(format!("run on {engine} reported engines {versions:?}").into());
                }
                let left = leftovers(r["run_id"].as_str().unwrap_or_default());
                if !left.is_empty() {
                    return Err(format!("matrix run left {left:?}").into());
                }
            }
            Ok(())
        },
    ));

    trials.push(Trial::test(
        "engines::static-binaries-image-runs-the-seed-and-a-broken-candidate-is-a-regression",
        || {
            node_image()?;
            // The images this trial builds go when it ends, passed or not: each build
            // would otherwise leave the previous one dangling.
            // The broken one is built by `matrix --build-images`, tagged with the version its
            // dockerd reports (this machine's packaged 20.10.24+dfsg1).
            const BUILT: &[&str] = &[
                "swarm-e2e/node:20.10.24-rc.1",
                "swarm-e2e/node:20.10.24-dfsg1",
                "swarm-e2e/node:26.0.99",
            ];
            let _images = RemoveImagesOnDrop(BUILT);
            let dir = tempfile::tempdir().unwrap();
            // An archive in the layout of Docker's static releases, assembled from the
            // packaged binaries this machine's engine runs (docker-init is tini).
            let good = dir.path().join("good/docker");
            std::fs::create_dir_all(&good).unwrap();
            for bin in [
                "dockerd",
                "containerd",
                "runc",
                "docker",
                "containerd-shim-runc-v2",
                "docker-proxy",
                "docker-init",
                "ctr",
            ] {
                let found = std::env::var("PATH")
                    .unwrap()
                    .split(':')
                    .map(|d| Path::new(d).join(bin))
                    .find(|p| p.is_file())
                    .ok_or_else(|| format!("`{bin}` is not installed on this machine"))?;
                std::fs::copy(&found, good.join(bin)).unwrap();
            }
            let tgz = dir.path().join("docker-static.tgz");
            let status = Command::new("tar")
                .arg("-C")
                .arg(dir.path().join("good"))
                .arg("-czf")
                .arg(&tgz)
                .arg("docker")
                .status()
                .unwrap();
            if !status.success() {
                return Err("tar failed".into());
            }
            // Served over HTTP on loopback, as a release candidate's URL would be.
            let rt = tokio::runtime::Runtime::new().unwrap();
            let server = rt.block_on(wiremock::MockServer::start());
            rt.block_on(
                wiremock::Mock::given(wiremock::matchers::path("/rc/docker-static.tgz"))
                    .respond_with(wiremock::ResponseTemplate::new(200).set_body_bytes(std::fs::read(&tgz).unwrap()))
                    .mount(&server),
            );
            let url = format!("{}/rc/docker-static.tgz", server.uri());
            let built = run(&["node-image", "build", "--static", &url, "--engine", "20.10.24-rc.1"], None);
            expect_code(&built, 0)?;
            if !built.stdout.contains("swarm-e2e/node:20.10.24-rc.1") || !built.stdout.contains("static: engine 20.10") {
                return Err(format!("unexpected build output\n{}", built.context()).into());
            }
            let json = dir.path().join("seed.json");
            let seed = run(
                &[
                    "run",
                    "--engine",
                    "20.10.24-rc.1",
                    "--json",
                    json.to_str().unwrap(),
                    "scenarios/swarm-demo.toml",
                ],
                None,
            );
            expect_code(&seed, 0)?;
            assert_clean(&seed)?;
            // The same scenario names the image by its archive's URL.
            let by_url = run(&["run", "--engine", &url, "fixtures/engines/overlay-ping.toml"], None);
            expect_code(&by_url, 0)?;
            assert_clean(&by_url)?;
            // On do-fake the droplets' boot script installs the archive itself, from a
            // mirror on each droplet's loopback, on a machine without an engine: the
            // engine that answers is the one the script installed.
            let fake = run(&["run", "--target", "do-fake", "--engine", &url, "fixtures/engines/overlay-ping.toml"], None);
            expect_code(&fake, 0)?;
            if !fake.stderr.contains("engine 20.10.24") {
                return Err(format!("no engine of the archive answered\n{}", fake.context()).into());
            }
            assert_clean(&fake)?;
            // A packaged version the machine's engine is not: the script's own check says
            // it is not installed, so it runs Docker's install script, which cannot be
            // fetched here (its host resolves to the droplet's loopback): provisioning
            // fails at once, saying so.
            let built = run(&["node-image", "build", "--static", &url, "--engine", "26.0.99"], None);
            expect_code(&built, 0)?;
            let dir2 = tempfile::tempdir().unwrap();
            let artifacts = dir2.path().join("a");
            let mismatch = run(
                &["run", "--target", "do-fake", "--engine", "26.0.99", "--artifacts", artifacts.to_str().unwrap(), "fixtures/engines/overlay-ping.toml"],
                None,
            );
            expect_code(&mismatch, 3)?;
            for want in ["installing engine 26.0.99 with Docker's install script", "get.docker.com", "exited with status"] {
                if !mismatch.stderr.contains(want) {
                    return Err(format!("the failed install lacks `{want}`\n{}", mismatch.context()).into());
                }
            }
            assert_clean(&mismatch)?;

            // A broken candidate: the same binaries with a runc that cannot start
            // anything, given as a folder. Passing on the baseline and failing on it is a
            // regression: exit code 5.
            let broken = dir.path().join("broken/docker");
            std::fs::create_dir_all(&broken).unwrap();
            for entry in std::fs::read_dir(&good).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
            }
            std::fs::write(
                broken.join("runc"),
                "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'runc version 1.1.5-broken'; exit 0; }\necho 'broken runc' >&2\nexit 1\n",
            )
            .unwrap();
            // Named by its folder, which no image was built from yet: `matrix` refuses
            // (before any cluster) and says how; with `--build-images` it builds it.
            let folder = dir.path().join("broken");
            let folder = folder.to_str().unwrap();
            let mjson = dir.path().join("matrix.json");
            let matrix_args = [
                "matrix",
                "--engine",
                "20.10.24-rc.1",
                "--engine",
                folder,
                "--json",
                mjson.to_str().unwrap(),
                "fixtures/engines/overlay-ping.toml",
            ];
            let refused = run(&matrix_args, None);
            expect_code(&refused, 3)?;
            if !refused.stderr.contains("--build-images") || refused.stderr.contains("swarm-e2e: run ") {
                return Err(format!("a missing image must be refused before any run, naming --build-images\n{}", refused.context()).into());
            }
            let mut build_args = matrix_args.to_vec();
            build_args.insert(1, "--build-images");
            let matrix = run(&build_args, None);
            expect_code(&matrix, 5)?;
            if !matrix.stderr.contains(&format!("no node image from {folder} yet: building it")) {
                return Err(format!("--build-images did not say what it built\n{}", matrix.context()).into());
            }
            let listed = run(&["node-image", "ls", "--format", "json"], None);
            let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap_or_default();
            let from_folder = listed["images"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["suite"] == folder)
                .and_then(|i| i["tag"].as_str().map(String::from));
            if !from_folder.as_deref().is_some_and(|t| BUILT.contains(&t)) {
                return Err(format!("the image built from {folder} is {from_folder:?}, not one this trial removes").into());
            }
            let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mjson).unwrap()).unwrap();
            valid_matrix_report(&m)?;
            if m["regressions"] != 1 || !matrix.stdout.contains(&format!("REGRESSION on {folder}")) {
                return Err(format!("the broken candidate was not a regression: {m:#}\n{}", matrix.context()).into());
            }
            for r in m["runs"].as_array().cloned().unwrap_or_default() {
                let left = leftovers(r["run_id"].as_str().unwrap_or_default());
                if !left.is_empty() {
                    return Err(format!("matrix run left {left:?}").into());
                }
            }
            Ok(())
        },
    ));

    libtest_mimic::run(&args, trials).exit();
}

/// The first `export DOCKER_HOST=…` line a kept run printed.
fn export_line(out: &Output) -> Result<&str, Failed> {
    out.stderr
        .lines()
        .find(|l| l.trim_start().starts_with("export DOCKER_HOST="))
        .ok_or_else(|| format!("no export line\n{}", out.context()).into())
}

/// The real docker CLI with the assignments of a kept run's `export` line, as a user
/// who pasted it has them.
fn docker_cli_for(export: &str) -> Command {
    let mut cmd = Command::new("docker");
    for assignment in export.trim_start().trim_start_matches("export ").split_whitespace() {
        let (k, v) = assignment.split_once('=').expect("NAME=value");
        cmd.env(k, v);
    }
    cmd
}
