//! Human output on stderr (stdout carries the libtest-style check results): a spinner
//! per phase on a terminal, plain lines in CI logs. When runs go on at once (`run
//! --jobs`, `matrix`), each run has its own reporter whose every line starts with the
//! run's label, and none has a spinner (they would overwrite each other).

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Event, Phase, Reporter};

/// Human output on stderr (stdout carries the libtest-style check results).
pub struct HumanReporter {
    spinner: Mutex<Option<ProgressBar>>,
    /// Without a spinner: a line at most once a minute while a phase goes on (a droplet's
    /// engine install can take ten), saying which phase and what it last said.
    beat: Mutex<Option<crate::progress::Heartbeat>>,
    tty: bool,
    /// `[label] `, before every line, when several runs share stderr.
    prefix: Option<String>,
}

impl HumanReporter {
    pub fn new() -> Self {
        HumanReporter {
            spinner: Mutex::new(None),
            beat: Mutex::new(None),
            tty: crate::progress::live_stderr(),
            prefix: None,
        }
    }

    /// The reporter of one of several runs going on at once: every line says `[label]`.
    pub fn prefixed(label: &str) -> Self {
        HumanReporter {
            spinner: Mutex::new(None),
            beat: Mutex::new(None),
            tty: false,
            prefix: Some(format!("[{label}] ")),
        }
    }

    fn line(&self, text: &str) {
        let text = match &self.prefix {
            Some(p) => prefix_lines(p, text),
            None => text.to_string(),
        };
        let guard = self.spinner.lock().unwrap();
        match guard.as_ref() {
            Some(bar) => bar.println(text),
            None => crate::progress::stderr_line(&text),
        }
    }
}

/// `prefix` before every line of `text`.
pub fn prefix_lines(prefix: &str, text: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
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
                    let prefix = self.prefix.clone().unwrap_or_default();
                    let beat = crate::progress::Heartbeat::start(
                        format!("{prefix}  … {}", phase.as_str()),
                        crate::progress::heartbeat_interval(),
                        crate::progress::stderr_line,
                    );
                    *self.beat.lock().unwrap() = Some(beat);
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
                self.beat.lock().unwrap().take();
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
                if let Some(beat) = self.beat.lock().unwrap().as_ref() {
                    beat.status(&format!("{node} answered last"));
                }
                self.line(&format!(
                    "      {node} ({address}): engine {engine_version}, answered after {:.2}s",
                    elapsed.as_secs_f64()
                ));
            }
            Event::Note { text } => {
                if let Some(beat) = self.beat.lock().unwrap().as_ref() {
                    beat.status(text.trim());
                }
                self.line(text)
            }
            // Check results are libtest's lines on stdout; a run's end is the phase lines.
            Event::CheckFinished { .. } | Event::RunFinished { .. } => {}
        }
    }
}
