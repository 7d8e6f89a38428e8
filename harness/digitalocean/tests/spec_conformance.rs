//! The fake and the client against DigitalOcean's own OpenAPI spec (vendored under
//! `fixtures/digitalocean-openapi/`): every route, success and error paths, and every
//! fault, over HTTP; each exchange (the request sent and the response given) checked.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use swarm_e2e_digitalocean::client::{DoClient, DropletTemplate};
use swarm_e2e_digitalocean::fake::{Exchange, FakeConfig, FakeDigitalOcean, Faults};
use swarm_e2e_digitalocean::spec::Spec;

const TAG: &str = "swarm-e2e-run-sp3c0001";

async fn fake(faults: Faults) -> FakeDigitalOcean {
    FakeDigitalOcean::start(
        FakeConfig {
            boot_latency: Duration::from_millis(200),
            delete_latency: Duration::from_millis(200),
            faults,
            record_exchanges: true,
            ..Default::default()
        },
        None,
    )
    .await
}

/// Every deviation of these exchanges, allowed ones left out, one per line.
fn deviations(spec: &Spec, exchanges: &[Exchange]) -> Vec<String> {
    let mut out: Vec<String> = exchanges
        .iter()
        .flat_map(|e| spec.unexcused(e))
        .map(|d| {
            // One line per kind of deviation, not per array element.
            let at: Vec<&str> =
                d.at.split('/')
                    .map(|s| if s.parse::<u32>().is_ok() { "*" } else { s })
                    .collect();
            format!("{}: {}: {}", d.operation, at.join("/"), d.message)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn assert_conforms(f: &FakeDigitalOcean, min_exchanges: usize) {
    let spec = Spec::vendored();
    let exchanges = f.exchanges();
    assert!(
        exchanges.len() >= min_exchanges,
        "only {} exchanges recorded",
        exchanges.len()
    );
    let found = deviations(&spec, &exchanges);
    assert!(
        found.is_empty(),
        "{} deviation(s) from DigitalOcean's spec in {} exchanges:\n{}",
        found.len(),
        exchanges.len(),
        found.join("\n")
    );
}

struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Raw {
    fn new(f: &FakeDigitalOcean) -> Raw {
        Raw {
            http: reqwest::Client::new(),
            base: f.base_url(),
            token: f.token().to_string(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send_as(&self.token, method, path, body).await
    }

    async fn send_as(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn template() -> DropletTemplate {
    DropletTemplate {
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        tags: vec!["swarm-e2e".into(), TAG.into()],
        ssh_keys: vec![],
        user_data: Some("#cloud-config\n".into()),
    }
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("spec-node-{i}")).collect()
}

#[tokio::test]
async fn every_route_success_and_error_paths() {
    use reqwest::Method;
    let f = fake(Faults::default()).await;
    let raw = Raw::new(&f);
    let c = DoClient::new(&f.base_url(), SecretString::from(f.token().to_string())).unwrap();

    // Reads.
    assert_eq!(raw.send(Method::GET, "/v2/account", None).await.0, 200);
    assert_eq!(
        raw.send_as("dop_v1_wrong", Method::GET, "/v2/account", None).await.0,
        401
    );
    assert_eq!(
        raw.send(Method::GET, "/v2/regions?per_page=3&page=2", None).await.0,
        200
    );
    assert_eq!(raw.send(Method::GET, "/v2/sizes", None).await.0, 200);
    assert_eq!(raw.send(Method::GET, "/v2/sizes?per_page=1&page=3", None).await.0, 200);
    assert_eq!(raw.send(Method::GET, "/v2/images/ubuntu-24-04-x64", None).await.0, 200);
    assert_eq!(raw.send(Method::GET, "/v2/images/no-such-image", None).await.0, 404);

    // Tags, keys, firewalls.
    c.create_tag("swarm-e2e").await.unwrap();
    c.create_tag(TAG).await.unwrap();
    assert_eq!(
        raw.send(Method::POST, "/v2/tags", Some(json!({"name": "no spaces"})))
            .await
            .0,
        400
    );
    let key = c
        .create_ssh_key(
            "spec-key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGc3k4p1dJb0m6N0pQzB2f1bW8n8aZ5xY3v9jK2lTq1r spec",
        )
        .await
        .unwrap();
    assert_eq!(
        raw.send(
            Method::POST,
            "/v2/account/keys",
            Some(json!({"name": "again", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGc3k4p1dJb0m6N0pQzB2f1bW8n8aZ5xY3v9jK2lTq1r spec"}))
        )
        .await
        .0,
        422
    );
    let second = c
        .create_ssh_key(
            "spec-key-2",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9k4p1dJb0m6N0pQzB2f1bW8n8aZ5xY3v9jK2lTq2s spec",
        )
        .await
        .unwrap();
    assert_eq!(c.ssh_keys().await.unwrap().len(), 2);
    assert_eq!(raw.send(Method::GET, "/v2/account/keys?per_page=1", None).await.0, 200);
    assert_eq!(raw.send(Method::GET, "/v2/firewalls?per_page=1", None).await.0, 200);
    c.delete_ssh_key(second.id).await.unwrap();
    let fw = c
        .create_firewall(&json!({
            "name": "swarm-e2e-sp3c0001",
            "tags": [TAG],
            "inbound_rules": [
                {"protocol": "tcp", "ports": "2376", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}},
                {"protocol": "udp", "ports": "4789", "sources": {"tags": [TAG]}},
                {"protocol": "icmp", "sources": {"tags": [TAG]}}
            ],
            "outbound_rules": [
                {"protocol": "tcp", "ports": "all", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}},
                {"protocol": "icmp", "destinations": {"addresses": ["0.0.0.0/0", "::/0"]}}
            ]
        }))
        .await
        .unwrap();
    assert_eq!(c.firewalls().await.unwrap().len(), 1);
    assert_eq!(
        raw.send(Method::POST, "/v2/firewalls", Some(json!({"name": "x"})))
            .await
            .0,
        400
    );

    // Droplets: single and multi create, list (paged), get, delete, delete by tag.
    let (status, single) = raw
        .send(
            Method::POST,
            "/v2/droplets",
            Some(json!({"name": "spec-single", "region": "nyc3", "size": "s-1vcpu-1gb",
                        "image": "ubuntu-24-04-x64", "tags": [TAG], "ssh_keys": [key.id]})),
        )
        .await;
    assert_eq!(status, 202, "{single}");
    let ids = c.create_droplets(&names(3), &template(), TAG).await.unwrap();
    assert_eq!(ids.len(), 3);
    c.wait_active(TAG, &names(3), Duration::from_secs(10), Duration::from_millis(100))
        .await
        .unwrap();
    // The create's action link leads somewhere.
    let href = single["links"]["actions"][0]["href"].as_str().unwrap();
    let action_path = &href[href.find("/v2/").unwrap()..];
    assert_eq!(raw.send(Method::GET, action_path, None).await.0, 200, "{href}");
    assert_eq!(
        raw.send(
            Method::GET,
            &format!("/v2/droplets?tag_name={TAG}&per_page=2&page=2"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        raw.send(Method::GET, &format!("/v2/droplets/{}", ids[0]), None).await.0,
        200
    );
    assert_eq!(raw.send(Method::GET, "/v2/droplets/99", None).await.0, 404);
    for bad in [
        json!({"names": names(11), "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}),
        json!({"name": "bad_name!", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}),
        json!({"name": "spec-x", "region": "nyc3", "size": "s-99vcpu", "image": "ubuntu-24-04-x64"}),
        json!({"name": "spec-x", "region": "xx9", "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}),
    ] {
        assert_eq!(raw.send(Method::POST, "/v2/droplets", Some(bad)).await.0, 422);
    }
    assert_eq!(
        raw.send(Method::DELETE, &format!("/v2/droplets/{}", ids[0]), None)
            .await
            .0,
        204
    );
    assert_eq!(raw.send(Method::DELETE, "/v2/droplets/99", None).await.0, 404);
    c.delete_by_tag_verified(TAG, Duration::from_secs(10)).await.unwrap();
    c.delete_firewall(&fw).await.unwrap();
    assert_eq!(
        raw.send(Method::DELETE, &format!("/v2/firewalls/{fw}"), None).await.0,
        404
    );
    c.delete_ssh_key(key.id).await.unwrap();
    assert_eq!(raw.send(Method::DELETE, "/v2/account/keys/12", None).await.0, 404);

    assert_conforms(&f, 30);
}

#[tokio::test]
async fn faults_are_answered_as_the_real_api_answers() {
    use reqwest::Method;
    // 429 bursts, 5xx streaks, a lost create, a droplet that stays new and one that goes off.
    let f = fake(Faults {
        burst_429: 2,
        retry_after_secs: 1,
        fail_5xx: [("GET /v2/droplets".to_string(), 2)].into(),
        fail_5xx_streak: 2,
        lose_create_responses: 1,
        stuck_in_new: ["spec-node-2".to_string()].into(),
        goes_off: ["spec-node-3".to_string()].into(),
        slow_ms: 5,
        ..Default::default()
    })
    .await;
    let c = DoClient::new(&f.base_url(), SecretString::from(f.token().to_string()))
        .unwrap()
        .with_retry_budget(Duration::from_secs(20));
    let ids = c.create_droplets(&names(3), &template(), TAG).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(
        c.wait_active(TAG, &names(3), Duration::from_millis(1500), Duration::from_millis(100))
            .await
            .is_err(),
        "spec-node-2 never boots"
    );
    c.delete_by_tag_verified(TAG, Duration::from_secs(10)).await.unwrap();
    // The per-minute limit itself.
    let raw = Raw::new(&f);
    let mut limited = 0;
    for _ in 0..260 {
        if raw.send(Method::GET, "/v2/account", None).await.0 == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "250 requests a minute is the limit");
    assert_conforms(&f, 250);
}

/// The checker itself: a response the real API would never give is caught.
#[tokio::test]
async fn the_checker_catches_what_the_spec_forbids() {
    let f = fake(Faults::default()).await;
    let raw = Raw::new(&f);
    raw.send(reqwest::Method::GET, "/v2/sizes", None).await;
    raw.send(reqwest::Method::GET, "/v2/account/keys", None).await;
    raw.send(reqwest::Method::GET, "/v2/images/nope", None).await;
    let spec = Spec::vendored();
    let mut exchanges = f.exchanges();
    assert!(deviations(&spec, &exchanges).is_empty());
    let sizes = exchanges[0].response.as_mut().unwrap();
    sizes.body.as_mut().unwrap()["sizes"][0]
        .as_object_mut()
        .unwrap()
        .remove("available");
    sizes.headers.remove("ratelimit-reset");
    let keys = &mut exchanges[1];
    keys.query.push(("colour".into(), "blue".into()));
    keys.response.as_mut().unwrap().body.as_mut().unwrap()["links"]["pages"]["next"] =
        json!("https://api.digitalocean.com/v2/ssh_keys?page=2");
    let not_found = exchanges[2].response.as_mut().unwrap();
    not_found.headers.insert("x-request-id".into(), "another".into());
    let found = deviations(&spec, &exchanges).join("\n");
    for expected in [
        "sizes_list: response body /sizes/*: \"available\" is a required property",
        "images_get: response header x-request-id: Some(\"another\"), but the body's request_id is",
        "sizes_list: response header ratelimit-reset: declared, missing",
        "sshKeys_list: request query colour: not a parameter of this operation",
        "sshKeys_list: response body /links/pages/next",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }
}

/// A custom-scoped token: what it holds works, what it lacks gets DigitalOcean's 403
/// `forbidden` (the spec's default error), and the scopes a field adds count too (a
/// create naming tags needs `tag:create`).
#[tokio::test]
async fn a_scoped_token_is_refused_what_it_lacks_as_the_spec_says() {
    use reqwest::Method;
    let f = fake(Faults {
        scopes: Some(
            ["account:read", "droplet:read", "droplet:create", "image:read"]
                .map(String::from)
                .into(),
        ),
        ..Default::default()
    })
    .await;
    let c = DoClient::new(&f.base_url(), SecretString::from(f.token().to_string())).unwrap();
    c.account().await.unwrap();
    c.count_droplets().await.unwrap();
    let forbidden = c.ssh_keys().await.unwrap_err();
    assert_eq!(forbidden.status(), Some(403), "{forbidden}");
    assert!(forbidden.to_string().contains("forbidden"), "{forbidden}");
    // Listing by tag needs tag:read besides droplet:read.
    assert_eq!(c.droplets_by_tag(TAG).await.unwrap_err().status(), Some(403));
    // A create naming tags needs tag:create: refused, and nothing was made.
    let raw = Raw::new(&f);
    let body = json!({"name": "scoped-1", "region": "nyc3", "size": "s-1vcpu-1gb",
        "image": "ubuntu-24-04-x64", "tags": [TAG]});
    assert_eq!(raw.send(Method::POST, "/v2/droplets", Some(body.clone())).await.0, 403);
    assert_eq!(c.count_droplets().await.unwrap(), 0);
    let mut untagged = body;
    untagged.as_object_mut().unwrap().remove("tags");
    assert_eq!(raw.send(Method::POST, "/v2/droplets", Some(untagged)).await.0, 202);
    assert_conforms(&f, 7);
}

/// The scope probes tell held from missing scopes and change nothing: against a full
/// token all of them are held; against one lacking three, exactly those three are missing
/// (and `tag:read`, whose probe also needs the missing `droplet:read`, is not judged).
#[tokio::test]
async fn scope_probes_name_the_missing_scopes_and_create_nothing() {
    use swarm_e2e_digitalocean::scopes::RUN_SCOPES;
    let full = fake(Faults::default()).await;
    let c = DoClient::new(&full.base_url(), SecretString::from(full.token().to_string())).unwrap();
    let report = c.probe_scopes("ubuntu-24-04-x64").await.unwrap();
    assert!(report.missing.is_empty() && report.unjudged.is_empty(), "{report:?}");
    assert_eq!(report.held.len(), RUN_SCOPES.len());
    assert_eq!((full.key_count(), full.firewall_count()), (0, 0));
    assert_eq!(c.count_droplets().await.unwrap(), 0);
    assert_conforms(&full, RUN_SCOPES.len());

    let lacking = ["droplet:read", "tag:create", "firewall:delete"];
    let granted = RUN_SCOPES
        .iter()
        .filter(|s| !lacking.contains(s))
        .map(|s| s.to_string())
        .collect();
    let scoped = fake(Faults {
        scopes: Some(granted),
        ..Default::default()
    })
    .await;
    let c = DoClient::new(&scoped.base_url(), SecretString::from(scoped.token().to_string())).unwrap();
    let report = c.probe_scopes("ubuntu-24-04-x64").await.unwrap();
    let mut missing = report.missing.clone();
    missing.sort();
    assert_eq!(missing, ["droplet:read", "firewall:delete", "tag:create"], "{report:?}");
    assert_eq!(report.unjudged, ["tag:read"], "{report:?}");
    assert_eq!((scoped.key_count(), scoped.firewall_count()), (0, 0));
    assert_conforms(&scoped, RUN_SCOPES.len());
}
