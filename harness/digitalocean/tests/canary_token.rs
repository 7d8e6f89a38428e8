//! A canary token never appears in logs (at trace level, reqwest and hyper included),
//! errors or Debug output, on success and on failure paths.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use swarm_e2e_digitalocean::client::{DoClient, DropletTemplate};
use swarm_e2e_digitalocean::fake::{FakeConfig, FakeDigitalOcean, Faults};

const CANARY: &str = "dop_v1_canary0123456789abcdefcanary";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_never_shows() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let faults = Faults {
        burst_429: 1,
        retry_after_secs: 1,
        lose_create_responses: 1,
        ..Default::default()
    };
    let f = FakeDigitalOcean::start(
        FakeConfig {
            token: CANARY.into(),
            boot_latency: Duration::ZERO,
            faults,
            ..Default::default()
        },
        None,
    )
    .await;
    let c = DoClient::new(&f.base_url(), SecretString::from(CANARY.to_string())).unwrap();
    let template = DropletTemplate {
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        tags: vec!["swarm-e2e-run-canary01".into()],
        ssh_keys: vec![],
        user_data: None,
    };
    let mut shown = String::new();
    c.create_droplets(&["n1".into()], &template, "swarm-e2e-run-canary01")
        .await
        .unwrap();
    shown.push_str(&format!("{c:?}"));
    let mut bad = template.clone();
    bad.image = "nope".into();
    let e = c
        .create_droplets(&["n2".into()], &bad, "swarm-e2e-run-canary01")
        .await
        .unwrap_err();
    shown.push_str(&format!("{e} {e:?}"));
    // A server that is gone: transport errors.
    let gone = DoClient::new("http://127.0.0.1:9", SecretString::from(CANARY.to_string()))
        .unwrap()
        .with_retry_budget(Duration::from_millis(10));
    let e = gone.account().await.unwrap_err();
    shown.push_str(&format!("{e} {e:?}"));

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(
        logs.lines().count() > 20,
        "trace logging captured too little to mean anything:\n{logs}"
    );
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"));
    assert!(!logs.contains(CANARY), "the token leaked into logs");
    assert!(
        !shown.contains(CANARY),
        "the token leaked into errors or Debug: {shown}"
    );
}
