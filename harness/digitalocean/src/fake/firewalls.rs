//! Cloud firewalls: create (rules normalised as the real API echoes them), list, delete.

use std::time::Instant;

use serde_json::{Value, json};
use wiremock::Request;

use super::Handler;
use super::answer::{Answer, error, unprocessable};
use super::state::{Firewall, State, rfc3339_now};

impl Handler {
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

/// Checks a firewall's rules as the API does and writes them back as it answers them:
/// `ports` "0" for ICMP (which takes none) and for "all".
pub(super) fn normalise_rules(body: &mut Value) -> Result<(), String> {
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
