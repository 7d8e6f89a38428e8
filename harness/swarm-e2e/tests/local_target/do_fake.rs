//! The do-fake target with real engines behind its droplets: API faults survived, a wrong
//! expectation's artefacts, a broken boot script named with its output.

use libtest_mimic::{Failed, Trial};

use crate::common::*;
use crate::support::*;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "do-fake::scenario-faults-are-survived-with-real-engines",
            scenario_faults_are_survived_with_real_engines,
        ),
        Trial::test(
            "do-fake::wrong-expectation-fails-with-artifacts",
            wrong_expectation_fails_with_artifacts,
        ),
        Trial::test(
            "do-fake::a-broken-boot-script-fails-provisioning-with-its-output",
            a_broken_boot_script_fails_provisioning_with_its_output,
        ),
    ]
}

fn scenario_faults_are_survived_with_real_engines() -> Result<(), Failed> {
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
}

fn wrong_expectation_fails_with_artifacts() -> Result<(), Failed> {
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
            WRONG,
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
}

/// The droplets run their own boot script: one that fails fails provisioning (exit 3),
/// naming the droplet, the script's status and its last lines, and the whole output is
/// in the artefacts; nothing is left.
fn a_broken_boot_script_fails_provisioning_with_its_output() -> Result<(), Failed> {
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
}
