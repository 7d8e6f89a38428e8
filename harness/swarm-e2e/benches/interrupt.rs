//! Benchmark: how fast an interrupt ends a run. Starts the binary on a cluster of N
//! engines (default 30), sends SIGINT after each delay in turn (one run per delay),
//! and prints the phase the signal landed in, the time from the signal to the
//! process's exit (teardown included), the exit code and what the run left behind.
//! Asserts nothing about time: the target (10 s at N <= 30) is read off the table.
//!
//! `cargo bench -p swarm-e2e --bench interrupt` (root, engine running, node image).
//! SWARM_E2E_BENCH_NODES sets N, SWARM_E2E_BENCH_DELAYS the delays in seconds
//! (default "1,4,7,10,14,20").

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The scale benchmark's shape (`i{n}-{i}` nodes), routing mesh kept.
fn scenario_text(n: usize) -> String {
    support::cluster_scenario("i", n, true)
}

/// The last phase the run announced (`  … provision`) in its output so far.
fn phase_at(output: &str) -> String {
    output
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("… "))
        .unwrap_or("(before provisioning)")
        .to_string()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("interrupt benchmark: run it with `cargo bench -p swarm-e2e --bench interrupt`");
        return;
    }
    let n: usize = std::env::var("SWARM_E2E_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let delays: Vec<f64> = std::env::var("SWARM_E2E_BENCH_DELAYS")
        .unwrap_or_else(|_| "1,4,7,10,14,20".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("i-{n}.toml"));
    std::fs::write(&file, scenario_text(n)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let host = swarm_e2e::engine::host_engine().unwrap();

    println!("\nSIGINT into a run of {n} engines, seconds");
    println!(
        "{:>6} {:<24} {:>14} {:>5} {:>6}",
        "after", "phase", "signal -> exit", "exit", "left"
    );
    for delay in delays {
        let out_path = dir.path().join("out.txt");
        let out = std::fs::File::create(&out_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_swarm-e2e"))
            .arg("run")
            .arg(&file)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs_f64(delay));
        let mut text = String::new();
        std::fs::File::open(&out_path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let phase = phase_at(&text);
        let signalled = Instant::now();
        // SAFETY: kill(2) on the PID of the child this benchmark spawned and still owns.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        let status = child.wait().unwrap();
        let took = signalled.elapsed().as_secs_f64();
        let mut text = String::new();
        std::fs::File::open(&out_path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let run_id = text
            .lines()
            .find_map(|l| l.strip_prefix("swarm-e2e: run "))
            .and_then(|l| l.split(':').next())
            .unwrap_or_default()
            .to_string();
        let left = if run_id.is_empty() {
            0
        } else {
            rt.block_on(swarm_e2e::targets::node_containers::resources::find_resources(
                &host,
                Some(&run_id),
            ))
            .map(|r| r.len())
            .unwrap_or(usize::MAX)
        };
        let code = status.code().map(|c| c.to_string()).unwrap_or_else(|| "signal".into());
        println!("{delay:>6.1} {phase:<24} {took:>14.2} {code:>5} {left:>6}");
        if left > 0 && left != usize::MAX {
            let (_, errors) = rt.block_on(swarm_e2e::targets::node_containers::resources::teardown(
                &host,
                &run_id,
                Vec::new(),
            ));
            assert!(errors.is_empty(), "cleaning up after run {run_id}: {errors:?}");
        }
    }
}
