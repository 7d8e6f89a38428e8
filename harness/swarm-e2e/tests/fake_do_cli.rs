//! `swarm-e2e fake-do serve` serves the fake over HTTP for any DigitalOcean client.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn serve_prints_a_working_base_url_and_stops_on_sigint() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm-e2e"))
        .args([
            "fake-do",
            "serve",
            "--port",
            "0",
            "--token",
            "dop_v1_cli",
            "--faults",
            "burst_429 = 1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("fake DigitalOcean API: ").expect(&first).to_string();
    let http = reqwest::Client::new();
    let get = || http.get(format!("{url}/v2/account")).bearer_auth("dop_v1_cli").send();
    assert_eq!(get().await.unwrap().status(), 429, "the injected fault fires first");
    let ok = get().await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["account"]["droplet_limit"], 25);
    let unauthorized = http.get(format!("{url}/v2/account")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("served 3 request(s)"), "{err}");
}
