//! A DigitalOcean API v2 client that is careful where it matters for a test harness:
//!
//! * the token is a [`SecretString`], sent only as a sensitive bearer header, never in
//!   an error, a log line or a `Debug` print;
//! * 429 is waited out (`retry-after`, else `ratelimit-reset`), 5xx and connection errors
//!   get bounded exponential backoff — but only for requests that are safe to repeat;
//! * a droplet create whose answer was lost is **never** repeated blindly: the droplets
//!   are looked up by the run tag first and only the missing ones are created again;
//! * lists follow pagination; waits use one list-by-tag request per round for a whole
//!   cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The real API.
pub const DEFAULT_BASE_URL: &str = "https://api.digitalocean.com";

/// How long a droplet create whose answer was lost keeps being looked for in lists before
/// its droplets are created again. DigitalOcean documents no list lag; 30 s is six times
/// the fake profile's pessimistic 5 s.
pub const DEFAULT_LIST_LAG_BOUND: Duration = Duration::from_secs(30);

/// Longest pause between two polls of a wait.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DoError {
    /// The API answered with an error body.
    #[error("DigitalOcean API {status} {id}: {message}{}", request_id.as_deref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Api {
        status: u16,
        id: String,
        message: String,
        request_id: Option<String>,
        retry_after: Option<RetryAfter>,
    },
    /// No usable answer (connection refused, reset, timeout).
    #[error("no answer from the DigitalOcean API at {base}: {reason}")]
    Transport { base: String, reason: String },
    #[error("unexpected answer from the DigitalOcean API: {0}")]
    Decode(String),
}

/// How long the API asked us to wait (carried inside 429 errors).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("retry after {0:?}")]
pub struct RetryAfter(pub Duration);

impl DoError {
    fn retryable(&self, idempotent: bool) -> bool {
        match self {
            DoError::Api { status: 429, .. } => true,
            DoError::Api { status, .. } => idempotent && *status >= 500 && *status != 501,
            DoError::Transport { .. } => idempotent,
            DoError::Decode(_) => false,
        }
    }

    fn wait_hint(&self) -> Option<Duration> {
        match self {
            DoError::Api {
                retry_after: Some(r), ..
            } => Some(r.0),
            _ => None,
        }
    }

    /// What to do about it, for a `hint:` line: a refused token is not fixed by waiting.
    pub fn hint(&self) -> &'static str {
        match self {
            DoError::Api { status: 401, .. } => {
                "the token is not valid (mistyped, expired or revoked): create one under API > Tokens"
            }
            DoError::Api { status: 403, .. } => {
                "give the token the scope(s) named above, or use a full-access token; \
                 `swarm-e2e doctor --target digitalocean` probes every scope a run needs"
            }
            DoError::Api { status: 429, .. } => "retry later: the hourly request budget is spent",
            DoError::Api { status: 400..500, .. } => "the request was refused as shown; nothing to retry",
            _ => "retry later",
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            DoError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Requests sent, by endpoint, and what the rate limiter said last.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStats {
    pub requests: usize,
    pub retries: usize,
    pub rate_limited: usize,
    pub by_endpoint: BTreeMap<String, usize>,
    pub ratelimit_remaining: Option<u64>,
}

#[derive(Clone)]
pub struct DoClient {
    http: reqwest::Client,
    base: String,
    token: Arc<SecretString>,
    stats: Arc<Mutex<ClientStats>>,
    /// Upper bound on waiting out one request's retries.
    retry_budget: Duration,
    /// Items per page when listing (the API allows 1..=200).
    page_size: u32,
    /// How long a lost create's droplets are looked for in lists before a retry.
    list_lag_bound: Duration,
}

impl std::fmt::Debug for DoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoClient")
            .field("base", &self.base)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Droplet {
    pub id: i64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub networks: Networks,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Networks {
    #[serde(default)]
    pub v4: Vec<NetworkV4>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkV4 {
    pub ip_address: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Droplet {
    pub fn public_ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.networks
            .v4
            .iter()
            .find(|n| n.kind == "public")
            .and_then(|n| n.ip_address.parse().ok())
    }
}

/// What every droplet of a create request shares.
#[derive(Debug, Clone, Serialize)]
pub struct DropletTemplate {
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub ssh_keys: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub droplet_limit: u32,
    pub status: String,
    #[serde(default)]
    pub email: String,
}

/// A region as `GET /v2/regions` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Region {
    pub slug: String,
    /// Whether new droplets can be created there now.
    pub available: bool,
    /// The size slugs it offers.
    #[serde(default)]
    pub sizes: Vec<String>,
}

/// A size as `GET /v2/sizes` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Size {
    pub slug: String,
    pub available: bool,
    pub price_hourly: f64,
    /// The regions it is offered in.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// An image as `GET /v2/images/{slug}` answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    pub slug: Option<String>,
    pub distribution: String,
    pub status: String,
    #[serde(default)]
    pub regions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SshKey {
    pub id: i64,
    pub name: String,
    pub fingerprint: String,
}

fn decode_all<T: serde::de::DeserializeOwned>(items: Vec<Value>) -> Result<Vec<T>, DoError> {
    items
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| DoError::Decode(e.to_string())))
        .collect()
}

impl DoClient {
    /// `base` is the API root without `/v2` (the real API: [`DEFAULT_BASE_URL`]).
    pub fn new(base: &str, token: SecretString) -> Result<DoClient, DoError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("swarm-e2e/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DoError::Decode(format!("building the HTTP client: {e}")))?;
        Ok(DoClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: Arc::new(token),
            stats: Arc::default(),
            retry_budget: Duration::from_secs(180),
            page_size: 200,
            list_lag_bound: DEFAULT_LIST_LAG_BOUND,
        })
    }

    /// Shortens the retry budget (tests of give-up paths).
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// How long a created droplet may be missing from lists (see
    /// [`DEFAULT_LIST_LAG_BOUND`]); the fake's time-compressed profiles shorten it.
    pub fn with_list_lag_bound(mut self, bound: Duration) -> Self {
        self.list_lag_bound = bound;
        self
    }

    /// Smaller pages (tests of pagination).
    pub fn with_page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, 200);
        self
    }

    pub fn stats(&self) -> ClientStats {
        self.stats.lock().unwrap().clone()
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, DoError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(self.token.expose_secret())
            .header("accept", "application/json")
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let body_sent = body;
        {
            let mut s = self.stats.lock().unwrap();
            s.requests += 1;
            *s.by_endpoint
                .entry(format!("{method} {}", endpoint_of(path)))
                .or_insert(0) += 1;
        }
        let resp = req.send().await.map_err(|e| DoError::Transport {
            base: self.base.clone(),
            // reqwest's messages name the URL, never headers; strip the URL anyway.
            reason: e.without_url().to_string(),
        })?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let remaining = header("ratelimit-remaining").and_then(|v| v.parse().ok());
        let reset = header("ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
        let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
        let request_id = header("x-request-id");
        self.stats.lock().unwrap().ratelimit_remaining = remaining;
        let text = resp.text().await.map_err(|e| DoError::Transport {
            base: self.base.clone(),
            reason: e.without_url().to_string(),
        })?;
        if status.is_success() {
            if text.trim().is_empty() || status == StatusCode::NO_CONTENT {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| DoError::Decode(format!("{method} {path}: {e}")));
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let wait = if status == StatusCode::TOO_MANY_REQUESTS {
            self.stats.lock().unwrap().rate_limited += 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let secs = retry_after
                .or_else(|| reset.map(|r| r.saturating_sub(now)))
                .unwrap_or(1);
            Some(RetryAfter(Duration::from_secs(secs.clamp(1, 120))))
        } else {
            None
        };
        Err(DoError::Api {
            status: status.as_u16(),
            id: body["id"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("unknown")
                .to_string(),
            message: body["message"]
                .as_str()
                .map(str::to_string)
                .or_else(|| body["root_causes"].as_array().map(|r| format!("{r:?}")))
                .unwrap_or_else(|| text.chars().take(200).collect())
                + &forbidden_scopes(status, method, path, query, body_sent),
            request_id: body["request_id"].as_str().map(str::to_string).or(request_id),
            retry_after: wait,
        })
    }

    /// A request that changes nothing (a scope probe), with the retries of a read.
    pub(crate) async fn send_probe(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<(), DoError> {
        self.send(method.clone(), path, query, body, true).await.map(|_| ())
    }

    /// Sends with retries: 429 always (waiting as told), 5xx and transport errors only
    /// when `idempotent`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Value, DoError> {
        let started = Instant::now();
        let budget = self.retry_budget;
        let stats = self.stats.clone();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(8))
            .with_max_times(8)
            .with_jitter();
        (|| self.send_once(&method, path, query, body))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e: &DoError| e.retryable(idempotent) && started.elapsed() < budget)
            .adjust(|e: &DoError, d: Option<Duration>| d.map(|d| e.wait_hint().unwrap_or(d)))
            .notify(|e: &DoError, d: Duration| {
                stats.lock().unwrap().retries += 1;
                tracing::debug!(error = %e, wait = ?d, "retrying DigitalOcean request");
            })
            .await
    }

    /// All items of a paginated collection.
    async fn list(&self, path: &str, key: &str, query: &[(&str, String)]) -> Result<Vec<Value>, DoError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("per_page", self.page_size.to_string()));
            q.push(("page", page.to_string()));
            let v = self.send(Method::GET, path, &q, None, true).await?;
            let items = v[key].as_array().cloned().unwrap_or_default();
            out.extend(items);
            if v["links"]["pages"]["next"].as_str().is_none() {
                return Ok(out);
            }
            page += 1;
            if page > 1000 {
                return Err(DoError::Decode(format!("{path}: more than 1000 pages")));
            }
        }
    }

    pub async fn account(&self) -> Result<Account, DoError> {
        let v = self.send(Method::GET, "/v2/account", &[], None, true).await?;
        serde_json::from_value(v["account"].clone()).map_err(|e| DoError::Decode(e.to_string()))
    }

    /// Every region (all pages: a client that reads only the first misses some).
    pub async fn regions(&self) -> Result<Vec<Region>, DoError> {
        let items = self.list("/v2/regions", "regions", &[]).await?;
        decode_all(items)
    }

    /// Every droplet size.
    pub async fn sizes(&self) -> Result<Vec<Size>, DoError> {
        let items = self.list("/v2/sizes", "sizes", &[]).await?;
        decode_all(items)
    }

    /// The public image with `slug`; `None` when there is none (404).
    pub async fn image(&self, slug: &str) -> Result<Option<Image>, DoError> {
        match self
            .send(Method::GET, &format!("/v2/images/{slug}"), &[], None, true)
            .await
        {
            Ok(v) => serde_json::from_value(v["image"].clone())
                .map(Some)
                .map_err(|e| DoError::Decode(e.to_string())),
            Err(DoError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn droplets_by_tag(&self, tag: &str) -> Result<Vec<Droplet>, DoError> {
        let items = self
            .list("/v2/droplets", "droplets", &[("tag_name", tag.to_string())])
            .await?;
        items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| DoError::Decode(e.to_string())))
            .collect()
    }

    pub async fn count_droplets(&self) -> Result<u64, DoError> {
        let v = self
            .send(Method::GET, "/v2/droplets", &[("per_page", "1".into())], None, true)
            .await?;
        Ok(v["meta"]["total"].as_u64().unwrap_or(0))
    }

    /// Creates droplets named `names` (each tagged with `run_tag` among the template's
    /// tags), up to 10 per request. A request whose answer is lost or failed is not
    /// repeated blindly: the droplets already carrying `run_tag` are listed first and
    /// only missing names are created again. Returns the ids of all requested names.
    pub async fn create_droplets(
        &self,
        names: &[String],
        template: &DropletTemplate,
        run_tag: &str,
    ) -> Result<Vec<i64>, DoError> {
        assert!(
            template.tags.iter().any(|t| t == run_tag),
            "the run tag must be set at creation"
        );
        let mut ids: BTreeMap<String, i64> = BTreeMap::new();
        for chunk in names.chunks(10) {
            let mut attempts = 0;
            loop {
                let missing: Vec<&String> = chunk.iter().filter(|n| !ids.contains_key(*n)).collect();
                if missing.is_empty() {
                    break;
                }
                attempts += 1;
                let mut body = serde_json::to_value(template).map_err(|e| DoError::Decode(e.to_string()))?;
                body["names"] = json!(missing);
                match self.send(Method::POST, "/v2/droplets", &[], Some(&body), false).await {
                    Ok(v) => {
                        let created = v["droplets"]
                            .as_array()
                            .cloned()
                            .unwrap_or_else(|| vec![v["droplet"].clone()]);
                        for d in created {
                            if let (Some(id), Some(name)) = (d["id"].as_i64(), d["name"].as_str()) {
                                ids.insert(name.to_string(), id);
                            }
                        }
                    }
                    Err(e)
                        if attempts < 4
                            && matches!(e, DoError::Transport { .. } | DoError::Api { status: 500.., .. }) =>
                    {
                        // The create may have happened: look before trying again. A
                        // freshly created droplet is missing from lists for a while, so
                        // keep looking (doubling the interval) for the whole list-lag
                        // bound before creating what is still missing: a retried create
                        // costs that bound, a duplicate would cost a droplet.
                        tracing::debug!(error = %e, "droplet create failed; reconciling by tag before any retry");
                        let started = Instant::now();
                        let mut interval = Duration::from_millis(250);
                        loop {
                            for d in self.droplets_by_tag(run_tag).await? {
                                if chunk.contains(&d.name) {
                                    ids.insert(d.name.clone(), d.id);
                                }
                            }
                            if chunk.iter().all(|n| ids.contains_key(n)) || started.elapsed() >= self.list_lag_bound {
                                break;
                            }
                            let left = self.list_lag_bound.saturating_sub(started.elapsed());
                            tokio::time::sleep(interval.min(left)).await;
                            interval = (interval * 2).min(Duration::from_secs(5));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(names.iter().filter_map(|n| ids.get(n).copied()).collect())
    }

    /// Waits until every droplet with `run_tag` in `names` is `active` with a public
    /// IPv4: one list request per round for the whole cluster.
    pub async fn wait_active(
        &self,
        run_tag: &str,
        names: &[String],
        limit: Duration,
        every: Duration,
    ) -> Result<Vec<Droplet>, WaitError> {
        let started = Instant::now();
        let mut interval = every;
        loop {
            let droplets = self.droplets_by_tag(run_tag).await.map_err(WaitError::Api)?;
            let ours: Vec<Droplet> = droplets.into_iter().filter(|d| names.contains(&d.name)).collect();
            let ready = ours
                .iter()
                .filter(|d| d.status == "active" && d.public_ipv4().is_some())
                .count();
            if ready == names.len() {
                return Ok(ours);
            }
            if let Some(off) = ours.iter().find(|d| d.status == "off") {
                return Err(WaitError::Off(off.name.clone()));
            }
            if started.elapsed() >= limit {
                let pending: Vec<String> = names
                    .iter()
                    .filter(|n| !ours.iter().any(|d| &d.name == *n && d.status == "active"))
                    .map(|n| {
                        let status = ours
                            .iter()
                            .find(|d| &d.name == n)
                            .map(|d| d.status.as_str())
                            .unwrap_or("missing");
                        format!("{n} ({status})")
                    })
                    .collect();
                return Err(WaitError::Timeout { limit, pending });
            }
            // Doubling intervals: a fast boot is seen quickly, a slow one costs few
            // requests (the budget is 2N + 15 requests per run).
            // Never sleep past the limit: the last look happens at it, so a timeout
            // reports what was seen then.
            tokio::time::sleep(interval.min(limit.saturating_sub(started.elapsed()))).await;
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }

    /// Deletes every droplet with `run_tag`, then lists until none is left (deletes are
    /// eventually consistent), bounded by `limit`.
    pub async fn delete_by_tag_verified(&self, run_tag: &str, limit: Duration) -> Result<(), WaitError> {
        let started = Instant::now();
        let mut interval = Duration::from_millis(250);
        match self
            .send(
                Method::DELETE,
                "/v2/droplets",
                &[("tag_name", run_tag.to_string())],
                None,
                true,
            )
            .await
        {
            Ok(_) | Err(DoError::Api { status: 404, .. }) => {}
            Err(e) => return Err(WaitError::Api(e)),
        }
        loop {
            let left = self.droplets_by_tag(run_tag).await.map_err(WaitError::Api)?;
            if left.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(WaitError::Timeout {
                    limit,
                    pending: left.iter().map(|d| format!("{} ({})", d.name, d.status)).collect(),
                });
            }
            // Never sleep past the limit: the last look happens at it, so a timeout
            // reports what was seen then.
            tokio::time::sleep(interval.min(limit.saturating_sub(started.elapsed()))).await;
            interval = (interval * 2).min(MAX_POLL_INTERVAL);
        }
    }

    pub async fn create_tag(&self, name: &str) -> Result<(), DoError> {
        self.send(Method::POST, "/v2/tags", &[], Some(&json!({"name": name})), true)
            .await
            .map(|_| ())
    }

    /// Registers a public key; a lost answer is reconciled by name, never re-sent blindly.
    pub async fn create_ssh_key(&self, name: &str, public_key: &str) -> Result<SshKey, DoError> {
        let body = json!({"name": name, "public_key": public_key});
        match self
            .send(Method::POST, "/v2/account/keys", &[], Some(&body), false)
            .await
        {
            Ok(v) => serde_json::from_value(v["ssh_key"].clone()).map_err(|e| DoError::Decode(e.to_string())),
            Err(e) => {
                let existing = self.ssh_keys().await?.into_iter().find(|k| k.name == name);
                existing.ok_or(e)
            }
        }
    }

    pub async fn ssh_keys(&self) -> Result<Vec<SshKey>, DoError> {
        let items = self.list("/v2/account/keys", "ssh_keys", &[]).await?;
        items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| DoError::Decode(e.to_string())))
            .collect()
    }

    pub async fn delete_ssh_key(&self, id: i64) -> Result<(), DoError> {
        match self
            .send(Method::DELETE, &format!("/v2/account/keys/{id}"), &[], None, true)
            .await
        {
            Ok(_) | Err(DoError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates a firewall; returns its id. Lost answers are reconciled by name.
    pub async fn create_firewall(&self, body: &Value) -> Result<String, DoError> {
        match self.send(Method::POST, "/v2/firewalls", &[], Some(body), false).await {
            Ok(v) => Ok(v["firewall"]["id"].as_str().unwrap_or_default().to_string()),
            Err(e) => {
                let name = body["name"].as_str().unwrap_or_default();
                let found = self
                    .firewalls()
                    .await?
                    .into_iter()
                    .find(|f| f["name"] == name)
                    .and_then(|f| f["id"].as_str().map(str::to_string));
                found.ok_or(e)
            }
        }
    }

    pub async fn firewalls(&self) -> Result<Vec<Value>, DoError> {
        self.list("/v2/firewalls", "firewalls", &[]).await
    }

    pub async fn delete_firewall(&self, id: &str) -> Result<(), DoError> {
        match self
            .send(Method::DELETE, &format!("/v2/firewalls/{id}"), &[], None, true)
            .await
        {
            Ok(_) | Err(DoError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Api(DoError),
    #[error("gave up after {limit:?}; not ready: {}", pending.join(", "))]
    Timeout { limit: Duration, pending: Vec<String> },
    #[error("droplet {0} powered off")]
    Off(String),
}

fn endpoint_of(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// For a 403: the scopes the call needs, which a custom-scoped token must grant (a 403
/// of DigitalOcean's says only that the token may not).
fn forbidden_scopes(
    status: StatusCode,
    method: &Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<&Value>,
) -> String {
    if status != StatusCode::FORBIDDEN {
        return String::new();
    }
    let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let needed = crate::spec::Spec::shared().scopes_needed(method.as_str(), path, &query, body.unwrap_or(&Value::Null));
    if needed.is_empty() {
        return String::new();
    }
    format!(
        " ({method} {path} needs the scope(s) {}: give the token them, or use a full-access token)",
        needed.join(", ")
    )
}
