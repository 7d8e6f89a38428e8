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

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod account;
mod admission;
mod answer;
mod catalogue;
mod droplets;
mod firewalls;
mod keys;
mod state;

use account::create_tag;
use admission::finish;
use answer::{Answer, Page, endpoint, not_found, paged};
use catalogue::{image, regions, sizes};
use droplets::{LoseCreate, delete_droplets_by_tag, lost_create};
use keys::{create_key, delete_key, list_keys};
use state::State;

pub use catalogue::{IMAGES, REGIONS, SIZES};
pub use state::DropletEvent;

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
}
