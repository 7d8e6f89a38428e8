//! The run's timeline as inline SVG: the phases one after another, and under them every
//! check as a bar from its start to its end, so what ran at once and the slow step are
//! seen at a glance. Each bar carries its outcome's symbol and its seconds as text.

use std::fmt::Write as _;

use super::{check_outcome, esc, outcome_label};
use crate::report::{Phase, RunSummary};

const WIDTH: f64 = 1000.0;
const LABEL_W: f64 = 230.0;
const ROW: f64 = 18.0;

pub fn draw(run: &RunSummary) -> String {
    let total = run.timings.total().as_secs_f64();
    if total <= 0.0 {
        return "<p>No phase finished.</p>".into();
    }
    let scale = (WIDTH - LABEL_W - 70.0) / total;
    let checks_start: f64 = run
        .timings
        .phases
        .iter()
        .take_while(|(p, _)| *p != Phase::Checks)
        .map(|(_, d)| d.as_secs_f64())
        .sum();
    let height = 30.0 + ROW * (2 + run.checks.len()) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"{WIDTH}\" role=\"img\" \
aria-label=\"timeline: {} phases, {} checks, {total:.1} s\">",
        run.timings.phases.len(),
        run.checks.len()
    );
    let colours = ["#8c959f", "#6e7781", "#57606a", "#0969da", "#8c959f"];
    let mut at = 0.0;
    for (i, (phase, d)) in run.timings.phases.iter().enumerate() {
        let secs = d.as_secs_f64();
        let x = LABEL_W + at * scale;
        let w = (secs * scale).max(1.0);
        let _ = write!(
            svg,
            "<g><title>{name}: {secs:.2} s (from {at:.2} s)</title><rect x=\"{x:.1}\" y=\"6\" width=\"{w:.1}\" height=\"{h}\" fill=\"{c}\"/>\
<text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"10\" fill=\"#fff\">{label}</text></g>",
            name = phase.as_str(),
            h = ROW - 2.0,
            c = colours[i % colours.len()],
            tx = x + 3.0,
            ty = 6.0 + ROW - 6.0,
            label = if w > 60.0 { phase.as_str() } else { "" },
        );
        at += secs;
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{}\" font-size=\"11\" font-weight=\"700\">phases ({total:.1} s)</text>",
        6.0 + ROW - 5.0
    );
    for (i, c) in run.checks.iter().enumerate() {
        let y = 10.0 + ROW * (i + 2) as f64;
        let start = checks_start + c.started.as_secs_f64();
        let secs = c.duration.as_secs_f64();
        let outcome = check_outcome(c);
        let (word, symbol) = outcome_label(outcome);
        let fill = match word {
            "passed" => "#1a7f37",
            "failed" => "#cf222e",
            "flaky" => "#9a6700",
            _ => "#8c959f",
        };
        let mut name = c.name.clone();
        if name.chars().count() > 32 {
            name = name.chars().take(31).collect::<String>() + "…";
        }
        let x = LABEL_W + start * scale;
        let w = (secs * scale).max(2.0);
        // A disruptive check's wait for its turn: a dashed line before its bar.
        let queued = c.queued.as_secs_f64();
        let (turn, turn_words) = if queued >= 0.05 {
            (
                format!(
                    "<line x1=\"{:.1}\" x2=\"{x:.1}\" y1=\"{my:.1}\" y2=\"{my:.1}\" stroke=\"#8c959f\" stroke-dasharray=\"3 3\"/>",
                    x - queued * scale,
                    my = y + (ROW - 5.0) / 2.0
                ),
                format!(", after {queued:.1} s waiting for its turn"),
            )
        } else {
            (String::new(), String::new())
        };
        let _ = write!(
            svg,
            "<g data-outcome=\"{word}\"><title>{full} — {word}, {start:.2} s to {end:.2} s ({secs:.2} s){turn_words}</title>\
<text x=\"4\" y=\"{ty:.0}\" font-size=\"11\">{symbol} {name}</text>{turn}\
<rect x=\"{x:.1}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{fill}\" rx=\"2\"/>\
<text x=\"{lx:.1}\" y=\"{ty:.0}\" font-size=\"10\" fill=\"#57606a\">{secs:.1} s</text></g>",
            full = esc(&c.name),
            end = start + secs,
            ty = y + ROW - 6.0,
            h = ROW - 5.0,
            name = esc(&name),
            lx = x + w + 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}
