//! The raw document: what a scenario file's tables deserialize into before any rule
//! runs (spans kept, every key optional where a missing one is a located problem), and
//! serde's errors turned into the words of a scenario file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::S;
use crate::diag::{Problem, did_you_mean};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    #[serde(default, with = "humantime_serde")]
    pub(crate) provision: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(crate) engines_ready: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(crate) cluster_formed: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(crate) checks: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(crate) teardown: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNode {
    pub(crate) name: S<String>,
    pub(crate) role: Option<S<String>>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<S<String>, S<String>>,
    #[serde(default)]
    pub(crate) engine_labels: BTreeMap<S<String>, S<String>>,
    #[serde(default)]
    pub(crate) engine_options: BTreeMap<S<String>, S<toml::Value>>,
    pub(crate) engine: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub(crate) name: S<String>,
    pub(crate) attachable: Option<bool>,
    pub(crate) encrypted: Option<bool>,
    pub(crate) subnet: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) name: S<String>,
    pub(crate) image: Option<S<String>>,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) replicas: Option<S<u64>>,
    pub(crate) mode: Option<S<String>>,
    #[serde(default)]
    pub(crate) constraints: Vec<S<String>>,
    #[serde(default)]
    pub(crate) networks: Vec<S<String>>,
    pub(crate) endpoint_mode: Option<S<String>>,
    #[serde(default)]
    pub(crate) preferences: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContainer {
    pub(crate) name: S<String>,
    pub(crate) node: Option<S<String>>,
    #[serde(default)]
    pub(crate) constraints: Vec<S<String>>,
    pub(crate) image: Option<S<String>>,
    pub(crate) command: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) networks: Vec<S<String>>,
    #[serde(default)]
    pub(crate) aliases: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStack {
    pub(crate) name: S<String>,
    pub(crate) files: S<Vec<S<String>>>,
    #[serde(default)]
    pub(crate) env: BTreeMap<S<String>, S<String>>,
    pub(crate) resolve_image: Option<S<String>>,
    #[serde(default)]
    pub(crate) images: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub(crate) name: Option<S<String>>,
    pub(crate) kind: S<String>,
    pub(crate) from: Option<S<String>>,
    pub(crate) network: Option<S<String>>,
    pub(crate) target: Option<S<String>>,
    pub(crate) service: Option<S<String>>,
    pub(crate) expect_nodes: Option<S<Vec<S<String>>>>,
    pub(crate) expect_counts: Option<S<BTreeMap<S<String>, S<u64>>>>,
    pub(crate) node: Option<S<String>>,
    pub(crate) label: Option<S<String>>,
    pub(crate) query: Option<S<String>>,
    pub(crate) payload: Option<S<i64>>,
    pub(crate) max_loss: Option<S<i64>>,
    pub(crate) to: Option<S<String>>,
    pub(crate) nodes: Option<S<Vec<S<String>>>>,
    pub(crate) percent: Option<S<i64>>,
    pub(crate) bytes: Option<S<i64>>,
    pub(crate) stack: Option<S<String>>,
    pub(crate) files: Option<S<Vec<S<String>>>>,
    pub(crate) expect: Option<S<String>>,
    pub(crate) cycles: Option<S<i64>>,
    pub(crate) timeout: Option<S<String>>,
    pub(crate) retries: Option<S<i64>>,
}

impl RawCheck {
    /// The keys of a check beside `name`, `kind`, `timeout` and `retries`: what check
    /// kinds take (`check_kinds::CHECK_KINDS` says which).
    pub(crate) const KEYS: [&str; 19] = [
        "from",
        "network",
        "target",
        "service",
        "expect_nodes",
        "expect_counts",
        "node",
        "label",
        "query",
        "payload",
        "max_loss",
        "to",
        "nodes",
        "percent",
        "bytes",
        "stack",
        "files",
        "expect",
        "cycles",
    ];

    /// Each of [`Self::KEYS`] and whether this check has it.
    pub(crate) fn keys_present(&self) -> [(&'static str, bool); 19] {
        let present = [
            self.from.is_some(),
            self.network.is_some(),
            self.target.is_some(),
            self.service.is_some(),
            self.expect_nodes.is_some(),
            self.expect_counts.is_some(),
            self.node.is_some(),
            self.label.is_some(),
            self.query.is_some(),
            self.payload.is_some(),
            self.max_loss.is_some(),
            self.to.is_some(),
            self.nodes.is_some(),
            self.percent.is_some(),
            self.bytes.is_some(),
            self.stack.is_some(),
            self.files.is_some(),
            self.expect.is_some(),
            self.cycles.is_some(),
        ];
        std::array::from_fn(|i| (Self::KEYS[i], present[i]))
    }
}

pub(crate) const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "engine",
    "topology",
    "ingress",
    "timeouts",
    "faults",
    "digitalocean",
    "nodes",
    "networks",
    "services",
    "containers",
    "stacks",
    "checks",
];

/// serde's "invalid type: integer `7`, expected a string" in the words of a scenario
/// file: "expected a string, found the number 7". Other messages pass unchanged.
pub(crate) fn plain_type_error(message: &str) -> String {
    let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|m| m.rsplit_once(", expected "))
    else {
        return message.to_string();
    };
    let expected = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        // Our private types: the user wrote a value where a table goes.
        other if other.starts_with("struct Raw") => "a table".to_string(),
        other => other.to_string(),
    };
    let quoted = |s: &str| s.trim_matches('`').to_string();
    let found = if let Some(n) = found.strip_prefix("integer ") {
        match n.strip_suffix(" as i128") {
            // toml reads integers beyond 64 bits as i128 before serde refuses them.
            Some(big) => format!("{}, which is too large", quoted(big)),
            None => format!("the number {}", quoted(n)),
        }
    } else if let Some(f) = found.strip_prefix("floating point ") {
        format!("the number {}", quoted(f))
    } else if let Some(b) = found.strip_prefix("boolean ") {
        quoted(b)
    } else if let Some(t) = found.strip_prefix("string ") {
        format!("the string {t}")
    } else {
        match found {
            "sequence" => "an array".to_string(),
            "map" => "a table".to_string(),
            other => other.to_string(),
        }
    };
    format!("expected {expected}, found {found}")
}

pub(crate) fn toml_problem(e: &toml::de::Error, default_help: &str) -> Problem {
    // serde names our private types ("expected struct RawNode"): say what the user wrote.
    let mut message = plain_type_error(e.message().trim());
    if let Some(at) = message.find("expected struct Raw") {
        message.truncate(at);
        message.push_str("expected a table");
    }
    let mut problem = Problem::new(message.clone(), e.span());
    // serde says: "unknown field `rol`, expected one of `name`, `role`, ...".
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        problem.label = Some("unknown key".into());
        problem.help = Some(match did_you_mean(field, candidates.iter().copied()) {
            Some(g) => format!("did you mean `{g}`?"),
            None => format!("allowed keys here: {}", candidates.join(", ")),
        });
        return problem;
    }
    problem.help = Some(default_help.to_string());
    problem
}
