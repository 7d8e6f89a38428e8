//! The interrupt matrix: every phase x {SIGINT, SIGTERM, panic, phase timeout}, and a
//! signal during teardown itself. Each run must end with the documented exit code and
//! leave nothing carrying its run id.

use libtest_mimic::{Failed, Trial};

use crate::common::*;
use crate::support::*;

pub fn trials() -> Vec<Trial> {
    let mut trials = Vec::new();
    for ((phase, marker, timeout_key), target) in PHASES.into_iter().flat_map(|p| [(p, "local"), (p, "do-fake")]) {
        for signal in ["INT", "TERM"] {
            let name = format!("matrix::{target}::{phase}::sig{}", signal.to_lowercase());
            trials.push(Trial::test(name, move || signalled(target, marker, signal)));
        }
        trials.push(Trial::test(format!("matrix::{target}::{phase}::panic"), move || {
            panicked(target, phase)
        }));
        trials.push(Trial::test(format!("matrix::{target}::{phase}::timeout"), move || {
            timed_out(target, phase, timeout_key)
        }));
    }
    for target in ["local", "do-fake"] {
        trials.push(Trial::test(format!("matrix::{target}::teardown::sigint"), move || {
            teardown_sigint(target)
        }));
        trials.push(Trial::test(
            format!("matrix::{target}::stack-deployed::sigint"),
            move || stack_sigint(target),
        ));
    }
    trials
}

/// The phases, the progress line that marks each, and its `[timeouts]` key.
const PHASES: [(&str, &str, &str); 4] = [
    ("provision", "… provision", "provision"),
    ("engines-ready", "… engines ready", "engines_ready"),
    ("cluster-formed", "… cluster formed", "cluster_formed"),
    ("checks", "… checks", "checks"),
];

/// Nothing left of the run (and, on do-fake, nothing on the fake).
fn clean(target: &str, out: &Output) -> Result<(), Failed> {
    if target == "do-fake" {
        assert_fake_clean(out)
    } else {
        assert_clean(out)
    }
}

fn signalled(target: &str, marker: &str, signal: &'static str) -> Result<(), Failed> {
    node_image()?;
    let out = run_signalled(&["run", "--target", target, WRONG], marker, signal);
    expect_code(&out, 130)?;
    clean(target, &out)
}

/// Interrupted once a Compose stack is out (its objects carry the CLI's namespace label,
/// not the run's): nothing is left either.
fn stack_sigint(target: &str) -> Result<(), Failed> {
    node_image()?;
    let out = run_signalled(
        &["run", "--target", target, "scenarios/compose-stack.toml"],
        "deployed by docker",
        "INT",
    );
    expect_code(&out, 130)?;
    clean(target, &out)
}

fn panicked(target: &str, phase: &str) -> Result<(), Failed> {
    node_image()?;
    let out = run(&["run", "--target", target, "--inject-panic", phase, WRONG], None);
    // A panic inside a check fails that check; anywhere else it is an internal error.
    expect_code(&out, if phase == "checks" { 1 } else { 3 })?;
    if !out.stderr.contains("injected panic") {
        return Err(format!("the panic was not reported\n{}", out.context()).into());
    }
    clean(target, &out)
}

fn timed_out(target: &str, phase: &str, timeout_key: &str) -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("timeout.toml");
    let text = std::fs::read_to_string(repo().join(WRONG)).unwrap();
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
    clean(target, &out)
}

/// A signal during teardown itself: the teardown still finishes.
fn teardown_sigint(target: &str) -> Result<(), Failed> {
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
}
