//! Admission: what the fake answers before a request reaches its resource, in the
//! real API's order: the rate limits (250 a minute, sliding; 5,000 an hour), the token,
//! its scopes, then injected 5xx faults.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::Request;

use super::answer::{Answer, error, request_id};
use super::state::{LoggedRequest, State, now_epoch};
use super::{Handler, PER_HOUR, PER_MINUTE};

impl Handler {
    /// The answer that refuses `req` before its resource sees it, if any.
    pub(super) fn admit(&self, s: &mut State, req: &Request, ep: &str, now: Instant) -> Option<Answer> {
        // Rate limit (per minute, sliding) before anything else, as the real API does.
        while s
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            s.window.pop_front();
        }
        if s.faults.burst_429 > 0 {
            s.faults.burst_429 -= 1;
            let after = s.faults.retry_after_secs.max(1);
            return Some(
                error(429, "too_many_requests", "API Rate limit exceeded.")
                    .header("retry-after", after.to_string().as_str()),
            );
        }
        if s.window.len() >= PER_MINUTE {
            let oldest = *s.window.front().unwrap();
            let after = 60u64.saturating_sub(now.duration_since(oldest).as_secs()).max(1);
            return Some(
                error(429, "too_many_requests", "API Rate limit exceeded.")
                    .header("retry-after", after.to_string().as_str()),
            );
        }
        prune_hour(s, now);
        if s.hour.len() >= PER_HOUR {
            let oldest = s.hour.front().unwrap().0;
            let after = 3600u64.saturating_sub(now.duration_since(oldest).as_secs()).max(1);
            return Some(
                error(429, "too_many_requests", "API Rate limit exceeded.")
                    .header("retry-after", after.to_string().as_str()),
            );
        }
        s.window.push_back(now);

        let token_ok = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == self.config.token);
        if !token_ok {
            return Some(error(401, "unauthorized", "Unable to authenticate you."));
        }

        if let Some(granted) = &s.faults.scopes {
            let missing: Vec<String> = required_scopes(req)
                .into_iter()
                .filter(|needed| !granted.contains(needed))
                .collect();
            if !missing.is_empty() {
                tracing::debug!(?missing, "fake DigitalOcean: scope missing");
                return Some(error(
                    403,
                    "forbidden",
                    "You do not have access for the attempted action.",
                ));
            }
        }

        let count = {
            let c = s.endpoint_counts.entry(ep.to_string()).or_insert(0);
            *c += 1;
            *c
        };
        if s.streak_left > 0 || s.faults.fail_5xx.get(ep).is_some_and(|n| *n == count) {
            if s.streak_left == 0 {
                s.streak_left = s.faults.fail_5xx_streak.max(1);
            }
            s.streak_left -= 1;
            return Some(error(500, "server_error", "Unexpected server-side error"));
        }
        None
    }
}

/// The scopes a request needs: its operation's (the spec's `security`), and what the
/// spec's descriptions add for the fields it carries (a create naming an image, keys or
/// tags; a list by tag; a firewall naming tags or droplets).
pub(super) fn required_scopes(req: &Request) -> Vec<String> {
    let query: Vec<(String, String)> = req.url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
    let body: Value = req.body_json().unwrap_or(Value::Null);
    crate::spec::Spec::shared().scopes_needed(req.method.as_str(), req.url.path(), &query, &body)
}

/// Logs the request and adds the rate-limit headers and the request id. The headers
/// count the hourly budget, as the real API's do; a 429 says none is left.
pub(super) fn finish(s: &mut State, ep: String, mut answer: Answer) -> Answer {
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

pub(super) fn prune_hour(s: &mut State, now: Instant) {
    while s
        .hour
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) >= Duration::from_secs(3600))
    {
        s.hour.pop_front();
    }
}
