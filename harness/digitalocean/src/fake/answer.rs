//! The response side: `Answer` (a response the recorder can read back), the real API's
//! error bodies, the rate-limit headers every response carries, and pagination.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

/// A response before it becomes wiremock's (whose templates cannot be read back), so
/// the exchange can be recorded and checked against DigitalOcean's spec.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Option<Value>,
}

impl Answer {
    pub(super) fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    /// A response without content (204): the real API still sends a content-type.
    pub(super) fn empty(status: u16) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json; charset=utf-8".into())],
            body: None,
        }
    }

    pub(super) fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub(super) fn template(&self, delay: Duration) -> ResponseTemplate {
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

pub(super) fn request_id() -> String {
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
pub(super) fn error(status: u16, id: &str, message: &str) -> Answer {
    Answer::json(status, json!({"id": id, "message": message, "request_id": ""}))
}

pub(super) fn unprocessable(message: &str) -> Answer {
    error(422, "unprocessable_entity", message)
}

pub(super) fn not_found() -> Answer {
    error(404, "not_found", "The resource you were accessing could not be found.")
}

/// `GET /v2/droplets/123` -> `GET /v2/droplets/{id}` (for counts).
pub(super) fn endpoint(req: &Request) -> String {
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

/// Where a list request was made: its path and query, for pagination.
pub(super) struct Page<'a> {
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
}

/// Paginates like the real API: `page` (1-based), `per_page` (default 20, max 200),
/// `links.pages.next/last` as full URLs, `meta.total`.
pub(super) fn paged(path: &str, query: &BTreeMap<String, String>, key: &str, items: Vec<Value>) -> Answer {
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
