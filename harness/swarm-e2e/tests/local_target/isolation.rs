//! What must not leak: private keys never appear in output, logs or reports, and nodes
//! reach their run network and nothing else.

use std::process::Command;
use std::time::Duration;

use libtest_mimic::{Failed, Trial};

use crate::common::*;
use crate::support::*;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "private-keys-never-appear-in-output-logs-or-reports",
            private_keys_never_appear_in_output_logs_or_reports,
        ),
        Trial::test(
            "nodes-reach-their-run-network-and-nothing-else",
            nodes_reach_their_run_network_and_nothing_else,
        ),
    ]
}

fn private_keys_never_appear_in_output_logs_or_reports() -> Result<(), Failed> {
    node_image()?;
    let dir = tempfile::tempdir().unwrap();
    let (junit, json, artifacts) = (
        dir.path().join("r.xml"),
        dir.path().join("r.json"),
        dir.path().join("art"),
    );
    let mut cmd = command(&[
        "run",
        "--keep",
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--artifacts",
        artifacts.to_str().unwrap(),
        WRONG,
    ]);
    cmd.env("RUST_LOG", "trace");
    let child = cmd.spawn().unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let run_id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("swarm-e2e: run ").and_then(|r| r.split(':').next()))
        .ok_or("no run id")?
        .to_string();
    let result = (|| -> Result<(), Failed> {
        if stderr.lines().filter(|l| l.contains("TRACE")).count() < 10 {
            return Err("RUST_LOG=trace produced no trace output".into());
        }
        // The keys of this run: the client's and each node's server key.
        let client = std::fs::read_to_string(swarm_e2e::marks::run_dir(&run_id).join("certs/key.pem")).unwrap();
        let mut keys = vec![client];
        for node in ["wp-1", "wp-2"] {
            let name = swarm_e2e::marks::node_container_name(&run_id, node);
            let out = Command::new("docker")
                .args(["exec", &name, "cat", "/etc/swarm-e2e/key.pem"])
                .output()
                .unwrap();
            keys.push(String::from_utf8_lossy(&out.stdout).to_string());
        }
        let mut texts = vec![
            ("stdout".to_string(), stdout.clone()),
            ("stderr".to_string(), stderr.clone()),
        ];
        for f in [&junit, &json] {
            texts.push((f.display().to_string(), std::fs::read_to_string(f).unwrap_or_default()));
        }
        for entry in walk(&artifacts) {
            texts.push((
                entry.display().to_string(),
                std::fs::read_to_string(&entry).unwrap_or_default(),
            ));
        }
        if texts.len() < 8 {
            return Err(format!("expected reports and artefacts to scan, got {}", texts.len()).into());
        }
        for key in &keys {
            let body: Vec<&str> = key
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 20)
                .collect();
            if body.is_empty() {
                return Err("could not read a key to look for".into());
            }
            for (name, text) in &texts {
                if text.contains("PRIVATE KEY") || body.iter().any(|b| text.contains(b)) {
                    return Err(format!("private key material found in {name}").into());
                }
            }
        }
        Ok(())
    })();
    let down = run(&["down", &run_id], None);
    result?;
    expect_code(&down, 0)
}

fn nodes_reach_their_run_network_and_nothing_else() -> Result<(), Failed> {
    node_image()?;
    let out = run(&["run", "--keep", WRONG], None);
    let run_id = out.run_id().ok_or_else(|| format!("no run id\n{}", out.context()))?;
    let docker = |args: &[&str]| Command::new("docker").args(args).output().unwrap();
    let outside_net = format!("swarm-e2e-{run_id}-outside");
    let outside = format!("swarm-e2e-{run_id}-outside-ctr");
    let result = (|| -> Result<(), Failed> {
        let node1 = swarm_e2e::marks::node_container_name(&run_id, "wp-1");
        let node2 = swarm_e2e::marks::node_container_name(&run_id, "wp-2");
        // Engine 20.10 still gives containers on an --internal network a default
        // route; the isolation is the host engine's filtering, which this proves.
        // A listener of our own on a network of our own, outside the run network.
        let label = format!("swarm-e2e.run={run_id}");
        docker(&["network", "create", "--label", &label, &outside_net]);
        let started = docker(&[
            "run",
            "-d",
            "--name",
            &outside,
            "--label",
            &label,
            "--network",
            &outside_net,
            swarm_e2e::images::BUSYBOX_IMAGE,
            "httpd",
            "-f",
            "-p",
            "8080",
        ]);
        if !started.status.success() {
            return Err(format!("outside listener: {}", String::from_utf8_lossy(&started.stderr)).into());
        }
        let ip_of = |c: &str| {
            let o = docker(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                c,
            ]);
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let connect = |ip: &str, port: &str| {
            let script = format!("timeout 3 bash -c 'echo > /dev/tcp/{ip}/{port}'");
            docker(&["exec", &node1, "bash", "-c", &script])
        };
        let peer = connect(&ip_of(&node2), "2376");
        if !peer.status.success() {
            return Err(format!("node 1 cannot reach node 2: {}", String::from_utf8_lossy(&peer.stderr)).into());
        }
        let out_ip = ip_of(&outside);
        // Control: the listener answers (from the host), so a refusal below means
        // isolation, not a dead listener.
        let addr: std::net::SocketAddr = format!("{out_ip}:8080").parse().map_err(|e| format!("{out_ip}: {e}"))?;
        let reachable = swarm_e2e::wait::poll_until_blocking(Duration::from_secs(5), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        });
        if !reachable {
            return Err(format!("control failed: the outside listener at {addr} does not answer the host").into());
        }
        let escaped = connect(&out_ip, "8080");
        if escaped.status.success() {
            return Err(format!("node 1 reached {out_ip}, outside its run network").into());
        }
        Ok(())
    })();
    docker(&["rm", "-f", &outside]);
    docker(&["network", "rm", &outside_net]);
    let down = run(&["down", &run_id], None);
    result?;
    expect_code(&down, 0)
}
