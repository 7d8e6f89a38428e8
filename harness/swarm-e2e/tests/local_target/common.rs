//! What every topic's trials share: the leftovers check after a run, exit codes, node
//! images built once per process, the do-fake clean check, matrix report validation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use libtest_mimic::Failed;

use crate::support::*;

/// The scenario with a placement expectation the scheduler cannot meet (a check fails).
pub const WRONG: &str = "fixtures/run-outcomes/wrong-placement.toml";

/// Everything still labelled (or named) with the run id.
pub fn leftovers(run_id: &str) -> Vec<String> {
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

pub fn assert_clean(out: &Output) -> Result<(), Failed> {
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

pub fn expect_code(out: &Output, code: i32) -> Result<(), Failed> {
    if out.code != code {
        return Err(format!("expected exit code {code}\n{}", out.context()).into());
    }
    Ok(())
}

/// The default engine's node image, built once per test process (a no-op when cached).
pub fn node_image() -> Result<(), Failed> {
    node_image_for("20.10")
}

/// The node image of a packaged engine release, built once per test process.
pub fn node_image_for(engine: &str) -> Result<(), Failed> {
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

pub fn walk(dir: &Path) -> Vec<PathBuf> {
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
pub fn assert_fake_clean(out: &Output) -> Result<(), Failed> {
    if out.stderr.contains("left on the fake") || !out.stderr.contains("✓ teardown") {
        return Err(format!("the fake was not left empty\n{}", out.context()).into());
    }
    assert_clean(out)
}

/// Removes the named images from the host engine when dropped.
pub struct RemoveImagesOnDrop(pub &'static [&'static str]);

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
pub fn expect_unsupported(out: &Output, json: &Path, checks: usize) -> Result<(), Failed> {
    expect_code(out, 4)?;
    let report = read_report(json, "run-report")?;
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
