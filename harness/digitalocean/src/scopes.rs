//! Which scopes a token holds, asked without changing anything. DigitalOcean has no call
//! that lists a token's scopes, so each scope a run needs is probed with a request that
//! needs it and that the API refuses or answers harmlessly: a create with an empty name
//! (422/400), a delete of an id nobody has (404) or of droplets by a tag nobody uses,
//! a one-item list. 403 means the scope is missing; any other answer of the API (2xx,
//! 400, 404, 422) means it is held. Nothing is ever created or deleted by a probe.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{DoClient, DoError};

/// The scopes of every operation a run, `doctor` and `sweep` call, by DigitalOcean's
/// OpenAPI spec (`fixtures/digitalocean-openapi/`): a custom-scoped token needs all of
/// them. A droplet create also needs `image:read` and `tag:create` for the image and
/// tags it names; listing droplets by tag needs `tag:read`; the droplet settings are
/// checked against the regions and sizes lists.
pub const RUN_SCOPES: &[&str] = &[
    "account:read",
    "droplet:create",
    "droplet:read",
    "droplet:delete",
    "tag:create",
    "tag:read",
    "ssh_key:create",
    "ssh_key:read",
    "ssh_key:delete",
    "firewall:create",
    "firewall:read",
    "firewall:delete",
    "image:read",
    "regions:read",
    "sizes:read",
];

/// One scope's probe: a request that needs `scope` (and `also_needs`, which are probed
/// on their own) and changes nothing.
#[derive(Debug, Clone)]
pub struct ScopeProbe {
    pub scope: &'static str,
    pub also_needs: &'static [&'static str],
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl ScopeProbe {
    fn new(scope: &'static str, method: Method, path: impl Into<String>) -> ScopeProbe {
        ScopeProbe {
            scope,
            also_needs: &[],
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    fn query(mut self, key: &'static str, value: impl Into<String>) -> ScopeProbe {
        self.query.push((key, value.into()));
        self
    }

    fn body(mut self, body: Value) -> ScopeProbe {
        self.body = Some(body);
        self
    }

    fn also_needs(mut self, scopes: &'static [&'static str]) -> ScopeProbe {
        self.also_needs = scopes;
        self
    }

    /// `METHOD /path`, for messages.
    pub fn request(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A probe for each of [`RUN_SCOPES`]; `image` is the image runs will create droplets
/// from (its lookup needs `image:read`).
pub fn probes(image: &str) -> Vec<ScopeProbe> {
    // A tag no droplet carries: deleting "its" droplets deletes none.
    let unused_tag = format!("swarm-e2e-scope-probe-{:016x}", rand::random::<u64>());
    vec![
        ScopeProbe::new("account:read", Method::GET, "/v2/account"),
        ScopeProbe::new("droplet:read", Method::GET, "/v2/droplets").query("per_page", "1"),
        ScopeProbe::new("tag:read", Method::GET, "/v2/droplets")
            .query("tag_name", "swarm-e2e")
            .query("per_page", "1")
            .also_needs(&["droplet:read"]),
        // No name, region, size or image: refused (422) by a token that may create.
        ScopeProbe::new("droplet:create", Method::POST, "/v2/droplets").body(json!({"name": ""})),
        ScopeProbe::new("droplet:delete", Method::DELETE, "/v2/droplets").query("tag_name", unused_tag),
        ScopeProbe::new("tag:create", Method::POST, "/v2/tags").body(json!({"name": ""})),
        ScopeProbe::new("ssh_key:read", Method::GET, "/v2/account/keys").query("per_page", "1"),
        ScopeProbe::new("ssh_key:create", Method::POST, "/v2/account/keys").body(json!({"name": "", "public_key": ""})),
        // A fingerprint no key has (all zeros).
        ScopeProbe::new(
            "ssh_key:delete",
            Method::DELETE,
            format!("/v2/account/keys/{}", ["00"; 16].join(":")),
        ),
        ScopeProbe::new("firewall:read", Method::GET, "/v2/firewalls").query("per_page", "1"),
        ScopeProbe::new("firewall:create", Method::POST, "/v2/firewalls").body(json!({"name": ""})),
        ScopeProbe::new(
            "firewall:delete",
            Method::DELETE,
            "/v2/firewalls/00000000-0000-4000-8000-000000000000",
        ),
        ScopeProbe::new("image:read", Method::GET, format!("/v2/images/{image}")),
        // The droplet settings are checked against these lists before anything is made.
        ScopeProbe::new("regions:read", Method::GET, "/v2/regions").query("per_page", "1"),
        ScopeProbe::new("sizes:read", Method::GET, "/v2/sizes").query("per_page", "1"),
    ]
}

/// What the probes found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeReport {
    /// Refused with 403.
    pub missing: Vec<&'static str>,
    /// Not judged: its probe also needs a scope that is missing.
    pub unjudged: Vec<&'static str>,
    pub held: Vec<&'static str>,
}

impl DoClient {
    /// Probes every scope of [`RUN_SCOPES`] at once. Errors only when the API gives no
    /// verdict (a refused token, no answer, rate limits past the retry budget).
    pub async fn probe_scopes(&self, image: &str) -> Result<ScopeReport, DoError> {
        let mut set = tokio::task::JoinSet::new();
        for (i, probe) in probes(image).into_iter().enumerate() {
            let client = self.clone();
            set.spawn(async move {
                let answer = client
                    .send_probe(&probe.method, &probe.path, &probe.query, probe.body.as_ref())
                    .await;
                (i, probe, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = set.join_next().await {
            answers.push(joined.map_err(|e| DoError::Decode(format!("a scope probe failed: {e}")))?);
        }
        answers.sort_by_key(|(i, _, _)| *i);
        let mut refused = Vec::new();
        let mut judged = Vec::new();
        for (_, probe, answer) in answers {
            match answer {
                Ok(()) => judged.push((probe, true)),
                Err(DoError::Api { status: 403, .. }) => {
                    refused.push(probe.scope);
                    judged.push((probe, false));
                }
                // Refused for the body or the id: the scope let the request through.
                Err(DoError::Api {
                    status: 400 | 404 | 409 | 422,
                    ..
                }) => judged.push((probe, true)),
                Err(e) => return Err(e),
            }
        }
        let mut report = ScopeReport::default();
        for (probe, held) in judged {
            if held {
                report.held.push(probe.scope);
            } else if probe.also_needs.iter().any(|s| refused.contains(s)) {
                report.unjudged.push(probe.scope);
            } else {
                report.missing.push(probe.scope);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_a_run_needs_has_exactly_one_probe() {
        let probes = probes("ubuntu-24-04-x64");
        for scope in RUN_SCOPES {
            assert_eq!(probes.iter().filter(|p| p.scope == *scope).count(), 1, "{scope}");
        }
        assert_eq!(probes.len(), RUN_SCOPES.len());
    }
}
