//! Human output on stderr (stdout carries the libtest-style check results): a spinner
//! per phase on a terminal, plain lines in CI logs.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Event, Phase, Reporter};

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
            // Check results are libtest's lines on stdout; a run's end is the phase lines.
            Event::CheckFinished { .. } | Event::RunFinished { .. } => {}
        }
    }
}
