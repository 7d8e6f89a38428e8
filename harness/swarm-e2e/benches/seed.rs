//! Benchmark: the seed scenario, per phase, over repeated runs — and the same steps as a
//! plain shell script on the same node image, in the same run, for comparison.
//!
//! `cargo bench -p swarm-e2e --bench seed` (root, engine running, node image built).
//! SWARM_E2E_BENCH_RUNS sets the number of runs of each (default 3).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use swarm_e2e::report::{Event, Phase, Reporter};
use swarm_e2e::run::{Interrupt, RunOptions, run_scenario};

struct Quiet;
impl Reporter for Quiet {
    fn event(&self, _: &Event) {}
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("seed benchmark: run it with `cargo bench -p swarm-e2e --bench seed`");
        return;
    }
    swarm_e2e::install_crypto_provider();
    let runs: usize = std::env::var("SWARM_E2E_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scenario = Arc::new(swarm_e2e_model::parse_scenario_file(&repo.join("scenarios/swarm-demo.toml")).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut harness: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for i in 0..runs {
        let opts = RunOptions {
            libtest_args: vec!["-q".into()],
            ..Default::default()
        };
        let summary = run_scenario(&rt, scenario.clone(), &opts, Arc::new(Quiet), &Interrupt::default());
        assert_eq!(summary.exit_code, 0, "harness run {i} failed: {:?}", summary.error);
        for (phase, d) in &summary.timings.phases {
            harness.entry(phase.as_str()).or_default().push(d.as_secs_f64());
        }
        harness
            .entry("total")
            .or_default()
            .push(summary.timings.total().as_secs_f64());
    }

    let mut script: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for i in 0..runs {
        let phases = run_script(&repo, &rt, i);
        for (name, secs) in phases {
            script.entry(name).or_default().push(secs);
        }
    }

    println!("\nseed scenario (3 nodes), median of {runs} run(s), seconds");
    println!("{:<16}{:>10}{:>15}", "phase", "harness", "shell script");
    for p in Phase::ALL.iter().map(|p| p.as_str()).chain(["total"]) {
        let h = harness.get(p).cloned().map(median).unwrap_or(f64::NAN);
        let s = script.get(p).cloned().map(median).unwrap_or(f64::NAN);
        println!("{p:<16}{h:>10.2}{s:>15.2}");
    }
    println!("(the harness runs 7 checks concurrently; the script runs 1 placement and 1 ping)");
}

/// Runs fixtures/bench/seed-baseline.sh once; returns per-phase durations.
fn run_script(repo: &Path, rt: &tokio::runtime::Runtime, i: usize) -> Vec<(&'static str, f64)> {
    let run_id = swarm_e2e::marks::new_run_id();
    let subnet = std::env::var("SWARM_E2E_BENCH_SUBNET").unwrap_or_else(|_| "172.30.250".into());
    let dir = tempfile::Builder::new()
        .prefix(&format!("swarm-e2e-{run_id}-bench"))
        .tempdir()
        .unwrap();
    let pki = swarm_e2e::pki::Pki::new(&run_id).unwrap();
    pki.write_client_dir(dir.path()).unwrap();
    for n in 1..=3 {
        let ip = format!("{subnet}.1{n}").parse().unwrap();
        let server = pki.server(&format!("n{n}"), &[ip]).unwrap();
        let node = swarm_e2e_model::Node {
            name: format!("n{n}"),
            role: swarm_e2e_model::Role::Manager,
            labels: Default::default(),
            engine_labels: Default::default(),
            engine_options: Default::default(),
            engine: "20.10".into(),
        };
        let container = format!("swarm-e2e-{run_id}-n{n}");
        let config = swarm_e2e::daemon::daemon_json(&node, &[("cgroup-parent", json!(format!("/{container}")))]);
        let d = dir.path().join(format!("node{n}"));
        std::fs::create_dir_all(&d).unwrap();
        use secrecy::ExposeSecret;
        std::fs::write(d.join("ca.pem"), &server.ca_pem).unwrap();
        std::fs::write(d.join("cert.pem"), &server.cert_pem).unwrap();
        std::fs::write(d.join("key.pem"), server.key_pem.expose_secret()).unwrap();
        std::fs::write(d.join("daemon.json"), config.to_string()).unwrap();
    }
    let out = std::process::Command::new("bash")
        .arg(repo.join("fixtures/bench/seed-baseline.sh"))
        .env("RUN", &run_id)
        .env("IMAGE", swarm_e2e::images::node_image_tag("20.10"))
        .env("BUSYBOX", swarm_e2e::images::BUSYBOX_IMAGE)
        .env("SUBNET", &subnet)
        .env("CERTS", dir.path())
        .output()
        .unwrap();
    // The script removes its containers; cgroup directories of its inner engines are
    // removed here, by the same code teardown uses.
    rt.block_on(async {
        let host = swarm_e2e::engine::host_engine().unwrap();
        let left = swarm_e2e::targets::node_containers::resources::find_resources(&host, Some(&run_id))
            .await
            .unwrap();
        swarm_e2e::targets::node_containers::resources::remove_resources(&host, &left).await;
    });
    assert!(
        out.status.success(),
        "shell baseline run {i} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut last = 0.0;
    let mut phases = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, ms)) = line.split_once(' ') else {
            continue;
        };
        let at = ms.trim().parse::<f64>().unwrap_or(0.0) / 1000.0;
        let phase = match name {
            "provision" => "provision",
            "engines-ready" => "engines ready",
            "cluster-formed" => "cluster formed",
            "checks" => "checks",
            "teardown" => "teardown",
            _ => continue,
        };
        phases.push((phase, at - last));
        last = at;
    }
    phases.push(("total", last));
    let _ = Duration::ZERO;
    phases
}
