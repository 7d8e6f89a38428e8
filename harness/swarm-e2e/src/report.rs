//! Run events and the human reporter. The run loop only emits events; reporters decide
//! how they look (plain lines in CI logs, a spinner on a terminal).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

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
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}

/// Human output on stderr (stdout carries the libtest-style check results).
pub struct HumanReporter {
    spinner: Mutex<Option<ProgressBar>>,
    tty: bool,
}

impl HumanReporter {
    pub fn new() -> Self {
        HumanReporter {
            spinner: Mutex::new(None),
            tty: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
        }
    }

    fn line(&self, text: &str) {
        let guard = self.spinner.lock().unwrap();
        match guard.as_ref() {
            Some(bar) => bar.println(text),
            None => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
        }
    }
}

impl Default for HumanReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for HumanReporter {
    fn event(&self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                scenario,
                target,
                nodes,
            } => {
                self.line(&format!(
                    "swarm-e2e: run {run_id}: scenario {scenario}, {nodes} node(s) on target {target}"
                ));
            }
            Event::PhaseStarted { phase } => {
                if self.tty && *phase != Phase::Checks {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(ProgressStyle::with_template("  {spinner} {msg} {elapsed}").unwrap());
                    bar.set_message(phase.as_str());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    *self.spinner.lock().unwrap() = Some(bar);
                } else {
                    self.line(&format!("  … {}", phase.as_str()));
                }
            }
            Event::PhaseFinished {
                phase,
                elapsed,
                ok,
                detail,
            } => {
                if let Some(bar) = self.spinner.lock().unwrap().take() {
                    bar.finish_and_clear();
                }
                let mark = if *ok { "✓" } else { "✗" };
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!("  {detail}")
                };
                self.line(&format!(
                    "  {mark} {:<15}{:>7.2}s{detail}",
                    phase.as_str(),
                    elapsed.as_secs_f64()
                ));
            }
            Event::NodeReady {
                node,
                address,
                engine_version,
                elapsed,
            } => {
                self.line(&format!(
                    "      {node} ({address}): engine {engine_version}, answered after {:.2}s",
                    elapsed.as_secs_f64()
                ));
            }
            Event::Note { text } => self.line(text),
        }
    }
}

/// Phase timings of one run, for `--timings` and reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    pub phases: Vec<(Phase, Duration)>,
}

impl Timings {
    pub fn record(&mut self, phase: Phase, d: Duration) {
        self.phases.push((phase, d));
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }

    pub fn table(&self) -> String {
        let mut out = String::from("phase            seconds\n");
        for (p, d) in &self.phases {
            out.push_str(&format!("{:<15}{:>9.2}\n", p.as_str(), d.as_secs_f64()));
        }
        out.push_str(&format!("{:<15}{:>9.2}\n", "total", self.total().as_secs_f64()));
        out
    }
}

/// One line per scenario run: what ran, how it ended, how long it took.
pub fn summary_table(runs: &[crate::run::RunSummary]) -> String {
    let mut out = format!(
        "{:<28} {:<9} {:>7} {:>7} {:>8} {:>8}\n",
        "scenario", "run", "passed", "failed", "skipped", "seconds"
    );
    for r in runs {
        let count = |o: &str| r.checks.iter().filter(|c| c.outcome == o).count();
        out.push_str(&format!(
            "{:<28} {:<9} {:>7} {:>7} {:>8} {:>8.2}\n",
            r.scenario,
            r.run_id,
            count("passed"),
            count("failed"),
            count("ignored") + count("unsupported"),
            r.timings.total().as_secs_f64()
        ));
    }
    out
}
