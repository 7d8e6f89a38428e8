//! `[[networks]]`, `[[services]]` and `[[containers]]`: what a scenario deploys.

use std::collections::BTreeSet;

use super::raw::{RawContainer, RawNetwork, RawService};
use super::{MAX_REPLICAS, Parser, S, span_of, valid_ipv4_cidr};
use crate::constraint::Constraint;
use crate::diag::{Problem, did_you_mean};
use crate::{BUSYBOX, Container, EndpointMode, Network, Node, Service, ServiceMode, Topology};

impl Parser {
    pub(crate) fn networks(&mut self, raw: Vec<S<RawNetwork>>, topology: Topology) -> Vec<Network> {
        let mut seen = BTreeSet::new();
        raw.into_iter()
            .map(|n| {
                let n = n.into_inner();
                self.name_rule(&n.name, "network name", 63, true, true);
                self.duplicate(&mut seen, &n.name, "network");
                if topology == Topology::Classic && n.encrypted == Some(true) {
                    self.push(
                        Problem::new(format!("network `{}` cannot be encrypted", n.name.get_ref()), span_of(&n.name))
                            .label("in a classic scenario")
                            .help("encrypted overlays are a swarm-mode feature: remove `encrypted` or use `topology = \"swarm\"`"),
                    );
                }
                if let Some(subnet) = &n.subnet
                    && !valid_ipv4_cidr(subnet.get_ref())
                {
                    self.push(
                        Problem::new(format!("`{}` is not an IPv4 subnet", subnet.get_ref()), span_of(subnet))
                            .help("write it in CIDR form, e.g. \"10.10.0.0/24\""),
                    );
                }
                Network {
                    name: n.name.into_inner(),
                    attachable: n.attachable.unwrap_or(true),
                    encrypted: n.encrypted.unwrap_or(false),
                    subnet: n.subnet.map(|s| s.into_inner()),
                }
            })
            .collect()
    }

    pub(crate) fn known_networks(
        &mut self,
        wanted: &[S<String>],
        networks: &[Network],
        need_attachable: bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for w in wanted {
            match networks.iter().find(|n| &n.name == w.get_ref()) {
                None => {
                    let help = match did_you_mean(w.get_ref(), networks.iter().map(|n| n.name.as_str())) {
                        Some(g) => format!("did you mean `{g}`?"),
                        None => "declare it in a `[[networks]]` section".into(),
                    };
                    self.push(
                        Problem::new(format!("network `{}` is not declared", w.get_ref()), span_of(w))
                            .label("unknown network")
                            .help(help),
                    );
                }
                Some(n) if need_attachable && !n.attachable => self.push(
                    Problem::new(format!("network `{}` is not attachable", n.name), span_of(w))
                        .help("plain containers can only join attachable overlays: set `attachable = true`"),
                ),
                Some(n) => out.push(n.name.clone()),
            }
        }
        out
    }

    pub(crate) fn services(&mut self, raw: Vec<S<RawService>>, networks: &[Network]) -> Vec<Service> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for s in raw {
            let s = s.into_inner();
            self.name_rule(&s.name, "service name", 63, false, true);
            self.duplicate(&mut seen, &s.name, "service");
            let mode = match s.mode.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("replicated") => {
                    let replicas = s.replicas.as_ref().map(|r| *r.get_ref()).unwrap_or(1);
                    if let Some(r) = &s.replicas
                        && *r.get_ref() > MAX_REPLICAS
                    {
                        self.push(
                            Problem::new(
                                format!("{} replicas is more than {MAX_REPLICAS}", r.get_ref()),
                                span_of(r),
                            )
                            .help("a check needs a handful of tasks, not thousands"),
                        );
                    }
                    ServiceMode::Replicated { replicas }
                }
                Some("global") => {
                    if let Some(r) = &s.replicas {
                        self.push(
                            Problem::new("a global service has no `replicas`", span_of(r))
                                .help("global services run one task per node; remove `replicas`"),
                        );
                    }
                    ServiceMode::Global
                }
                Some(other) => {
                    let m = s.mode.as_ref().unwrap();
                    self.push(
                        Problem::new(format!("unknown service mode `{other}`"), span_of(m))
                            .help("use `replicated` (the default) or `global`"),
                    );
                    ServiceMode::Replicated { replicas: 1 }
                }
            };
            let endpoint_mode = match s.endpoint_mode.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("dnsrr") => EndpointMode::Dnsrr,
                Some("vip") => EndpointMode::Vip,
                Some(other) => {
                    let m = s.endpoint_mode.as_ref().unwrap();
                    self.push(
                        Problem::new(format!("unknown endpoint mode `{other}`"), span_of(m))
                            .help("use `dnsrr` (the default) or `vip`"),
                    );
                    EndpointMode::Dnsrr
                }
            };
            let constraints = self.constraints(&s.constraints);
            let nets = self.known_networks(&s.networks, networks, false);
            for p in &s.preferences {
                let ok = p
                    .get_ref()
                    .strip_prefix("spread=")
                    .and_then(|k| {
                        k.strip_prefix("node.labels.")
                            .or_else(|| k.strip_prefix("engine.labels."))
                    })
                    .is_some_and(|k| !k.is_empty());
                if !ok {
                    self.push(
                        Problem::new(
                            format!("placement preference `{}` is not understood", p.get_ref()),
                            span_of(p),
                        )
                        .help("write `spread=node.labels.KEY` (or `spread=engine.labels.KEY`)"),
                    );
                }
            }
            out.push(Service {
                name: s.name.into_inner(),
                image: self.image(s.image),
                command: s.command.unwrap_or_else(|| vec!["top".into()]),
                mode,
                constraints,
                networks: nets,
                endpoint_mode,
                preferences: s.preferences.into_iter().map(|p| p.into_inner()).collect(),
            });
        }
        out
    }

    pub(crate) fn image(&mut self, image: Option<S<String>>) -> String {
        match image {
            None => BUSYBOX.to_string(),
            Some(i) if i.get_ref().trim().is_empty() => {
                self.push(Problem::new("the image name is empty", span_of(&i)).help("omit `image` to use busybox"));
                BUSYBOX.to_string()
            }
            Some(i) => i.into_inner(),
        }
    }

    pub(crate) fn constraints(&mut self, raw: &[S<String>]) -> Vec<Constraint> {
        raw.iter()
            .filter_map(|c| match Constraint::parse(c.get_ref()) {
                Ok(parsed) => Some(parsed),
                Err(e) => {
                    self.push(Problem::new(e.message, span_of(c)).label("bad constraint").help(e.help));
                    None
                }
            })
            .collect()
    }

    pub(crate) fn containers(
        &mut self,
        raw: Vec<S<RawContainer>>,
        nodes: &[Node],
        networks: &[Network],
        topology: Topology,
    ) -> Vec<Container> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for c in raw {
            let span = c.span();
            let c = c.into_inner();
            self.name_rule(&c.name, "container name", 63, true, true);
            self.duplicate(&mut seen, &c.name, "container");
            let node = match (&c.node, c.constraints.is_empty()) {
                (Some(n), true) => {
                    self.known_node(n, nodes);
                    n.get_ref().clone()
                }
                (None, false) => self.place_container(&c, nodes).unwrap_or_default(),
                (Some(_), false) => {
                    self.push(
                        Problem::new(
                            format!("container `{}` has both `node` and `constraints`", c.name.get_ref()),
                            Some(span.clone()),
                        )
                        .help("give one: `node = \"NAME\"`, or constraints the harness resolves to a node"),
                    );
                    String::new()
                }
                (None, true) => {
                    self.push(
                        Problem::new(
                            format!("container `{}` has no `node`", c.name.get_ref()),
                            Some(span.clone()),
                        )
                        .help("add `node = \"NAME\"` or `constraints = [\"constraint:node==NAME\"]`"),
                    );
                    String::new()
                }
            };
            // Global-scope overlays (classic) take any container; swarm overlays only
            // when attachable.
            let nets = self.known_networks(&c.networks, networks, topology == Topology::Swarm);
            for a in &c.aliases {
                self.name_rule(a, "network alias", 63, true, true);
            }
            out.push(Container {
                name: c.name.into_inner(),
                node,
                image: self.image(c.image),
                command: c.command.unwrap_or_else(|| vec!["top".into()]),
                networks: nets,
                aliases: c.aliases.into_iter().map(|a| a.into_inner()).collect(),
            });
        }
        out
    }

    /// The node a container with constraints runs on: the first declared node that
    /// satisfies all of them (the classic `docker run -e constraint:node==NAME`).
    pub(crate) fn place_container(&mut self, c: &RawContainer, nodes: &[Node]) -> Option<String> {
        let mut parsed = Vec::new();
        for raw in &c.constraints {
            match Constraint::parse(raw.get_ref()) {
                Ok(k) => parsed.push(k),
                Err(e) => {
                    self.push(Problem::new(e.message, span_of(raw)).help(e.help));
                    return None;
                }
            }
        }
        let found = nodes
            .iter()
            .find(|n| parsed.iter().all(|k| k.matches(&n.facts()) == Some(true)));
        if found.is_none() {
            let first = &c.constraints[0];
            self.push(
                Problem::new(
                    format!(
                        "no declared node satisfies the constraints of container `{}`",
                        c.name.get_ref()
                    ),
                    span_of(first),
                )
                .label("matches no node")
                .help(format!(
                    "declared nodes: {}",
                    nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                )),
            );
        }
        found.map(|n| n.name.clone())
    }
}
