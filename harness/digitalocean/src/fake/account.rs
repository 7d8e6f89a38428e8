//! The account and tags (a tag is created before anything carries it).

use serde_json::{Value, json};
use wiremock::Request;

use super::Handler;
use super::answer::Answer;
use super::state::State;

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

pub(super) fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 255
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':'))
}
