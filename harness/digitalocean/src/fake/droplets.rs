//! Droplets and their actions: create (single and multi, validated as the real API
//! does), list (with the list lag), get, delete (eventually consistent), by tag.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};
use wiremock::{Match, Request};

use super::account::valid_tag;
use super::answer::{Answer, Page, endpoint, error, not_found, paged, unprocessable};
use super::catalogue::{IMAGES, REGIONS, SIZES, image_json, size_json};
use super::state::{Droplet, DropletEvent, LoggedRequest, State, rfc3339_now, visible};
use super::{FakeConfig, Faults, Handler, USER_DATA_LIMIT};

impl Handler {
    pub(super) fn create_droplets(&self, s: &mut State, req: &Request) -> Answer {
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
}

#[derive(Deserialize)]
pub(super) struct CreateBody {
    pub(super) name: Option<String>,
    pub(super) names: Option<Vec<String>>,
    pub(super) region: Option<String>,
    pub(super) size: Option<String>,
    pub(super) image: Option<Value>,
    #[serde(default)]
    pub(super) tags: Option<Vec<String>>,
    pub(super) user_data: Option<String>,
    #[serde(default)]
    pub(super) ssh_keys: Option<Vec<Value>>,
}

/// Validates and records a create; `Err` is the finished error response (built once per
/// request, so its size does not matter).
#[allow(clippy::result_large_err)]
pub(super) fn create(s: &mut State, config: &FakeConfig, req: &Request) -> Result<Vec<Droplet>, Answer> {
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

pub(super) fn valid_droplet_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && n.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

pub(super) fn droplet_json(d: &Droplet, c: &FakeConfig, f: &Faults) -> Value {
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

/// A droplet's create action (its id is the droplet's + 1): done once the droplet is.
pub(super) fn action_json(d: &Droplet, c: &FakeConfig, f: &Faults) -> Value {
    let done = droplet_json(d, c, f)["status"] != "new";
    json!({"id": d.id + 1, "status": if done { "completed" } else { "in-progress" }, "type": "create",
           "started_at": d.created_at, "completed_at": if done { json!(d.created_at) } else { Value::Null },
           "resource_id": d.id, "resource_type": "droplet", "region_slug": d.region})
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

/// Matches a droplet create while lost-response faults remain.
pub(super) struct LoseCreate(pub(super) Arc<Mutex<State>>);

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
pub(super) fn lost_create(
    state: Arc<Mutex<State>>,
    config: Arc<FakeConfig>,
) -> impl Fn(&Request) -> std::io::Error + Send + Sync {
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
