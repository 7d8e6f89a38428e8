//! Benchmark: clusters of N = 3, 10, 30, 60 and 100 engines on the local target
//! (per-phase wall time, the slowest engine's start, memory of each node's engine
//! processes, the host's peak memory use during the run), and the
//! DigitalOcean path on the fake with a 30 s simulated boot for N = 3 and 10 (wall time
//! and API requests). Prints tables; asserts nothing about time (targets are read off
//! the tables, not enforced in tests).
//!
//! `cargo bench -p swarm-e2e --bench scale` (root, engine running, node image built).
//! SWARM_E2E_BENCH_SIZES overrides the local sizes (e.g. "3,5"), SWARM_E2E_BENCH_RUNS
//! repeats each size (default 1), SWARM_E2E_BENCH_INGRESS=1 keeps the swarm's routing
//! mesh (the scenarios set `ingress = false` otherwise), SWARM_E2E_BENCH_FAKE=0 skips
//! the do-fake part. 100 nodes need the sysctls `scripts/setup.sh` sets (`doctor --nodes 100`).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use swarm_e2e::report::{Event, Phase, Reporter};
use swarm_e2e::run::{Interrupt, RunOptions, TargetChoice, run_scenario};

/// Collects the per-node engine answer times.
#[derive(Default)]
struct Collect {
    ready: Mutex<Vec<Duration>>,
}

impl Reporter for Collect {
    fn event(&self, e: &Event) {
        if let Event::NodeReady { elapsed, .. } = e {
            self.ready.lock().unwrap().push(*elapsed);
        }
    }
}

/// The scale scenario: `s{n}-{i}` nodes, `scale-net`.
fn scenario_text(n: usize, ingress: bool) -> String {
    support::cluster_scenario("s", n, ingress).replacen(
        &format!("name = \"s-{n}\""),
        &format!("name = \"scale-{n}\""),
        1,
    )
}

/// Resident memory (KiB) of dockerd + containerd inside each node container.
fn engine_memory_kib(rt: &tokio::runtime::Runtime, run_id: &str, nodes: &[String]) -> Vec<u64> {
    let host = swarm_e2e::engine::host_engine().unwrap();
    nodes
        .iter()
        .map(|n| {
            let container = swarm_e2e::marks::node_container_name(run_id, n);
            let (_, out) = rt
                .block_on(swarm_e2e::checks::probe::exec(
                    &host,
                    &container,
                    &["ps", "-o", "rss=", "-C", "dockerd,containerd"],
                ))
                .unwrap();
            out.split_whitespace().filter_map(|v| v.parse::<u64>().ok()).sum()
        })
        .collect()
}

/// The host's `MemAvailable`, KiB.
fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the host's available memory every 200 ms until dropped; `peak_used` is the
/// largest drop from the first sample, KiB.
struct MemoryWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl MemoryWatch {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let base = mem_available_kib();
            let mut lowest = base;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                lowest = lowest.min(mem_available_kib());
                std::thread::sleep(Duration::from_millis(200));
            }
            base.saturating_sub(lowest)
        });
        MemoryWatch {
            stop,
            thread: Some(thread),
        }
    }

    fn peak_used(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap_or(0)).unwrap_or(0)
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale benchmark: run it with `cargo bench -p swarm-e2e --bench scale`");
        return;
    }
    swarm_e2e::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sizes: Vec<usize> = std::env::var("SWARM_E2E_BENCH_SIZES")
        .unwrap_or_else(|_| "3,10,30,60,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    // Single runs on 2 cores vary by a second; several rows per size show the spread.
    let runs: usize = std::env::var("SWARM_E2E_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let ingress = std::env::var("SWARM_E2E_BENCH_INGRESS").is_ok_and(|v| v == "1");
    println!(
        "\nlocal target, {runs} run(s) per size, ingress = {ingress}, seconds (memory: dockerd + containerd \
         RSS per node; host peak: the largest drop of MemAvailable during the run)"
    );
    println!(
        "{:>3} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>12} {:>7} {:>10} {:>10} {:>10}",
        "N",
        "provision",
        "engines",
        "formed",
        "checks",
        "teardown",
        "total",
        "slowest eng",
        "ratio",
        "mem avg",
        "mem max",
        "host peak"
    );
    for n in sizes.into_iter().flat_map(|n| std::iter::repeat_n(n, runs)) {
        let watch = MemoryWatch::start();
        let text = scenario_text(n, ingress);
        let scenario = Arc::new(swarm_e2e_model::parse_scenario(&format!("scale-{n}.toml"), &text).unwrap());
        let collect = Arc::new(Collect::default());
        let opts = RunOptions {
            keep: true,
            libtest_args: vec!["-q".into()],
            ..Default::default()
        };
        let summary = run_scenario(&rt, scenario.clone(), &opts, collect.clone(), &Interrupt::default());
        let nodes: Vec<String> = scenario.nodes.iter().map(|n| n.name.clone()).collect();
        let memory = if summary.exit_code == 0 {
            engine_memory_kib(&rt, &summary.run_id, &nodes)
        } else {
            Vec::new()
        };
        let host = swarm_e2e::engine::host_engine().unwrap();
        let started = std::time::Instant::now();
        let (_, errors) = rt.block_on(swarm_e2e::targets::node_containers::resources::teardown(
            &host,
            &summary.run_id,
            Vec::new(),
        ));
        let teardown = started.elapsed().as_secs_f64();
        let host_peak = watch.peak_used() as f64 / 1024.0 / 1024.0;
        assert!(errors.is_empty(), "teardown of N={n}: {errors:?}");
        assert_eq!(summary.exit_code, 0, "N={n} failed: {:?}", summary.error);
        let phase = |p: Phase| {
            summary
                .timings
                .phases
                .iter()
                .find(|(x, _)| *x == p)
                .map(|(_, d)| d.as_secs_f64())
                .unwrap_or(f64::NAN)
        };
        let (provision, engines, formed, checks) = (
            phase(Phase::Provision),
            phase(Phase::EnginesReady),
            phase(Phase::ClusterFormed),
            phase(Phase::Checks),
        );
        // The slowest single engine start: its container started (provision) and its
        // engine answering. The cluster is formed `ratio` times that after the start.
        let slowest_answer = collect.ready.lock().unwrap().iter().max().copied().unwrap_or_default();
        let slowest_engine = provision + slowest_answer.as_secs_f64();
        let ratio = (provision + engines + formed) / slowest_engine;
        let avg = memory.iter().sum::<u64>() as f64 / memory.len().max(1) as f64 / 1024.0;
        let max = memory.iter().max().copied().unwrap_or(0) as f64 / 1024.0;
        let total = provision + engines + formed + checks + teardown;
        println!(
            "{n:>3} {provision:>10.2} {engines:>8.2} {formed:>8.2} {checks:>8.2} {teardown:>9.2} {total:>8.2} {slowest_engine:>12.2} {ratio:>6.2}x {avg:>7.1}MiB {max:>7.1}MiB {host_peak:>7.2}GiB"
        );
    }

    if std::env::var("SWARM_E2E_BENCH_FAKE").is_ok_and(|v| v == "0") {
        return;
    }
    println!("\ndo-fake, API only (--no-engines), 30 s simulated boot");
    println!(
        "{:>3} {:>11} {:>14} {:>12}",
        "N", "provision s", "API requests", "budget 2N+15"
    );
    for n in [3usize, 10] {
        let scenario =
            Arc::new(swarm_e2e_model::parse_scenario(&format!("scale-{n}.toml"), &scenario_text(n, true)).unwrap());
        let opts = RunOptions {
            libtest_args: vec!["-q".into()],
            target: TargetChoice::DoFake {
                no_engines: true,
                boot_latency: Duration::from_secs(30),
                faults: None,
                droplets: Default::default(),
            },
            ..Default::default()
        };
        let summary = run_scenario(
            &rt,
            scenario,
            &opts,
            Arc::new(Collect::default()),
            &Interrupt::default(),
        );
        assert_eq!(summary.exit_code, 0, "do-fake N={n} failed: {:?}", summary.error);
        let provision = summary
            .timings
            .phases
            .iter()
            .find(|(p, _)| *p == Phase::Provision)
            .map(|(_, d)| d.as_secs_f64())
            .unwrap_or(f64::NAN);
        let requests = summary
            .digitalocean_requests
            .as_ref()
            .map(|r| r["fake"]["total"].clone())
            .unwrap_or_default();
        println!("{n:>3} {provision:>11.2} {requests:>14} {:>12}", 2 * n + 15);
    }
}
