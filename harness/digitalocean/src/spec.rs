//! DigitalOcean's own OpenAPI document (the operations swarm-e2e uses, vendored under
//! `fixtures/digitalocean-openapi/`) as a checker of exchanges: what the client sent
//! and what the fake answered, held against the real API's schemas. The test suite
//! records every exchange the fake has (`fake::EXCHANGES_ENV`) and runs them through
//! [`Spec::check`]; a deviation is a bug in the fake or the client, or an entry in
//! [`ALLOWED`] that says why the spec itself is wrong.
//!
//! OpenAPI 3.0 schemas are not JSON Schema: `nullable` becomes a `null` type, and a
//! `readOnly` property is not required in a request (nor `writeOnly` in a response).
//! Beyond the schemas it checks what the spec says in words: `x-request-id` is the
//! body's `request_id`, a 429 leaves `ratelimit-remaining` at 0, pagination links lead
//! back to the route that was listed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::exchange::Exchange;

/// A deviation that is the spec's fault, or outside it, not ours.
pub struct Allowed {
    pub operation: &'static str,
    /// The deviation's location starts with this.
    pub at: &'static str,
    pub why: &'static str,
    /// Whether it applies to this deviation of this exchange.
    pub applies: fn(&Deviation, &Exchange) -> bool,
}

/// The short list of deviations that are the spec's fault (each says why).
pub const ALLOWED: &[Allowed] = &[
    Allowed {
        operation: "firewalls_create",
        at: "request /",
        why: "the spec marks a rule's `ports` required, but an ICMP rule has no ports: \
              DigitalOcean's own Go client (godo: `PortRange string json:\"ports,omitempty\"`, \
              used by doctl and terraform) sends ICMP rules without it; the API answers them \
              with `ports: \"0\"`",
        applies: |d, ex| {
            d.message.contains("\"ports\" is a required property")
                && ex
                    .request_body
                    .as_ref()
                    .and_then(|b| b.pointer(d.at.trim_start_matches("request ")))
                    .is_some_and(|rule| rule["protocol"] == "icmp")
        },
    },
    Allowed {
        operation: "GET /v2/actions/",
        at: "route",
        why: "`actions_get` is in DigitalOcean's full spec but not in the vendored subset (the \
              operations swarm-e2e calls); the fake answers it because a create's action links \
              lead there",
        applies: |_, _| true,
    },
];

/// Corrections made to the document before it is compiled, where its own words
/// contradict its schema: (where, what, why).
pub const ERRATA: &[(&str, &str, &str)] = &[(
    "a droplet's `status` enum",
    "`false` read as \"off\"",
    "the YAML source lists `off` bare, which YAML 1.1 reads as the boolean false; the \
     description beside it says the status \"may be new, active, off, or archive\"",
)];

/// One problem with one exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Deviation {
    /// `droplets_create`, or `METHOD path` when no operation matches.
    pub operation: String,
    pub status: Option<u16>,
    /// `request /names/0`, `response body /droplet/size`, `response header ratelimit-reset`.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for Deviation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} → {s}: {}: {}", self.operation, self.at, self.message),
            None => write!(f, "{} (no response): {}: {}", self.operation, self.at, self.message),
        }
    }
}

struct Param {
    name: String,
    location: String,
    required: bool,
    schema: jsonschema::Validator,
    is_integer: bool,
}

struct Response {
    body: Option<jsonschema::Validator>,
    headers: Vec<(String, jsonschema::Validator, bool)>,
}

struct Operation {
    id: String,
    method: String,
    template: Vec<String>,
    scopes: Vec<String>,
    params: Vec<Param>,
    request: Option<(bool, jsonschema::Validator)>,
    responses: BTreeMap<String, Response>,
}

/// The spec, compiled.
pub struct Spec {
    operations: Vec<Operation>,
}

/// The vendored subset (DigitalOcean's public spec, Apache-2.0).
pub const SUBSET: &str = include_str!("../../../fixtures/digitalocean-openapi/subset.json");

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Request,
    Response,
}

impl Spec {
    /// Compiles the vendored subset.
    /// The vendored subset, compiled once per process.
    pub fn shared() -> &'static Spec {
        static SPEC: std::sync::OnceLock<Spec> = std::sync::OnceLock::new();
        SPEC.get_or_init(Spec::vendored)
    }

    pub fn vendored() -> Spec {
        Spec::from_document(&serde_json::from_str(SUBSET).expect("the vendored spec is JSON"))
            .expect("the vendored spec compiles")
    }

    pub fn from_document(doc: &Value) -> Result<Spec, String> {
        let mut operations = Vec::new();
        let paths = doc["paths"].as_object().ok_or("no paths")?;
        for (path, item) in paths {
            let shared = item["parameters"].as_array().cloned().unwrap_or_default();
            for (method, op) in item.as_object().into_iter().flatten() {
                if !matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                    continue;
                }
                operations.push(compile_operation(path, method, op, &shared)?);
            }
        }
        Ok(Spec { operations })
    }

    /// Operation ids and the scopes their security requirement names.
    pub fn scopes(&self) -> BTreeMap<String, Vec<String>> {
        self.operations
            .iter()
            .map(|o| (o.id.clone(), o.scopes.clone()))
            .collect()
    }

    /// The scopes the spec's `security` names for a request's operation.
    pub fn scopes_of(&self, method: &str, path: &str) -> Option<&[String]> {
        self.find(method, path).map(|o| o.scopes.as_slice())
    }

    /// Every scope a request needs: its operation's (by the spec), and those its query
    /// and body add, as the API enforces them (a droplet create naming an image, SSH
    /// keys or tags; a list by tag; a firewall whose rules name tags or droplets).
    pub fn scopes_needed(&self, method: &str, path: &str, query: &[(String, String)], body: &Value) -> Vec<String> {
        let mut needed: Vec<String> = self.scopes_of(method, path).map(<[String]>::to_vec).unwrap_or_default();
        let path = path.trim_end_matches('/');
        if path.starts_with("/v2/actions") {
            needed.push("actions:read".into());
        }
        let has = |v: &Value| match v {
            Value::Null => false,
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        };
        let mut add = |cond: bool, scopes: &[&str]| {
            if cond {
                needed.extend(scopes.iter().map(|s| s.to_string()));
            }
        };
        match (method, path) {
            ("POST", "/v2/droplets") => {
                add(has(&body["image"]), &["image:read"]);
                add(has(&body["ssh_keys"]), &["ssh_key:read"]);
                add(has(&body["tags"]), &["tag:create"]);
                add(has(&body["vpc_uuid"]), &["vpc:read"]);
            }
            ("GET", "/v2/droplets") => add(query.iter().any(|(k, _)| k == "tag_name"), &["tag:read"]),
            ("POST", "/v2/firewalls") => {
                let rules = ["inbound_rules", "outbound_rules"]
                    .iter()
                    .flat_map(|k| body[*k].as_array().cloned().unwrap_or_default());
                let peers: Vec<Value> = rules
                    .flat_map(|r| [r["sources"].clone(), r["destinations"].clone()])
                    .collect();
                add(
                    has(&body["tags"]) || peers.iter().any(|p| has(&p["tags"])),
                    &["tag:create", "tag:read"],
                );
                add(
                    has(&body["droplet_ids"]) || peers.iter().any(|p| has(&p["droplet_ids"])),
                    &["droplet:read"],
                );
            }
            _ => {}
        }
        needed.sort();
        needed.dedup();
        needed
    }

    /// The operation a request is, e.g. `droplets_get` for `GET /v2/droplets/7`.
    pub fn operation_of(&self, method: &str, path: &str) -> Option<&str> {
        self.find(method, path).map(|o| o.id.as_str())
    }

    fn find(&self, method: &str, path: &str) -> Option<&Operation> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        // Literal segments win over templated ones (`/v2/account/keys` over
        // `/v2/account/{x}`), as in any router.
        self.operations
            .iter()
            .filter(|o| o.method.eq_ignore_ascii_case(method) && o.template.len() == segs.len())
            .filter(|o| o.template.iter().zip(&segs).all(|(t, s)| t.starts_with('{') || t == s))
            .min_by_key(|o| o.template.iter().filter(|t| t.starts_with('{')).count())
    }

    /// The deviations of one exchange that [`ALLOWED`] does not excuse.
    pub fn unexcused(&self, ex: &Exchange) -> Vec<Deviation> {
        self.check(ex).into_iter().filter(|d| !is_allowed(d, ex)).collect()
    }

    /// Every deviation of one exchange, allowed ones included (see [`is_allowed`]).
    pub fn check(&self, ex: &Exchange) -> Vec<Deviation> {
        let status = ex.response.as_ref().map(|r| r.status);
        let Some(op) = self.find(&ex.method, &ex.path) else {
            return vec![Deviation {
                operation: format!("{} {}", ex.method, ex.path),
                status,
                at: "route".into(),
                message: "no operation of the spec has this method and path".into(),
            }];
        };
        let mut out = Vec::new();
        let mut dev = |at: String, message: String| {
            out.push(Deviation {
                operation: op.id.clone(),
                status,
                at,
                message,
            })
        };
        // A request is held to the spec when it was carried out (2xx, or a create whose
        // answer was lost on purpose): the fake accepting what the spec forbids is the
        // fake being laxer than the API, or the client sending what the API refuses.
        // A refused request is a test of that refusal, not a deviation.
        let judged_request = status.is_none_or(|s| (200..300).contains(&s));
        if judged_request {
            check_request(op, ex, &mut dev);
        }
        if let Some(r) = &ex.response {
            check_response(op, ex, r, &mut dev);
        }
        out
    }
}

/// Whether [`ALLOWED`] excuses a deviation of this exchange.
pub fn is_allowed(d: &Deviation, ex: &Exchange) -> bool {
    ALLOWED
        .iter()
        .any(|a| d.operation.starts_with(a.operation) && d.at.starts_with(a.at) && (a.applies)(d, ex))
}

fn check_request(op: &Operation, ex: &Exchange, dev: &mut impl FnMut(String, String)) {
    let segs: Vec<&str> = ex.path.trim_end_matches('/').split('/').collect();
    for p in &op.params {
        let raw: Option<String> = match p.location.as_str() {
            "path" => op
                .template
                .iter()
                .position(|t| *t == format!("{{{}}}", p.name))
                .map(|i| segs[i].to_string()),
            "query" => ex.query.iter().find(|(k, _)| *k == p.name).map(|(_, v)| v.clone()),
            _ => continue,
        };
        match raw {
            None if p.required => dev(format!("request {} {}", p.location, p.name), "required, missing".into()),
            None => {}
            Some(raw) => {
                let value = if p.is_integer {
                    raw.parse::<i64>().map(Value::from).unwrap_or(Value::String(raw))
                } else {
                    Value::String(raw)
                };
                for e in p.schema.iter_errors(&value) {
                    dev(format!("request {} {}", p.location, p.name), e.to_string());
                }
            }
        }
    }
    let known: BTreeSet<&str> = op
        .params
        .iter()
        .filter(|p| p.location == "query")
        .map(|p| p.name.as_str())
        .collect();
    for (k, _) in &ex.query {
        if !known.contains(k.as_str()) {
            dev(format!("request query {k}"), "not a parameter of this operation".into());
        }
    }
    match (&op.request, &ex.request_body) {
        (Some((_, schema)), Some(body)) => {
            if !ex
                .request_content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json"))
            {
                dev(
                    "request content-type".into(),
                    format!("{:?}, not application/json", ex.request_content_type),
                );
            }
            for e in schema.iter_errors(body) {
                dev(format!("request {}", e.instance_path()), e.to_string());
            }
        }
        (Some((true, _)), None) => dev("request body".into(), "required, missing".into()),
        (None, Some(_)) => dev("request body".into(), "this operation takes no body".into()),
        _ => {}
    }
}

fn check_response(
    op: &Operation,
    ex: &Exchange,
    r: &crate::exchange::RecordedResponse,
    dev: &mut impl FnMut(String, String),
) {
    let spec = op
        .responses
        .get(&r.status.to_string())
        .or_else(|| op.responses.get("default"));
    let Some(spec) = spec else {
        dev("response status".into(), "not a status this operation answers".into());
        return;
    };
    for (name, schema, required) in &spec.headers {
        match r.headers.get(name) {
            None if *required => dev(format!("response header {name}"), "declared, missing".into()),
            None => {}
            Some(v) => {
                let value = v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v.clone()));
                for e in schema.iter_errors(&value) {
                    dev(format!("response header {name}"), e.to_string());
                }
            }
        }
    }
    match (&spec.body, &r.body) {
        (Some(schema), Some(body)) => {
            for e in schema.iter_errors(body) {
                dev(format!("response body {}", e.instance_path()), e.to_string());
            }
        }
        (Some(_), None) => dev("response body".into(), "declared, missing".into()),
        (None, Some(_)) => dev("response body".into(), "this response has no content".into()),
        (None, None) => {}
    }
    // What the spec says in words.
    if let Some(body_id) = r.body.as_ref().and_then(|b| b["request_id"].as_str())
        && r.headers.get("x-request-id").map(String::as_str) != Some(body_id)
    {
        dev(
            "response header x-request-id".into(),
            format!(
                "{:?}, but the body's request_id is {body_id:?}",
                r.headers.get("x-request-id")
            ),
        );
    }
    if r.status == 429 && r.headers.get("ratelimit-remaining").map(String::as_str) != Some("0") {
        dev(
            "response header ratelimit-remaining".into(),
            format!("{:?} on a 429 (none is left)", r.headers.get("ratelimit-remaining")),
        );
    }
    if let Some(pages) = r.body.as_ref().and_then(|b| b["links"]["pages"].as_object()) {
        for (rel, link) in pages {
            let path = link
                .as_str()
                .and_then(|l| l.split_once("://"))
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                .map(|p| p.split('?').next().unwrap_or(p));
            if path != Some(ex.path.trim_end_matches('/')) {
                dev(
                    format!("response body /links/pages/{rel}"),
                    format!("{link} does not lead back to {}", ex.path),
                );
            }
        }
    }
}

fn compile_operation(path: &str, method: &str, op: &Value, shared: &[Value]) -> Result<Operation, String> {
    let id = op["operationId"].as_str().unwrap_or(path).to_string();
    let ctx = |e: String| format!("{id}: {e}");
    let scopes = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|req| req.as_object().into_iter().flatten())
        .flat_map(|(_, scopes)| scopes.as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    let mut params = Vec::new();
    for p in shared.iter().chain(op["parameters"].as_array().into_iter().flatten()) {
        let schema = openapi_to_json_schema(&p["schema"], Side::Request);
        params.push(Param {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            location: p["in"].as_str().unwrap_or_default().to_string(),
            required: p["required"].as_bool().unwrap_or(false),
            is_integer: p["schema"]["type"] == "integer",
            schema: compile(&schema).map_err(ctx)?,
        });
    }
    let request = match op["requestBody"]["content"]["application/json"]["schema"].as_object() {
        Some(s) => Some((
            op["requestBody"]["required"].as_bool().unwrap_or(false),
            compile(&openapi_to_json_schema(&Value::Object(s.clone()), Side::Request)).map_err(ctx)?,
        )),
        None => None,
    };
    let mut responses = BTreeMap::new();
    for (status, resp) in op["responses"].as_object().into_iter().flatten() {
        let body = match resp["content"]["application/json"]["schema"].as_object() {
            Some(s) => Some(compile(&openapi_to_json_schema(&Value::Object(s.clone()), Side::Response)).map_err(ctx)?),
            None => None,
        };
        let mut headers = Vec::new();
        for (name, h) in resp["headers"].as_object().into_iter().flatten() {
            // Every header the spec declares is expected: DigitalOcean sends them all.
            headers.push((
                name.to_ascii_lowercase(),
                compile(&openapi_to_json_schema(&h["schema"], Side::Response)).map_err(ctx)?,
                true,
            ));
        }
        responses.insert(status.clone(), Response { body, headers });
    }
    Ok(Operation {
        id,
        method: method.to_ascii_uppercase(),
        template: path.split('/').map(String::from).collect(),
        scopes,
        params,
        request,
        responses,
    })
}

fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// OpenAPI 3.0's schema dialect as JSON Schema draft 7 (see the module's doc).
fn openapi_to_json_schema(v: &Value, side: Side) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(|i| openapi_to_json_schema(i, side)).collect()),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, val) in map {
                match k.as_str() {
                    "nullable" | "example" | "readOnly" | "writeOnly" => {}
                    // Names, not schemas, below `properties`.
                    "properties" => {
                        let props = val
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(name, s)| (name.clone(), openapi_to_json_schema(s, side)))
                            .collect();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    // ERRATA: a string enum holding `false` means "off".
                    "enum" if map.get("type") == Some(&json!("string")) => {
                        let values = val
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| {
                                if *e == Value::Bool(false) {
                                    json!("off")
                                } else {
                                    e.clone()
                                }
                            })
                            .collect();
                        out.insert(k.clone(), Value::Array(values));
                    }
                    "enum" | "required" | "default" => {
                        out.insert(k.clone(), val.clone());
                    }
                    _ => {
                        out.insert(k.clone(), openapi_to_json_schema(val, side));
                    }
                }
            }
            let hidden = hidden_properties(v, side);
            if let Some(Value::Array(req)) = out.get_mut("required") {
                req.retain(|r| r.as_str().is_none_or(|r| !hidden.contains(r)));
            }
            if let Some(Value::Array(branches)) = out.get_mut("allOf") {
                for b in branches {
                    if let Some(Value::Array(req)) = b.get_mut("required") {
                        req.retain(|r| r.as_str().is_none_or(|r| !hidden.contains(r)));
                    }
                }
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::Array(e)) = out.get_mut("enum") {
                    e.push(Value::Null);
                }
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    _ => return json!({"anyOf": [Value::Object(out), {"type": "null"}]}),
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Properties that one side never sends: `readOnly` ones in a request, `writeOnly` ones
/// in a response (also those declared in an `allOf` branch beside the `required`).
fn hidden_properties(v: &Value, side: Side) -> BTreeSet<String> {
    let flag = match side {
        Side::Request => "readOnly",
        Side::Response => "writeOnly",
    };
    let mut out = BTreeSet::new();
    let mut scan = |schema: &Value| {
        for (name, p) in schema["properties"].as_object().into_iter().flatten() {
            if p[flag] == Value::Bool(true) {
                out.insert(name.clone());
            }
        }
    };
    scan(v);
    for b in v["allOf"].as_array().into_iter().flatten() {
        scan(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_spec_compiles_and_routes() {
        let spec = Spec::vendored();
        assert_eq!(spec.operations.len(), 16);
        assert_eq!(spec.operation_of("GET", "/v2/droplets/77"), Some("droplets_get"));
        assert_eq!(spec.operation_of("GET", "/v2/account/keys"), Some("sshKeys_list"));
        assert_eq!(
            spec.operation_of("DELETE", "/v2/droplets"),
            Some("droplets_destroy_byTag")
        );
        assert_eq!(spec.operation_of("PUT", "/v2/droplets"), None);
    }

    #[test]
    fn nullable_becomes_a_null_type_and_read_only_is_not_required_in_requests() {
        let s = json!({"type": "object", "required": ["id", "name"], "properties": {
            "id": {"type": "integer", "readOnly": true},
            "name": {"type": "string", "nullable": true}}});
        let req = compile(&openapi_to_json_schema(&s, Side::Request)).unwrap();
        assert!(req.is_valid(&json!({"name": null})));
        assert!(!req.is_valid(&json!({"name": 3})));
        let resp = compile(&openapi_to_json_schema(&s, Side::Response)).unwrap();
        assert!(!resp.is_valid(&json!({"name": null})), "a response must carry the id");
    }
}
