//! `[[nodes]]`: names, roles, engines, labels and the engine options swarm-e2e does not
//! manage itself.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::raw::RawNode;
use super::{Parser, S, plain_map, span_of};
use crate::diag::{Problem, did_you_mean};
use crate::{Node, Role, Topology};

impl Parser {
    pub(crate) fn nodes(
        &mut self,
        raw: Vec<S<RawNode>>,
        default_engine: &str,
        topology: Topology,
        array_span: Option<Range<usize>>,
    ) -> Vec<Node> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for node in raw {
            let span = node.span();
            let node = node.into_inner();
            self.name_rule(&node.name, "node name", 63, false, false);
            if topology == Topology::Classic && node.name.get_ref() == crate::KV_STORE_NODE {
                self.push(
                    Problem::new(
                        format!("`{}` is the key-value store's name", crate::KV_STORE_NODE),
                        span_of(&node.name),
                    )
                    .label("reserved in a classic scenario")
                    .help("give the node another name; swarm-e2e adds the store node itself"),
                );
            }
            self.duplicate(&mut seen, &node.name, "node");
            let role = match &node.role {
                None => Role::Worker,
                Some(r) => match r.get_ref().as_str() {
                    "manager" => Role::Manager,
                    "worker" => Role::Worker,
                    other => {
                        let help = match did_you_mean(other, ["manager", "worker"]) {
                            Some(g) => format!("did you mean `{g}`?"),
                            None => "a role is `manager` or `worker`".into(),
                        };
                        self.push(Problem::new(format!("unknown role `{other}`"), span_of(r)).help(help));
                        Role::Worker
                    }
                },
            };
            let engine = match &node.engine {
                Some(e) => {
                    self.engine_version(e);
                    e.get_ref().clone()
                }
                None => default_engine.to_string(),
            };
            if topology == Topology::Classic
                && let Some((k, _)) = node.labels.iter().next()
            {
                self.push(
                    Problem::new("node labels are swarm-mode labels", span_of(k))
                        .label("in a classic scenario")
                        .help(
                            "classic engines are told apart by `engine_labels` (matched by `constraint:LABEL==VALUE`)",
                        ),
                );
            }
            for (k, _) in node.labels.iter().chain(node.engine_labels.iter()) {
                if k.get_ref().trim().is_empty() {
                    self.push(Problem::new("a label key is empty", span_of(k)).help("give the label a name"));
                }
            }
            self.reserved_engine_labels(&node.engine_labels, &engine);
            let engine_options = self.engine_options(&node.engine_options);
            let _ = span;
            out.push(Node {
                name: node.name.into_inner(),
                role,
                labels: plain_map(node.labels),
                engine_labels: plain_map(node.engine_labels),
                engine_options,
                engine,
            });
        }
        if topology == Topology::Swarm && !out.is_empty() && !out.iter().any(|n| n.role == Role::Manager) {
            self.push(
                Problem::new("no node has `role = \"manager\"`", array_span.map(|s| s.start..s.start))
                    .help("a swarm needs at least one manager: set `role = \"manager\"` on the first node"),
            );
        }
        out
    }

    /// Engine labels in a namespace Docker reserves: every engine from 20.10 on refuses
    /// to start with one.
    fn reserved_engine_labels(&mut self, labels: &BTreeMap<S<String>, S<String>>, engine: &str) {
        for k in labels.keys() {
            let key = k.get_ref();
            if let Some(ns) = ["com.docker.", "io.docker.", "org.dockerproject."]
                .iter()
                .find(|ns| key.starts_with(*ns))
            {
                let mut help = format!(
                    "rename the label outside the `{ns}*` namespace: this node's engine ({engine}) refuses to start with it, as every engine from 20.10 on does"
                );
                if key.starts_with("com.docker.network.driver.overlay") {
                    help.push_str(" (this 2015 overlay setting is now chosen with the swarm data path address)");
                }
                self.push(
                    Problem::new(
                        format!("engine label `{key}` uses a namespace reserved by Docker"),
                        span_of(k),
                    )
                    .label("reserved")
                    .help(help),
                );
            }
        }
    }

    /// The engine options a node may set (swarm-e2e manages TLS, labels, the store, …),
    /// as daemon.json values.
    fn engine_options(&mut self, options: &BTreeMap<S<String>, S<toml::Value>>) -> BTreeMap<String, serde_json::Value> {
        let mut engine_options = BTreeMap::new();
        for (k, v) in options {
            let key = k.get_ref();
            const MANAGED: &[&str] = &[
                "hosts",
                "host",
                "tls",
                "tlsverify",
                "tlscacert",
                "tlscert",
                "tlskey",
                "labels",
                "label",
                "cgroup-parent",
                "data-root",
                "exec-root",
                "pidfile",
                "cluster-store",
                "cluster-advertise",
            ];
            if MANAGED.contains(&key.as_str()) {
                let help = if key.starts_with("label") {
                    "engine labels go in `engine_labels = { key = \"value\" }`".to_string()
                } else if key.starts_with("cluster-") {
                    "`topology = \"classic\"` sets the cluster store itself (a key-value store node); engines from 23.0 on have no cluster store".to_string()
                } else {
                    "swarm-e2e sets this itself (TLS endpoint, cgroup parent, data root); remove it".to_string()
                };
                self.push(
                    Problem::new(format!("engine option `{key}` is managed by swarm-e2e"), span_of(k)).help(help),
                );
                continue;
            }
            match serde_json::to_value(v.get_ref()) {
                Ok(j) => {
                    engine_options.insert(key.clone(), j);
                }
                Err(e) => self.push(
                    Problem::new(
                        format!("engine option `{key}` cannot be written to daemon.json: {e}"),
                        span_of(v),
                    )
                    .help("use strings, numbers, booleans, arrays or tables"),
                ),
            }
        }
        engine_options
    }
}
