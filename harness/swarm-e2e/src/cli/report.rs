//! `swarm-e2e report`: a history of many JSON reports (the nightlies'), as a table, a
//! JSON document or a self-contained HTML page.

use std::path::PathBuf;

use crate::exit::{self, Failure};
use crate::history;
use crate::report::html::outcome_label;

pub const REPORT_HELP: &str = "Examples:
  swarm-e2e report nightly-reports/ --html history.html
  swarm-e2e report reports/*.json matrix.json --format json | jq '.checks[0]'

Reads run reports (`run --json`, schema 1 and 2) and matrix reports (`matrix --json`);
folders are searched for *.json. Each run is a night (each engine's run of a matrix
too), ordered by its start (the file's time for reports older than that). Checks are listed the flakiest first: nights that passed only
on a retry, plus changes between passing and failing. A check failing now says the
night its failures began and that night's engines.";

#[derive(clap::Args)]
pub struct ReportArgs {
    /// JSON reports, or folders holding them.
    #[arg(required = true, value_name = "FILES-OR-DIRS")]
    paths: Vec<PathBuf>,
    /// Write the history as one self-contained HTML page.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// What goes to stdout: `human` (a line per check) or `json` (one document).
    #[arg(long, value_enum, default_value_t = super::listing::Format::Human)]
    format: super::listing::Format,
}

pub fn main(a: ReportArgs) -> Result<i32, Failure> {
    let files = history::report_files(&a.paths).map_err(|e| {
        Failure::invalid_input(format!("{e:#}")).with_hint("give JSON reports or folders that hold them")
    })?;
    if files.is_empty() {
        return Err(Failure::invalid_input("no *.json report found there")
            .with_hint("write reports with `swarm-e2e run --json PATH` or `matrix --json PATH`"));
    }
    let h = history::read(&files).map_err(|e| {
        let text = format!("{e:#}");
        let (error, hint) = match text.split_once("\nhint: ") {
            Some((e, h)) => (e.to_string(), h.to_string()),
            None => (text, "give only swarm-e2e run or matrix reports".to_string()),
        };
        Failure::invalid_input(error).with_hint(hint)
    })?;
    match a.format {
        super::listing::Format::Json => super::listing::print_json(&h),
        super::listing::Format::Human => super::say(&table(&h)),
    }
    if let Some(path) = &a.html {
        let page = history::page::render(&h);
        crate::report::write(path, &page).map_err(|e| Failure::infrastructure(format!("{e:#}")))?;
        eprintln!(
            "report: {} ({} nights, {} checks)",
            path.display(),
            h.nights.len(),
            h.checks.len()
        );
    }
    Ok(exit::OK)
}

fn table(h: &history::History) -> String {
    let width = h
        .checks
        .iter()
        .map(|c| c.scenario.len() + c.check.len() + 2)
        .max()
        .unwrap_or(5)
        .max(5);
    let files: std::collections::BTreeSet<_> = h.nights.iter().map(|n| &n.source).collect();
    let mut out = format!("{} night(s) from {} report(s)\n", h.nights.len(), files.len());
    out.push_str(&format!("{:<width$}  {:>5}  nights (oldest first)\n", "check", "flaky"));
    for c in &h.checks {
        let nights: String = c.outcomes.iter().map(|o| outcome_label(o).1).collect();
        let now = c.failing_since.map_or(String::new(), |i| {
            let n = &h.nights[i];
            format!(
                "  failing since night {} ({}, engines {})",
                i + 1,
                &humantime::format_rfc3339_seconds(n.at).to_string()[..10],
                n.engines.join(", ")
            )
        });
        out.push_str(&format!(
            "{:<width$}  {:>5}  {nights}{now}\n",
            format!("{}::{}", c.scenario, c.check),
            c.flakiness()
        ));
    }
    out
}
