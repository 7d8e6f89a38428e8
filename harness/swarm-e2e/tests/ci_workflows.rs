//! Lints the GitHub Actions workflows in `.github/workflows/`: each must be valid against
//! SchemaStore's workflow schema (vendored in `fixtures/schemas/`), bound every job in
//! time, and call only swarm-e2e subcommands and flags that exist, on files that exist.
//! The nightly must keep its promises: token from a secret, doctor before the run,
//! sweep and report upload whatever happened.

mod support;

use std::process::Command;

use support::{BIN, repo};

use serde_json::Value;

fn workflows() -> Vec<(String, Value)> {
    let dir = repo().join(".github/workflows");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let doc: Value =
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), doc)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 2,
        "expected the nightly and pull-request workflows in {}",
        dir.display()
    );
    out
}

fn steps(doc: &Value) -> Vec<&Value> {
    doc["jobs"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|j| j["steps"].as_array().cloned().unwrap_or_default().leak().iter())
        .collect()
}

/// Every `swarm-e2e ...` invocation in a step's script: the words after the binary.
fn invocations(script: &str) -> Vec<Vec<String>> {
    let words: Vec<String> = script
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let package_name = i > 0 && matches!(words[i - 1].as_str(), "-p" | "--package" | "--bin");
        if (w == "swarm-e2e" || w.ends_with("/swarm-e2e")) && !package_name {
            let rest: Vec<String> = words[i + 1..]
                .iter()
                .take_while(|w| !matches!(w.as_str(), "&&" | "||" | ";" | "|"))
                .cloned()
                .collect();
            out.push(rest);
        }
    }
    out
}

#[test]
fn workflows_are_valid_against_the_github_workflow_schema() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("fixtures/schemas/github-workflow.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (name, doc) in workflows() {
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name} violates the workflow schema:\n{}",
            errors.join("\n")
        );
        for (job, body) in doc["jobs"].as_object().unwrap() {
            assert!(
                body["timeout-minutes"].as_u64().is_some_and(|m| m <= 90),
                "{name}: job {job} needs timeout-minutes (at most 90)"
            );
        }
    }
}

#[test]
fn the_schema_check_is_not_vacuous() {
    // A workflow with a misspelt key and a job without runs-on must be refused.
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("fixtures/schemas/github-workflow.json")).unwrap())
            .unwrap();
    let broken: Value = serde_yaml_ng::from_str("on: push\njobs:\n  a:\n    step:\n      - run: true\n").unwrap();
    assert!(!jsonschema::is_valid(&schema, &broken));
}

#[test]
fn every_swarm_e2e_call_uses_real_subcommands_flags_and_files() {
    let mut calls = 0;
    for (name, doc) in workflows() {
        for step in steps(&doc) {
            let Some(script) = step["run"].as_str() else { continue };
            for words in invocations(script) {
                calls += 1;
                let mut sub: Vec<&str> = words.iter().take(1).map(String::as_str).collect();
                if matches!(sub[0], "node-image" | "fake-do") {
                    sub.push(&words[1]);
                }
                let help = Command::new(BIN).args(&sub).arg("--help").output().unwrap();
                assert!(
                    help.status.success(),
                    "{name}: `swarm-e2e {}` is not a subcommand",
                    sub.join(" ")
                );
                let help = String::from_utf8_lossy(&help.stdout);
                for flag in words.iter().filter(|w| w.starts_with("--")) {
                    let flag = flag.split('=').next().unwrap();
                    assert!(
                        help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                        "{name}: `swarm-e2e {}` has no flag {flag}",
                        sub.join(" ")
                    );
                }
                for file in words.iter().filter(|w| w.ends_with(".toml")) {
                    let out = Command::new(BIN)
                        .current_dir(repo())
                        .args(["validate", file])
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{name}: scenario {file} does not validate");
                }
            }
            for word in script.split_whitespace().filter(|w| w.starts_with("ci/")) {
                let path = repo().join(word);
                let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
                assert!(mode & 0o111 != 0, "{name}: {word} is not executable");
            }
        }
    }
    assert!(
        calls >= 5,
        "only {calls} swarm-e2e calls found: the extraction is broken"
    );
}

#[test]
fn the_nightly_keeps_its_promises() {
    let docs = workflows();
    let (_, nightly) = docs.iter().find(|(n, _)| n.starts_with("nightly")).unwrap();
    assert!(nightly["on"]["schedule"].is_array(), "the nightly runs on a schedule");
    let text = serde_json::to_string(nightly).unwrap();
    assert!(
        text.contains("${{ secrets.DIGITALOCEAN_ACCESS_TOKEN }}"),
        "the token comes from a secret"
    );
    assert!(!text.contains("dop_v1_"), "no literal token");
    let steps = steps(nightly);
    let position = |needle: &str| {
        steps
            .iter()
            .position(|s| s["run"].as_str().is_some_and(|r| r.contains(needle)))
            .unwrap_or_else(|| panic!("no step runs `{needle}`"))
    };
    let (doctor, run, sweep) = (
        position("doctor --target digitalocean"),
        position("run --target digitalocean"),
        position("sweep --target digitalocean"),
    );
    assert!(doctor < run && run < sweep, "doctor, then run, then sweep");
    assert_eq!(steps[sweep]["if"], "always()", "the sweep runs whatever happened");
    assert!(
        steps[run]["run"].as_str().unwrap().contains("--junit"),
        "the run writes JUnit"
    );
    assert!(
        steps[run]["run"].as_str().unwrap().contains("--html reports/"),
        "the run writes its page into the uploaded folder"
    );
    let history = position("report history/");
    assert!(run < history, "the history is drawn after the night's run");
    assert_eq!(steps[history]["if"], "always()", "a failed night is history too");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .expect("reports are uploaded");
    assert_eq!(upload["if"], "always()", "reports are uploaded whatever happened");
}

#[test]
fn the_pull_request_workflow_runs_the_readme_test_command_and_never_a_real_account() {
    let docs = workflows();
    let (_, pr) = docs.iter().find(|(n, _)| n.starts_with("pull-request")).unwrap();
    assert!(pr["on"].get("pull_request").is_some());
    let text = serde_json::to_string(pr).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("scripts/test.sh") && text.contains("scripts/test.sh"),
        "runs the README's test command"
    );
    assert!(
        !text.contains("DIGITALOCEAN_ACCESS_TOKEN"),
        "no token in a pull request"
    );
    assert!(
        !text.contains("--target digitalocean"),
        "no real account in a pull request"
    );
    assert!(text.contains("--target do-fake"));
}
