//! `swarm-e2e fake-do serve` serves the fake over HTTP for any DigitalOcean client.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// `fake-do serve --port 0 EXTRA…`, and the base URL its first line prints.
fn serve(extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(support::BIN)
        .args(["fake-do", "serve", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("fake DigitalOcean API: ").expect(&first).to_string();
    (child, url)
}

#[tokio::test]
async fn serve_prints_a_working_base_url_and_stops_on_sigint() {
    let (mut child, url) = serve(&["--token", "dop_v1_cli", "--faults", "burst_429 = 1"]);
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

/// `--profile digitalocean --time-scale 0.1`: a new droplet is missing from lists for
/// 0.5 s, stays `new` for 4.6 s, and a new firewall is `waiting` before it `succeeded`.
#[tokio::test]
async fn serve_with_the_digitalocean_profile_lags_like_the_real_api() {
    use std::time::{Duration, Instant};
    use swarm_e2e_digitalocean::client::{DoClient, DropletTemplate};
    let (mut child, url) = serve(&["--profile", "digitalocean", "--time-scale", "0.1"]);
    let c = DoClient::new(&url, secrecy::SecretString::from("dop_v1_fake".to_string())).unwrap();
    c.create_tag("lag").await.unwrap();
    let template = DropletTemplate {
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        tags: vec!["lag".into()],
        ssh_keys: vec![],
        user_data: None,
    };
    let created = Instant::now();
    c.create_droplets(&["lag-1".into()], &template, "lag").await.unwrap();
    assert!(c.droplets_by_tag("lag").await.unwrap().is_empty(), "listed at once");
    let fw = serde_json::json!({"name": "lag-fw", "tags": ["lag"],
        "inbound_rules": [{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0"]}}]});
    c.create_firewall(&fw).await.unwrap();
    assert_eq!(c.firewalls().await.unwrap()[0]["status"], "waiting");
    // Listed after the lag, still `new` (boots take 4.6 s); the firewall settles.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let found = c.droplets_by_tag("lag").await.unwrap();
        if !found.is_empty() || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        created.elapsed() >= Duration::from_millis(500),
        "{:?}",
        created.elapsed()
    );
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, "new");
    while c.firewalls().await.unwrap()[0]["status"] != "succeeded" {
        assert!(Instant::now() < deadline, "the firewall never succeeded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Runs the binary against the served fake as `--target digitalocean` would run against
/// the real API: the base URL and token from the environment.
fn cli(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(support::BIN)
        .args(args)
        .env("DIGITALOCEAN_API_URL", url)
        .env("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_fake")
        .env("NO_COLOR", "1")
        .current_dir(support::repo())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `run --target digitalocean --keep` leaves the droplets (tagged kept), their firewall
/// and key up and says how to remove them; `ls` shows the run kept, `sweep` passes it
/// by, `down` removes all of it; the in-process do-fake refuses `--keep` with the way
/// to keep a fake cluster instead.
#[test]
fn a_kept_cloud_run_is_listed_spared_by_sweep_and_removed_by_down() {
    let (mut child, url) = serve(&[]);
    let kept = cli(
        &url,
        &[
            "run",
            "--target",
            "digitalocean",
            "--no-engines",
            "--keep",
            "scenarios/swarm-demo.toml",
        ],
    );
    assert_eq!(kept.status.code(), Some(0), "{}", text(&kept));
    let stderr = String::from_utf8_lossy(&kept.stderr).to_string();
    let run_id = stderr
        .split("kept run ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no kept run line\n{}", text(&kept)))
        .to_string();
    assert!(
        stderr.contains(&format!("swarm-e2e down {run_id} --target digitalocean")),
        "{}",
        text(&kept)
    );

    let ls = cli(&url, &["ls", "--target", "digitalocean", "--format", "json"]);
    assert_eq!(ls.status.code(), Some(0), "{}", text(&ls));
    let listing: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let run = listing["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .unwrap_or_else(|| panic!("{listing:#}"));
    assert_eq!(run["kept"], true, "{run:#}");
    let kinds: Vec<&str> = run["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "droplet").count(),
        3,
        "the seed's three droplets: {kinds:?}"
    );
    assert!(kinds.contains(&"firewall") && kinds.contains(&"ssh-key"), "{kinds:?}");

    let sweep = cli(&url, &["sweep", "--target", "digitalocean", "--yes"]);
    assert_eq!(sweep.status.code(), Some(0), "{}", text(&sweep));
    assert!(
        String::from_utf8_lossy(&sweep.stdout).contains("nothing to sweep"),
        "a kept run is not a leftover: {}",
        text(&sweep)
    );

    let down = cli(&url, &["down", &run_id, "--target", "digitalocean"]);
    assert_eq!(down.status.code(), Some(0), "{}", text(&down));
    let ls = cli(&url, &["ls", "--target", "digitalocean", "--format", "json"]);
    let listing: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(listing["runs"], serde_json::json!([]), "{listing:#}");
    let again = cli(&url, &["down", &run_id, "--target", "digitalocean"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("hint: `swarm-e2e ls --target digitalocean`"));

    let refused = cli(
        &url,
        &[
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "--keep",
            "scenarios/swarm-demo.toml",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("fake-do serve --backed"),
        "{}",
        text(&refused)
    );

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
