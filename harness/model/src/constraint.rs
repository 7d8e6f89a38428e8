//! Swarm placement constraints: parsing (swarm mode and the 2015 classic form) and
//! evaluation against the declared nodes, so a check can know where tasks must land
//! without asking the scheduler it is testing.

use std::collections::BTreeMap;
use std::fmt;

/// What a constraint compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintKey {
    NodeHostname,
    NodeRole,
    NodeId,
    NodePlatformOs,
    NodePlatformArch,
    NodeLabel(String),
    EngineLabel(String),
}

impl fmt::Display for ConstraintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstraintKey::NodeHostname => f.write_str("node.hostname"),
            ConstraintKey::NodeRole => f.write_str("node.role"),
            ConstraintKey::NodeId => f.write_str("node.id"),
            ConstraintKey::NodePlatformOs => f.write_str("node.platform.os"),
            ConstraintKey::NodePlatformArch => f.write_str("node.platform.arch"),
            ConstraintKey::NodeLabel(k) => write!(f, "node.labels.{k}"),
            ConstraintKey::EngineLabel(k) => write!(f, "engine.labels.{k}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
}

/// One parsed constraint, always rendered in swarm-mode syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub op: Operator,
    pub value: String,
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Operator::Eq => "==",
            Operator::Ne => "!=",
        };
        write!(f, "{}{}{}", self.key, op, self.value)
    }
}

/// Why a constraint string was refused, with a hint for the scenario author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintError {
    pub message: String,
    pub help: String,
}

/// The facts about a node that constraints can test, as declared in the scenario.
pub struct NodeFacts<'a> {
    pub hostname: &'a str,
    pub is_manager: bool,
    pub labels: &'a BTreeMap<String, String>,
    pub engine_labels: &'a BTreeMap<String, String>,
}

impl Constraint {
    /// Parses `node.labels.zone==a`, `engine.labels.disk!=ssd`, `node.role==worker`, ...
    /// and the classic swarm form `constraint:node==swarm-demo-2` (= `node.hostname==`).
    pub fn parse(raw: &str) -> Result<Constraint, ConstraintError> {
        let text = raw.trim();
        if let Some(classic) = text.strip_prefix("constraint:") {
            return Self::parse_classic(classic);
        }
        let (key, op, value) = split_operator(text)?;
        let key = parse_key(key.trim())?;
        let value = value.trim();
        if value.is_empty() {
            return Err(ConstraintError {
                message: format!("constraint `{text}` has no value after the operator"),
                help: format!("write it as `{key}==VALUE`"),
            });
        }
        if key == ConstraintKey::NodeRole && !matches!(value, "manager" | "worker") {
            return Err(ConstraintError {
                message: format!("`node.role` can only be `manager` or `worker`, not `{value}`"),
                help: "use `node.role==manager` or `node.role==worker`".into(),
            });
        }
        Ok(Constraint {
            key,
            op,
            value: value.to_string(),
        })
    }

    fn parse_classic(rest: &str) -> Result<Constraint, ConstraintError> {
        let (key, op, value) = split_operator(rest)?;
        let key = key.trim();
        let value = value.trim();
        let key = match key {
            "node" => ConstraintKey::NodeHostname,
            other => {
                // Classic swarm matched any other key against engine labels.
                if other.is_empty() {
                    return Err(ConstraintError {
                        message: "classic constraint has no key".into(),
                        help: "write `constraint:node==NAME` or `constraint:LABEL==VALUE`".into(),
                    });
                }
                ConstraintKey::EngineLabel(other.to_string())
            }
        };
        if value.is_empty() {
            return Err(ConstraintError {
                message: "classic constraint has no value".into(),
                help: "write `constraint:node==NAME`".into(),
            });
        }
        Ok(Constraint {
            key,
            op,
            value: value.to_string(),
        })
    }

    /// Whether a node as declared satisfies this constraint. `None` when the answer
    /// is only known at run time (node IDs, platform).
    pub fn matches(&self, node: &NodeFacts<'_>) -> Option<bool> {
        let actual: Option<String> = match &self.key {
            ConstraintKey::NodeHostname => Some(node.hostname.to_string()),
            ConstraintKey::NodeRole => Some(if node.is_manager { "manager" } else { "worker" }.into()),
            ConstraintKey::NodeLabel(k) => node.labels.get(k).cloned(),
            ConstraintKey::EngineLabel(k) => node.engine_labels.get(k).cloned(),
            ConstraintKey::NodeId | ConstraintKey::NodePlatformOs | ConstraintKey::NodePlatformArch => {
                return None;
            }
        };
        // Swarmkit compares every value case-insensitively (strings.EqualFold).
        let equal = actual.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        Some(match self.op {
            Operator::Eq => equal,
            Operator::Ne => !equal,
        })
    }
}

fn split_operator(text: &str) -> Result<(&str, Operator, &str), ConstraintError> {
    if let Some((k, v)) = text.split_once("==") {
        return Ok((k, Operator::Eq, v));
    }
    if let Some((k, v)) = text.split_once("!=") {
        return Ok((k, Operator::Ne, v));
    }
    if let Some((k, v)) = text.split_once('=') {
        return Err(ConstraintError {
            message: format!("constraint `{text}` uses `=`, which is not an operator"),
            help: format!("did you mean `{}=={}`?", k.trim(), v.trim()),
        });
    }
    if text.contains('~') {
        return Err(ConstraintError {
            message: format!("constraint `{text}` uses `~`, which swarm mode does not support"),
            help: "use `==` or `!=`".into(),
        });
    }
    Err(ConstraintError {
        message: format!("constraint `{text}` has no operator"),
        help: "write KEY==VALUE or KEY!=VALUE, e.g. `node.labels.zone==b`".into(),
    })
}

const KNOWN_KEYS: &[&str] = &[
    "node.hostname",
    "node.role",
    "node.id",
    "node.platform.os",
    "node.platform.arch",
    "node.labels.<key>",
    "engine.labels.<key>",
];

fn parse_key(key: &str) -> Result<ConstraintKey, ConstraintError> {
    let label = |prefix: &str, make: fn(String) -> ConstraintKey| -> Option<Result<ConstraintKey, ConstraintError>> {
        key.strip_prefix(prefix).map(|k| {
            if k.is_empty() || k.contains(['*', '$', ' ']) {
                Err(ConstraintError {
                    message: format!("`{key}` is not a valid label key"),
                    help: format!("write `{prefix}NAME`, e.g. `{prefix}zone`"),
                })
            } else {
                Ok(make(k.to_string()))
            }
        })
    };
    if let Some(r) = label("node.labels.", ConstraintKey::NodeLabel) {
        return r;
    }
    if let Some(r) = label("engine.labels.", ConstraintKey::EngineLabel) {
        return r;
    }
    match key {
        "node.hostname" => Ok(ConstraintKey::NodeHostname),
        "node.role" => Ok(ConstraintKey::NodeRole),
        "node.id" => Ok(ConstraintKey::NodeId),
        "node.platform.os" => Ok(ConstraintKey::NodePlatformOs),
        "node.platform.arch" => Ok(ConstraintKey::NodePlatformArch),
        "" => Err(ConstraintError {
            message: "constraint has an empty key".into(),
            help: format!("known keys: {}", KNOWN_KEYS.join(", ")),
        }),
        other => {
            let guess = crate::diag::did_you_mean(other, KNOWN_KEYS.iter().copied());
            Err(ConstraintError {
                message: format!("unknown constraint key `{other}`"),
                help: match guess {
                    Some(g) => format!("did you mean `{g}`? Known keys: {}", KNOWN_KEYS.join(", ")),
                    None => format!("known keys: {}", KNOWN_KEYS.join(", ")),
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(host: &'a str, mgr: bool, labels: &'a BTreeMap<String, String>) -> NodeFacts<'a> {
        NodeFacts {
            hostname: host,
            is_manager: mgr,
            labels,
            engine_labels: labels,
        }
    }

    #[test]
    fn parses_swarm_and_classic_forms() {
        let c = Constraint::parse("node.labels.zone==b").unwrap();
        assert_eq!(c.key, ConstraintKey::NodeLabel("zone".into()));
        assert_eq!(c.to_string(), "node.labels.zone==b");
        let classic = Constraint::parse("constraint:node==swarm-demo-2").unwrap();
        assert_eq!(classic.to_string(), "node.hostname==swarm-demo-2");
        assert_eq!(
            Constraint::parse(" node.role != worker ").unwrap().to_string(),
            "node.role!=worker"
        );
    }

    #[test]
    fn single_equals_gets_a_hint() {
        let e = Constraint::parse("node.labels.zone=b").unwrap_err();
        assert!(e.help.contains("node.labels.zone==b"), "{e:?}");
    }

    #[test]
    fn rejects_bad_keys_and_values() {
        assert!(
            Constraint::parse("node.hostnme==x")
                .unwrap_err()
                .help
                .contains("node.hostname")
        );
        assert!(Constraint::parse("node.labels.==x").is_err());
        assert!(Constraint::parse("node.labels.a*==x").is_err());
        assert!(Constraint::parse("node.role==boss").is_err());
        assert!(Constraint::parse("node.hostname==").is_err());
        assert!(Constraint::parse("node.hostname~x").is_err());
        assert!(Constraint::parse("nothing").is_err());
    }

    #[test]
    fn evaluates_against_declared_nodes() {
        let labels = BTreeMap::from([("zone".to_string(), "b".to_string())]);
        let n = facts("Swarm-Demo-2", false, &labels);
        assert_eq!(
            Constraint::parse("node.hostname==swarm-demo-2").unwrap().matches(&n),
            Some(true)
        );
        assert_eq!(Constraint::parse("node.role==worker").unwrap().matches(&n), Some(true));
        assert_eq!(
            Constraint::parse("node.labels.zone!=b").unwrap().matches(&n),
            Some(false)
        );
        assert_eq!(
            Constraint::parse("node.labels.rack!=b").unwrap().matches(&n),
            Some(true)
        );
        assert_eq!(Constraint::parse("node.id==abc").unwrap().matches(&n), None);
    }
}
