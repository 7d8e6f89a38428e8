//! Run events and their reporters. The run loop only emits events; reporters decide what
//! becomes of them: lines on stderr ([`human`]), a JUnit file ([`junit`]), a JSON file
//! ([`json`]), annotations and a job summary on GitHub Actions ([`github`]). [`summary`]
//! is what a finished run is.

pub mod cause;
pub mod github;
pub mod html;
pub mod human;
pub mod json;
pub mod junit;
pub mod summary;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use human::HumanReporter;
pub use summary::{
    CheckOutcome, CheckRecord, NodeRecord, RunSummary, SlowestWait, StackRecord, Timings, summary_table,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Provision,
    EnginesReady,
    ClusterFormed,
    Checks,
    Teardown,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Provision,
        Phase::EnginesReady,
        Phase::ClusterFormed,
        Phase::Checks,
        Phase::Teardown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provision => "provision",
            Phase::EnginesReady => "engines ready",
            Phase::ClusterFormed => "cluster formed",
            Phase::Checks => "checks",
            Phase::Teardown => "teardown",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        run_id: String,
        scenario: String,
        target: String,
        nodes: usize,
    },
    PhaseStarted {
        phase: Phase,
    },
    PhaseFinished {
        phase: Phase,
        elapsed: Duration,
        ok: bool,
        detail: String,
    },
    NodeReady {
        node: String,
        address: String,
        engine_version: String,
        elapsed: Duration,
    },
    Note {
        text: String,
    },
    /// One check ended (its record is also in the run's summary).
    CheckFinished {
        run_id: String,
        record: CheckRecord,
    },
    /// A run ended, teardown included: everything reports need.
    RunFinished {
        summary: Box<RunSummary>,
    },
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}

/// Hands every event to each reporter in turn.
pub struct Reporters(pub Vec<Arc<dyn Reporter>>);

impl Reporter for Reporters {
    fn event(&self, event: &Event) {
        for r in &self.0 {
            r.event(event);
        }
    }
}

/// Renders finished runs into a report written at the given path (the HTML page links
/// artefacts relative to it).
pub type Render = fn(&[RunSummary], &std::path::Path) -> anyhow::Result<String>;

/// A reporter that gathers finished runs and writes them to a file in the end (JUnit,
/// JSON). Written on success, on failure and after an interrupt.
pub struct FileReporter {
    path: PathBuf,
    render: Render,
    runs: std::sync::Mutex<Vec<RunSummary>>,
}

impl FileReporter {
    pub fn new(path: PathBuf, render: Render) -> FileReporter {
        FileReporter {
            path,
            render,
            runs: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Renders what was gathered and writes it; returns the path.
    pub fn write(&self) -> anyhow::Result<&std::path::Path> {
        let body = (self.render)(&self.runs.lock().unwrap(), &self.path)?;
        write(&self.path, &body)?;
        Ok(&self.path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Reporter for FileReporter {
    fn event(&self, event: &Event) {
        if let Event::RunFinished { summary } = event {
            self.runs.lock().unwrap().push((**summary).clone());
        }
    }
}

/// Writes a report file, creating its directory.
pub fn write(path: &std::path::Path, body: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))
}
