//! TOML -> validated [`Scenario`].
//!
//! The file is parsed once into toml's spanned document tree; then every top-level key and
//! every element of every array is deserialized on its own, so one bad node does not hide
//! the problems of the next. Semantic rules run over the spanned raw values afterwards.
//! All problems are collected; the scenario is returned only when there are none.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::constraint::Constraint;
use crate::diag::{Problem, ScenarioError, did_you_mean};
use crate::{
    BUSYBOX, Check, CheckKind, Container, DEFAULT_ENGINE, DEFAULT_LOSS_PERCENT, DEFAULT_TRANSFER_BYTES,
    DigitalOceanSettings, EndpointMode, FakeFaults, KV_STORE_NODE, MAX_PING_PAYLOAD, MAX_TRANSFER_BYTES, Network, Node,
    Payload, PhaseTimeouts, Role, Scenario, Service, ServiceMode, Topology,
};

/// More nodes than this is refused: a local run of that size cannot fit one machine, and a
/// cloud run of that size is a typo more often than an intent.
pub const MAX_NODES: usize = 128;
const MAX_REPLICAS: u64 = 1000;
/// Scenario files larger than this are refused before parsing.
const MAX_FILE_BYTES: usize = 1024 * 1024;

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default, with = "humantime_serde")]
    provision: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    engines_ready: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    cluster_formed: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    checks: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    teardown: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: S<String>,
    role: Option<S<String>>,
    #[serde(default)]
    labels: BTreeMap<S<String>, S<String>>,
    #[serde(default)]
    engine_labels: BTreeMap<S<String>, S<String>>,
    #[serde(default)]
    engine_options: BTreeMap<S<String>, S<toml::Value>>,
    engine: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: S<String>,
    attachable: Option<bool>,
    encrypted: Option<bool>,
    subnet: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: S<String>,
    image: Option<S<String>>,
    command: Option<Vec<String>>,
    replicas: Option<S<u64>>,
    mode: Option<S<String>>,
    #[serde(default)]
    constraints: Vec<S<String>>,
    #[serde(default)]
    networks: Vec<S<String>>,
    endpoint_mode: Option<S<String>>,
    #[serde(default)]
    preferences: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    name: S<String>,
    node: Option<S<String>>,
    #[serde(default)]
    constraints: Vec<S<String>>,
    image: Option<S<String>>,
    command: Option<Vec<String>>,
    #[serde(default)]
    networks: Vec<S<String>>,
    #[serde(default)]
    aliases: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Option<S<String>>,
    kind: S<String>,
    from: Option<S<String>>,
    network: Option<S<String>>,
    target: Option<S<String>>,
    service: Option<S<String>>,
    expect_nodes: Option<S<Vec<S<String>>>>,
    expect_counts: Option<S<BTreeMap<S<String>, S<u64>>>>,
    node: Option<S<String>>,
    label: Option<S<String>>,
    query: Option<S<String>>,
    payload: Option<S<i64>>,
    to: Option<S<String>>,
    nodes: Option<S<Vec<S<String>>>>,
    percent: Option<S<i64>>,
    bytes: Option<S<i64>>,
    timeout: Option<S<String>>,
    retries: Option<S<i64>>,
}

/// The most retries a check may have (`retries`, `run --retries`).
pub const MAX_RETRIES: u32 = 5;

const TOP_LEVEL_KEYS: &[&str] = &[
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
    "checks",
];
const CHECK_KINDS: &[&str] = &[
    "ping-by-name",
    "placement",
    "pending",
    "dns",
    "network",
    "membership",
    "starts-when-labelled",
    "drain",
    "pause",
    "node-restart",
    "quorum",
    "cluster-state",
    "mtu",
    "packet-loss",
    "partition",
];

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

/// serde's "invalid type: integer `7`, expected a string" in the words of a scenario
/// file: "expected a string, found the number 7". Other messages pass unchanged.
fn plain_type_error(message: &str) -> String {
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

fn toml_problem(e: &toml::de::Error, default_help: &str) -> Problem {
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

struct Parser {
    problems: Vec<Problem>,
    /// The file's text, for the lines of what the model keeps (a check's line).
    text: String,
}

fn span_of<T>(s: &S<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Parser {
    fn push(&mut self, p: Problem) {
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
    fn elements<T: DeserializeOwned>(&mut self, key: &str, value: Option<&S<DeValue<'_>>>, help: &str) -> Vec<T> {
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

        let name: Option<S<String>> = get("name").and_then(|v| self.de(v, "the cluster name is a string"));
        let description: Option<String> = get("description").and_then(|v| self.de(v, "a description is a string"));
        let default_engine: Option<S<String>> =
            get("engine").and_then(|v| self.de(v, "an engine version like \"20.10\""));
        let topology_value: Option<S<String>> =
            get("topology").and_then(|v| self.de(v, "`topology = \"swarm\"` or `topology = \"classic\"`"));
        let topology = match topology_value.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("swarm") => Topology::Swarm,
            Some("classic") => Topology::Classic,
            Some(other) => {
                let help = match did_you_mean(other, ["swarm", "classic"]) {
                    Some(g) => format!("did you mean `{g}`?"),
                    None => "`swarm` (swarm mode, the default) or `classic` (a key-value store and `--cluster-store`, the 2015 flow)".into(),
                };
                self.push(
                    Problem::new(
                        format!("unknown topology `{other}`"),
                        topology_value.as_ref().and_then(span_of),
                    )
                    .help(help),
                );
                Topology::Swarm
            }
        };
        let ingress_value: Option<S<bool>> = get("ingress").and_then(|v| {
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
        let ingress = ingress_value.map(|v| v.into_inner()).unwrap_or(true);
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

        let name = match name {
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
        };
        let default_engine = match default_engine {
            Some(e) => {
                self.engine_version(&e);
                e.into_inner()
            }
            None => DEFAULT_ENGINE.to_string(),
        };
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
        let checks = self.checks(raw_checks, &nodes, &networks, &services, &containers, topology);
        let timeouts = merge_timeouts(timeouts, PhaseTimeouts::for_nodes(nodes.len()));
        if let (Some(f), Some(v)) = (&faults, faults_value) {
            for (message, help) in f.timing_problems() {
                self.push(Problem::new(message, Some(v.span())).label("in this table").help(help));
            }
            for scope in f.scopes.iter().flatten() {
                let well_formed = scope.split_once(':').is_some_and(|(resource, action)| {
                    !resource.is_empty()
                        && resource.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && matches!(action, "create" | "read" | "update" | "delete" | "admin")
                });
                if !well_formed {
                    self.push(
                        Problem::new(format!("`{scope}` is not a DigitalOcean scope"), Some(v.span()))
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
                        Problem::new(format!("fault names unknown node `{name}`"), Some(v.span()))
                            .label("in this table")
                            .help(help),
                    );
                }
            }
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
            checks,
            timeouts,
            faults,
            digitalocean: digitalocean.unwrap_or_default(),
            topology,
            ingress,
        })
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
    fn name_rule(&mut self, name: &S<String>, what: &str, max: usize, allow_dot: bool, allow_underscore: bool) {
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
            let extra = if allow_dot { ", `.`" } else { "" };
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

    fn engine_version(&mut self, v: &S<String>) {
        if !valid_engine(v.get_ref()) {
            self.push(
                Problem::new(format!("`{}` is not an engine version", v.get_ref()), span_of(v)).help(
                    "write MAJOR.MINOR, e.g. \"20.10\", \"26.1\" or \"28.5\"; the version of a static-binaries image, e.g. \"27.0.0-rc.1\"; or where a static engine archive is (an https:// URL or an absolute path)",
                ),
            );
        }
    }

    fn duplicate(&mut self, seen: &mut BTreeSet<String>, name: &S<String>, what: &str) {
        if !seen.insert(name.get_ref().clone()) {
            self.push(
                Problem::new(format!("{what} `{}` is declared twice", name.get_ref()), span_of(name))
                    .label("duplicate")
                    .help(format!("every {what} needs its own name")),
            );
        }
    }

    fn nodes(
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
            for k in node.engine_labels.keys() {
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
            let mut engine_options = BTreeMap::new();
            for (k, v) in &node.engine_options {
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

    fn networks(&mut self, raw: Vec<S<RawNetwork>>, topology: Topology) -> Vec<Network> {
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

    fn known_networks(&mut self, wanted: &[S<String>], networks: &[Network], need_attachable: bool) -> Vec<String> {
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

    fn services(&mut self, raw: Vec<S<RawService>>, networks: &[Network]) -> Vec<Service> {
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

    fn image(&mut self, image: Option<S<String>>) -> String {
        match image {
            None => BUSYBOX.to_string(),
            Some(i) if i.get_ref().trim().is_empty() => {
                self.push(Problem::new("the image name is empty", span_of(&i)).help("omit `image` to use busybox"));
                BUSYBOX.to_string()
            }
            Some(i) => i.into_inner(),
        }
    }

    fn constraints(&mut self, raw: &[S<String>]) -> Vec<Constraint> {
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

    fn containers(
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
    fn place_container(&mut self, c: &RawContainer, nodes: &[Node]) -> Option<String> {
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

    fn known_node(&mut self, n: &S<String>, nodes: &[Node]) -> bool {
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

    fn checks(
        &mut self,
        raw: Vec<S<RawCheck>>,
        nodes: &[Node],
        networks: &[Network],
        services: &[Service],
        containers: &[Container],
        topology: Topology,
    ) -> Vec<Check> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for c in raw {
            let span = c.span();
            let c = c.into_inner();
            let kind_name = c.kind.get_ref().as_str();
            let fields: [(&str, bool); 14] = [
                ("from", c.from.is_some()),
                ("network", c.network.is_some()),
                ("target", c.target.is_some()),
                ("service", c.service.is_some()),
                ("expect_nodes", c.expect_nodes.is_some()),
                ("expect_counts", c.expect_counts.is_some()),
                ("node", c.node.is_some()),
                ("label", c.label.is_some()),
                ("query", c.query.is_some()),
                ("payload", c.payload.is_some()),
                ("to", c.to.is_some()),
                ("nodes", c.nodes.is_some()),
                ("percent", c.percent.is_some()),
                ("bytes", c.bytes.is_some()),
            ];
            let (required, optional): (&[&str], &[&str]) = match kind_name {
                "ping-by-name" => (&["from", "network", "target"], &["payload"]),
                "placement" => (&["service"], &["expect_nodes", "expect_counts"]),
                "pending" => (&["service"], &[]),
                "dns" => (&["from", "network", "query", "service"], &[]),
                "network" => (&["network"], &[]),
                "membership" | "quorum" | "cluster-state" => (&[], &[]),
                "starts-when-labelled" => (&["service", "node", "label"], &[]),
                "drain" | "pause" => (&["service", "node"], &[]),
                "node-restart" => (&["node", "service"], &["from", "network"]),
                "mtu" => (&["from", "to", "network"], &["bytes"]),
                "packet-loss" => (&["from", "to", "network"], &["percent", "bytes"]),
                "partition" => (&["nodes", "from", "network", "target"], &[]),
                other => {
                    let help = match did_you_mean(other, CHECK_KINDS.iter().copied()) {
                        Some(g) => format!("did you mean `{g}`?"),
                        None => format!("known kinds: {}", CHECK_KINDS.join(", ")),
                    };
                    self.push(Problem::new(format!("unknown check kind `{other}`"), span_of(&c.kind)).help(help));
                    continue;
                }
            };
            if topology == Topology::Classic
                && !matches!(kind_name, "ping-by-name" | "network" | "mtu" | "cluster-state")
            {
                self.push(
                    Problem::new(format!("check kind `{kind_name}` needs swarm mode"), span_of(&c.kind))
                        .label("in a classic scenario")
                        .help("classic scenarios check `ping-by-name`, `network`, `mtu` and `cluster-state`"),
                );
                continue;
            }
            let mut complete = true;
            for (field, present) in fields {
                if present && !required.contains(&field) && !optional.contains(&field) {
                    self.push(
                        Problem::new(
                            format!("`{field}` does not apply to checks of kind `{kind_name}`"),
                            Some(span.clone()),
                        )
                        .help(match [required, optional].concat() {
                            takes if takes.is_empty() => {
                                format!(
                                    "a `{kind_name}` check takes nothing but `name`, `kind`, `timeout` and `retries`"
                                )
                            }
                            takes => format!("a `{kind_name}` check takes: {}", takes.join(", ")),
                        }),
                    );
                }
                if !present && required.contains(&field) {
                    complete = false;
                    self.push(
                        Problem::new(format!("a `{kind_name}` check needs `{field}`"), span_of(&c.kind))
                            .help(format!("add `{field} = ...` to this check")),
                    );
                }
            }
            if !complete {
                continue;
            }
            let subject = c
                .service
                .as_ref()
                .or(c.target.as_ref())
                .or(c.network.as_ref())
                .map(|s| s.get_ref().clone())
                .unwrap_or_else(|| kind_name.to_string());
            let name = match &c.name {
                Some(n) => {
                    self.name_rule(n, "check name", 80, true, true);
                    self.duplicate(&mut seen, n, "check");
                    n.get_ref().clone()
                }
                None => {
                    let generated = S::new(span.clone(), format!("{kind_name}-{subject}"));
                    self.duplicate(&mut seen, &generated, "check");
                    generated.into_inner()
                }
            };
            let kind = match kind_name {
                "ping-by-name" => {
                    let (from, network, target) = (c.from.unwrap(), c.network.unwrap(), c.target.unwrap());
                    self.known_node(&from, nodes);
                    let nets = self.known_networks(std::slice::from_ref(&network), networks, true);
                    let target_networks = services
                        .iter()
                        .find(|s| &s.name == target.get_ref())
                        .map(|s| &s.networks)
                        .or_else(|| {
                            containers
                                .iter()
                                .find(|x| &x.name == target.get_ref() || x.aliases.contains(target.get_ref()))
                                .map(|x| &x.networks)
                        });
                    match target_networks {
                        None => self.push(
                            Problem::new(
                                format!(
                                    "`{}` is neither a declared service, a container, nor a container's alias",
                                    target.get_ref()
                                ),
                                span_of(&target),
                            )
                            .help("declare the target in `[[services]]` or `[[containers]]`"),
                        ),
                        Some(tn) if !nets.is_empty() && !tn.contains(network.get_ref()) => self.push(
                            Problem::new(
                                format!(
                                    "`{}` is not attached to network `{}`",
                                    target.get_ref(),
                                    network.get_ref()
                                ),
                                span_of(&target),
                            )
                            .help(format!("add \"{}\" to its `networks`", network.get_ref())),
                        ),
                        Some(_) => {}
                    }
                    let payload = match &c.payload {
                        None => Payload::OverlayMtu,
                        Some(p) => match u32::try_from(*p.get_ref()) {
                            Ok(0) => Payload::Off,
                            Ok(n) if n <= MAX_PING_PAYLOAD => Payload::Bytes(n),
                            _ => {
                                self.push(
                                    Problem::new(
                                        format!("`payload = {}` is no ping size", p.get_ref()),
                                        span_of(p),
                                    )
                                    .help(format!(
                                        "give 1 to {MAX_PING_PAYLOAD} bytes, 0 for only the small ping, or leave it out \
                                         to fill the overlay's MTU"
                                    )),
                                );
                                Payload::OverlayMtu
                            }
                        },
                    };
                    CheckKind::PingByName {
                        from: from.into_inner(),
                        network: network.into_inner(),
                        target: target.into_inner(),
                        payload,
                    }
                }
                "placement" => {
                    let service_name = c.service.unwrap();
                    let Some(service) = self.known_service(&service_name, services) else {
                        continue;
                    };
                    let expect_nodes = match c.expect_nodes {
                        Some(list) => {
                            let list = list.into_inner();
                            if list.is_empty() {
                                self.push(
                                    Problem::new("`expect_nodes` is empty", span_of(&service_name)).help(
                                        "a service that must not run anywhere is checked with kind = \"pending\"",
                                    ),
                                );
                            }
                            list.iter()
                                .filter(|n| self.known_node(n, nodes))
                                .map(|n| n.get_ref().clone())
                                .collect()
                        }
                        None => match eligible_nodes(service, nodes) {
                            Some(e) if e.is_empty() => {
                                self.push(
                                    Problem::new(
                                        format!("no declared node satisfies the constraints of `{}`", service.name),
                                        span_of(&service_name),
                                    )
                                    .help("check with kind = \"pending\", or fix the constraints"),
                                );
                                continue;
                            }
                            Some(e) => e,
                            None => {
                                self.push(
                                    Problem::new(
                                        format!("the nodes for `{}` cannot be derived from its constraints", service.name),
                                        span_of(&service_name),
                                    )
                                    .help("constraints on node.id or platform are only known at run time: add `expect_nodes`"),
                                );
                                continue;
                            }
                        },
                    };
                    let expect_counts = c.expect_counts.map(|counts| {
                        let counts = counts.into_inner();
                        let total: u64 = counts.values().map(|v| *v.get_ref()).sum();
                        if let ServiceMode::Replicated { replicas } = service.mode
                            && total != replicas
                        {
                            self.push(
                                Problem::new(
                                    format!(
                                        "`expect_counts` adds up to {total}, but `{}` has {replicas} replica(s)",
                                        service.name
                                    ),
                                    span_of(&service_name),
                                )
                                .help("the counts per node must add up to the replicas"),
                            );
                        }
                        counts
                            .into_iter()
                            .filter(|(n, _)| self.known_node(n, nodes))
                            .map(|(n, v)| (n.into_inner(), v.into_inner()))
                            .collect::<BTreeMap<String, u64>>()
                    });
                    let expect_nodes = match &expect_counts {
                        Some(counts) => counts.iter().filter(|(_, v)| **v > 0).map(|(n, _)| n.clone()).collect(),
                        None => expect_nodes,
                    };
                    CheckKind::Placement {
                        service: service_name.into_inner(),
                        expect_nodes,
                        expect_counts,
                    }
                }
                "dns" => {
                    let (from, network, query, service) = (
                        c.from.unwrap(),
                        c.network.unwrap(),
                        c.query.unwrap(),
                        c.service.unwrap(),
                    );
                    self.known_node(&from, nodes);
                    self.known_networks(std::slice::from_ref(&network), networks, true);
                    if let Some(s) = self.known_service(&service, services)
                        && !s.networks.contains(network.get_ref())
                    {
                        self.push(
                            Problem::new(
                                format!("`{}` is not attached to network `{}`", s.name, network.get_ref()),
                                span_of(&service),
                            )
                            .help(format!("add \"{}\" to its `networks`", network.get_ref())),
                        );
                    }
                    CheckKind::Dns {
                        from: from.into_inner(),
                        network: network.into_inner(),
                        query: query.into_inner(),
                        service: service.into_inner(),
                    }
                }
                "network" => {
                    let network = c.network.unwrap();
                    self.known_networks(std::slice::from_ref(&network), networks, false);
                    CheckKind::Network {
                        network: network.into_inner(),
                    }
                }
                "membership" => CheckKind::Membership,
                "cluster-state" => CheckKind::ClusterState,
                "quorum" => {
                    let managers = nodes.iter().filter(|n| n.role == Role::Manager).count();
                    if managers < 3 {
                        self.push(
                            Problem::new(
                                format!("a quorum check needs at least 3 managers; the scenario has {managers}"),
                                Some(span.clone()),
                            )
                            .help("declare three nodes with role = \"manager\""),
                        );
                    }
                    CheckKind::Quorum
                }
                "starts-when-labelled" => {
                    let (service_name, node, label) = (c.service.unwrap(), c.node.unwrap(), c.label.unwrap());
                    self.known_node(&node, nodes);
                    if !label.get_ref().contains('=') || label.get_ref().starts_with('=') {
                        self.push(
                            Problem::new(format!("label `{}` is not KEY=VALUE", label.get_ref()), span_of(&label))
                                .help("e.g. label = \"gpu=yes\""),
                        );
                    }
                    if let Some(service) = self.known_service(&service_name, services)
                        && let Some(e) = eligible_nodes(service, nodes).filter(|e| !e.is_empty())
                    {
                        self.push(
                            Problem::new(
                                format!("`{}` can already be placed on {}", service.name, e.join(", ")),
                                span_of(&service_name),
                            )
                            .help("the service must be pending until the label is added"),
                        );
                    }
                    CheckKind::StartsWhenLabelled {
                        service: service_name.into_inner(),
                        node: node.into_inner(),
                        label: label.into_inner(),
                    }
                }
                "drain" | "pause" => {
                    let (service_name, node) = (c.service.unwrap(), c.node.unwrap());
                    self.known_node(&node, nodes);
                    self.known_service(&service_name, services);
                    let (service, node) = (service_name.into_inner(), node.into_inner());
                    if kind_name == "drain" {
                        CheckKind::Drain { service, node }
                    } else {
                        CheckKind::Pause { service, node }
                    }
                }
                "node-restart" => {
                    let (service_name, node) = (c.service.unwrap(), c.node.unwrap());
                    self.known_node(&node, nodes);
                    self.known_service(&service_name, services);
                    if let Some(f) = &c.from {
                        self.known_node(f, nodes);
                    }
                    if let Some(n) = &c.network {
                        self.known_networks(std::slice::from_ref(n), networks, true);
                    }
                    if c.from.is_some() != c.network.is_some() {
                        self.push(
                            Problem::new("`from` and `network` go together", Some(span.clone()))
                                .help("give both to check name resolution after the restart, or neither"),
                        );
                    }
                    CheckKind::NodeRestart {
                        node: node.into_inner(),
                        service: service_name.into_inner(),
                        from: c.from.map(|f| f.into_inner()),
                        network: c.network.map(|n| n.into_inner()),
                    }
                }
                "mtu" | "packet-loss" => {
                    let (from, to, network) = (c.from.unwrap(), c.to.unwrap(), c.network.unwrap());
                    self.known_node(&from, nodes);
                    self.known_node(&to, nodes);
                    self.known_networks(std::slice::from_ref(&network), networks, true);
                    if from.get_ref() == to.get_ref() {
                        self.push(
                            Problem::new(
                                format!(
                                    "`from` and `to` are both {}: nothing would cross the underlay",
                                    to.get_ref()
                                ),
                                span_of(&to),
                            )
                            .help("name two different nodes"),
                        );
                    }
                    let bytes = match &c.bytes {
                        None => DEFAULT_TRANSFER_BYTES,
                        Some(b) => match u64::try_from(*b.get_ref()) {
                            Ok(n) if (64 << 10..=MAX_TRANSFER_BYTES).contains(&n) => n,
                            _ => {
                                self.push(
                                    Problem::new(format!("`bytes = {}` is out of range", b.get_ref()), span_of(b)).help(
                                        format!(
                                            "give {} to {MAX_TRANSFER_BYTES} bytes, or leave it out for {DEFAULT_TRANSFER_BYTES}",
                                            64 << 10
                                        ),
                                    ),
                                );
                                DEFAULT_TRANSFER_BYTES
                            }
                        },
                    };
                    let (from, to, network) = (from.into_inner(), to.into_inner(), network.into_inner());
                    if kind_name == "mtu" {
                        CheckKind::Mtu {
                            from,
                            to,
                            network,
                            bytes,
                        }
                    } else {
                        let percent = match &c.percent {
                            None => DEFAULT_LOSS_PERCENT,
                            Some(p) => match u32::try_from(*p.get_ref()) {
                                Ok(n) if (1..=50).contains(&n) => n,
                                _ => {
                                    self.push(
                                        Problem::new(format!("`percent = {}` is out of range", p.get_ref()), span_of(p))
                                            .help(
                                                "give 1 to 50 (a share of packets dropped; more is an outage, which `partition` checks)",
                                            ),
                                    );
                                    DEFAULT_LOSS_PERCENT
                                }
                            },
                        };
                        CheckKind::PacketLoss {
                            from,
                            to,
                            network,
                            percent,
                            bytes,
                        }
                    }
                }
                "partition" => {
                    let (cut, from, network, target) =
                        (c.nodes.unwrap(), c.from.unwrap(), c.network.unwrap(), c.target.unwrap());
                    self.known_node(&from, nodes);
                    self.known_networks(std::slice::from_ref(&network), networks, true);
                    let known_target = services.iter().any(|s| &s.name == target.get_ref())
                        || containers
                            .iter()
                            .any(|x| &x.name == target.get_ref() || x.aliases.contains(target.get_ref()));
                    if !known_target {
                        self.push(
                            Problem::new(
                                format!("target `{}` is neither a service nor a container", target.get_ref()),
                                span_of(&target),
                            )
                            .help("name a declared service or container (or a container's alias)"),
                        );
                    }
                    let cut_span = span_of(&cut);
                    let cut: Vec<String> = cut
                        .into_inner()
                        .into_iter()
                        .filter(|n| self.known_node(n, nodes))
                        .map(|n| n.into_inner())
                        .collect();
                    self.partition_sides(&cut, nodes, cut_span.or(Some(span.clone())));
                    CheckKind::Partition {
                        nodes: cut,
                        from: from.into_inner(),
                        network: network.into_inner(),
                        target: target.into_inner(),
                    }
                }
                _ => {
                    let service_name = c.service.unwrap();
                    let Some(service) = self.known_service(&service_name, services) else {
                        continue;
                    };
                    if let Some(e) = eligible_nodes(service, nodes).filter(|e| !e.is_empty()) {
                        self.push(
                            Problem::new(
                                format!(
                                    "`{}` can be placed on {}, so it will not stay pending",
                                    service.name,
                                    e.join(", ")
                                ),
                                span_of(&service_name),
                            )
                            .help("a pending check needs constraints that no declared node satisfies"),
                        );
                    }
                    CheckKind::Pending {
                        service: service_name.into_inner(),
                    }
                }
            };
            let line = Some(crate::diag::line_col(&self.text, span.start).0);
            let timeout = c.timeout.as_ref().and_then(|t| self.check_timeout(t));
            let retries = c.retries.as_ref().and_then(|r| match u32::try_from(*r.get_ref()) {
                Ok(n) if n <= MAX_RETRIES => Some(n),
                _ => {
                    self.push(
                        Problem::new(format!("{} retries is not 0 to {MAX_RETRIES}", r.get_ref()), span_of(r))
                            .help("a check that needs more tries than that is broken, not flaky"),
                    );
                    None
                }
            });
            out.push(Check {
                name,
                kind,
                line,
                timeout,
                retries,
            });
        }
        // Declared state is always verified: a label lost or a node drained after the
        // cluster formed passes every other check (running tasks are not moved). A
        // scenario with a `cluster-state` check of its own names it as it likes.
        if !out.iter().any(|c| c.kind == CheckKind::ClusterState) {
            let name = [IMPLICIT_STATE_CHECK, "implicit-declared-state"]
                .into_iter()
                .find(|n| !seen.contains(*n))
                .unwrap_or("implicit-cluster-state");
            out.push(Check {
                name: name.to_string(),
                kind: CheckKind::ClusterState,
                line: None,
                timeout: None,
                retries: None,
            });
        }
        out
    }

    /// A check's own `timeout`: a duration from 1 s to 1 h.
    fn check_timeout(&mut self, t: &S<String>) -> Option<Duration> {
        match humantime::parse_duration(t.get_ref()) {
            Ok(d) if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) => Some(d),
            Ok(d) => {
                self.push(
                    Problem::new(
                        format!(
                            "a check's `timeout` of {} is out of range",
                            humantime::format_duration(d)
                        ),
                        span_of(t),
                    )
                    .help("from \"1s\" to \"1h\": it bounds the check from start to verdict"),
                );
                None
            }
            Err(_) => {
                self.push(
                    Problem::new(format!("`{}` is not a duration", t.get_ref()), span_of(t))
                        .help("durations are strings like \"30s\", \"90s\" or \"2m\""),
                );
                None
            }
        }
    }

    /// A partition cuts `cut` from the rest; the rest keeps the swarm: the first
    /// manager (the harness talks to the swarm through it) and most managers.
    fn partition_sides(&mut self, cut: &[String], nodes: &[Node], span: Option<Range<usize>>) {
        if cut.is_empty() || cut.len() >= nodes.len() {
            self.push(
                Problem::new(
                    format!("a partition cuts {} of {} node(s)", cut.len(), nodes.len()),
                    span.clone(),
                )
                .help("list the nodes on one side in `nodes`; the other side keeps the rest"),
            );
            return;
        }
        let managers: Vec<&Node> = nodes.iter().filter(|n| n.role == Role::Manager).collect();
        if let Some(first) = managers.first()
            && cut.contains(&first.name)
        {
            self.push(
                Problem::new(format!("`nodes` holds {}, the first manager", first.name), span.clone())
                    .help("the harness talks to the swarm through the first manager: cut other nodes"),
            );
        }
        let cut_managers = managers.iter().filter(|m| cut.contains(&m.name)).count();
        if cut_managers * 2 >= managers.len() && cut_managers > 0 {
            self.push(
                Problem::new(
                    format!(
                        "the cut takes {cut_managers} of {} manager(s): the rest loses quorum",
                        managers.len()
                    ),
                    span,
                )
                .help("cut fewer managers (losing quorum is what `quorum` checks)"),
            );
        }
    }

    fn known_service<'a>(&mut self, name: &S<String>, services: &'a [Service]) -> Option<&'a Service> {
        let found = services.iter().find(|s| &s.name == name.get_ref());
        if found.is_none() {
            let help = match did_you_mean(name.get_ref(), services.iter().map(|s| s.name.as_str())) {
                Some(g) => format!("did you mean `{g}`?"),
                None => "declare it in a `[[services]]` section".into(),
            };
            self.push(
                Problem::new(format!("service `{}` is not declared", name.get_ref()), span_of(name))
                    .label("unknown service")
                    .help(help),
            );
        }
        found
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

fn plain_map(m: BTreeMap<S<String>, S<String>>) -> BTreeMap<String, String> {
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

fn valid_ipv4_cidr(s: &str) -> bool {
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
