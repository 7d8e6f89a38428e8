//! TOML -> validated [`Scenario`].
//!
//! The file is parsed once into toml's spanned document tree; then every top-level key and
//! every element of every array is deserialized on its own, so one bad node does not hide
//! the problems of the next. Semantic rules run over the spanned raw values afterwards.
//! All problems are collected; the scenario is returned only when there are none.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::diag::{Problem, ScenarioError, did_you_mean};
use crate::{
    DEFAULT_ENGINE, DigitalOceanSettings, FakeFaults, KV_STORE_NODE, Node, PhaseTimeouts, Scenario, Service, Topology,
};

mod checks;
mod kinds;
mod nodes;
pub(crate) mod raw;
mod stack_placement;
mod stacks;
mod workloads;

use raw::{RawCheck, RawContainer, RawNetwork, RawNode, RawService, RawTimeouts, TOP_LEVEL_KEYS, toml_problem};

/// More nodes than this is refused: a local run of that size cannot fit one machine, and a
/// cloud run of that size is a typo more often than an intent.
pub const MAX_NODES: usize = 128;
pub(crate) const MAX_REPLICAS: u64 = 1000;
/// Scenario files larger than this are refused before parsing.
const MAX_FILE_BYTES: usize = 1024 * 1024;

pub(crate) type S<T> = Spanned<T>;

/// The most retries a check may have (`retries`, `run --retries`).
pub const MAX_RETRIES: u32 = 5;

/// The name of the `cluster-state` check every scenario without one gets.
pub const IMPLICIT_STATE_CHECK: &str = "declared-state";

/// Reads and validates a scenario file.
pub fn parse_scenario_file(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ScenarioError::new(
            &shown,
            "",
            vec![Problem::new(format!("cannot read the file: {e}"), None).help("check the path and its permissions")],
        )
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => parse_scenario(&shown, &text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            // The text up to the bad byte is valid: it locates the byte by line and column.
            let valid = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
            Err(ScenarioError::new(
                &shown,
                &valid,
                vec![
                    Problem::new(
                        format!("the file is not UTF-8 text (invalid byte at offset {at})"),
                        Some(at..at),
                    )
                    .help("scenario files are TOML, which must be UTF-8"),
                ],
            ))
        }
    }
}

/// Parses and validates scenario text; `path` is used in messages only.
pub fn parse_scenario(path: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let fail = |problems: Vec<Problem>| Err(ScenarioError::new(path, text, problems));
    if text.len() > MAX_FILE_BYTES {
        return fail(vec![Problem::new(
            format!(
                "the file is {} bytes; scenario files are limited to {MAX_FILE_BYTES}",
                text.len()
            ),
            None,
        )]);
    }
    if text.trim().is_empty() {
        return fail(vec![Problem::new("the scenario file is empty", Some(0..0)).help(
            "a scenario needs at least `name = \"...\"` and one `[[nodes]]` entry with `role = \"manager\"`",
        )]);
    }
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let problems = syntax.iter().map(|e| toml_problem(e, "fix the TOML syntax")).collect();
        return fail(problems);
    }
    let mut p = Parser {
        problems: Vec::new(),
        text: text.to_string(),
    };
    let scenario = p.scenario(path, root);
    if p.problems.is_empty() {
        Ok(scenario.expect("no problems means a scenario was built"))
    } else {
        // Report in file order: it reads like a compiler's output.
        p.problems
            .sort_by_key(|pr| pr.span.as_ref().map(|s| s.start).unwrap_or(usize::MAX));
        fail(p.problems)
    }
}

pub(crate) struct Parser {
    problems: Vec<Problem>,
    /// The file's text, for the lines of what the model keeps (a check's line).
    text: String,
}

pub(crate) fn span_of<T>(s: &S<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Parser {
    pub(crate) fn push(&mut self, p: Problem) {
        self.problems.push(p);
    }

    /// Deserializes one value. An unknown key is reported, dropped, and the value tried
    /// again, so the problems after it are found in the same pass.
    fn de<T: DeserializeOwned>(&mut self, value: &S<DeValue<'_>>, help: &str) -> Option<T> {
        let mut v = value.clone();
        v.get_mut().make_owned();
        for _ in 0..64 {
            match T::deserialize(ValueDeserializer::from(v.clone())) {
                Ok(t) => return Some(t),
                Err(e) => {
                    let mut problem = toml_problem(&e, help);
                    if problem.span.is_none() {
                        problem.span = Some(value.span());
                    }
                    self.push(problem);
                    let unknown = e
                        .message()
                        .strip_prefix("unknown field `")
                        .and_then(|r| r.split_once('`'))
                        .map(|(f, _)| f.to_string());
                    match (unknown, v.get_mut()) {
                        (Some(field), DeValue::Table(table)) => {
                            let key = table.keys().find(|k| k.get_ref().as_ref() == field.as_str()).cloned();
                            match key {
                                Some(k) => {
                                    table.remove(&k);
                                }
                                None => return None,
                            }
                        }
                        _ => return None,
                    }
                }
            }
        }
        None
    }

    /// Each element of an array of tables, deserialized on its own.
    pub(crate) fn elements<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: Option<&S<DeValue<'_>>>,
        help: &str,
    ) -> Vec<T> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Some(array) = value.get_ref().as_array() else {
            self.push(
                Problem::new(format!("`{key}` must be an array of tables"), Some(value.span()))
                    .help(format!("write each entry as a `[[{key}]]` section")),
            );
            return Vec::new();
        };
        array.iter().filter_map(|el| self.de::<T>(el, help)).collect()
    }

    fn scenario(&mut self, path: &str, root: S<DeTable<'_>>) -> Option<Scenario> {
        let table = root.get_ref();
        let get = |k: &str| table.get(k);
        self.unknown_top_level_keys(table);

        let name: Option<S<String>> = get("name").and_then(|v| self.de(v, "the cluster name is a string"));
        let description: Option<String> = get("description").and_then(|v| self.de(v, "a description is a string"));
        let default_engine: Option<S<String>> =
            get("engine").and_then(|v| self.de(v, "an engine version like \"20.10\""));
        let topology_value: Option<S<String>> =
            get("topology").and_then(|v| self.de(v, "`topology = \"swarm\"` or `topology = \"classic\"`"));
        let topology = self.topology(topology_value.as_ref());
        let ingress = self.ingress(get("ingress"), topology);
        let timeouts: Option<RawTimeouts> =
            get("timeouts").and_then(|v| self.de(v, "durations are strings like \"90s\" or \"2m\""));
        let faults_value = get("faults");
        let faults: Option<FakeFaults> = faults_value.and_then(|v| {
            self.de(
                v,
                "keys: burst_429, retry_after_secs, fail_5xx, fail_5xx_streak, slow_ms, lose_create_responses, \
                 stuck_in_new, goes_off, scopes, profile, time_scale",
            )
        });

        let digitalocean_value = get("digitalocean");
        let digitalocean: Option<DigitalOceanSettings> = digitalocean_value.and_then(|v| {
            self.de(
                v,
                "keys: region, size, image, sizes (node = slug), boot_commands (strings)",
            )
        });

        let nodes_value = get("nodes");
        if self.too_many_nodes(nodes_value) {
            return None;
        }
        let raw_nodes: Vec<S<RawNode>> = self.elements(
            "nodes",
            nodes_value,
            "node keys: name, role, labels, engine_labels, engine_options, engine; label values are strings",
        );
        let raw_networks: Vec<S<RawNetwork>> = self.elements(
            "networks",
            get("networks"),
            "network keys: name, attachable, encrypted, subnet",
        );
        let raw_services: Vec<S<RawService>> = self.elements("services", get("services"), "service keys: name, image, command, replicas (a number up to 1000), mode, constraints, networks, endpoint_mode");
        let raw_containers: Vec<S<RawContainer>> = self.elements(
            "containers",
            get("containers"),
            "container keys: name, node (or constraints), image, command, networks, aliases",
        );
        let raw_checks: Vec<S<RawCheck>> = self.elements(
            "checks",
            get("checks"),
            "each check is a table: kind plus the keys its kind takes",
        );

        let name = self.scenario_name(name);
        let default_engine = self.default_engine(default_engine);
        if nodes_value.is_none() {
            self.push(
                Problem::new("the scenario declares no nodes", Some(0..0))
                    .help("add a `[[nodes]]` section with `name` and `role = \"manager\"`"),
            );
        }

        let nodes = self.nodes(raw_nodes, &default_engine, topology, nodes_value.map(|v| v.span()));
        let networks = self.networks(raw_networks, topology);
        if topology == Topology::Classic {
            for s in &raw_services {
                self.push(
                    Problem::new(
                        format!("service `{}` needs swarm mode", s.get_ref().name.get_ref()),
                        span_of(&s.get_ref().name),
                    )
                    .label("in a classic scenario")
                    .help("the classic topology runs plain containers: declare it in `[[containers]]` with `node = ...` or `constraints = [\"constraint:node==NAME\"]`"),
                );
            }
        }
        let services = self.services(raw_services, &networks);
        let containers = self.containers(raw_containers, &nodes, &networks, topology);
        let stacks = self.stacks(get("stacks"), path);
        let declared = kinds::Declared {
            nodes: &nodes,
            networks: &networks,
            services: &services,
            containers: &containers,
            stacks: &stacks,
            topology,
            source: path,
        };
        let checks = self.checks(raw_checks, &declared);
        let timeouts = merge_timeouts(timeouts, PhaseTimeouts::for_nodes(nodes.len()));
        if let (Some(f), Some(v)) = (&faults, faults_value) {
            self.fault_problems(f, v.span(), &nodes);
        }

        if let (Some(d), Some(v)) = (&digitalocean, digitalocean_value) {
            self.digitalocean_problems(d, v.span(), &nodes, topology);
        }

        Some(Scenario {
            name: name?,
            description,
            source: path.to_string(),
            nodes,
            networks,
            services,
            containers,
            stacks,
            checks,
            timeouts,
            faults,
            digitalocean: digitalocean.unwrap_or_default(),
            topology,
            ingress,
        })
    }

    fn ingress(&mut self, value: Option<&S<DeValue<'_>>>, topology: Topology) -> bool {
        let ingress_value: Option<S<bool>> = value.and_then(|v| {
            self.de(
                v,
                "`ingress = false` removes the swarm's routing mesh; the default is true",
            )
        });
        if let (Topology::Classic, Some(v)) = (topology, &ingress_value) {
            self.push(
                Problem::new("`ingress` is a swarm setting", span_of(v))
                    .label("in a classic scenario")
                    .help("the classic topology has no swarm and no routing mesh: remove `ingress`"),
            );
        }
        ingress_value.map(|v| v.into_inner()).unwrap_or(true)
    }

    /// More nodes than [`MAX_NODES`] ends validation (recorded as a problem).
    fn too_many_nodes(&mut self, nodes_value: Option<&S<DeValue<'_>>>) -> bool {
        let too_many = nodes_value
            .and_then(|v| v.get_ref().as_array().map(|a| (a.len(), v.span())))
            .filter(|(n, _)| *n > MAX_NODES);
        if let Some((n, span)) = too_many {
            self.push(
                Problem::new(
                    format!("{n} nodes declared; swarm-e2e supports at most {MAX_NODES}"),
                    Some(span),
                )
                .label("too many nodes")
                .help("split the scenario, or check for a generated file gone wrong"),
            );
            return true;
        }
        false
    }

    fn scenario_name(&mut self, name: Option<S<String>>) -> Option<String> {
        match name {
            Some(n) => {
                self.dns_name(&n, "cluster name", 40);
                Some(n.into_inner())
            }
            None => {
                self.push(
                    Problem::new("the scenario has no `name`", Some(0..0))
                        .help("add `name = \"my-cluster\"` at the top of the file"),
                );
                None
            }
        }
    }

    fn default_engine(&mut self, engine: Option<S<String>>) -> String {
        match engine {
            Some(e) => {
                self.engine_version(&e);
                e.into_inner()
            }
            None => DEFAULT_ENGINE.to_string(),
        }
    }

    fn unknown_top_level_keys(&mut self, table: &DeTable<'_>) {
        for (key, _) in table.iter() {
            let k: &str = key.get_ref();
            if !TOP_LEVEL_KEYS.contains(&k) {
                let help = match did_you_mean(k, TOP_LEVEL_KEYS.iter().copied()) {
                    Some(g) => format!("did you mean `{g}`?"),
                    None => format!("allowed top-level keys: {}", TOP_LEVEL_KEYS.join(", ")),
                };
                self.push(
                    Problem::new(format!("unknown key `{k}`"), Some(key.span()))
                        .label("unknown key")
                        .help(help),
                );
            }
        }
    }

    fn topology(&mut self, value: Option<&S<String>>) -> Topology {
        match value.map(|t| t.get_ref().as_str()) {
            None | Some("swarm") => Topology::Swarm,
            Some("classic") => Topology::Classic,
            Some(other) => {
                let help = match did_you_mean(other, ["swarm", "classic"]) {
                    Some(g) => format!("did you mean `{g}`?"),
                    None => "`swarm` (swarm mode, the default) or `classic` (a key-value store and `--cluster-store`, the 2015 flow)".into(),
                };
                self.push(Problem::new(format!("unknown topology `{other}`"), value.and_then(span_of)).help(help));
                Topology::Swarm
            }
        }
    }

    /// The `[faults]` table's rules beyond its types: timings, scope shapes, node names.
    fn fault_problems(&mut self, f: &FakeFaults, span: Range<usize>, nodes: &[Node]) {
        for (message, help) in f.timing_problems() {
            self.push(
                Problem::new(message, Some(span.clone()))
                    .label("in this table")
                    .help(help),
            );
        }
        for scope in f.scopes.iter().flatten() {
            let well_formed = scope.split_once(':').is_some_and(|(resource, action)| {
                !resource.is_empty()
                    && resource.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && matches!(action, "create" | "read" | "update" | "delete" | "admin")
            });
            if !well_formed {
                self.push(
                    Problem::new(format!("`{scope}` is not a DigitalOcean scope"), Some(span.clone()))
                        .label("in this table")
                        .help("scopes are RESOURCE:ACTION, e.g. `droplet:create`, `tag:read`, `ssh_key:delete`"),
                );
            }
        }
        for name in f.stuck_in_new.iter().chain(&f.goes_off) {
            if !nodes.iter().any(|n| &n.name == name) {
                let help = match did_you_mean(name, nodes.iter().map(|n| n.name.as_str())) {
                    Some(g) => format!("did you mean `{g}`?"),
                    None => "name a node declared in [[nodes]]".into(),
                };
                self.push(
                    Problem::new(format!("fault names unknown node `{name}`"), Some(span.clone()))
                        .label("in this table")
                        .help(help),
                );
            }
        }
    }

    /// The `[digitalocean]` table's rules the model can judge alone: slugs have a slug's
    /// shape, `sizes` names declared droplets, boot commands are one line of something.
    fn digitalocean_problems(
        &mut self,
        d: &DigitalOceanSettings,
        span: std::ops::Range<usize>,
        nodes: &[Node],
        topology: Topology,
    ) {
        let slugs = [("region", &d.region), ("size", &d.size), ("image", &d.image)];
        let sized = d.sizes.iter().map(|(node, size)| (node.as_str(), size));
        for (key, slug) in slugs
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v)))
            .chain(sized.map(|(n, s)| (format!("sizes.{n}"), s)))
        {
            if !crate::valid_slug(slug) {
                self.push(
                    Problem::new(format!("`{key} = \"{slug}\"` is not a DigitalOcean slug"), Some(span.clone()))
                        .label("in this table")
                        .help("slugs are lowercase letters, digits and `-`, e.g. region `nyc3`, size `s-1vcpu-1gb`, image `ubuntu-24-04-x64`"),
                );
            }
        }
        let mut droplets: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        if topology == Topology::Classic {
            droplets.push(KV_STORE_NODE);
        }
        for node in d.sizes.keys() {
            if !droplets.contains(&node.as_str()) {
                let help = match did_you_mean(node, droplets.iter().copied()) {
                    Some(g) => format!("did you mean `{g}`?"),
                    None => "name a node declared in [[nodes]]".into(),
                };
                self.push(
                    Problem::new(format!("`sizes` names unknown node `{node}`"), Some(span.clone()))
                        .label("in this table")
                        .help(help),
                );
            }
        }
        for command in &d.boot_commands {
            if command.trim().is_empty() || command.contains('\0') {
                self.push(
                    Problem::new("a boot command is empty", Some(span.clone()))
                        .label("in this table")
                        .help("each entry of `boot_commands` is one shell command, e.g. \"sysctl -w net.core.somaxconn=1024\""),
                );
            }
        }
    }

    /// Names that end up in hostnames, container names and DNS: letters, digits, `-`
    /// (and `.` where `allow_dot`), starting and ending with a letter or digit.
    pub(crate) fn name_rule(
        &mut self,
        name: &S<String>,
        what: &str,
        max: usize,
        allow_dot: bool,
        allow_underscore: bool,
    ) {
        let n = name.get_ref();
        let ok_char = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || (allow_dot && c == '.')
                || (allow_underscore && c == '_')
        };
        let edges_ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
        if n.is_empty() || n.len() > max || !n.chars().all(ok_char) || !edges_ok {
            let extra = match (allow_dot, allow_underscore) {
                (true, true) => ", `.`, `_`",
                (true, false) => ", `.`",
                (false, true) => ", `_`",
                (false, false) => "",
            };
            self.push(
                Problem::new(format!("`{n}` is not a valid {what}"), span_of(name))
                    .label("invalid name")
                    .help(format!(
                        "use 1 to {max} lowercase letters, digits and `-`{extra}, starting and ending with a letter or digit"
                    )),
            );
        }
    }

    fn dns_name(&mut self, name: &S<String>, what: &str, max: usize) {
        self.name_rule(name, what, max, false, false);
    }

    pub(crate) fn engine_version(&mut self, v: &S<String>) {
        if !valid_engine(v.get_ref()) {
            self.push(
                Problem::new(format!("`{}` is not an engine version", v.get_ref()), span_of(v)).help(
                    "write MAJOR.MINOR, e.g. \"20.10\", \"26.1\" or \"28.5\"; the version of a static-binaries image, e.g. \"27.0.0-rc.1\"; or where a static engine archive is (an https:// URL or an absolute path)",
                ),
            );
        }
    }

    pub(crate) fn duplicate(&mut self, seen: &mut BTreeSet<String>, name: &S<String>, what: &str) {
        if !seen.insert(name.get_ref().clone()) {
            self.push(
                Problem::new(format!("{what} `{}` is declared twice", name.get_ref()), span_of(name))
                    .label("duplicate")
                    .help(format!("every {what} needs its own name")),
            );
        }
    }

    pub(crate) fn known_node(&mut self, n: &S<String>, nodes: &[Node]) -> bool {
        if nodes.iter().any(|x| &x.name == n.get_ref()) {
            return true;
        }
        let help = match did_you_mean(n.get_ref(), nodes.iter().map(|x| x.name.as_str())) {
            Some(g) => format!("did you mean `{g}`?"),
            None => format!(
                "declared nodes: {}",
                nodes.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        };
        self.push(
            Problem::new(format!("node `{}` is not declared", n.get_ref()), span_of(n))
                .label("unknown node")
                .help(help),
        );
        false
    }
}

/// The nodes whose declared facts satisfy every constraint of `service`; `None` when a
/// constraint can only be decided at run time.
pub(crate) fn eligible_nodes(service: &Service, nodes: &[Node]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for n in nodes {
        let facts = n.facts();
        let mut all = true;
        for c in &service.constraints {
            all &= c.matches(&facts)?;
        }
        if all {
            out.push(n.name.clone());
        }
    }
    Some(out)
}

pub(crate) fn plain_map(m: BTreeMap<S<String>, S<String>>) -> BTreeMap<String, String> {
    m.into_iter().map(|(k, v)| (k.into_inner(), v.into_inner())).collect()
}

fn merge_timeouts(t: Option<RawTimeouts>, d: PhaseTimeouts) -> PhaseTimeouts {
    let Some(t) = t else { return d };
    PhaseTimeouts {
        provision: t.provision.unwrap_or(d.provision),
        engines_ready: t.engines_ready.unwrap_or(d.engines_ready),
        cluster_formed: t.cluster_formed.unwrap_or(d.cluster_formed),
        checks: t.checks.unwrap_or(d.checks),
        teardown: t.teardown.unwrap_or(d.teardown),
    }
}

pub(crate) fn valid_ipv4_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    addr.parse::<std::net::Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| (8..=30).contains(&p))
}

/// An engine a node can run: a version (see [`valid_engine_version`]), or where a
/// static engine archive is: an http(s) URL, or an absolute path on this machine.
pub fn valid_engine(v: &str) -> bool {
    let location = (v.starts_with("https://") || v.starts_with("http://") || v.starts_with('/'))
        && v.len() <= 2048
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '`' | '$'));
    location || valid_engine_version(v)
}

/// `MAJOR.MINOR`, `MAJOR.MINOR.PATCH`, optionally with a pre-release suffix
/// (`27.0.0-rc.1`): the engine a node image provides.
pub fn valid_engine_version(v: &str) -> bool {
    let (release, pre) = match v.split_once('-') {
        Some((r, p)) => (r, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = release.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.chars().all(|c| c.is_ascii_digit()))
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.len() <= 40
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
        })
}
