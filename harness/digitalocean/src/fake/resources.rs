//! The fake's resources, one handler each: the account, the catalogue (regions, sizes,
//! images), droplets and their actions, tags, SSH keys and firewalls. Each reads and
//! changes the fake's [`State`] under wiremock's lock, so none of them blocks.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};
use wiremock::Request;

use super::*;

/// Where a list request was made: its path and query, for pagination.
pub(super) struct Page<'a> {
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
}

impl Handler {
    pub(super) fn account(&self) -> Answer {
        Answer::json(
            200,
            json!({"account": {
            "droplet_limit": self.config.droplet_limit, "floating_ip_limit": 3,
            "email": "ci@example.invalid", "name": "swarm-e2e fake", "uuid": "fake-account",
            "email_verified": true, "status": "active", "status_message": ""}}),
        )
    }

    pub(super) fn list_droplets(&self, s: &State, at: &Page<'_>, now: Instant) -> Answer {
        let tag = at.query.get("tag_name");
        let items: Vec<Value> = s
            .droplets
            .values()
            .filter(|d| visible(d, &self.config))
            .filter(|d| now.duration_since(d.created) >= self.config.list_lag)
            .filter(|d| tag.is_none_or(|t| d.tags.contains(t)))
            .map(|d| droplet_json(d, &self.config, &s.faults))
            .collect();
        paged(at.path, at.query, "droplets", items)
    }

    pub(super) fn get_droplet(&self, s: &State, id: &str) -> Answer {
        match id.parse::<i64>().ok().and_then(|i| s.droplets.get(&i)) {
            Some(d) if visible(d, &self.config) => {
                Answer::json(200, json!({"droplet": droplet_json(d, &self.config, &s.faults)}))
            }
            _ => not_found(),
        }
    }

    pub(super) fn action(&self, s: &State, id: &str) -> Answer {
        let droplet = id.parse::<i64>().ok().and_then(|a| s.droplets.get(&(a - 1)));
        match droplet {
            Some(d) => Answer::json(200, json!({"action": action_json(d, &self.config, &s.faults)})),
            None => not_found(),
        }
    }

    pub(super) fn create_firewall(&self, s: &mut State, req: &Request) -> Answer {
        let Ok(mut body) = req.body_json::<Value>() else {
            return error(400, "bad_request", "error parsing request body");
        };
        let name_ok = body["name"].as_str().is_some_and(|n| {
            n.len() >= 2
                && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        });
        let rules = body["inbound_rules"].as_array().map_or(0, |a| a.len())
            + body["outbound_rules"].as_array().map_or(0, |a| a.len());
        if !name_ok || rules == 0 {
            return error(
                400,
                "bad_request",
                "a firewall needs a valid name and at least one rule",
            );
        }
        if let Some(tags) = body["tags"].as_array() {
            for t in tags {
                let t = t.as_str().unwrap_or_default();
                if !s.tags.contains(t) {
                    return unprocessable(&format!("tag {t} does not exist"));
                }
            }
        }
        if let Err(message) = normalise_rules(&mut body) {
            return error(400, "bad_request", &message);
        }
        let id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            rand::random::<u32>(),
            rand::random::<u64>() & 0xffff_ffff_ffff
        );
        body["id"] = json!(id);
        body["status"] = json!(if self.config.firewall_latency.is_zero() {
            "succeeded"
        } else {
            "waiting"
        });
        body["created_at"] = json!(rfc3339_now());
        body["pending_changes"] = json!([]);
        s.firewalls.insert(
            id.clone(),
            Firewall {
                id: id.clone(),
                body: body.clone(),
                created: Instant::now(),
            },
        );
        Answer::json(202, json!({"firewall": body}))
    }
}

pub(super) fn regions(at: &Page<'_>) -> Answer {
    let items: Vec<Value> = REGIONS
        .iter()
        .map(|r| json!({"slug": r, "name": r, "features": ["metadata"], "available": true, "sizes": SIZES.iter().map(|s| s.0).collect::<Vec<_>>()}))
        .collect();
    paged(at.path, at.query, "regions", items)
}

pub(super) fn sizes(at: &Page<'_>) -> Answer {
    let items: Vec<Value> = SIZES.iter().map(size_json).collect();
    paged(at.path, at.query, "sizes", items)
}

pub(super) fn image(slug: &str) -> Answer {
    match IMAGES.iter().find(|i| **i == slug) {
        Some(i) => Answer::json(200, json!({"image": image_json(i)})),
        None => not_found(),
    }
}

pub(super) fn delete_droplets_by_tag(s: &mut State, query: &BTreeMap<String, String>, now: Instant) -> Answer {
    let Some(tag) = query.get("tag_name") else {
        return error(400, "bad_request", "tag_name is required");
    };
    let ids: Vec<i64> = s
        .droplets
        .values()
        .filter(|d| d.tags.contains(tag))
        .map(|d| d.id)
        .collect();
    for id in ids {
        s.mark_deleted(id, now);
    }
    Answer::empty(204)
}

pub(super) fn create_tag(s: &mut State, req: &Request) -> Answer {
    let name = req
        .body_json::<Value>()
        .ok()
        .and_then(|v| v["name"].as_str().map(String::from));
    match name {
        Some(n) if valid_tag(&n) => {
            s.tags.insert(n.clone());
            Answer::json(201, json!({"tag": {"name": n, "resources": {"count": 0}}}))
        }
        _ => Answer::json(
            400,
            json!({"error": "invalid tag name", "messages": null, "root_causes": ["tag names may contain letters, numbers, colons, dashes and underscores"]}),
        ),
    }
}

pub(super) fn list_keys(s: &State, at: &Page<'_>) -> Answer {
    let items: Vec<Value> = s.keys.values().map(|k| serde_json::to_value(k).unwrap()).collect();
    paged(at.path, at.query, "ssh_keys", items)
}

pub(super) fn create_key(s: &mut State, req: &Request) -> Answer {
    #[derive(Deserialize)]
    struct Body {
        name: String,
        public_key: String,
    }
    let Ok(b) = req.body_json::<Body>() else {
        return unprocessable("name and public_key are required");
    };
    if b.name.trim().is_empty() || !valid_public_key(&b.public_key) {
        return unprocessable("Key invalid, key should be of the format `type key [comment]`");
    }
    if s.keys.values().any(|k| k.public_key == b.public_key) {
        return unprocessable("SSH Key is already in use on your account");
    }
    s.next_id += 1;
    let id = s.next_id;
    let fingerprint = fingerprint_of(&b.public_key);
    let key = SshKey {
        id,
        name: b.name,
        public_key: b.public_key,
        fingerprint,
    };
    s.keys.insert(id, key.clone());
    Answer::json(201, json!({"ssh_key": key}))
}

pub(super) fn delete_key(s: &mut State, id: &str) -> Answer {
    let found = s
        .keys
        .iter()
        .find(|(k, v)| k.to_string() == *id || v.fingerprint == *id)
        .map(|(k, _)| *k);
    match found {
        Some(k) => {
            s.keys.remove(&k);
            Answer::empty(204)
        }
        None => not_found(),
    }
}
