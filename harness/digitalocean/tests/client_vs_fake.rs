//! The client against the fake, over HTTP: the behaviours swarm-e2e relies on, and the
//! faults it must survive without leaking or duplicating droplets.

use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::SecretString;
use swarm_e2e_digitalocean::client::{DoClient, DoError, DropletTemplate, WaitError};
use swarm_e2e_digitalocean::fake::{FakeConfig, FakeDigitalOcean, Faults};

const TAG: &str = "swarm-e2e-run-t3st0001";

async fn fake(faults: Faults, boot: Duration) -> FakeDigitalOcean {
    FakeDigitalOcean::start(
        FakeConfig {
            boot_latency: boot,
            delete_latency: Duration::from_millis(300),
            faults,
            ..Default::default()
        },
        None,
    )
    .await
}

fn client(f: &FakeDigitalOcean) -> DoClient {
    // These fakes list a new droplet at once: a lost create's droplets are looked for 1 s.
    DoClient::new(&f.base_url(), SecretString::from(f.token().to_string()))
        .unwrap()
        .with_list_lag_bound(Duration::from_secs(1))
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
    (1..=n).map(|i| format!("swarm-demo-{i}")).collect()
}

const POLL: Duration = Duration::from_millis(200);

#[tokio::test]
async fn lifecycle_within_the_request_budget() {
    let f = fake(Faults::default(), Duration::from_millis(600)).await;
    let c = client(&f);
    let n = 3;
    let ids = c.create_droplets(&names(n), &template(), TAG).await.unwrap();
    assert_eq!(ids.len(), n);
    let active = c
        .wait_active(TAG, &names(n), Duration::from_secs(10), POLL)
        .await
        .unwrap();
    assert!(
        active
            .iter()
            .all(|d| d.status == "active" && d.public_ipv4().is_some_and(|ip| ip.is_loopback()))
    );
    c.delete_by_tag_verified(TAG, Duration::from_secs(10)).await.unwrap();
    assert!(f.live_droplets().is_empty());
    let stats = f.stats();
    assert!(
        stats.total <= 2 * n + 15,
        "{} requests for {n} droplets: {:?}",
        stats.total,
        stats.by_endpoint
    );
    assert_eq!(
        stats.by_endpoint.get("POST /v2/droplets"),
        Some(&1),
        "one multi-create for the cluster"
    );
}

#[tokio::test]
async fn a_429_storm_is_waited_out() {
    let faults = Faults {
        burst_429: 4,
        retry_after_secs: 1,
        ..Default::default()
    };
    let f = fake(faults, Duration::ZERO).await;
    let c = client(&f);
    let ids = c.create_droplets(&names(3), &template(), TAG).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(f.live_droplets().len(), 3);
    assert_eq!(c.stats().rate_limited, 4);
    assert_eq!(f.stats().rate_limited, 4);
}

#[tokio::test]
async fn a_5xx_streak_on_reads_is_retried() {
    let faults = Faults {
        fail_5xx: [("GET /v2/droplets".to_string(), 1)].into(),
        fail_5xx_streak: 3,
        ..Default::default()
    };
    let f = fake(faults, Duration::ZERO).await;
    let c = client(&f);
    c.create_droplets(&names(2), &template(), TAG).await.unwrap();
    let active = c
        .wait_active(TAG, &names(2), Duration::from_secs(30), POLL)
        .await
        .unwrap();
    assert_eq!(active.len(), 2);
    assert!(c.stats().retries >= 3);
}

#[tokio::test]
async fn a_lost_create_response_never_duplicates_droplets() {
    let faults = Faults {
        lose_create_responses: 1,
        ..Default::default()
    };
    let f = fake(faults, Duration::ZERO).await;
    let c = client(&f);
    let ids = c.create_droplets(&names(3), &template(), TAG).await.unwrap();
    assert_eq!(ids.len(), 3);
    let live = f.live_droplets();
    let unique: BTreeSet<&String> = live.iter().map(|(_, n, _)| n).collect();
    assert_eq!(live.len(), 3, "duplicates were created: {live:?}");
    assert_eq!(unique.len(), 3);
    assert_eq!(
        f.stats().by_endpoint.get("POST /v2/droplets"),
        Some(&1),
        "no second create was needed"
    );
}

/// Under list lag (new droplets missing from lists for 2 s), a lost create's droplets
/// are waited for within the client's bound and never created twice; with a bound
/// shorter than the lag, the same fault does duplicate: the lag is what the bound is for.
#[tokio::test]
async fn a_lost_create_under_list_lag_never_duplicates_droplets() {
    for (bound, want_live) in [(Duration::from_secs(5), 3), (Duration::from_millis(300), 6)] {
        let f = FakeDigitalOcean::start(
            FakeConfig {
                boot_latency: Duration::ZERO,
                list_lag: Duration::from_secs(2),
                faults: Faults {
                    lose_create_responses: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
            None,
        )
        .await;
        let c = DoClient::new(&f.base_url(), SecretString::from(f.token().to_string()))
            .unwrap()
            .with_list_lag_bound(bound);
        let started = std::time::Instant::now();
        let ids = c.create_droplets(&names(3), &template(), TAG).await.unwrap();
        assert_eq!(ids.len(), 3);
        let live = f.live_droplets();
        assert_eq!(live.len(), want_live, "bound {bound:?}: {live:?}");
        if want_live == 3 {
            assert_eq!(f.stats().by_endpoint.get("POST /v2/droplets"), Some(&1));
            // It waited for the lag, not for the whole bound.
            assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        }
    }
}

#[tokio::test]
async fn a_5xx_on_create_is_reconciled_not_repeated_blindly() {
    // The fake fails the request before creating anything: the client must look, see
    // nothing, and only then create again.
    let faults = Faults {
        fail_5xx: [("POST /v2/droplets".to_string(), 1)].into(),
        ..Default::default()
    };
    let f = fake(faults, Duration::ZERO).await;
    let c = client(&f);
    let ids = c.create_droplets(&names(2), &template(), TAG).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(f.live_droplets().len(), 2);
    let stats = f.stats();
    assert_eq!(stats.by_endpoint.get("POST /v2/droplets"), Some(&2));
    assert!(
        stats.by_endpoint.get("GET /v2/droplets").is_some_and(|n| *n >= 1),
        "looked before re-creating"
    );
}

#[tokio::test]
async fn lists_follow_pagination() {
    let f = fake(Faults::default(), Duration::ZERO).await;
    let c = client(&f).with_page_size(4);
    c.create_droplets(&names(10), &template(), TAG).await.unwrap();
    let all = c.droplets_by_tag(TAG).await.unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(f.stats().by_endpoint.get("GET /v2/droplets"), Some(&3), "3 pages of 4");
}

#[tokio::test]
async fn invalid_requests_get_the_real_errors() {
    let f = fake(Faults::default(), Duration::ZERO).await;
    let c = client(&f);
    let mut bad = template();
    bad.size = "s-64vcpu-1tb".into();
    let e = c.create_droplets(&names(1), &bad, TAG).await.unwrap_err();
    assert!(
        matches!(e, DoError::Api { status: 422, .. }) && e.to_string().contains("invalid size"),
        "{e}"
    );
    let e = c
        .create_droplets(&["bad_name".to_string()], &template(), TAG)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Only valid hostname characters"), "{e}");
    // Over the account's droplet limit (25) within one multi-create: refused whole.
    // (Across several requests the first ones would land: provisioning checks the limit
    // with GET /v2/account before creating anything.)
    let e = c.create_droplets(&names(10), &template(), TAG).await;
    assert!(e.is_ok());
    c.create_droplets(
        &(11..=20).map(|i| format!("n-{i}")).collect::<Vec<_>>(),
        &template(),
        TAG,
    )
    .await
    .unwrap();
    let e = c
        .create_droplets(
            &(21..=30).map(|i| format!("n-{i}")).collect::<Vec<_>>(),
            &template(),
            TAG,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("droplet limit"), "{e}");
    assert_eq!(f.live_droplets().len(), 20, "the refused request created nothing");
    c.delete_by_tag_verified(TAG, Duration::from_secs(10)).await.unwrap();
    let wrong = DoClient::new(&f.base_url(), SecretString::from("dop_v1_wrong".to_string())).unwrap();
    let e = wrong.account().await.unwrap_err();
    assert!(
        matches!(e, DoError::Api { status: 401, .. }) && e.to_string().contains("Unable to authenticate you"),
        "{e}"
    );
    assert!(f.live_droplets().is_empty(), "nothing is created by invalid requests");
}

#[tokio::test]
async fn stuck_and_powered_off_droplets_are_reported_by_name() {
    let faults = Faults {
        stuck_in_new: ["swarm-demo-2".to_string()].into(),
        ..Default::default()
    };
    let f = fake(faults, Duration::ZERO).await;
    let c = client(&f);
    c.create_droplets(&names(2), &template(), TAG).await.unwrap();
    let e = c
        .wait_active(TAG, &names(2), Duration::from_millis(800), POLL)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WaitError::Timeout { .. }) && e.to_string().contains("swarm-demo-2 (new)"),
        "{e}"
    );
    c.delete_by_tag_verified(TAG, Duration::from_secs(10)).await.unwrap();

    let f = fake(
        Faults {
            goes_off: ["swarm-demo-1".to_string()].into(),
            ..Default::default()
        },
        Duration::ZERO,
    )
    .await;
    let c = client(&f);
    c.create_droplets(&names(2), &template(), TAG).await.unwrap();
    let e = c
        .wait_active(TAG, &names(2), Duration::from_secs(5), POLL)
        .await
        .unwrap_err();
    assert!(matches!(&e, WaitError::Off(n) if n == "swarm-demo-1"), "{e}");
}

#[tokio::test]
async fn the_fake_enforces_250_requests_per_minute_with_headers() {
    let f = fake(Faults::default(), Duration::ZERO).await;
    let http = reqwest::Client::new();
    let mut first_429 = None;
    for i in 0..260 {
        let r = http
            .get(format!("{}/v2/account", f.base_url()))
            .bearer_auth(f.token())
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key("ratelimit-limit") && r.headers().contains_key("ratelimit-reset"));
        if r.status() == 429 && first_429.is_none() {
            assert!(r.headers().contains_key("retry-after"));
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["id"], "too_many_requests");
            first_429 = Some(i);
        }
    }
    assert_eq!(first_429, Some(250));
    assert!(f.stats().peak_per_minute >= 250);
}

#[tokio::test]
async fn keys_and_firewalls_round_trip() {
    let f = fake(Faults::default(), Duration::ZERO).await;
    let c = client(&f);
    c.create_tag(TAG).await.unwrap();
    let key = c
        .create_ssh_key(
            "swarm-e2e-t3st0001",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGc3k4p1dJb0m6N0pQzB2f1bW8n8aZ5xY3v9jK2lTq1r fake",
        )
        .await
        .unwrap();
    assert_eq!(key.fingerprint.split(':').count(), 16);
    let dup = c
        .create_ssh_key(
            "other",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGc3k4p1dJb0m6N0pQzB2f1bW8n8aZ5xY3v9jK2lTq1r fake",
        )
        .await
        .unwrap_err();
    assert!(dup.to_string().contains("already in use"), "{dup}");
    // What no OpenSSH key is gets the real API's 422, and nothing is stored.
    for bad in [
        "",
        "ssh-ed25519",
        "ssh-ed25519 AAAAC3Nz fake",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGc3k4p1dJb0m6N0pQzB2f1bW8n8aZ5xY3v9jK2lTq1r",
    ] {
        let refused = c.create_ssh_key("bad", bad).await.unwrap_err();
        assert_eq!(refused.status(), Some(422), "{bad:?}: {refused}");
    }
    assert_eq!(f.key_count(), 1);
    let fw = serde_json::json!({"name": "swarm-e2e-t3st0001", "tags": [TAG],
        "inbound_rules": [{"protocol": "tcp", "ports": "2376", "sources": {"tags": [TAG]}}]});
    let id = c.create_firewall(&fw).await.unwrap();
    assert_eq!((f.key_count(), f.firewall_count()), (1, 1));
    c.delete_firewall(&id).await.unwrap();
    c.delete_ssh_key(key.id).await.unwrap();
    assert_eq!((f.key_count(), f.firewall_count()), (0, 0));
}
