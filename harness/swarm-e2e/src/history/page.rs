//! The history page (`swarm-e2e report --html`): one row per check, the flakiest first;
//! a cell per night with its outcome's symbol (and its word in the cell's title and in
//! the table's text for screen readers); the duration trend as a small line; for a check
//! failing now, the night its failures began and that night's engines.

use std::fmt::Write as _;

use super::{CheckHistory, History};
use crate::report::html::{esc, filter_boxes, filter_css, outcome_label, page};

/// A check's state now, the key of the page's filter.
fn state(c: &CheckHistory) -> &'static str {
    if c.failing_since.is_some() {
        "failed"
    } else if c.flakiness() > 0 {
        "flaky"
    } else if c.outcomes.iter().any(|o| o == "passed") {
        "passed"
    } else {
        "not-run"
    }
}

pub fn render(h: &History) -> String {
    let mut body = format!(
        "<h1>swarm-e2e history <small>{} night(s), {} check(s)</small></h1>",
        h.nights.len(),
        h.checks.len()
    );
    if let (Some(first), Some(last)) = (h.nights.first(), h.nights.last()) {
        let _ = write!(
            body,
            "<dl class=\"meta\"><dt>from</dt><dd>{}</dd><dt>to</dt><dd>{}</dd><dt>failing now</dt><dd>{}</dd><dt>flaky or changing</dt><dd>{}</dd></dl>",
            esc(&humantime::format_rfc3339_seconds(first.at).to_string()),
            esc(&humantime::format_rfc3339_seconds(last.at).to_string()),
            h.checks.iter().filter(|c| c.failing_since.is_some()).count(),
            h.checks.iter().filter(|c| c.flakiness() > 0).count(),
        );
    } else {
        body.push_str("<p>No report was read.</p>");
    }
    let states = ["failed", "flaky", "passed", "not-run"];
    let counts: Vec<(&str, usize)> = states
        .iter()
        .map(|s| (*s, h.checks.iter().filter(|c| state(c) == *s).count()))
        .collect();
    body.push_str(&filter_boxes("history", &counts));
    body.push_str(
        "<table id=\"history\" class=\"nights\"><thead><tr><th scope=\"col\">check</th><th scope=\"col\" class=\"num\" title=\"nights passed only on a retry + changes between passing and failing\">flaky</th>\
<th scope=\"col\">now</th>",
    );
    for (i, n) in h.nights.iter().enumerate() {
        let _ = write!(
            body,
            "<th scope=\"col\" class=\"n\" title=\"{} · {} · {} · engines {}\">{}</th>",
            esc(&n.id),
            esc(&humantime::format_rfc3339_seconds(n.at).to_string()),
            esc(&n.scenario),
            esc(&n.engines.join(", ")),
            i + 1
        );
    }
    body.push_str("<th scope=\"col\">seconds</th></tr></thead><tbody>");
    for c in &h.checks {
        row(&mut body, h, c);
    }
    body.push_str("</tbody></table><h2>Nights</h2><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">run</th><th scope=\"col\">started</th><th scope=\"col\">scenario</th><th scope=\"col\">engines</th><th scope=\"col\">exit</th><th scope=\"col\">report</th></tr></thead><tbody>");
    for (i, n) in h.nights.iter().enumerate() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            i + 1,
            esc(&n.id),
            esc(&humantime::format_rfc3339_seconds(n.at).to_string()),
            esc(&n.scenario),
            esc(&n.engines.join(", ")),
            n.exit_code,
            esc(&n.source.display().to_string())
        );
    }
    body.push_str("</tbody></table>");
    page(
        &format!("swarm-e2e history · {} nights", h.nights.len()),
        &(filter_css("history", &states)
            + "body{max-width:none}table.nights{width:auto}.nights th[scope=row],.nights td:nth-child(3),.nights td:last-child{white-space:nowrap}.nights th[scope=row] small{font-weight:400;color:#57606a}"),
        &body,
    )
}

fn row(body: &mut String, h: &History, c: &CheckHistory) {
    let now = match c.failing_since {
        Some(i) => {
            let n = &h.nights[i];
            format!(
                "<span class=\"badge failed\">✗ failing</span> since night {} <small>({}, {})</small>",
                i + 1,
                esc(&humantime::format_rfc3339_seconds(n.at).to_string()[..10]),
                esc(&n.engines.join(", "))
            )
        }
        None if c.flakiness() > 0 => "<span class=\"badge flaky\">≈ unsteady</span>".into(),
        None => String::new(),
    };
    let _ = write!(
        body,
        "<tr data-outcome=\"{}\"><th scope=\"row\">{} <small>{}</small></th><td class=\"num\">{}</td><td>{now}</td>",
        state(c),
        esc(&c.check),
        esc(&c.scenario),
        c.flakiness()
    );
    for (i, o) in c.outcomes.iter().enumerate() {
        let (word, symbol) = outcome_label(o);
        let secs = c.seconds[i].map(|s| format!(", {s:.1} s")).unwrap_or_default();
        let _ = write!(
            body,
            "<td class=\"n {word}\" title=\"night {}: {word}{secs}\"><span aria-label=\"{word}\">{symbol}</span></td>",
            i + 1
        );
    }
    let _ = write!(body, "<td>{}</td></tr>", trend(&c.seconds));
}

/// The duration per night as a small line (gaps where it did not run), with the last
/// and the slowest value in words.
fn trend(seconds: &[Option<f64>]) -> String {
    let ran: Vec<(usize, f64)> = seconds
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Some((i, (*s)?)))
        .collect();
    let Some(max) = ran.iter().map(|(_, s)| *s).reduce(f64::max) else {
        return "—".into();
    };
    let (w, hgt) = (120.0, 18.0);
    let step = w / seconds.len().max(2).saturating_sub(1) as f64;
    let points: Vec<String> = ran
        .iter()
        .map(|(i, s)| {
            format!(
                "{:.1},{:.1}",
                *i as f64 * step,
                hgt - 1.0 - if max > 0.0 { s / max * (hgt - 2.0) } else { 0.0 }
            )
        })
        .collect();
    let last = ran.last().map_or(0.0, |(_, s)| *s);
    format!(
        "<svg viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" height=\"{hgt}\" aria-hidden=\"true\"><polyline points=\"{}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\"/></svg> <small>last {last:.1} s, max {max:.1} s</small>",
        points.join(" ")
    )
}
