//! A stateful fake of the DigitalOcean API v2 on wiremock, faithful where swarm-e2e
//! depends on the real API's behaviour (see shared/reference/digitalocean-api.md):
//!
//! * droplets are created `new` with no networks and become `active` with a public IPv4
//!   after the boot latency; deletes are eventually consistent (still listed for a while);
//! * requests are validated as the real API does (bearer token, names, tags, sizes,
//!   `user_data` size, at most 10 names) with the real error body `{id, message,
//!   request_id}`;
//! * every response carries the `ratelimit-*` headers and 250 requests/minute is enforced;
//! * faults can be injected: 429 bursts, a 5xx on the Nth request to an endpoint, slow
//!   responses, lost create responses (droplets made, connection dropped), droplets stuck
//!   in `new`, droplets that power `off`;
//! * a request log (per-endpoint counts, peak rate) that tests assert on.
//!
//! Responders run under wiremock's lock and must not block: all state changes are
//! computed from timestamps when a request arrives, no background work.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

mod admission;
mod resources;

use resources::*;

/// Regions, sizes and images the fake knows (a small, realistic subset).
pub const REGIONS: &[&str] = &[
    "nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1", "tor1", "blr1", "syd1",
];
pub const SIZES: &[(&str, u32, u32, u32, f64, f64)] = &[
    // slug, memory MB, vcpus, disk GB, price_monthly, price_hourly
    ("s-1vcpu-1gb", 1024, 1, 25, 6.0, 0.00893),
    ("s-1vcpu-2gb", 2048, 1, 50, 12.0, 0.01786),
    ("s-2vcpu-2gb", 2048, 2, 60, 18.0, 0.02679),
    ("s-2vcpu-4gb", 4096, 2, 80, 24.0, 0.03571),
];
pub const IMAGES: &[&str] = &["ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64", "docker-22-04"];
const USER_DATA_LIMIT: usize = 64 * 1024;
const PER_MINUTE: usize = 250;
const PER_HOUR: usize = 5000;

/// Faults to inject; declared in a scenario's `[faults]` table or by flags.
pub use swarm_e2e_model::FakeFaults as Faults;

#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The only bearer token accepted.
    pub token: String,
    /// How long a droplet stays `new`.
    pub boot_latency: Duration,
    /// How long a deleted droplet is still listed.
    pub delete_latency: Duration,
    /// How long a new droplet is missing from list queries (real API lag).
    pub list_lag: Duration,
    /// How long a new firewall is `waiting` before it is `succeeded`.
    pub firewall_latency: Duration,
    pub droplet_limit: u32,
    pub faults: Faults,
    /// Droplets are backed by real engines: a droplet becomes active only once its
    /// backer reported the engine's address.
    pub backed: bool,
    /// Keep every exchange (request and response) for [`FakeDigitalOcean::exchanges`].
    pub record_exchanges: bool,
}

/// Names a file the fake appends every exchange to, one JSON line each (with `user_data`
/// redacted): how the test suite checks what the fake said, also when the fake runs
/// inside the swarm-e2e binary, against DigitalOcean's own OpenAPI spec.
pub const EXCHANGES_ENV: &str = "SWARM_E2E_FAKE_EXCHANGES";

pub use crate::exchange::{Exchange, RecordedResponse};

impl Exchange {
    fn of(req: &Request, answer: Option<&Answer>) -> Exchange {
        let mut request_body = serde_json::from_slice::<Value>(&req.body).ok();
        redact_user_data(&mut request_body);
        let response = answer.map(|a| {
            let mut headers: BTreeMap<String, String> = a.headers.iter().cloned().collect();
            if a.body.is_some() && !headers.contains_key("content-type") {
                headers.insert("content-type".into(), "application/json".into());
            }
            RecordedResponse {
                status: a.status,
                headers,
                body: a.body.clone(),
            }
        });
        Exchange {
            method: req.method.to_string(),
            path: req.url.path().to_string(),
            query: req.url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect(),
            request_content_type: req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            request_body,
            response,
        }
    }
}

fn redact_user_data(body: &mut Option<Value>) {
    if let Some(Value::Object(map)) = body
        && let Some(Value::String(u)) = map.get_mut("user_data")
    {
        *u = format!("<{} bytes, redacted>", u.len());
    }
}

/// Where exchanges go: kept in memory, appended to a file, or both.
#[derive(Default)]
struct Recorder {
    keep: bool,
    kept: Vec<Exchange>,
    file: Option<std::fs::File>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            token: "dop_v1_fake".into(),
            boot_latency: Duration::from_secs(2),
            delete_latency: Duration::from_millis(500),
            list_lag: Duration::ZERO,
            firewall_latency: Duration::ZERO,
            droplet_limit: 25,
            faults: Faults::default(),
            backed: false,
            record_exchanges: false,
        }
    }
}

/// The `digitalocean` timing profile, unscaled: droplets `new` for 46 s (a packer log's
/// figure; DigitalOcean advertises under 55 s), new droplets missing from lists for 5 s,
/// deleted ones listed for 10 s, firewalls `waiting` for 5 s. No first-party figure exists
/// for the last three (shared/reference/digitalocean-api.md §9 and "could not confirm"):
/// they are deliberately pessimistic guesses.
pub const PROFILE_BOOT: Duration = Duration::from_secs(46);
pub const PROFILE_LIST_LAG: Duration = Duration::from_secs(5);
pub const PROFILE_DELETE_LAG: Duration = Duration::from_secs(10);
pub const PROFILE_FIREWALL: Duration = Duration::from_secs(5);

impl FakeConfig {
    /// Applies `faults.profile` (scaled by `faults.time_scale`) to the latencies; without
    /// a profile the configuration is unchanged.
    pub fn with_profile(mut self) -> FakeConfig {
        if self.faults.profile.as_deref() == Some("digitalocean") {
            let scale = self.faults.time_scale.unwrap_or(1.0).clamp(0.0, 1.0);
            self.boot_latency = PROFILE_BOOT.mul_f64(scale);
            self.list_lag = PROFILE_LIST_LAG.mul_f64(scale);
            self.delete_latency = PROFILE_DELETE_LAG.mul_f64(scale);
            self.firewall_latency = PROFILE_FIREWALL.mul_f64(scale);
        }
        self
    }
}

#[derive(Debug, Clone)]
struct Droplet {
    id: i64,
    name: String,
    region: String,
    size: String,
    image: String,
    tags: Vec<String>,
    user_data: Option<String>,
    created: Instant,
    created_at: String,
    deleted: Option<Instant>,
    public: Ipv4Addr,
    private: Ipv4Addr,
    /// Set by a backer: the address of the engine behind this droplet.
    backing_address: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize)]
struct SshKey {
    id: i64,
    name: String,
    public_key: String,
    fingerprint: String,
}

#[derive(Debug, Clone)]
struct Firewall {
    id: String,
    body: Value,
    created: Instant,
}

impl Firewall {
    /// As listed now: `waiting` until the firewall latency has passed.
    fn json(&self, c: &FakeConfig) -> Value {
        let mut body = self.body.clone();
        let done = self.created.elapsed() >= c.firewall_latency;
        body["status"] = json!(if done { "succeeded" } else { "waiting" });
        body
    }
}

/// One logged request.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub endpoint: String,
    pub status: u16,
    #[serde(skip)]
    pub at: Instant,
}

#[derive(Default)]
struct State {
    droplets: BTreeMap<i64, Droplet>,
    keys: BTreeMap<i64, SshKey>,
    firewalls: BTreeMap<String, Firewall>,
    tags: BTreeSet<String>,
    next_id: i64,
    log: Vec<LoggedRequest>,
    window: VecDeque<Instant>,
    hour: VecDeque<(Instant, u64)>,
    endpoint_counts: BTreeMap<String, u32>,
    faults: Faults,
    streak_left: u32,
    /// Where droplet lifecycle events go (to a backer); `None` until someone listens.
    events: Option<tokio::sync::mpsc::UnboundedSender<DropletEvent>>,
    recorder: Recorder,
}

/// What happened to a droplet, for a backer that gives droplets real engines.
#[derive(Debug, Clone, PartialEq)]
pub enum DropletEvent {
    /// Created (also when the create answer was lost on the way).
    Created {
        id: i64,
        name: String,
        tags: Vec<String>,
        user_data: Option<String>,
    },
    /// Deletion requested (by id or by tag).
    Deleted { id: i64 },
}

impl State {
    fn record(&mut self, req: &Request, answer: Option<&Answer>) {
        let r = &mut self.recorder;
        if !r.keep && r.file.is_none() {
            return;
        }
        let exchange = Exchange::of(req, answer);
        if let Some(f) = &mut r.file {
            use std::io::Write;
            let mut line = serde_json::to_vec(&exchange).unwrap_or_default();
            line.push(b'\n');
            // One write per line (O_APPEND), so processes sharing the file never interleave.
            let _ = f.write_all(&line);
        }
        if r.keep {
            r.kept.push(exchange);
        }
    }

    fn emit(&self, event: DropletEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    fn mark_deleted(&mut self, id: i64, now: Instant) -> bool {
        match self.droplets.get_mut(&id) {
            Some(d) if d.deleted.is_none() => {
                d.deleted = Some(now);
                self.emit(DropletEvent::Deleted { id });
                true
            }
            _ => false,
        }
    }
}

/// The fake API. Keep it alive as long as it should answer.
pub struct FakeDigitalOcean {
    server: MockServer,
    state: Arc<Mutex<State>>,
    config: Arc<FakeConfig>,
}

/// Request counts the tests and reports use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestStats {
    pub total: usize,
    pub by_endpoint: BTreeMap<String, usize>,
    /// Most requests seen in any 60 s window.
    pub peak_per_minute: usize,
    pub rate_limited: usize,
}

impl FakeDigitalOcean {
    /// Starts the fake on 127.0.0.1 (random port) or on `listen` when given.
    pub async fn start(config: FakeConfig, listen: Option<std::net::TcpListener>) -> FakeDigitalOcean {
        let file = std::env::var_os(EXCHANGES_ENV).and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .inspect_err(|e| tracing::warn!("{EXCHANGES_ENV}={}: {e}", path.to_string_lossy()))
                .ok()
        });
        let state = Arc::new(Mutex::new(State {
            next_id: 3_000_000,
            faults: config.faults.clone(),
            recorder: Recorder {
                keep: config.record_exchanges,
                kept: Vec::new(),
                file,
            },
            ..Default::default()
        }));
        let config = Arc::new(config);
        let mut builder = MockServer::builder().disable_request_recording();
        if let Some(l) = listen {
            builder = builder.listener(l);
        }
        let server = builder.start().await;
        Mock::given(LoseCreate(state.clone()))
            .respond_with_err(lost_create(state.clone(), config.clone()))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(any())
            .respond_with(Handler {
                state: state.clone(),
                config: config.clone(),
            })
            .with_priority(5)
            .mount(&server)
            .await;
        FakeDigitalOcean { server, state, config }
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        self.server.uri()
    }

    pub fn token(&self) -> &str {
        &self.config.token
    }

    pub fn stats(&self) -> RequestStats {
        let s = self.state.lock().unwrap();
        let mut by_endpoint = BTreeMap::new();
        for r in &s.log {
            *by_endpoint.entry(r.endpoint.clone()).or_insert(0) += 1;
        }
        let mut peak = 0;
        let times: Vec<Instant> = s.log.iter().map(|r| r.at).collect();
        let mut start = 0;
        for (i, t) in times.iter().enumerate() {
            while t.duration_since(times[start]) >= Duration::from_secs(60) {
                start += 1;
            }
            peak = peak.max(i - start + 1);
        }
        RequestStats {
            total: s.log.len(),
            by_endpoint,
            peak_per_minute: peak,
            rate_limited: s.log.iter().filter(|r| r.status == 429).count(),
        }
    }

    /// Names of droplets that exist (not deleted), for tests.
    pub fn live_droplets(&self) -> Vec<(i64, String, Vec<String>)> {
        let s = self.state.lock().unwrap();
        s.droplets
            .values()
            .filter(|d| d.deleted.is_none())
            .map(|d| (d.id, d.name.clone(), d.tags.clone()))
            .collect()
    }

    /// Every exchange so far (with `record_exchanges`).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.lock().unwrap().recorder.kept.clone()
    }

    pub fn key_count(&self) -> usize {
        self.state.lock().unwrap().keys.len()
    }

    pub fn firewall_count(&self) -> usize {
        self.state.lock().unwrap().firewalls.len()
    }

    /// The `user_data` a droplet was created with (what a backer boots from).
    pub fn user_data(&self, id: i64) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .droplets
            .get(&id)
            .and_then(|d| d.user_data.clone())
    }

    /// Droplet lifecycle events from now on, for one listener (a backer). Call it before
    /// the first droplet is created; a second call replaces the first listener.
    pub fn events(&self) -> tokio::sync::mpsc::UnboundedReceiver<DropletEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.state.lock().unwrap().events = Some(tx);
        rx
    }

    /// A backer reports the address of the engine behind a droplet: it becomes the
    /// droplet's public IPv4.
    pub fn set_backing_address(&self, id: i64, address: Ipv4Addr) {
        self.control().set_backing_address(id, address);
    }

    /// A handle a backer task keeps (the fake itself stays with its owner).
    pub fn control(&self) -> FakeControl {
        FakeControl {
            state: self.state.clone(),
        }
    }
}

/// What a backer may do to the fake's droplets.
#[derive(Clone)]
pub struct FakeControl {
    state: Arc<Mutex<State>>,
}

impl FakeControl {
    /// The droplet's public IPv4 becomes `address` (its engine's); a backed droplet is
    /// `active` only from then on.
    pub fn set_backing_address(&self, id: i64, address: Ipv4Addr) {
        if let Some(d) = self.state.lock().unwrap().droplets.get_mut(&id) {
            d.backing_address = Some(address);
        }
    }
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rfc3339_now() -> String {
    // Seconds precision is what the real API shows ("2026-11-25T10:00:00Z").
    let secs = now_epoch();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn request_id() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        r.random::<u32>(),
        r.random::<u16>(),
        r.random::<u16>() & 0xfff,
        r.random::<u16>() & 0xfff,
        r.random::<u64>() & 0xffff_ffff_ffff
    )
}

/// DigitalOcean's error body; `request_id` is filled in by [`finish`], the same as the
/// `x-request-id` header.
fn error(status: u16, id: &str, message: &str) -> Answer {
    Answer::json(status, json!({"id": id, "message": message, "request_id": ""}))
}

fn unprocessable(message: &str) -> Answer {
    error(422, "unprocessable_entity", message)
}

fn not_found() -> Answer {
    error(404, "not_found", "The resource you were accessing could not be found.")
}

/// `GET /v2/droplets/123` -> `GET /v2/droplets/{id}` (for counts).
fn endpoint(req: &Request) -> String {
    let path = req.url.path().trim_end_matches('/');
    let norm: Vec<String> = path
        .split('/')
        .enumerate()
        .map(|(i, seg)| {
            let looks_like_id = seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty();
            let uuid = seg.len() == 36 && seg.chars().filter(|c| *c == '-').count() == 4;
            // A key's fingerprint and an image's slug name one resource too.
            let fingerprint = seg.len() == 47 && seg.chars().filter(|c| *c == ':').count() == 15;
            let slug = i == 3 && path.starts_with("/v2/images/");
            if i >= 3 && (looks_like_id || uuid || fingerprint || slug) {
                "{id}".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    format!("{} {}", req.method, norm.join("/"))
}

fn valid_droplet_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && n.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 255
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
}

struct Handler {
    state: Arc<Mutex<State>>,
    config: Arc<FakeConfig>,
}

impl Respond for Handler {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        let ep = endpoint(req);
        let answer = self.route(&mut s, req, &ep);
        let answer = finish(&mut s, ep, answer);
        s.record(req, Some(&answer));
        let delay = Duration::from_millis(s.faults.slow_ms);
        answer.template(delay)
    }
}

/// A response before it becomes wiremock's (whose templates cannot be read back), so
/// the exchange can be recorded and checked against DigitalOcean's spec.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    /// A response without content (204): the real API still sends a content-type.
    fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: None,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn template(&self, delay: Duration) -> ResponseTemplate {
        let mut t = ResponseTemplate::new(self.status);
        if let Some(body) = &self.body {
            // set_body_json sets content-type: application/json.
            t = t.set_body_json(body);
        }
        for (name, value) in &self.headers {
            t = t.insert_header(name.as_str(), value.as_str());
        }
        if !delay.is_zero() {
            t = t.set_delay(delay);
        }
        t
    }
}

/// Logs the request and adds the rate-limit headers and the request id. The headers
/// count the hourly budget, as the real API's do; a 429 says none is left.
fn finish(s: &mut State, ep: String, mut answer: Answer) -> Answer {
    let now = Instant::now();
    s.log.push(LoggedRequest {
        endpoint: ep,
        status: answer.status,
        at: now,
    });
    prune_hour(s, now);
    if answer.status != 429 {
        s.hour.push_back((now, now_epoch()));
    }
    let remaining = if answer.status == 429 {
        0
    } else {
        PER_HOUR.saturating_sub(s.hour.len())
    };
    let reset = s.hour.front().map(|(_, e)| e + 3600).unwrap_or_else(now_epoch);
    let id = request_id();
    if let Some(Value::Object(body)) = &mut answer.body
        && body.contains_key("request_id")
    {
        body.insert("request_id".into(), json!(id));
    }
    answer
        .header("ratelimit-limit", &PER_HOUR.to_string())
        .header("ratelimit-remaining", &remaining.to_string())
        .header("ratelimit-reset", &reset.to_string())
        .header("x-request-id", &id)
}

fn prune_hour(s: &mut State, now: Instant) {
    while s
        .hour
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(3600))
    {
        s.hour.pop_front();
    }
}

impl Handler {
    fn route(&self, s: &mut State, req: &Request, ep: &str) -> Answer {
        let now = Instant::now();
        if let Some(refused) = self.admit(s, req, ep, now) {
            return refused;
        }
        let path = req.url.path().trim_end_matches('/').to_string();
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        let method = req.method.as_str();
        let query: BTreeMap<String, String> = req.url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        let at = Page {
            path: &path,
            query: &query,
        };
        match (method, segs.as_slice()) {
            ("GET", ["v2", "account"]) => self.account(),
            ("GET", ["v2", "regions"]) => regions(&at),
            ("GET", ["v2", "sizes"]) => sizes(&at),
            ("GET", ["v2", "images", slug]) => image(slug),
            ("POST", ["v2", "droplets"]) => self.create_droplets(s, req),
            ("GET", ["v2", "droplets"]) => self.list_droplets(s, &at, now),
            ("DELETE", ["v2", "droplets"]) => delete_droplets_by_tag(s, &query, now),
            ("GET", ["v2", "droplets", id]) => self.get_droplet(s, id),
            ("DELETE", ["v2", "droplets", id]) => match id.parse::<i64>() {
                Ok(id) if s.mark_deleted(id, now) => Answer::empty(204),
                _ => not_found(),
            },
            ("GET", ["v2", "actions", id]) => self.action(s, id),
            ("POST", ["v2", "tags"]) => create_tag(s, req),
            ("GET", ["v2", "account", "keys"]) => list_keys(s, &at),
            ("POST", ["v2", "account", "keys"]) => create_key(s, req),
            ("DELETE", ["v2", "account", "keys", id]) => delete_key(s, id),
            ("POST", ["v2", "firewalls"]) => self.create_firewall(s, req),
            ("GET", ["v2", "firewalls"]) => {
                let items: Vec<Value> = s.firewalls.values().map(|f| f.json(&self.config)).collect();
                paged(at.path, at.query, "firewalls", items)
            }
            ("DELETE", ["v2", "firewalls", id]) => match s.firewalls.remove(*id) {
                Some(f) => {
                    let _ = f.id;
                    Answer::empty(204)
                }
                None => not_found(),
            },
            _ => not_found(),
        }
    }

    /// Validates and performs a (single or multi) create.
    fn create_droplets(&self, s: &mut State, req: &Request) -> Answer {
        let created = match create(s, &self.config, req) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let droplets: Vec<Value> = created
            .iter()
            .map(|d| droplet_json(d, &self.config, &s.faults))
            .collect();
        let actions: Vec<Value> = created
            .iter()
            .map(|d| json!({"id": d.id + 1, "rel": "create", "href": format!("https://api.digitalocean.com/v2/actions/{}", d.id + 1)}))
            .collect();
        let body = if droplets.len() == 1 && req.body_json::<Value>().is_ok_and(|v| v.get("name").is_some()) {
            json!({"droplet": droplets[0], "links": {"actions": actions}})
        } else {
            json!({"droplets": droplets, "links": {"actions": actions}})
        };
        Answer::json(202, body)
    }
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    names: Option<Vec<String>>,
    region: Option<String>,
    size: Option<String>,
    image: Option<Value>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    user_data: Option<String>,
    #[serde(default)]
    ssh_keys: Option<Vec<Value>>,
}

/// Validates and records a create; `Err` is the finished error response (built once per
/// request, so its size does not matter).
#[allow(clippy::result_large_err)]
fn create(s: &mut State, config: &FakeConfig, req: &Request) -> Result<Vec<Droplet>, Answer> {
    let b: CreateBody = req
        .body_json()
        .map_err(|_| error(400, "bad_request", "error parsing request body"))?;
    let names = match (b.name, b.names) {
        (Some(n), None) => vec![n],
        (None, Some(ns)) if !ns.is_empty() => ns,
        _ => {
            return Err(unprocessable("You must specify either name or names."));
        }
    };
    if names.len() > 10 {
        return Err(unprocessable("You may only create up to 10 droplets at a time."));
    }
    if let Some(bad) = names.iter().find(|n| !valid_droplet_name(n)) {
        return Err(unprocessable(&format!(
            "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -): {bad}"
        )));
    }
    let size = b.size.unwrap_or_default();
    if !SIZES.iter().any(|s| s.0 == size) {
        return Err(unprocessable("You specified an invalid size for Droplet creation."));
    }
    let image = match b.image {
        Some(Value::String(i)) if IMAGES.contains(&i.as_str()) => i,
        _ => {
            return Err(unprocessable("You specified an invalid image for Droplet creation."));
        }
    };
    let region = b.region.unwrap_or_else(|| "nyc3".into());
    if !REGIONS.contains(&region.as_str()) {
        return Err(unprocessable("You specified an invalid region for Droplet creation."));
    }
    let tags = b.tags.unwrap_or_default();
    if let Some(t) = tags.iter().find(|t| !valid_tag(t)) {
        return Err(unprocessable(&format!("invalid tag name: {t}")));
    }
    if b.user_data.as_ref().is_some_and(|u| u.len() > USER_DATA_LIMIT) {
        return Err(unprocessable("user_data is limited to 64 KiB"));
    }
    for k in b.ssh_keys.unwrap_or_default() {
        let known = match &k {
            Value::Number(n) => s.keys.contains_key(&n.as_i64().unwrap_or(-1)),
            Value::String(f) => s.keys.values().any(|key| &key.fingerprint == f),
            _ => false,
        };
        if !known {
            return Err(unprocessable(&format!(
                "{k} are invalid key identifiers for Droplet creation."
            )));
        }
    }
    let live = s.droplets.values().filter(|d| d.deleted.is_none()).count();
    if live + names.len() > config.droplet_limit as usize {
        return Err(unprocessable(
            "creating this/these droplet(s) will exceed your droplet limit",
        ));
    }
    for t in &tags {
        s.tags.insert(t.clone());
    }
    let mut out = Vec::new();
    for name in names {
        s.next_id += 2;
        let id = s.next_id;
        let n = (id % 250) as u8 + 2;
        let d = Droplet {
            id,
            name,
            region: region.clone(),
            size: size.clone(),
            image: image.clone(),
            tags: tags.clone(),
            user_data: b.user_data.clone(),
            created: Instant::now(),
            created_at: rfc3339_now(),
            deleted: None,
            // Loopback addresses: nothing ever leaves this machine, even by mistake.
            public: Ipv4Addr::new(127, 77, (id / 250 % 250) as u8, n),
            private: Ipv4Addr::new(127, 78, (id / 250 % 250) as u8, n),
            backing_address: None,
        };
        s.droplets.insert(id, d.clone());
        s.emit(DropletEvent::Created {
            id,
            name: d.name.clone(),
            tags: d.tags.clone(),
            user_data: d.user_data.clone(),
        });
        out.push(d);
    }
    Ok(out)
}

fn visible(d: &Droplet, c: &FakeConfig) -> bool {
    d.deleted.is_none_or(|t| t.elapsed() < c.delete_latency)
}

fn image_json(slug: &str) -> Value {
    json!({"id": 100_000 + slug.len(), "name": slug, "type": "base", "distribution": "Ubuntu", "slug": slug,
           "public": true, "regions": REGIONS, "created_at": "2026-01-01T00:00:00Z", "min_disk_size": 10,
           "size_gigabytes": 2.4, "description": slug, "tags": [], "status": "available", "error_message": ""})
}

/// Checks a firewall's rules as the API does and writes them back as it answers them:
/// `ports` "0" for ICMP (which takes none) and for "all".
fn normalise_rules(body: &mut Value) -> Result<(), String> {
    for (list, peers) in [("inbound_rules", "sources"), ("outbound_rules", "destinations")] {
        for rule in body[list].as_array_mut().into_iter().flatten() {
            let protocol = rule["protocol"].as_str().unwrap_or_default().to_string();
            if !matches!(protocol.as_str(), "tcp" | "udp" | "icmp") {
                return Err(format!(
                    "{list}: protocol must be tcp, udp or icmp, not {:?}",
                    rule["protocol"]
                ));
            }
            if !rule[peers].is_object() {
                return Err(format!("{list}: every rule needs {peers}"));
            }
            match rule["ports"].as_str() {
                _ if protocol == "icmp" => rule["ports"] = json!("0"),
                Some("all") => rule["ports"] = json!("0"),
                Some(p) if !p.is_empty() => {}
                _ => return Err(format!("{list}: a {protocol} rule needs ports")),
            }
        }
    }
    Ok(())
}

fn size_json(&(slug, memory, vcpus, disk, monthly, hourly): &(&str, u32, u32, u32, f64, f64)) -> Value {
    json!({"slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": 1.0,
           "price_monthly": monthly, "price_hourly": hourly, "regions": REGIONS, "available": true,
           "description": "Basic"})
}

/// A droplet's create action (its id is the droplet's + 1): done once the droplet is.
fn action_json(d: &Droplet, c: &FakeConfig, f: &Faults) -> Value {
    let done = droplet_json(d, c, f)["status"] != "new";
    json!({"id": d.id + 1, "status": if done { "completed" } else { "in-progress" }, "type": "create",
           "started_at": d.created_at, "completed_at": if done { json!(d.created_at) } else { Value::Null },
           "resource_id": d.id, "resource_type": "droplet", "region_slug": d.region})
}

fn droplet_json(d: &Droplet, c: &FakeConfig, f: &Faults) -> Value {
    let booted = d.created.elapsed() >= c.boot_latency && !f.stuck_in_new.contains(&d.name);
    // A backed droplet is active only once its engine exists.
    let ready = booted && (!c.backed || d.backing_address.is_some());
    let status = if d.deleted.is_some() {
        "archive"
    } else if !ready {
        "new"
    } else if f.goes_off.contains(&d.name) {
        "off"
    } else {
        "active"
    };
    let networks = if ready {
        let public = d.backing_address.unwrap_or(d.public);
        json!({"v4": [
            {"ip_address": public.to_string(), "netmask": "255.255.240.0", "gateway": "127.77.0.1", "type": "public"},
            {"ip_address": d.private.to_string(), "netmask": "255.255.0.0", "gateway": "127.78.0.1", "type": "private"}
        ], "v6": []})
    } else {
        json!({"v4": [], "v6": []})
    };
    let size = SIZES.iter().find(|s| s.0 == d.size).unwrap();
    json!({
        "id": d.id, "name": d.name, "memory": size.1, "vcpus": size.2, "disk": size.3, "locked": status == "new",
        "status": status, "kernel": null, "created_at": d.created_at, "features": [], "backup_ids": [],
        "next_backup_window": null, "snapshot_ids": [], "image": image_json(&d.image), "volume_ids": [],
        "size": size_json(size),
        "size_slug": d.size, "networks": networks,
        "region": {"slug": d.region, "name": d.region, "features": [], "available": true, "sizes": []},
        "tags": d.tags, "vpc_uuid": "fake-vpc"
    })
}

/// Paginates like the real API: `page` (1-based), `per_page` (default 20, max 200),
/// `links.pages.next/last` as full URLs, `meta.total`.
fn paged(path: &str, query: &BTreeMap<String, String>, key: &str, items: Vec<Value>) -> Answer {
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut pages = serde_json::Map::new();
    let mut link = |rel: &str, p: usize| {
        let mut q: Vec<String> = query
            .iter()
            .filter(|(k, _)| *k != "page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        q.push(format!("page={p}"));
        pages.insert(
            rel.into(),
            json!(format!("https://api.digitalocean.com{path}?{}", q.join("&"))),
        );
    };
    if page > 1 {
        link("first", 1);
        link("prev", page - 1);
    }
    if page < last {
        link("next", page + 1);
        link("last", last);
    }
    Answer::json(
        200,
        json!({key: slice, "links": {"pages": pages}, "meta": {"total": total}}),
    )
}

fn fingerprint_of(public_key: &str) -> String {
    // The real API shows an MD5-style 16-byte colon-hex fingerprint; any stable digest
    // of the key works for the fake.
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    for salt in 0..2u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, public_key).hash(&mut h);
        out.extend(h.finish().to_be_bytes());
    }
    out.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The scopes a request needs: its operation's (the spec's `security`), and what the
/// spec's descriptions add for the fields it carries (a create naming an image, keys or
/// tags; a list by tag; a firewall naming tags or droplets).
fn required_scopes(req: &Request) -> Vec<String> {
    static SPEC: std::sync::OnceLock<crate::spec::Spec> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(crate::spec::Spec::vendored);
    let method = req.method.as_str();
    let path = req.url.path();
    let mut needed: Vec<String> = spec.scopes_of(method, path).map(<[String]>::to_vec).unwrap_or_default();
    if path.trim_end_matches('/').starts_with("/v2/actions") {
        needed.push("actions:read".into());
    }
    let body: Value = req.body_json().unwrap_or(Value::Null);
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
    match (method, path.trim_end_matches('/')) {
        ("POST", "/v2/droplets") => {
            add(has(&body["image"]), &["image:read"]);
            add(has(&body["ssh_keys"]), &["ssh_key:read"]);
            add(has(&body["tags"]), &["tag:create"]);
            add(has(&body["vpc_uuid"]), &["vpc:read"]);
        }
        ("GET", "/v2/droplets") => add(req.url.query_pairs().any(|(k, _)| k == "tag_name"), &["tag:read"]),
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

/// Whether `key` reads as an OpenSSH public key: `TYPE BASE64 [comment]`, the blob's own
/// type string equal to TYPE (what the real API refuses with 422 otherwise).
fn valid_public_key(key: &str) -> bool {
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return false;
    };
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    ];
    let Some(bytes) = base64_decode(blob) else {
        return false;
    };
    let Some(len) = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    else {
        return false;
    };
    known.contains(&kind) && bytes.get(4..4 + len) == Some(kind.as_bytes())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Matches a droplet create while lost-response faults remain.
struct LoseCreate(Arc<Mutex<State>>);

impl Match for LoseCreate {
    fn matches(&self, req: &Request) -> bool {
        // Only a create that names droplets is carried out and can lose its answer; one
        // refused for its body (a scope probe) is answered as usual.
        let names_droplets = req.body_json::<Value>().is_ok_and(|b| {
            b["name"].as_str().is_some_and(|n| !n.is_empty()) || b["names"].as_array().is_some_and(|n| !n.is_empty())
        });
        req.method.as_str() == "POST"
            && req.url.path().trim_end_matches('/') == "/v2/droplets"
            && names_droplets
            && self.0.lock().unwrap().faults.lose_create_responses > 0
    }
}

/// Carries out the create, then drops the connection: the droplets exist, the client
/// never hears so.
fn lost_create(state: Arc<Mutex<State>>, config: Arc<FakeConfig>) -> impl Fn(&Request) -> std::io::Error + Send + Sync {
    move |req: &Request| {
        let mut s = state.lock().unwrap();
        s.faults.lose_create_responses -= 1;
        let ep = endpoint(req);
        let _ = create(&mut s, &config, req);
        s.record(req, None);
        s.log.push(LoggedRequest {
            endpoint: ep,
            status: 0,
            at: Instant::now(),
        });
        std::io::Error::from(std::io::ErrorKind::ConnectionReset)
    }
}
