//! The cluster drawn as inline SVG: nodes with role, engine version and declared labels,
//! the overlay networks, and every failing check's cause on it (a broken path as a red
//! edge with its port and direction, a node gone, paused or drained outlined with the
//! word). Up to [`CIRCLE_MAX`] nodes sit on a circle as cards; more are grouped (the
//! managers as cards, the workers as a grid of small squares) so 100 nodes stay
//! readable and the page small. Every node is also in a table below the drawing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{check_outcome, esc, outcome_label};
use crate::report::cause::CausePath;
use crate::report::{NodeRecord, RunSummary};

/// Up to this many nodes are drawn as cards on a circle.
pub const CIRCLE_MAX: usize = 12;

const CARD_W: f64 = 150.0;
const CARD_H: f64 = 70.0;
const SQUARE: f64 = 26.0;

/// Where a node is drawn: its centre and half extents.
#[derive(Clone, Copy)]
struct Place {
    x: f64,
    y: f64,
    hw: f64,
    hh: f64,
}

/// A broken path between two nodes, with every failing check that traced to it.
struct Edge<'a> {
    a: &'a str,
    b: &'a str,
    directed: bool,
    port: Option<&'a str>,
    checks: Vec<(&'a str, &'a str)>,
}

/// Node name -> the checks that ran a probe on it or acted on it, with their outcome.
type ChecksHere<'a> = BTreeMap<&'a str, Vec<(&'a str, &'static str)>>;

/// The drawing, its legend and the node table. `scope` keeps SVG ids unique when a page
/// holds several runs.
pub fn draw(run: &RunSummary, scope: &str) -> String {
    // The nodes that answered, then those declared that never did (a run that failed
    // before its engines were ready still shows which node broke).
    let mut nodes = run.nodes.clone();
    let silent: Vec<NodeRecord> = run
        .declared_nodes
        .iter()
        .filter(|d| !run.nodes.iter().any(|n| n.name == d.name))
        .map(|d| NodeRecord {
            engine_version: format!("no answer (asked {})", d.engine_version),
            ..d.clone()
        })
        .collect();
    nodes.extend(silent.iter().cloned());
    if nodes.is_empty() {
        return "<p>No node was provisioned.</p>".into();
    }
    let mut causes: Vec<(&str, &str, CausePath)> = run
        .checks
        .iter()
        .filter(|c| check_outcome(c) == "failed")
        .filter_map(|c| Some((c.name.as_str(), c.cause()?, c.cause_path(&nodes)?)))
        .collect();
    // A run that failed before its checks: its error is the cause.
    if let Some(error) = run.error.as_deref().filter(|_| run.checks.is_empty()) {
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        causes.push(("the run", error, crate::report::cause::read(error, &names)));
    }
    let mut here: ChecksHere = BTreeMap::new();
    for c in &run.checks {
        for node in &c.nodes {
            here.entry(node.as_str())
                .or_default()
                .push((c.name.as_str(), check_outcome(c)));
        }
    }
    // The scenario's overlays, then each stack's (the CLI creates those).
    let networks: Vec<String> = (run.networks.iter().cloned())
        .chain(run.stacks.iter().map(|s| format!("stack {}'s networks", s.name)))
        .collect();
    let (places, width, height, mut svg) = if nodes.len() <= CIRCLE_MAX {
        circle(&nodes, &networks, &here)
    } else {
        grouped(&nodes, &networks, &here)
    };
    let edges = edges(&causes);
    let mut marked: BTreeMap<&str, &str> = BTreeMap::new();
    for (_, _, p) in &causes {
        if let (Some(state), Some(node)) = (p.node_state.as_deref(), p.nodes.first()) {
            marked.entry(node.as_str()).or_insert(state);
        } else if p.kind == "node"
            && let Some(node) = p.nodes.first()
        {
            marked.entry(node.as_str()).or_insert("named by a failure");
        }
    }
    for n in &silent {
        marked.entry(n.name.as_str()).or_insert("no answer");
    }
    draw_marks(&mut svg, &places, &marked);
    draw_edges(&mut svg, &places, &edges, scope);
    let mut out = format!(
        "<figure class=\"cluster\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" role=\"img\" aria-label=\"the cluster: {n} nodes{broken}\">\
<defs><marker id=\"{scope}-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0 0L10 5L0 10z\" fill=\"#cf222e\"/></marker></defs>{svg}</svg>",
        n = nodes.len(),
        broken = if edges.is_empty() && marked.is_empty() {
            String::new()
        } else {
            format!(", {} broken path(s), {} node(s) in trouble", edges.len(), marked.len())
        },
    );
    if !causes.is_empty() {
        out.push_str("<figcaption><ul class=\"legend\">");
        for (name, cause, _) in &causes {
            let who = if *name == "the run" {
                "✗ the run".to_string()
            } else {
                format!("<a href=\"#check-{a}\">✗ {a}</a>", a = esc(name))
            };
            let _ = write!(out, "<li class=\"cause\">{who}: {}</li>", esc(cause));
        }
        out.push_str("</ul></figcaption>");
    }
    out.push_str("</figure>");
    out.push_str(&node_table(&nodes, &marked, &here));
    out
}

/// Nodes in trouble outlined (dashed) with the word for what became of them.
fn draw_marks(svg: &mut String, places: &BTreeMap<&str, Place>, marked: &BTreeMap<&str, &str>) {
    for (node, state) in marked {
        if let Some(p) = places.get(*node) {
            let _ = write!(
                svg,
                "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"{:.0}\" height=\"{:.0}\" rx=\"6\" fill=\"none\" stroke=\"#cf222e\" stroke-width=\"3\" stroke-dasharray=\"6 3\"><title>{} — {}</title></rect>\
<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"#cf222e\" text-anchor=\"middle\" font-weight=\"700\">⚠ {}</text>",
                p.x - p.hw - 3.0,
                p.y - p.hh - 3.0,
                2.0 * p.hw + 6.0,
                2.0 * p.hh + 6.0,
                esc(node),
                esc(state),
                p.x,
                p.y + p.hh + 14.0,
                esc(state)
            );
        }
    }
}

/// Broken paths as red lines between their nodes (arrows when directed), labelled
/// with the port and the checks, both ends outlined.
fn draw_edges(svg: &mut String, places: &BTreeMap<&str, Place>, edges: &[Edge], scope: &str) {
    for edge in edges {
        let (Some(pa), Some(pb)) = (places.get(edge.a), places.get(edge.b)) else {
            continue;
        };
        // The ends outlined too: among 100 squares a line alone is easy to lose.
        for p in [pa, pb] {
            let _ = write!(
                svg,
                "<rect x=\"{:.0}\" y=\"{:.0}\" width=\"{:.0}\" height=\"{:.0}\" rx=\"4\" fill=\"none\" stroke=\"#cf222e\" stroke-width=\"2\"/>",
                p.x - p.hw - 1.0,
                p.y - p.hh - 1.0,
                2.0 * p.hw + 2.0,
                2.0 * p.hh + 2.0
            );
        }
        let (x1, y1) = border(*pa, pb.x, pb.y);
        let (x2, y2) = border(*pb, pa.x, pa.y);
        let marker = if edge.directed {
            format!(" marker-end=\"url(#{scope}-arrow)\"")
        } else {
            String::new()
        };
        let names: Vec<&str> = edge.checks.iter().map(|(n, _)| *n).collect();
        let title: Vec<String> = edge.checks.iter().map(|(n, c)| format!("{n}: {c}")).collect();
        let _ = write!(
            svg,
            "<g class=\"broken-path\" data-from=\"{a}\" data-to=\"{b}\"><title>{title}</title>\
<line x1=\"{x1:.0}\" y1=\"{y1:.0}\" x2=\"{x2:.0}\" y2=\"{y2:.0}\" stroke=\"#cf222e\" stroke-width=\"3\"{marker}/>\
<text x=\"{mx:.0}\" y=\"{my:.0}\" font-size=\"12\" fill=\"#cf222e\" text-anchor=\"middle\" font-weight=\"700\" paint-order=\"stroke\" stroke=\"#fff\" stroke-width=\"4\">✗ {port} {checks}</text></g>",
            a = esc(edge.a),
            b = esc(edge.b),
            title = esc(&title.join("\n")),
            mx = (x1 + x2) / 2.0,
            my = (y1 + y2) / 2.0 - 6.0,
            port = esc(edge.port.unwrap_or("")),
            checks = esc(&if names.len() == 1 {
                names[0].to_string()
            } else {
                format!("{} checks", names.len())
            }),
        );
    }
}

/// Up to [`CIRCLE_MAX`] nodes as cards on a circle, the networks in the middle.
fn circle<'a>(
    nodes: &'a [NodeRecord],
    networks: &[String],
    here: &ChecksHere,
) -> (BTreeMap<&'a str, Place>, f64, f64, String) {
    let n = nodes.len();
    let (width, height) = (760.0, if n <= 3 { 360.0 } else { 470.0 });
    let (cx, cy) = (width / 2.0, height / 2.0);
    let (rx, ry) = (width / 2.0 - CARD_W / 2.0 - 20.0, height / 2.0 - CARD_H / 2.0 - 24.0);
    let mut svg = String::new();
    let mut places = BTreeMap::new();
    let networks = if networks.is_empty() {
        "no overlay network declared".to_string()
    } else {
        format!("overlay: {}", networks.join(", "))
    };
    let _ = write!(
        svg,
        "<ellipse cx=\"{cx}\" cy=\"{cy}\" rx=\"{:.0}\" ry=\"{:.0}\" fill=\"#f6f8fa\" stroke=\"#d0d7de\" stroke-dasharray=\"4 4\"/>\
<text x=\"{cx}\" y=\"{cy}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>",
        rx * 0.55,
        ry * 0.45,
        esc(&networks)
    );
    for (i, node) in nodes.iter().enumerate() {
        let angle = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::TAU / n as f64;
        let place = Place {
            x: cx + rx * angle.cos(),
            y: cy + ry * angle.sin(),
            hw: CARD_W / 2.0,
            hh: CARD_H / 2.0,
        };
        svg.push_str(&card(node, place, here));
        places.insert(node.name.as_str(), place);
    }
    (places, width, height, svg)
}

/// Many nodes: the managers as cards in a row, the workers as a grid of squares (the
/// name's last part inside, everything in its tooltip and in the table).
fn grouped<'a>(
    nodes: &'a [NodeRecord],
    networks: &[String],
    here: &ChecksHere,
) -> (BTreeMap<&'a str, Place>, f64, f64, String) {
    let width = 1000.0;
    let mut svg = String::new();
    let mut places = BTreeMap::new();
    let managers: Vec<_> = nodes.iter().filter(|n| n.role == "manager").collect();
    let workers: Vec<_> = nodes.iter().filter(|n| n.role != "manager").collect();
    let networks = if networks.is_empty() {
        String::new()
    } else {
        format!(" · overlay: {}", networks.join(", "))
    };
    let _ = write!(
        svg,
        "<text x=\"10\" y=\"18\" font-size=\"13\" fill=\"#57606a\">{} manager(s), {} worker(s){}</text>",
        managers.len(),
        workers.len(),
        esc(&networks)
    );
    let per_row = ((width - 20.0) / (CARD_W + 12.0)).floor().max(1.0) as usize;
    for (i, node) in managers.iter().enumerate() {
        let place = Place {
            x: 10.0 + CARD_W / 2.0 + (i % per_row) as f64 * (CARD_W + 12.0),
            y: 34.0 + CARD_H / 2.0 + (i / per_row) as f64 * (CARD_H + 22.0),
            hw: CARD_W / 2.0,
            hh: CARD_H / 2.0,
        };
        svg.push_str(&card(node, place, here));
        places.insert(node.name.as_str(), place);
    }
    let top = 34.0 + managers.len().div_ceil(per_row) as f64 * (CARD_H + 22.0) + 30.0;
    let _ = write!(
        svg,
        "<text x=\"10\" y=\"{:.0}\" font-size=\"13\" fill=\"#57606a\">workers (hover a square for its engine and labels)</text>",
        top - 10.0
    );
    let step = SQUARE + 10.0;
    let per_row = ((width - 20.0) / step).floor() as usize;
    for (i, node) in workers.iter().enumerate() {
        let place = Place {
            x: 10.0 + SQUARE / 2.0 + (i % per_row) as f64 * step,
            y: top + SQUARE / 2.0 + (i / per_row) as f64 * (step + 8.0),
            hw: SQUARE / 2.0,
            hh: SQUARE / 2.0,
        };
        let short = node.name.rsplit('-').next().unwrap_or(&node.name);
        let _ = write!(
            svg,
            "<g><title>{}</title><rect x=\"{:.0}\" y=\"{:.0}\" width=\"{SQUARE}\" height=\"{SQUARE}\" rx=\"3\" fill=\"#fff\" stroke=\"#57606a\"/>\
<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\" text-anchor=\"middle\">{}</text></g>",
            esc(&describe(node, here)),
            place.x - SQUARE / 2.0,
            place.y - SQUARE / 2.0,
            place.x,
            place.y + 4.0,
            esc(short)
        );
        places.insert(node.name.as_str(), place);
    }
    let height = top + workers.len().div_ceil(per_row) as f64 * (step + 8.0) + 20.0;
    (places, width, height, svg)
}

/// A node as a card: name (★ for a manager), role and engine version, labels.
fn card(node: &NodeRecord, p: Place, here: &ChecksHere) -> String {
    let star = if node.role == "manager" { "★ " } else { "" };
    let labels: Vec<String> = node
        .labels
        .iter()
        .chain(&node.engine_labels)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut labels = labels.join(" ");
    if labels.chars().count() > 26 {
        labels = labels.chars().take(25).collect::<String>() + "…";
    }
    format!(
        "<g class=\"node\" data-node=\"{name}\"><title>{title}</title><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{CARD_W}\" height=\"{CARD_H}\" rx=\"6\" fill=\"#fff\" stroke=\"#57606a\"/>\
<text x=\"{cx:.0}\" y=\"{t1:.0}\" font-size=\"13\" font-weight=\"700\" text-anchor=\"middle\">{star}{name}</text>\
<text x=\"{cx:.0}\" y=\"{t2:.0}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#57606a\">{role} · {engine}</text>\
<text x=\"{cx:.0}\" y=\"{t3:.0}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#57606a\">{labels}</text>\
<text x=\"{cx:.0}\" y=\"{t4:.0}\" font-size=\"10\" text-anchor=\"middle\">{checks}</text></g>",
        name = esc(&node.name),
        title = esc(&describe(node, here)),
        x = p.x - p.hw,
        y = p.y - p.hh,
        cx = p.x,
        t1 = p.y - 16.0,
        t2 = p.y,
        t3 = p.y + 14.0,
        t4 = p.y + 28.0,
        checks = esc(&tally(here.get(node.name.as_str()))),
        role = esc(&node.role),
        engine = esc(&node.engine_version),
        labels = esc(&labels),
    )
}

/// The labels the scenario declares on a node, spelled as constraints name them.
fn declared_labels(node: &NodeRecord) -> Vec<String> {
    let node_labels = node.labels.iter().map(|(k, v)| format!("node.labels.{k}={v}"));
    let engine_labels = node.engine_labels.iter().map(|(k, v)| format!("engine.labels.{k}={v}"));
    node_labels.chain(engine_labels).collect()
}

/// The checks that ran on a node, counted by outcome: `checks ✓3 ✗1`.
fn tally(checks: Option<&Vec<(&str, &'static str)>>) -> String {
    let Some(checks) = checks else { return String::new() };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, outcome) in checks {
        *counts.entry(outcome_label(outcome).1).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(symbol, n)| format!("{symbol}{n}")).collect();
    format!("checks {}", parts.join(" "))
}

/// The checks that ran on a node by name: `overlay-ping ✓, drain ✗`.
fn checks_named(checks: Option<&Vec<(&str, &'static str)>>) -> String {
    let checks = checks.map(Vec::as_slice).unwrap_or_default();
    let named: Vec<String> = checks
        .iter()
        .map(|(name, outcome)| format!("{} {name}", outcome_label(outcome).1))
        .collect();
    named.join(", ")
}

/// Everything about a node in one line (tooltips).
fn describe(node: &NodeRecord, here: &ChecksHere) -> String {
    let labels = declared_labels(node);
    let checks = checks_named(here.get(node.name.as_str()));
    format!(
        "{} · {} · engine {} · {}{}{}",
        node.name,
        node.role,
        node.engine_version,
        node.address,
        if labels.is_empty() {
            String::new()
        } else {
            format!(" · {}", labels.join(" "))
        },
        if checks.is_empty() {
            String::new()
        } else {
            format!(" · checks: {checks}")
        }
    )
}

/// One edge per pair of nodes (and port) that failing checks traced their cause to.
fn edges<'a>(causes: &'a [(&'a str, &'a str, CausePath)]) -> Vec<Edge<'a>> {
    let mut edges: Vec<Edge<'a>> = Vec::new();
    for (name, cause, p) in causes {
        if p.kind != "path" || p.nodes.len() < 2 {
            continue;
        }
        let (a, b, directed) = match (&p.from, &p.to) {
            (Some(f), Some(t)) => (f.as_str(), t.as_str(), true),
            _ => (p.nodes[0].as_str(), p.nodes[1].as_str(), false),
        };
        let port = p.port.as_deref();
        match edges.iter_mut().find(|e| {
            e.port == port && e.directed == directed && ((e.a, e.b) == (a, b) || (!directed && (e.a, e.b) == (b, a)))
        }) {
            Some(e) => e.checks.push((name, cause)),
            None => edges.push(Edge {
                a,
                b,
                directed,
                port,
                checks: vec![(name, cause)],
            }),
        }
    }
    edges
}

/// Where the line from `p`'s centre towards (`x`, `y`) leaves its box.
fn border(p: Place, x: f64, y: f64) -> (f64, f64) {
    let (dx, dy) = (x - p.x, y - p.y);
    if dx == 0.0 && dy == 0.0 {
        return (p.x, p.y);
    }
    let t = f64::min(
        if dx == 0.0 {
            f64::INFINITY
        } else {
            (p.hw + 4.0) / dx.abs()
        },
        if dy == 0.0 {
            f64::INFINITY
        } else {
            (p.hh + 4.0) / dy.abs()
        },
    );
    (p.x + dx * t, p.y + dy * t)
}

/// Every node in a table (folded when there are many): the drawing's data as text.
fn node_table(nodes: &[NodeRecord], marked: &BTreeMap<&str, &str>, here: &ChecksHere) -> String {
    let open = if nodes.len() <= CIRCLE_MAX { " open" } else { "" };
    let mut s = format!(
        "<details{open}><summary>{} nodes</summary><table class=\"nodes\"><thead><tr><th scope=\"col\">node</th><th scope=\"col\">role</th>\
<th scope=\"col\">engine</th><th scope=\"col\">address</th><th scope=\"col\">labels</th><th scope=\"col\">checks here</th><th scope=\"col\">trouble</th></tr></thead><tbody>",
        nodes.len()
    );
    for n in nodes {
        let labels = declared_labels(n);
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"cause\">{}</td></tr>",
            esc(&n.name),
            esc(&n.role),
            esc(&n.engine_version),
            esc(&n.address),
            esc(&labels.join(" ")),
            esc(&checks_named(here.get(n.name.as_str()))),
            marked
                .get(n.name.as_str())
                .map(|s| format!("⚠ {}", esc(s)))
                .unwrap_or_default()
        );
    }
    s.push_str("</tbody></table></details>");
    s
}
