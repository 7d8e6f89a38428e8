//! The matrix page: the check × engine grid (regressions marked in words, not only in
//! colour; a failure's message folded in its cell), then each engine's run with its
//! phase times.

use std::fmt::Write as _;

use std::path::Path;

use super::Comparison;
use crate::exit;
use crate::report::html::{RUN_OUTCOMES, badge, esc, filter_css, page, run_section};
use crate::report::{Phase, RunSummary};

/// The page; `runs` are the matrix's runs (each drawn below the grid), `out` where the
/// page goes (artefact links are relative to it).
pub fn render(m: &Comparison, runs: &[RunSummary], out: &Path) -> String {
    let mut body = format!(
        "<h1>swarm-e2e matrix <small>{} engine(s), baseline {}</small></h1><dl class=\"meta\">\
<dt>engines</dt><dd>{}</dd><dt>regressions</dt><dd class=\"{}\">{}</dd><dt>exit code</dt><dd>{} — {}</dd></dl>",
        m.engines.len(),
        esc(&m.baseline),
        esc(&m.engines.join(", ")),
        if m.regressions > 0 { "exit-bad" } else { "exit-ok" },
        if m.regressions > 0 {
            format!(
                "▼ {} (a check that passed on {} failed elsewhere)",
                m.regressions,
                esc(&m.baseline)
            )
        } else {
            "none".into()
        },
        m.exit_code(),
        exit::meaning(m.exit_code()),
    );
    body.push_str(&grid(m));
    body.push_str("<h2>Runs and phase times (seconds)</h2><table><thead><tr><th scope=\"col\">scenario</th><th scope=\"col\">engine</th><th scope=\"col\">run</th><th scope=\"col\">exit</th>");
    for p in Phase::ALL {
        let _ = write!(body, "<th scope=\"col\" class=\"num\">{}</th>", p.as_str());
    }
    body.push_str(
        "<th scope=\"col\" class=\"num\">total</th><th scope=\"col\">engines reported</th></tr></thead><tbody>",
    );
    for r in &m.runs {
        let mut versions = r.engine_versions.clone();
        versions.dedup();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td title=\"{}\">{}</td>",
            esc(&r.scenario),
            esc(&r.engine),
            esc(&r.run_id),
            exit::meaning(r.exit_code),
            r.exit_code
        );
        for p in Phase::ALL {
            let v = r
                .phases
                .get(p.as_str())
                .map_or_else(|| "—".to_string(), |s| format!("{s:.1}"));
            let _ = write!(body, "<td class=\"num\">{v}</td>");
        }
        let _ = write!(
            body,
            "<td class=\"num\">{:.1}</td><td>{}{}</td></tr>",
            r.seconds,
            esc(&versions.join(", ")),
            r.error
                .as_deref()
                .map(|e| format!("<div class=\"cause\">{}</div>", esc(e)))
                .unwrap_or_default()
        );
    }
    body.push_str("</tbody></table><h2>Each run</h2>");
    let mut css = String::new();
    for (i, run) in runs.iter().enumerate() {
        let scope = format!("run{i}");
        css.push_str(&filter_css(&scope, &RUN_OUTCOMES));
        let failed = run.exit_code != exit::OK;
        let _ = write!(
            body,
            "<details{}><summary>{} · exit {} — {}</summary>{}</details>",
            if failed { " open" } else { "" },
            esc(&run.scenario),
            run.exit_code,
            exit::meaning(run.exit_code),
            run_section(run, &scope, out)
        );
    }
    page(
        &format!("swarm-e2e matrix · {} regression(s)", m.regressions),
        &css,
        &body,
    )
}

/// The check × engine table; a regression cell says so in words.
fn grid(m: &Comparison) -> String {
    let mut body = String::new();
    body.push_str(
        "<h2>Checks by engine</h2><table class=\"grid\"><thead><tr><th scope=\"col\">scenario</th><th scope=\"col\">check</th>",
    );
    for e in &m.engines {
        let _ = write!(
            body,
            "<th scope=\"col\">{}{}</th>",
            esc(e),
            if *e == m.baseline { " (baseline)" } else { "" }
        );
    }
    body.push_str("</tr></thead><tbody>");
    for r in &m.rows {
        let _ = write!(
            body,
            "<tr{}><td>{}</td><th scope=\"row\">{}</th>",
            if r.regressions.is_empty() {
                ""
            } else {
                " class=\"has-regression\""
            },
            esc(&r.scenario),
            esc(&r.check)
        );
        for e in &m.engines {
            let o = &r.outcomes[e];
            let outcome = o.outcome.as_str();
            let regression = r.regressions.contains(e);
            let mut cell = badge(outcome);
            if matches!(outcome, "passed" | "failed") {
                let _ = write!(cell, " <small>{:.1} s</small>", o.seconds);
            }
            if regression {
                cell.push_str("<br><b class=\"regression\">▼ regression</b>");
            }
            if let Some(msg) = o.message.as_deref().filter(|_| outcome != "passed") {
                let first = msg.lines().next().unwrap_or_default();
                let _ = write!(
                    cell,
                    "<details><summary>{}</summary><pre>{}</pre></details>",
                    esc(&first.chars().take(60).collect::<String>()),
                    esc(msg)
                );
            }
            let _ = write!(
                body,
                "<td class=\"cell{}\" data-engine=\"{}\" data-outcome=\"{}\">{cell}</td>",
                if regression { " regression" } else { "" },
                esc(e),
                esc(outcome)
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    body
}
