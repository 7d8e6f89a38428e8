//! GitHub Actions (on when `GITHUB_ACTIONS=true`): an `::error` annotation on the
//! scenario file and line of each failing check (and on the file for a run that failed
//! before its checks), and a Markdown job summary appended to `$GITHUB_STEP_SUMMARY`:
//! checks × outcome with the cause, then the phase timings.

use std::io::Write;
use std::path::PathBuf;

use super::{CheckOutcome, Event, Reporter, RunSummary};

pub struct GithubReporter {
    step_summary: Option<PathBuf>,
}

impl GithubReporter {
    /// The reporter, when the environment says this is a GitHub Actions job.
    pub fn from_env() -> Option<GithubReporter> {
        (std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")).then(|| GithubReporter {
            step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// A workflow command's message: `%`, CR and LF escaped (GitHub's toolkit rules).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value: the message's escapes, and `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The annotation lines for a finished run.
pub fn annotations(run: &RunSummary) -> Vec<String> {
    let file = escape_property(&run.source);
    let mut out = Vec::new();
    for check in run.checks.iter().filter(|c| c.outcome == CheckOutcome::Failed) {
        let line = check.line.map(|l| format!(",line={l}")).unwrap_or_default();
        let title = escape_property(&format!("{}::{} failed", run.scenario, check.name));
        let message = escape_data(check.message.as_deref().unwrap_or("failed"));
        out.push(format!("::error file={file}{line},title={title}::{message}"));
    }
    if let Some(error) = &run.error
        && run.checks.iter().all(|c| c.outcome != CheckOutcome::Failed)
    {
        let title = escape_property(&format!("{} (run {}) failed", run.scenario, run.run_id));
        out.push(format!("::error file={file},title={title}::{}", escape_data(error)));
    }
    out
}

/// A table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The job summary section of a finished run (Markdown).
pub fn step_summary(run: &RunSummary) -> String {
    let mark = |o: CheckOutcome| match o {
        CheckOutcome::Passed => "✅ passed",
        CheckOutcome::Failed => "❌ failed",
        CheckOutcome::Ignored => "⏭️ ignored",
        CheckOutcome::Unsupported => "⛔ unsupported",
    };
    let mut md = format!(
        "### swarm-e2e: `{}` on {} (run `{}`, exit {})\n\n",
        run.scenario, run.target, run.run_id, run.exit_code
    );
    if let Some(e) = &run.error {
        md.push_str(&format!("**{}**\n\n", cell(e)));
    }
    if !run.checks.is_empty() {
        md.push_str("| check | outcome | seconds | cause or reason |\n|---|---|---|---|\n");
        for c in &run.checks {
            let why = c
                .cause()
                .map(str::to_string)
                .or_else(|| {
                    c.flaky().then(|| {
                        format!(
                            "passed on attempt {}; attempt 1: {}",
                            c.attempts(),
                            c.failed_attempts[0]
                        )
                    })
                })
                .or_else(|| c.message.as_deref().and_then(|m| m.lines().next()).map(str::to_string))
                .unwrap_or_default();
            md.push_str(&format!(
                "| {} | {} | {:.1} | {} |\n",
                cell(&c.name),
                if c.flaky() { "⚠️ flaky" } else { mark(c.outcome) },
                c.duration.as_secs_f64(),
                cell(&why)
            ));
        }
        md.push('\n');
    }
    if !run.timings.phases.is_empty() {
        md.push_str("| phase | seconds |\n|---|---|\n");
        for (phase, d) in &run.timings.phases {
            md.push_str(&format!("| {} | {:.2} |\n", phase.as_str(), d.as_secs_f64()));
        }
        md.push_str(&format!(
            "| **total** | **{:.2}** |\n\n",
            run.timings.total().as_secs_f64()
        ));
    }
    md
}

impl Reporter for GithubReporter {
    fn event(&self, event: &Event) {
        let Event::RunFinished { summary } = event else {
            return;
        };
        // Workflow commands are read from the job's output; a closed pipe is no error.
        let mut out = std::io::stdout().lock();
        for line in annotations(summary) {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        if let Some(path) = &self.step_summary {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(step_summary(summary).as_bytes()));
            if let Err(e) = written {
                tracing::warn!("writing the job summary to {}: {e}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_properties_are_escaped() {
        assert_eq!(escape_data("50% lost\nnext"), "50%25 lost%0Anext");
        assert_eq!(escape_property("a::b, c"), "a%3A%3Ab%2C c");
    }
}
