//! The HTML report: one self-contained page (styles, SVG and a few lines of script
//! inline; a Content-Security-Policy that lets nothing be fetched), opened from disk as
//! a CI artefact. The page of a run ([`render_runs`]) and the parts the matrix's and
//! the history's pages share (`crate::matrix::page`, `crate::history::page`). Outcomes are always a word and a
//! symbol besides a colour; filtering is CSS (`:has`), so it needs no script, and the
//! data is all in the markup: with scripts off only the render timing is lost.

pub mod cluster;
mod timeline;

use std::fmt::Write as _;
use std::path::Path;

use super::{CheckOutcome, CheckRecord, RunSummary};
use crate::exit;

/// The outcomes a run's checks are shown with, in the order of the page's filters.
pub const RUN_OUTCOMES: [&str; 5] = ["passed", "failed", "flaky", "ignored", "unsupported"];

/// How many of a run's checks ended in each of [`RUN_OUTCOMES`].
fn outcome_counts(run: &RunSummary) -> Vec<(&'static str, usize)> {
    RUN_OUTCOMES
        .iter()
        .map(|o| (*o, run.checks.iter().filter(|c| check_outcome(c) == *o).count()))
        .collect()
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How an outcome is shown: its word (also the CSS class and filter key) and symbol.
pub fn outcome_label(outcome: &str) -> (&'static str, &'static str) {
    match outcome {
        "passed" => ("passed", "✓"),
        "failed" => ("failed", "✗"),
        "flaky" => ("flaky", "≈"),
        "ignored" => ("ignored", "–"),
        "unsupported" => ("unsupported", "⊘"),
        _ => ("not-run", "·"),
    }
}

/// The outcome a check is reported with (`flaky` apart from `passed`).
pub fn check_outcome(c: &CheckRecord) -> &'static str {
    if c.flaky() { "flaky" } else { c.outcome.as_str() }
}

/// One outcome badge: symbol and word, never the colour alone.
pub fn badge(outcome: &str) -> String {
    let (word, symbol) = outcome_label(outcome);
    format!("<span class=\"badge {word}\"><span aria-hidden=\"true\">{symbol}</span> {word}</span>")
}

const STYLE: &str = r#"
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--skip:#57606a;--line:#d0d7de;--bg:#f6f8fa;font-family:system-ui,sans-serif;color:#1f2328}
body{margin:0 auto;max-width:1200px;padding:1rem 1.5rem}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid var(--line)}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg)}td:last-child,.cell{overflow-wrap:anywhere}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.9rem}.meta dt{color:var(--skip)}.meta dd{margin:0}
.badge{white-space:nowrap;font-weight:600}.passed{color:var(--ok)}.failed,.regression{color:var(--bad)}.flaky{color:var(--warn)}.ignored,.unsupported,.not-run{color:var(--skip)}
.exit-bad{color:var(--bad);font-weight:600}.exit-ok{color:var(--ok);font-weight:600}
details summary{cursor:pointer}pre{white-space:pre-wrap;background:var(--bg);padding:.5rem;margin:.3rem 0;font-size:.8rem;max-height:30rem;overflow:auto}
.filters{display:flex;gap:1rem;flex-wrap:wrap;margin:.5rem 0;font-size:.9rem}
.cause{color:var(--bad)}.near{font-size:.9em}svg{max-width:100%;height:auto}svg text{font-family:system-ui,sans-serif}
.legend{font-size:.85rem}.legend li{margin:.2rem 0}
.cell{text-align:center}.cell.regression{background:#ffebe9;font-weight:700}
.nights td.n{padding:0;width:12px;height:18px;text-align:center;font-size:.7rem}
.n.passed{background:#dafbe1}.n.failed{background:#ffcecb}.n.flaky{background:#fff1b3}.n.ignored,.n.unsupported{background:#eaeef2}
@media print{.filters{display:none}:root{--ok:#000;--bad:#000;--warn:#000;--skip:#444}.n.passed,.n.failed,.n.flaky,.n.ignored,.n.unsupported,.cell.regression{background:none}}
"#;

/// The CSS that hides rows of an outcome whose filter box is unticked: filtering with
/// scripts off. `scope` is the table's id.
pub fn filter_css(scope: &str, outcomes: &[&str]) -> String {
    outcomes
        .iter()
        .map(|o| format!("body:has(#{scope}-f-{o}:not(:checked)) #{scope} tr[data-outcome=\"{o}\"]{{display:none}}\n"))
        .collect()
}

/// Checkboxes, one per outcome present, each with its count.
pub fn filter_boxes(scope: &str, counts: &[(&str, usize)]) -> String {
    let mut out = format!("<div class=\"filters\" role=\"group\" aria-label=\"show outcomes\" id=\"{scope}-filters\">");
    for (o, n) in counts.iter().filter(|(_, n)| *n > 0) {
        let (word, symbol) = outcome_label(o);
        let _ = write!(
            out,
            "<label class=\"{word}\"><input type=\"checkbox\" id=\"{scope}-f-{word}\" checked> {symbol} {word} ({n})</label>"
        );
    }
    out + "</div>"
}

/// A whole page. Its policy forbids every fetch: no font, script, image or request
/// leaves it; only its own inline style and script run.
pub fn page(title: &str, extra_css: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"generator\" content=\"swarm-e2e {version}\">\
<title>{title}</title><style>{STYLE}{extra_css}</style></head>\n<body>\n{body}\n\
<script>document.body.dataset.renderMs=String(Math.round(performance.now()));</script>\n</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        title = esc(title),
    )
}

/// The page of one or more runs (`run --html PATH`). Artefact folders are linked
/// relative to `out`, so the page and its artefacts move together.
pub fn render_runs(runs: &[RunSummary], out: &Path) -> anyhow::Result<String> {
    let title = match runs {
        [one] => format!("swarm-e2e {} · {} · exit {}", one.scenario, one.run_id, one.exit_code),
        _ => format!("swarm-e2e · {} runs", runs.len()),
    };
    let mut body = String::new();
    let mut css = String::new();
    if runs.is_empty() {
        body.push_str("<h1>swarm-e2e</h1><p>No run finished (interrupted before the first one began).</p>");
    }
    for (i, run) in runs.iter().enumerate() {
        let scope = format!("checks{i}");
        css.push_str(&filter_css(&scope, &RUN_OUTCOMES));
        body.push_str(&run_section(run, &scope, out));
    }
    Ok(page(&title, &css, &body))
}

pub fn run_section(run: &RunSummary, scope: &str, out: &Path) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<section aria-label=\"run {id}\"><h1>{scenario} <small>run {id}</small></h1>",
        id = esc(&run.run_id),
        scenario = esc(&run.scenario)
    );
    s.push_str(&header(run, out));
    s.push_str("<h2>The cluster</h2>");
    s.push_str(&cluster::draw(run, scope));
    s.push_str("<h2>Checks</h2>");
    s.push_str(&checks_table(run, scope));
    s.push_str("<h2>Timeline</h2>");
    s.push_str(&timeline::draw(run));
    s.push_str("</section>");
    s
}

fn header(run: &RunSummary, out: &Path) -> String {
    let mut engines: Vec<&str> = run.nodes.iter().map(|n| n.engine_version.as_str()).collect();
    engines.sort();
    engines.dedup();
    let mut clis: Vec<&str> = run.stacks.iter().map(|s| s.cli_version.as_str()).collect();
    clis.sort();
    clis.dedup();
    let exit_class = if run.exit_code == exit::OK {
        "exit-ok"
    } else {
        "exit-bad"
    };
    let mut rows = vec![
        ("run id", esc(&run.run_id)),
        (
            "started",
            esc(&humantime::format_rfc3339_seconds(run.started_at).to_string()),
        ),
        ("target", esc(&run.target)),
        (
            "scenario",
            format!("{} <code>{}</code>", esc(&run.scenario), esc(&run.source)),
        ),
        (
            "engines",
            if engines.is_empty() {
                "none answered".into()
            } else {
                esc(&engines.join(", "))
            },
        ),
    ];
    if !clis.is_empty() {
        rows.push(("docker CLI", esc(&clis.join(", "))));
    }
    let total: f64 = run.timings.total().as_secs_f64();
    let summary: Vec<String> = outcome_counts(run)
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| format!("{} {n}", badge(o)))
        .collect();
    rows.extend([
        (
            "exit code",
            format!(
                "<span class=\"{exit_class}\">{} — {}</span>",
                run.exit_code,
                exit::meaning(run.exit_code)
            ),
        ),
        ("checks", summary.join(" · ")),
        ("total time", format!("{total:.1} s")),
    ]);
    if let Some(e) = &run.error {
        rows.push(("error", format!("<span class=\"cause\">{}</span>", esc(e))));
    }
    if !run.leftovers.is_empty() {
        rows.push((
            "left behind",
            format!("<span class=\"cause\">{}</span>", esc(&run.leftovers.join(", "))),
        ));
    }
    if let Some(dir) = &run.artifacts {
        let link = relative_link(dir, out);
        rows.push((
            "artefacts",
            format!("<a href=\"{}\">{}</a>", esc(&link), esc(&dir.display().to_string())),
        ));
    }
    let mut s = String::from("<dl class=\"meta\">");
    for (k, v) in rows {
        let _ = write!(s, "<dt>{k}</dt><dd>{v}</dd>");
    }
    s.push_str("</dl>");
    for stack in &run.stacks {
        let _ = write!(
            s,
            "<details><summary>stack <b>{}</b>: {} · deployed in {}</summary>",
            esc(&stack.name),
            esc(&stack.files.join(" + ")),
            stack
                .deploy_seconds
                .map_or_else(|| "— (failed)".to_string(), |d| format!("{d:.2} s"))
        );
        if let Some(e) = &stack.error {
            let _ = write!(s, "<p class=\"cause\">{}</p>", esc(e));
        }
        if !stack.cli_messages.is_empty() {
            let _ = write!(s, "<pre>{}</pre>", esc(&stack.cli_messages.join("\n")));
        }
        s.push_str("</details>");
    }
    s
}

/// `target` relative to the folder of `page`: both made absolute against the working
/// folder, so a page and its artefacts can move together.
pub fn relative_link(target: &Path, page: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    let target = abs(target);
    let from = abs(page).parent().map(Path::to_path_buf).unwrap_or_default();
    let t: Vec<_> = target.components().collect();
    let f: Vec<_> = from.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); f.len() - common];
    parts.extend(t[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/") + "/"
    }
}

fn checks_table(run: &RunSummary, scope: &str) -> String {
    if run.checks.is_empty() {
        return "<p>No check ran.</p>".into();
    }
    let mut s = filter_boxes(scope, &outcome_counts(run));
    let _ = write!(
        s,
        "<table id=\"{scope}\"><thead><tr><th scope=\"col\">outcome</th><th scope=\"col\">check</th>\
<th scope=\"col\">kind</th><th scope=\"col\" class=\"num\">seconds</th><th scope=\"col\" class=\"num\">attempts</th>\
<th scope=\"col\">cause / message</th></tr></thead><tbody>"
    );
    // Failures first, then as the scenario lists them.
    let mut checks: Vec<&CheckRecord> = run.checks.iter().collect();
    checks.sort_by_key(|c| match check_outcome(c) {
        "failed" => 0,
        "flaky" => 1,
        _ => 2,
    });
    for c in checks {
        let outcome = check_outcome(c);
        let detail = match (c.cause(), &c.message) {
            (Some(cause), Some(m)) => format!(
                "<span class=\"cause\">{}</span><details><summary>the failure's output</summary><pre>{}</pre></details>",
                esc(cause),
                esc(m)
            ),
            (None, Some(m)) => {
                let first = m.lines().next().unwrap_or_default();
                if m.lines().count() > 1 {
                    format!(
                        "{}<details><summary>all of it</summary><pre>{}</pre></details>",
                        esc(first),
                        esc(m)
                    )
                } else {
                    esc(first)
                }
            }
            _ => String::new(),
        };
        let earlier = if c.failed_attempts.is_empty() {
            String::new()
        } else {
            format!(
                "<details><summary>{} earlier attempt(s) failed</summary><pre>{}</pre></details>",
                c.failed_attempts.len(),
                esc(&c.failed_attempts.join("\n---\n"))
            )
        };
        let (wait_title, near) = slowest_wait(c);
        let _ = write!(
            s,
            "<tr data-outcome=\"{outcome}\" id=\"check-{anchor}\"><td>{badge}</td><td>{name}</td><td><code>{kind}</code></td>\
<td class=\"num\"{wait_title}>{secs:.2}</td><td class=\"num\">{attempts}</td><td>{detail}{near}{earlier}</td></tr>",
            anchor = esc(&c.name),
            badge = badge(outcome),
            name = esc(&c.name),
            kind = esc(&c.kind),
            secs = c.duration.as_secs_f64(),
            attempts = c.attempts(),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// A check's longest wait: always as the seconds cell's tooltip, and said in words when
/// a check that passed needed more than half of a bound (the next flake).
fn slowest_wait(c: &CheckRecord) -> (String, String) {
    let Some(w) = &c.slowest_wait else {
        return (String::new(), String::new());
    };
    let words = format!(
        "longest wait {:.1} s of its {:.0} s bound ({})",
        w.seconds, w.bound_seconds, w.at
    );
    let near = if c.outcome == CheckOutcome::Passed && w.seconds > w.bound_seconds / 2.0 {
        format!("<div class=\"near\">⚠ {}</div>", esc(&words))
    } else {
        String::new()
    };
    (format!(" title=\"{}\"", esc(&words)), near)
}

#[cfg(test)]
mod tests;
