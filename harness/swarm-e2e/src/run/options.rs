//! What a run is asked to do: where, with which hooks, and what to pass to the
//! libtest-style runner.

use crate::report::Phase;
pub use crate::targets::TargetChoice;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub keep: bool,
    /// Arguments for the libtest-style runner (filters, --list, --ignored, ...).
    pub libtest_args: Vec<String>,
    /// Test hook: panic in the given phase (exercises teardown on panic).
    pub panic_in: Option<Phase>,
    /// Test hook: stop this node's engine before the checks start.
    pub stopped_engine: Option<String>,
    /// Test hook: stack services changed by hand once deployed (an env var added).
    pub drifted_services: Vec<String>,
    /// Test hook: break these nodes (their underlay, labels, engine, availability).
    pub faults: Vec<crate::targets::InjectedFault>,
    /// Test hook: checks whose first attempt fails whatever it saw.
    pub failed_first_attempts: Vec<String>,
    /// Where failure artefacts go (`<dir>/<run-id>/`); `None` collects none.
    pub artifacts: Option<PathBuf>,
    /// Where the cluster runs.
    pub target: TargetChoice,
    /// How often a failed check is tried again (a check's own `retries` wins).
    pub retries: u32,
    /// A check that passed only on a retry fails the run.
    pub flaky_fails: bool,
    /// Which docker CLI deploys the stacks.
    pub docker_cli: crate::stacks::CliChoice,
}

impl RunOptions {
    /// The nodes a test fault of this kind goes to.
    pub fn nodes_with(&self, fault: &crate::targets::NodeFault) -> Vec<String> {
        self.faults
            .iter()
            .filter(|f| &f.fault == fault)
            .map(|f| f.node.clone())
            .collect()
    }
}
