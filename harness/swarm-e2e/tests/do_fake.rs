//! The DigitalOcean code path against the fake, end to end through the binary: the
//! API-only dry run, every injected fault (survived, or reported clearly), interrupts,
//! the request budget, and no droplet, key or firewall left behind in any case.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use support::{BIN, repo};

const SEED: &str = "scenarios/swarm-demo.toml";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    /// Every exchange the run's fake recorded, as JSON (see `fake::Exchange`).
    exchanges: Vec<serde_json::Value>,
}

/// Runs the binary to its end; whatever the fake it starts answered is then held
/// against DigitalOcean's spec (a deviation fails the test).
fn run(args: &[&str], env: &[(&str, &str)]) -> Out {
    let exchanges = support::exchanges_file();
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(repo())
        .env("CI", "1")
        .env(swarm_e2e_digitalocean::fake::EXCHANGES_ENV, &exchanges)
        .env_remove("DIGITALOCEAN_ACCESS_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
        exchanges: std::fs::read_to_string(&exchanges)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    };
    if let Err(deviations) = support::fake_exchanges_conform(&exchanges) {
        panic!("{deviations}\n--- stderr\n{}", out.stderr);
    }
    out
}

/// Starts `swarm-e2e fake-do serve` on a free port; returns the process and its base URL.
fn serve_fake(extra: &[&str]) -> (std::process::Child, String) {
    let exchanges = support::exchanges_file();
    let mut fake = Command::new(BIN)
        .args(["fake-do", "serve", "--port", "0"])
        .args(extra)
        .env(swarm_e2e_digitalocean::fake::EXCHANGES_ENV, &exchanges)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    served_exchanges().lock().unwrap().insert(fake.id(), exchanges);
    let mut lines = BufReader::new(fake.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap().replace("fake DigitalOcean API: ", "");
    // Keep draining stdout, as a real consumer would, until the fake exits.
    std::thread::spawn(move || lines.for_each(drop));
    (fake, url)
}

/// Where each fake started by [`serve_fake`] records its exchanges, by PID.
fn served_exchanges() -> &'static std::sync::Mutex<std::collections::HashMap<u32, std::path::PathBuf>> {
    static FILES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<u32, std::path::PathBuf>>> =
        std::sync::OnceLock::new();
    FILES.get_or_init(Default::default)
}

/// Stops a fake started by [`serve_fake`] (SIGINT, by its PID); returns what it printed
/// on stderr (its request summary). What it answered is held against the spec.
fn stop_fake(mut fake: std::process::Child) -> String {
    Command::new("kill")
        .args(["-INT", &fake.id().to_string()])
        .status()
        .unwrap();
    let _ = fake.wait();
    let mut served = String::new();
    fake.stderr.take().unwrap().read_to_string(&mut served).unwrap();
    let exchanges = served_exchanges().lock().unwrap().remove(&fake.id()).unwrap();
    if let Err(deviations) = support::fake_exchanges_conform(&exchanges) {
        panic!("{deviations}\n--- fake's stderr\n{served}");
    }
    served
}

fn dry_run(extra: &[&str], file: &str) -> (Out, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let mut args = vec![
        "run",
        "--target",
        "do-fake",
        "--no-engines",
        "--fake-boot-latency",
        "1s",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(file);
    let out = run(&args, &[]);
    let report = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_default();
    (out, report)
}

fn assert_no_leak(out: &Out) {
    assert!(!out.stderr.contains("left on the fake"), "leak:\n{}", out.stderr);
    assert!(
        out.stderr.contains("✓ teardown"),
        "teardown did not finish cleanly:\n{}",
        out.stderr
    );
}

fn requests(report: &serde_json::Value) -> u64 {
    report["runs"][0]["digitalocean_requests"]["fake"]["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn api_only_dry_run_ignores_engine_checks_with_the_reason_and_stays_in_budget() {
    let (out, report) = dry_run(&[], SEED);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("8 ignored"), "{}", out.stdout);
    assert!(out.stdout.contains("ignored (--no-engines"), "{}", out.stdout);
    assert_no_leak(&out);
    support::valid_document("run-report", &report).unwrap();
    assert!(
        report["runs"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"] == "ignored")
    );
    let n = 3;
    let budget = swarm_e2e::targets::digitalocean::plan::request_budget(n) as u64;
    assert!(
        requests(&report) <= budget,
        "{} requests for {n} droplets (budget {budget})",
        requests(&report)
    );
    let by = &report["runs"][0]["digitalocean_requests"]["fake"]["by_endpoint"];
    assert_eq!(
        by["POST /v2/droplets"], 2,
        "the scope probe (refused, creates nothing) and one multi-create for the cluster"
    );
}

#[test]
fn ten_droplets_cost_no_more_requests_than_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ten.toml");
    let mut text = String::from("name = \"ten\"\n");
    for i in 1..=10 {
        text.push_str(&format!(
            "[[nodes]]\nname = \"t-{i}\"\nrole = \"{}\"\n",
            if i == 1 { "manager" } else { "worker" }
        ));
    }
    std::fs::write(&file, text).unwrap();
    let (out, report) = dry_run(&[], file.to_str().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_no_leak(&out);
    let budget = swarm_e2e::targets::digitalocean::plan::request_budget(10) as u64;
    assert!(
        requests(&report) <= budget,
        "{} requests for 10 droplets (budget {budget})",
        requests(&report)
    );
}

#[test]
fn survivable_faults_are_survived_without_duplicates_or_leaks() {
    for faults in [
        "burst_429 = 3\nretry_after_secs = 1",
        // The 1st POST /v2/droplets is the preflight's scope probe; the 2nd the create.
        "fail_5xx = { \"POST /v2/droplets\" = 2 }",
        "fail_5xx = { \"GET /v2/droplets\" = 2 }\nfail_5xx_streak = 3",
        "slow_ms = 300",
        "lose_create_responses = 1",
    ] {
        let (out, report) = dry_run(&["--fake-faults", faults], SEED);
        assert_eq!(out.code, 0, "fault `{faults}`:\n{}", out.stderr);
        assert_no_leak(&out);
        let by = &report["runs"][0]["digitalocean_requests"]["fake"]["by_endpoint"];
        // The scope probe, the create, at most one retry of it.
        assert!(
            by["POST /v2/droplets"].as_u64().unwrap() <= 3,
            "fault `{faults}`: creates {by}"
        );
    }
}

#[test]
fn fatal_faults_fail_clearly_and_still_tear_down() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("short.toml");
    let text = std::fs::read_to_string(repo().join(SEED)).unwrap();
    std::fs::write(&file, format!("{text}\n[timeouts]\nprovision = \"4s\"\n")).unwrap();
    for (faults, said) in [
        ("stuck_in_new = [\"swarm-demo-2\"]", "swarm-demo-2 (new)"),
        ("goes_off = [\"swarm-demo-3\"]", "droplet swarm-demo-3 powered off"),
    ] {
        let (out, _) = dry_run(&["--fake-faults", faults], file.to_str().unwrap());
        assert_eq!(out.code, 3, "fault `{faults}`:\n{}", out.stderr);
        assert!(
            out.stderr.contains(said),
            "fault `{faults}` not explained (`{said}`):\n{}",
            out.stderr
        );
        assert_no_leak(&out);
    }
}

#[test]
fn sigint_during_provisioning_tears_down_on_the_fake() {
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "--fake-boot-latency",
            "3s",
            SEED,
        ])
        .current_dir(repo())
        .env("CI", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        all.push_str(&line);
        if line.contains("… provision") {
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
        }
    }
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut rest);
    assert_eq!(status.code(), Some(130), "{all}");
    assert!(!all.contains("left on the fake") && all.contains("✓ teardown"), "{all}");
}

#[test]
fn the_real_target_needs_a_token_and_says_so() {
    let out = run(&["run", "--target", "digitalocean", "--no-engines", SEED], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("DIGITALOCEAN_ACCESS_TOKEN"), "{}", out.stderr);
}

#[test]
fn the_real_target_path_keeps_a_canary_token_out_of_everything() {
    // `--target digitalocean` pointed at a fake over HTTP: the real code path, a canary
    // token, trace-level logging, a JSON report.
    const CANARY: &str = "dop_v1_canary_e2e_0123456789abcdef";
    let (fake, url) = serve_fake(&["--token", CANARY, "--boot-latency", "1s"]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = run(
        &[
            "run",
            "--target",
            "digitalocean",
            "--no-engines",
            "--json",
            json.to_str().unwrap(),
            SEED,
        ],
        &[
            ("DIGITALOCEAN_ACCESS_TOKEN", CANARY),
            ("DIGITALOCEAN_API_URL", &url),
            ("RUST_LOG", "trace"),
        ],
    );
    stop_fake(fake);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.lines().filter(|l| l.contains("TRACE")).count() > 20,
        "no trace output to search"
    );
    let report = std::fs::read_to_string(&json).unwrap();
    for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr), ("report", &report)] {
        assert!(!text.contains(CANARY), "the token leaked into {what}");
    }
}

/// The seed scenario with a `[digitalocean]` table, written to a temporary file.
fn seed_with_table(table: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed-with-table.toml");
    let seed = std::fs::read_to_string(repo().join(SEED)).unwrap();
    std::fs::write(&path, format!("{seed}\n[digitalocean]\n{table}\n")).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

fn creates(out: &Out) -> Vec<&serde_json::Value> {
    out.exchanges
        .iter()
        .filter(|e| e["method"] == "POST" && e["path"] == "/v2/droplets")
        .map(|e| &e["request_body"])
        // The droplet:create scope probe sends a body that creates nothing.
        .filter(|b| b["names"].is_array())
        .collect()
}

#[test]
fn droplet_settings_come_from_the_table_flags_and_environment_and_are_checked_first() {
    let (_dir, file) = seed_with_table(
        "region = \"ams3\"\nsize = \"s-1vcpu-2gb\"\nsizes = { swarm-demo-1 = \"s-2vcpu-4gb\" }\nimage = \"debian-12-x64\"",
    );
    // The table: one create per size, each with the region and image it names.
    let (out, _) = dry_run(&[], &file);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bodies = creates(&out);
    let sized = |size: &str| -> Vec<String> {
        bodies
            .iter()
            .filter(|b| b["size"] == size)
            .flat_map(|b| {
                b["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
            })
            .collect()
    };
    assert_eq!(sized("s-2vcpu-4gb"), ["swarm-demo-1"], "{bodies:#?}");
    assert_eq!(sized("s-1vcpu-2gb"), ["swarm-demo-2", "swarm-demo-3"], "{bodies:#?}");
    assert!(
        bodies
            .iter()
            .all(|b| b["region"] == "ams3" && b["image"] == "debian-12-x64"),
        "{bodies:#?}"
    );

    // A flag wins over the table; its environment variable stands in for it. A slug the
    // API does not know is refused (exit 2) with the valid ones nearest to it, before
    // anything is created.
    for (flags, env, want) in [
        (
            &["--do-region", "ams9"][..],
            &[][..],
            "region `ams9` does not exist (nearest open regions: ams3",
        ),
        (
            &[][..],
            &[("DIGITALOCEAN_SIZE", "s-1vcpu-3gb")][..],
            "size `s-1vcpu-3gb` (for swarm-demo-2, swarm-demo-3) does not exist (nearest sizes in ams3: s-1vcpu-1gb, s-1vcpu-2gb",
        ),
        (
            &["--do-image", "ubuntu-99-04-x64"][..],
            &[][..],
            "image `ubuntu-99-04-x64` does not exist",
        ),
    ] {
        let mut args = vec!["run", "--target", "do-fake", "--no-engines"];
        args.extend_from_slice(flags);
        args.push(&file);
        let out = run(&args, env);
        assert_eq!(out.code, 2, "{flags:?} {env:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(want),
            "{flags:?} {env:?}: wanted `{want}`:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("nothing was created") && out.stderr.contains("hint: set them in"),
            "{}",
            out.stderr
        );
        assert!(creates(&out).is_empty(), "created something: {:?}", creates(&out));
        assert!(!out.stderr.contains("✓ provision"), "{}", out.stderr);
    }

    // An engine the image's packages do not have: refused from the scenario alone.
    let out = run(&["plan", SEED, "--do-image", "ubuntu-24-04-x64"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("engine 20.10 cannot be installed on image ubuntu-24-04-x64: Docker's packages for Ubuntu 24.04 start at 26.0"),
        "{}",
        out.stderr
    );
    let out = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "--do-image",
            "ubuntu-24-04-x64",
            SEED,
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.exchanges.is_empty(),
        "a refused pairing sent requests: {:?}",
        out.exchanges
    );

    // The plan: per-droplet sizes, the table's region, the whole run's cost.
    let out = run(&["plan", &file], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = |node: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("swarm-demo-1").contains("ams3") && line("swarm-demo-1").contains("s-2vcpu-4gb"),
        "{}",
        out.stdout
    );
    assert!(
        line("swarm-demo-2").contains("s-1vcpu-2gb") && line("swarm-demo-2").contains("debian-12-x64"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1 × s-2vcpu-4gb") && out.stdout.contains("2 × s-1vcpu-2gb"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("a run costs at least $0.03") && out.stdout.contains("and at most $"),
        "{}",
        out.stdout
    );
}

#[test]
fn plan_shows_droplets_cost_and_requests_without_any_request() {
    // A token and an API URL are set, and still nothing may be asked.
    let (fake, url) = serve_fake(&["--token", "dop_v1_plan"]);
    let out = run(
        &["plan", SEED, "--target", "digitalocean"],
        &[
            ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_plan"),
            ("DIGITALOCEAN_API_URL", &url),
        ],
    );
    let served = stop_fake(fake);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for want in [
        "swarm-demo-1",
        "swarm-demo-3",
        "nyc3",
        "s-1vcpu-1gb",
        "/hour",
        "expected API requests",
    ] {
        assert!(out.stdout.contains(want), "plan lacks `{want}`:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("$0.0268/hour"), "3 x 0.00893:\n{}", out.stdout);
    assert!(served.contains("served 0 request(s)"), "plan sent requests: {served}");
}

/// `stdout` parsed, and valid against the checked-in schema of document `name`.
fn valid_document(name: &str, stdout: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    support::valid_document(name, &doc).unwrap_or_else(|e| panic!("{e}"));
    doc
}

#[test]
fn doctor_checks_token_account_and_droplet_limit_over_http() {
    let (fake, url) = serve_fake(&["--token", "dop_v1_doctor"]);
    let env = |token: &'static str| {
        [
            ("DIGITALOCEAN_ACCESS_TOKEN", token),
            ("DIGITALOCEAN_API_URL", url.as_str()),
        ]
    };
    let good = run(&["doctor", "--target", "digitalocean"], &env("dop_v1_doctor"));
    let too_big = run(
        &["doctor", "--target", "digitalocean", "--nodes", "30"],
        &env("dop_v1_doctor"),
    );
    let refused = run(&["doctor", "--target", "digitalocean"], &env("dop_v1_wrong"));
    let refused_json = run(
        &["doctor", "--target", "digitalocean", "--format", "json"],
        &env("dop_v1_wrong"),
    );
    let served = stop_fake(fake);
    // The JSON document says the same as the lines, with the same exit code.
    assert_eq!(refused_json.code, 3);
    let doc = valid_document("doctor", &refused_json.stdout);
    assert_eq!(doc["usable"], false);
    assert_eq!(doc["findings"][0]["what"], "token");
    assert_eq!(doc["findings"][0]["status"], "fail");
    assert!(!refused_json.stdout.contains("dop_v1_wrong"), "the token was echoed");
    assert_eq!(good.code, 0, "{}{}", good.stdout, good.stderr);
    assert!(good.stdout.contains("✓ token"), "{}", good.stdout);
    assert!(good.stdout.contains("room for 25"), "{}", good.stdout);
    assert!(good.stdout.contains("✓ leftovers"), "{}", good.stdout);
    assert_eq!(too_big.code, 3, "{}", too_big.stdout);
    assert!(too_big.stdout.contains("30 node(s) does not fit"), "{}", too_big.stdout);
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("✗ token") && refused.stdout.contains("DIGITALOCEAN_ACCESS_TOKEN"),
        "{}",
        refused.stdout
    );
    assert!(!refused.stdout.contains("dop_v1_wrong"), "the token was echoed");
    // Missing token: nothing is asked, exit 2 with the variable to set.
    let missing = run(&["doctor", "--target", "digitalocean"], &[]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("export DIGITALOCEAN_ACCESS_TOKEN"),
        "{}",
        missing.stderr
    );
    assert!(served.contains("served "), "{served}");
}

#[tokio::test]
async fn sweep_removes_only_what_carries_the_projects_marks() {
    use swarm_e2e_digitalocean::client::{DoClient, DropletTemplate};
    let (fake, url) = serve_fake(&["--token", "dop_v1_sweep", "--boot-latency", "0s"]);
    let client = DoClient::new(&url, secrecy::SecretString::from("dop_v1_sweep".to_string())).unwrap();
    let public_key = |seed: u8| {
        let key = ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]);
        ssh_key::PublicKey::from(key.public).to_openssh().unwrap()
    };
    let template = |tags: &[&str]| DropletTemplate {
        region: "nyc3".into(),
        size: "s-1vcpu-1gb".into(),
        image: "ubuntu-24-04-x64".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ssh_keys: vec![],
        user_data: None,
    };
    // What a crashed run "deadbeef" left: two droplets, its firewall and its key.
    let run_tag = swarm_e2e::marks::run_tag("deadbeef");
    for t in ["swarm-e2e", run_tag.as_str(), "prod"] {
        client.create_tag(t).await.unwrap();
    }
    let names = ["sw-1".to_string(), "sw-2".to_string()];
    client
        .create_droplets(&names, &template(&["swarm-e2e", &run_tag]), &run_tag)
        .await
        .unwrap();
    client
        .create_firewall(&swarm_e2e::targets::digitalocean::provision::firewall_body(
            "deadbeef",
            &["0.0.0.0/0".into()],
        ))
        .await
        .unwrap();
    client
        .create_ssh_key("swarm-e2e-deadbeef", &public_key(1))
        .await
        .unwrap();
    // Decoys: none of these carries the project's marks in full.
    client
        .create_droplets(&["prod-db".into()], &template(&["prod"]), "prod")
        .await
        .unwrap();
    client
        .create_droplets(&["tagged-by-hand".into()], &template(&["swarm-e2e"]), "swarm-e2e")
        .await
        .unwrap();
    client.create_ssh_key("laptop", &public_key(2)).await.unwrap();
    let mut decoy_fw = swarm_e2e::targets::digitalocean::provision::firewall_body("decoy", &["0.0.0.0/0".into()]);
    decoy_fw["name"] = "swarm-e2e-decoy".into();
    decoy_fw["tags"] = serde_json::json!(["prod"]);
    client.create_firewall(&decoy_fw).await.unwrap();

    let env = [
        ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_sweep"),
        ("DIGITALOCEAN_API_URL", url.as_str()),
    ];
    let sweep = |extra: &[&str]| {
        let mut args = vec!["sweep", "--target", "digitalocean"];
        args.extend_from_slice(extra);
        run(&args, &env)
    };
    let young = sweep(&["--older-than", "1h", "--yes"]);
    assert_eq!(young.code, 0, "{}", young.stderr);
    assert!(young.stdout.contains("nothing to sweep"), "{}", young.stdout);
    let dry = sweep(&[]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("dry run: nothing removed"), "{}", dry.stdout);
    for want in ["sw-1", "sw-2", "firewall", "ssh key", "deadbeef"] {
        assert!(dry.stdout.contains(want), "dry run lacks {want}:\n{}", dry.stdout);
    }
    for decoy in ["prod-db", "tagged-by-hand", "laptop", "swarm-e2e-decoy"] {
        assert!(!dry.stdout.contains(decoy), "decoy {decoy} listed:\n{}", dry.stdout);
    }
    assert_eq!(
        client.droplets_by_tag(&run_tag).await.unwrap().len(),
        2,
        "a dry run removed droplets"
    );
    let dry_json = sweep(&["--format", "json"]);
    assert_eq!(dry_json.code, 0, "{}", dry_json.stderr);
    let doc = valid_document("sweep", &dry_json.stdout);
    assert_eq!(doc["dry_run"], true);
    let mut kinds: Vec<&str> = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["droplet", "droplet", "firewall", "ssh-key"], "{doc:#}");
    let swept = sweep(&["--yes"]);
    assert_eq!(swept.code, 0, "{}{}", swept.stdout, swept.stderr);
    assert!(swept.stdout.contains("removed 4 resource(s)"), "{}", swept.stdout);
    assert!(client.droplets_by_tag(&run_tag).await.unwrap().is_empty());
    let keys: Vec<String> = client.ssh_keys().await.unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(keys, ["laptop"]);
    let firewalls = client.firewalls().await.unwrap();
    assert_eq!(firewalls.len(), 1);
    assert_eq!(firewalls[0]["name"], "swarm-e2e-decoy");
    let left: Vec<String> = client
        .droplets_by_tag("swarm-e2e")
        .await
        .unwrap()
        .into_iter()
        .chain(client.droplets_by_tag("prod").await.unwrap())
        .map(|d| d.name)
        .collect();
    assert_eq!(left.len(), 2, "decoy droplets must stay: {left:?}");
    stop_fake(fake);
}

/// `run --jobs 2`: two scenarios' clusters at once (API-only, so no engine is needed),
/// every line of each run on stderr prefixed by its scenario, one report for both.
#[test]
fn jobs_run_scenarios_at_once_with_prefixed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "--jobs",
            "2",
            "--json",
            json.to_str().unwrap(),
            "scenarios/swarm-demo.toml",
            "scenarios/five-nodes-three-managers.toml",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let position = |label: &str, text: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(&format!("[{label}] ")) && l.contains(text))
            .unwrap_or_else(|| panic!("no `[{label}] …{text}` line:\n{}", out.stderr))
    };
    // At once: each run started before the other one's teardown ended.
    for (a, b) in [("swarm-demo", "quorum-five"), ("quorum-five", "swarm-demo")] {
        assert!(
            position(a, "swarm-e2e: run ") < position(b, "✓ teardown"),
            "{a} started only after {b} ended:\n{}",
            out.stderr
        );
    }
    // Every line of a run is prefixed: the phase lines and notes of both runs, before
    // the summary table (which names both).
    let table = lines
        .iter()
        .position(|l| l.starts_with("scenario "))
        .unwrap_or_else(|| panic!("no summary table:\n{}", out.stderr));
    for l in &lines[..table] {
        assert!(
            l.is_empty() || l.starts_with("[swarm-demo] ") || l.starts_with("[quorum-five] "),
            "a run's line without its prefix: {l:?}\n{}",
            out.stderr
        );
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scenarios: Vec<&str> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(scenarios.len(), 2, "{report:#}");
    assert!(scenarios.contains(&"swarm-demo") && scenarios.contains(&"quorum-five"));
    // One job: no prefixes (the plain sequence).
    let one = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "--jobs",
            "1",
            "scenarios/swarm-demo.toml",
            "scenarios/five-nodes-three-managers.toml",
        ],
        &[],
    );
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(!one.stderr.contains("[swarm-demo]"), "{}", one.stderr);
    let bad = run(&["run", "--jobs", "0", "scenarios/swarm-demo.toml"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// A long phase in a CI log says it is alive: with the heartbeat at 1 s and droplets
/// that stay `new` for 4 s, provisioning writes `… provision: still going` lines (with
/// what it last said), and the short phases after it write none.
#[test]
fn a_long_phase_beats_a_heartbeat_in_a_log() {
    let out = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "--fake-boot-latency",
            "4s",
            "scenarios/swarm-demo.toml",
        ],
        &[("SWARM_E2E_HEARTBEAT", "1s")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let beats: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("  … provision: still going after "))
        .collect();
    // One a second while the phase lasted, no more (a beat per poll would be many more).
    let lasted: f64 = out
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("✓ provision"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|secs| secs.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no provision line:\n{}", out.stderr));
    assert!(
        beats.len() >= 2 && beats.len() as f64 <= lasted + 0.5,
        "{} beat(s) in {lasted}s:\n{}",
        beats.len(),
        out.stderr
    );
    assert!(
        !out.stderr.contains("… teardown: still going"),
        "a short phase beat:\n{}",
        out.stderr
    );
}

/// The scopes `doctor`'s hint and the nightly name are the ones the API asks of what a
/// run calls: every operation of a dry run of the seed (taken from the fake's recorded
/// exchanges) has its spec scopes in `RUN_SCOPES`.
#[test]
fn the_scopes_named_cover_every_operation_a_run_calls() {
    use swarm_e2e::targets::digitalocean::RUN_SCOPES;
    use swarm_e2e_digitalocean::fake::Exchange;
    use swarm_e2e_digitalocean::spec::Spec;
    let exchanges = support::exchanges_file();
    let out = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "scenarios/swarm-demo-classic.toml",
        ],
        &[(swarm_e2e_digitalocean::fake::EXCHANGES_ENV, exchanges.to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&exchanges).unwrap();
    let spec = Spec::vendored();
    let scopes = spec.scopes();
    let mut used = std::collections::BTreeSet::new();
    for line in text.lines() {
        let e: Exchange = serde_json::from_str(line).unwrap();
        let op = spec
            .operation_of(&e.method, &e.path)
            .unwrap_or_else(|| panic!("{} {} is no operation of the spec", e.method, e.path));
        used.extend(scopes[op].iter().cloned());
    }
    support::fake_exchanges_conform(&exchanges).unwrap();
    for needed in ["account:read", "droplet:create", "firewall:delete", "ssh_key:create"] {
        assert!(used.contains(needed), "the run never needed {needed}: {used:?}");
    }
    let missing: Vec<&String> = used.iter().filter(|s| !RUN_SCOPES.contains(&s.as_str())).collect();
    assert!(missing.is_empty(), "RUN_SCOPES lacks {missing:?} (used: {used:?})");
    // And the hint of a refused token names them all.
    let (fake, url) = serve_fake(&["--token", "dop_v1_right"]);
    let refused = run(
        &["doctor", "--target", "digitalocean"],
        &[
            ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_wrong"),
            ("DIGITALOCEAN_API_URL", url.as_str()),
        ],
    );
    stop_fake(fake);
    for scope in RUN_SCOPES {
        assert!(
            refused.stdout.contains(scope),
            "the hint lacks {scope}:\n{}",
            refused.stdout
        );
    }
}

/// A token lacking scopes is refused by the run's preflight before anything is created,
/// naming exactly what is missing and the whole set to grant; `doctor` says the same
/// against `fake-do serve --scopes`.
#[test]
fn a_token_lacking_scopes_is_refused_before_anything_is_created() {
    use swarm_e2e::targets::digitalocean::RUN_SCOPES;
    let granted: Vec<String> = RUN_SCOPES
        .iter()
        .filter(|s| !["firewall:delete", "ssh_key:create"].contains(s))
        .map(|s| s.to_string())
        .collect();
    // The real target's code path against the fake served over HTTP: what it was sent
    // and holds can be asked afterwards.
    let (fake, url) = serve_fake(&["--token", "dop_v1_lacking", "--scopes", &granted.join(",")]);
    let env = [
        ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_lacking"),
        ("DIGITALOCEAN_API_URL", url.as_str()),
    ];
    let out = run(&["run", "--target", "digitalocean", "--no-engines", SEED], &env);
    let served = stop_fake(fake);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("lacks scope(s) ssh_key:create, firewall:delete; nothing was created"),
        "{}",
        out.stderr
    );
    for scope in RUN_SCOPES {
        assert!(out.stderr.contains(scope), "the hint lacks {scope}:\n{}", out.stderr);
    }
    assert!(
        !out.stderr.contains("… provision"),
        "provisioning started:\n{}",
        out.stderr
    );
    // Only the probes were sent (their bodies refused or their ids unknown: nothing
    // created, nothing deleted).
    assert!(
        served.contains(&format!("served {} request(s)", RUN_SCOPES.len())),
        "{served}"
    );

    let all: Vec<String> = RUN_SCOPES
        .iter()
        .filter(|s| **s != "tag:create")
        .map(|s| s.to_string())
        .collect();
    let (fake, url) = serve_fake(&["--token", "dop_v1_scoped", "--scopes", &all.join(",")]);
    let env = [
        ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_scoped"),
        ("DIGITALOCEAN_API_URL", url.as_str()),
    ];
    let doctor = run(&["doctor", "--target", "digitalocean", "--format", "json"], &env);
    let served = stop_fake(fake);
    assert_eq!(doctor.code, 3, "{}", doctor.stdout);
    let doc = valid_document("doctor", &doctor.stdout);
    let scopes = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["what"] == "scopes")
        .unwrap_or_else(|| panic!("no scopes finding: {doc:#}"));
    assert_eq!(scopes["status"], "fail");
    assert!(
        scopes["detail"].as_str().unwrap().contains("lacks scope(s) tag:create"),
        "{scopes:#}"
    );
    assert!(served.contains("served "), "{served}");
}

/// A call refused for a scope names the scope it needed, and its hint says to grant it
/// (never "retry later"): `doctor`'s leftovers listing with a token lacking `tag:read`.
#[test]
fn a_403_names_the_scope_the_call_needed() {
    use swarm_e2e::targets::digitalocean::RUN_SCOPES;
    let granted: Vec<&str> = RUN_SCOPES.iter().copied().filter(|s| *s != "tag:read").collect();
    let (fake, url) = serve_fake(&["--token", "dop_v1_notags", "--scopes", &granted.join(",")]);
    let env = [
        ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_notags"),
        ("DIGITALOCEAN_API_URL", url.as_str()),
    ];
    let doctor = run(&["doctor", "--target", "digitalocean", "--format", "json"], &env);
    stop_fake(fake);
    let doc = valid_document("doctor", &doctor.stdout);
    let leftovers = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["what"] == "leftovers")
        .cloned()
        .unwrap_or_else(|| panic!("no leftovers finding: {doc:#}"));
    let detail = leftovers["detail"].as_str().unwrap_or_default();
    let hint = leftovers["hint"].as_str().unwrap_or_default();
    assert!(
        detail.contains("403") && detail.contains("needs the scope(s)") && detail.contains("tag:read"),
        "{leftovers:#}"
    );
    assert!(hint.contains("scope") && !hint.contains("retry later"), "{leftovers:#}");
}

/// The DigitalOcean timing profile, time-compressed (0.05: 46 s boots in 2.3 s, 5 s list
/// lag in 0.25 s, 10 s delete lag, firewalls `waiting`): the seed's dry run passes, waits
/// the boot out, and a lost create under list lag is reconciled without a duplicate.
#[test]
fn the_digitalocean_timing_profile_is_survived_without_duplicates() {
    let faults = "profile = \"digitalocean\"\ntime_scale = 0.05\nlose_create_responses = 1";
    let (out, report) = dry_run(&["--fake-faults", faults], SEED);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_no_leak(&out);
    let provision = report["runs"][0]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "provision")
        .and_then(|p| p["seconds"].as_f64())
        .unwrap();
    assert!(provision >= 2.3, "the profile's boot was not waited out: {provision}s");
    let by = &report["runs"][0]["digitalocean_requests"]["fake"]["by_endpoint"];
    // The probe and the lost create; a third would be a blind re-create.
    assert_eq!(by["POST /v2/droplets"], 2, "{by}");
    assert!(out.stderr.contains("3 droplet(s) active"), "{}", out.stderr);
    let bad = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--no-engines",
            "--fake-faults",
            "time_scale = 2.0",
            SEED,
        ],
        &[],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
