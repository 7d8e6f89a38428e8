//! What the fake holds: droplets, SSH keys, firewalls, tags and the request log, under
//! one lock. A droplet's lifecycle is computed from timestamps when a request arrives
//! (responders must not block), never by background work.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};
use wiremock::Request;

use super::answer::Answer;
use super::{Exchange, FakeConfig, Faults, Recorder};

#[derive(Debug, Clone)]
pub(super) struct Droplet {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) region: String,
    pub(super) size: String,
    pub(super) image: String,
    pub(super) tags: Vec<String>,
    pub(super) user_data: Option<String>,
    pub(super) created: Instant,
    pub(super) created_at: String,
    pub(super) deleted: Option<Instant>,
    pub(super) public: Ipv4Addr,
    pub(super) private: Ipv4Addr,
    /// Set by a backer: the address of the engine behind this droplet.
    pub(super) backing_address: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct SshKey {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) public_key: String,
    pub(super) fingerprint: String,
}

#[derive(Debug, Clone)]
pub(super) struct Firewall {
    pub(super) id: String,
    pub(super) body: Value,
    pub(super) created: Instant,
}

impl Firewall {
    /// As listed now: `waiting` until the firewall latency has passed.
    pub(super) fn json(&self, c: &FakeConfig) -> Value {
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
pub(super) struct State {
    pub(super) droplets: BTreeMap<i64, Droplet>,
    pub(super) keys: BTreeMap<i64, SshKey>,
    pub(super) firewalls: BTreeMap<String, Firewall>,
    pub(super) tags: BTreeSet<String>,
    pub(super) next_id: i64,
    pub(super) log: Vec<LoggedRequest>,
    pub(super) window: VecDeque<Instant>,
    pub(super) hour: VecDeque<(Instant, u64)>,
    pub(super) endpoint_counts: BTreeMap<String, u32>,
    pub(super) faults: Faults,
    pub(super) streak_left: u32,
    /// Where droplet lifecycle events go (to a backer); `None` until someone listens.
    pub(super) events: Option<tokio::sync::mpsc::UnboundedSender<DropletEvent>>,
    pub(super) recorder: Recorder,
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
    pub(super) fn record(&mut self, req: &Request, answer: Option<&Answer>) {
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

    pub(super) fn emit(&self, event: DropletEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    pub(super) fn mark_deleted(&mut self, id: i64, now: Instant) -> bool {
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

pub(super) fn visible(d: &Droplet, c: &FakeConfig) -> bool {
    d.deleted.is_none_or(|t| t.elapsed() < c.delete_latency)
}

pub(super) fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn rfc3339_now() -> String {
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
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
