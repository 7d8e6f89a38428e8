//! What a run is asked to do: where, with which hooks, and what to pass to the
//! libtest-style runner.

use std::path::PathBuf;
use std::time::Duration;

use crate::report::Phase;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub keep: bool,
    /// Arguments for the libtest-style runner (filters, --list, --ignored, ...).
    pub libtest_args: Vec<String>,
    /// Test hook: panic in the given phase (exercises teardown on panic).
    pub panic_in: Option<Phase>,
    /// Test hook: stop this node's engine before the checks start.
    pub stopped_engine: Option<String>,
    /// Where failure artefacts go (`<dir>/<run-id>/`); `None` collects none.
    pub artifacts: Option<PathBuf>,
    /// Where the cluster runs.
    pub target: TargetChoice,
}

/// Where a run's nodes come from (see [`crate::target`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TargetChoice {
    /// Node containers on the host engine.
    #[default]
    Local,
    /// The in-process fake DigitalOcean API.
    DoFake {
        no_engines: bool,
        boot_latency: Duration,
        /// From `--fake-faults`; `None`: the scenario's `[faults]`, if any.
        faults: Option<swarm_e2e_digitalocean::fake::Faults>,
    },
    /// The real DigitalOcean API (needs DIGITALOCEAN_ACCESS_TOKEN).
    DigitalOcean { no_engines: bool },
    /// Engines the user runs, named in a hosts file.
    Engines { hosts: PathBuf, force_leave: bool },
}

impl TargetChoice {
    pub fn name(&self) -> &'static str {
        match self {
            TargetChoice::Local => "local",
            TargetChoice::DoFake { .. } => "do-fake",
            TargetChoice::DigitalOcean { .. } => "digitalocean",
            TargetChoice::Engines { .. } => "engines",
        }
    }
}
