//! A failure's cause as fields beside its sentence: the nodes it names, the direction
//! of the broken path, the port and protocol, and what became of a node. The diagnosis
//! writes sentences for people ("udp/4789 from vx-3 to vx-2 is dropped by vx-2's
//! firewall"); reports that draw the cluster (the HTML page, other tools reading the
//! JSON) need the same facts as data. They are read from the sentence against the
//! run's node names, so every cause the diagnosis can word has its fields, with no
//! second description to keep in step.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a cause sentence says about where the cluster is broken.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CausePath {
    /// `path` (traffic between two nodes does not pass), `node` (one node is the
    /// trouble: gone, paused, drained, its settings), or `cluster` (no node named).
    #[schemars(extend("enum" = ["path", "node", "cluster"]))]
    pub kind: String,
    /// The nodes the cause names, in the order it names them.
    pub nodes: Vec<String>,
    /// Where the broken traffic comes from and goes to, when the cause says (`from A
    /// to B`; `A receives B's packets but sends nothing back` is B to A and back).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<String>,
    /// The port and protocol, as the cause spells them: `udp/4789`, `tcp/2377`,
    /// `tcp+udp/7946`, `icmp`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<String>,
    /// What became of the first node named, when the cause says: `stopped`, `paused`,
    /// `frozen`, `drained`, `down`, `gone`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node_state: Option<String>,
}

/// Words that say what happened to a node, in the order they are tried.
const NODE_STATES: [(&str, &str); 10] = [
    ("engine was stopped", "stopped"),
    ("engine stopped", "stopped"),
    ("paused", "paused"),
    ("frozen", "frozen"),
    ("drain", "drained"),
    ("is down", "down"),
    ("not answering", "gone"),
    ("died", "gone"),
    ("is gone", "gone"),
    ("exited", "gone"),
];

/// Reads `cause` against the run's node names.
pub fn read(cause: &str, node_names: &[&str]) -> CausePath {
    let nodes = named_nodes(cause, node_names);
    let port = port(cause);
    let (from, to) = direction(cause, &nodes);
    let lower = cause.to_lowercase();
    let node_state = NODE_STATES
        .iter()
        .find(|(words, _)| lower.contains(words))
        .map(|(_, state)| state.to_string());
    let kind = match nodes.len() {
        0 => "cluster",
        1 => "node",
        _ if node_state.is_some() && from.is_none() => "node",
        _ => "path",
    };
    CausePath {
        kind: kind.into(),
        nodes,
        from,
        to,
        port,
        node_state,
    }
}

/// Node names in order of first mention, matched as whole words (`n-1` is not found
/// in `n-10`).
fn named_nodes(cause: &str, node_names: &[&str]) -> Vec<String> {
    let mut found: Vec<(usize, &str)> = Vec::new();
    for name in node_names.iter().filter(|n| !n.is_empty()) {
        if let Some(at) = word_at(cause, name) {
            found.push((at, name));
        }
    }
    found.sort();
    found.into_iter().map(|(_, n)| n.to_string()).collect()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Where `word` first stands on its own in `text`.
fn word_at(text: &str, word: &str) -> Option<usize> {
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        // A trailing `-` or `.` after a name ends it only at a sentence's end.
        !before.is_some_and(is_name_char) && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// `udp/4789`, `tcp/2377`, `tcp+udp/7946`; `ICMP` and `VXLAN` without a port.
fn port(cause: &str) -> Option<String> {
    let bytes = cause.as_bytes();
    for (i, _) in cause.match_indices('/') {
        let proto_start = cause[..i]
            .rfind(|c: char| !(c.is_ascii_alphabetic() || c == '+'))
            .map_or(0, |p| p + 1);
        let proto = &cause[proto_start..i];
        let digits = cause[i + 1..].chars().take_while(char::is_ascii_digit).count();
        let known = proto.split('+').all(|p| matches!(p, "tcp" | "udp"));
        if !proto.is_empty() && known && digits > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return Some(cause[proto_start..i + 1 + digits].to_string());
        }
    }
    let lower = cause.to_lowercase();
    if lower.contains("vxlan") {
        return Some("udp/4789".into());
    }
    lower.contains("icmp").then(|| "icmp".into())
}

/// `from A to B`, `A … B's packets … sends nothing back` (B to A), else none.
fn direction(cause: &str, nodes: &[String]) -> (Option<String>, Option<String>) {
    if nodes.len() < 2 {
        return (None, None);
    }
    for a in nodes {
        for b in nodes.iter().filter(|b| *b != a) {
            if cause.contains(&format!("from {a} to {b}")) {
                return (Some(a.clone()), Some(b.clone()));
            }
            if cause.contains(&format!("{a} receives {b}'s")) || cause.contains(&format!("to {a} from {b}")) {
                return (Some(b.clone()), Some(a.clone()));
            }
            if cause.contains(&format!("from {b}")) && cause.starts_with(&format!("{a}'s firewall")) {
                return (Some(b.clone()), Some(a.clone()));
            }
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(cause: &str, nodes: &[&str]) -> CausePath {
        read(cause, nodes)
    }

    /// The causes the broken fixtures' `.expect` files name, read as fields.
    #[test]
    fn the_diagnosis_sentences_become_fields() {
        let p = path(
            "udp/4789 from vx-3 to vx-2 is dropped by vx-2's firewall",
            &["vx-1", "vx-2", "vx-3"],
        );
        assert_eq!(p.kind, "path");
        assert_eq!((p.from.as_deref(), p.to.as_deref()), (Some("vx-3"), Some("vx-2")));
        assert_eq!(p.port.as_deref(), Some("udp/4789"));

        let p = path(
            "the control plane is cut, so the managers do not hear cp-2: tcp/2377 from cp-2 to cp-1",
            &["cp-1", "cp-2", "cp-3"],
        );
        assert_eq!((p.from.as_deref(), p.to.as_deref()), (Some("cp-2"), Some("cp-1")));
        assert_eq!(p.port.as_deref(), Some("tcp/2377"));

        let p = path(
            "cg-2 receives cg-3's VXLAN packets (3 of 3) but sends nothing back: cg-2's overlay has no entry",
            &["cg-1", "cg-2", "cg-3"],
        );
        assert_eq!((p.from.as_deref(), p.to.as_deref()), (Some("cg-3"), Some("cg-2")));
        assert_eq!(p.port.as_deref(), Some("udp/4789"));

        let p = path(
            "pl-2's firewall drops VXLAN packets (udp/4789) from pl-3",
            &["pl-1", "pl-2", "pl-3"],
        );
        assert_eq!((p.from.as_deref(), p.to.as_deref()), (Some("pl-3"), Some("pl-2")));

        let p = path(
            "gossip (tcp+udp/7946) between gs-3 and gs-2 is cut",
            &["gs-1", "gs-2", "gs-3"],
        );
        assert_eq!(p.kind, "path");
        assert_eq!(p.nodes, ["gs-3", "gs-2"]);
        assert_eq!(p.port.as_deref(), Some("tcp+udp/7946"));
        assert_eq!(p.from, None);

        let p = path(
            "the check asks sr-2's engine, and sr-2: its engine was stopped",
            &["sr-1", "sr-2"],
        );
        assert_eq!((p.kind.as_str(), p.node_state.as_deref()), ("node", Some("stopped")));
        assert_eq!(p.nodes, ["sr-2"]);

        let p = path("the underlay MTU of um-2 is 1280 (eth0)", &["um-1", "um-2"]);
        assert_eq!((p.kind.as_str(), p.port.as_deref()), ("node", None));

        let p = path("the overlay's gossip has not converged", &["a"]);
        assert_eq!(p.kind, "cluster");
    }

    #[test]
    fn a_node_name_is_found_only_as_a_whole_word() {
        let p = path("s-10 is paused", &["s-1", "s-10"]);
        assert_eq!(p.nodes, ["s-10"]);
        assert_eq!(p.node_state.as_deref(), Some("paused"));
        let p = path(
            "the underlay still does not carry ICMP from ps-1 to ps-2.",
            &["ps-1", "ps-2"],
        );
        assert_eq!((p.from.as_deref(), p.to.as_deref()), (Some("ps-1"), Some("ps-2")));
        assert_eq!(p.port.as_deref(), Some("icmp"));
    }
}
