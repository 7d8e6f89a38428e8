//! What runs leave and how it goes away: `--keep` prints docker CLI lines that work and
//! `down` removes the run (locally and on the fake DigitalOcean), an unknown id is a usage
//! error, and a crashed run's leftovers are found and swept with nothing else (a network
//! a foreign container is attached to included).

use std::io::{BufRead, BufReader};
use std::process::Command;

use libtest_mimic::{Failed, Trial};

use crate::common::*;
use crate::support::*;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "down-with-an-unknown-run-id-is-a-usage-error",
            down_with_an_unknown_run_id_is_a_usage_error,
        ),
        Trial::test(
            "keep-prints-working-docker-cli-lines-and-down-removes",
            keep_prints_working_docker_cli_lines_and_down_removes,
        ),
        Trial::test(
            "digitalocean-keep-prints-working-docker-cli-lines-and-down-removes",
            digitalocean_keep_prints_working_docker_cli_lines_and_down_removes,
        ),
        Trial::test(
            "crash-leftovers-are-found-and-swept-and-nothing-else",
            crash_leftovers_are_found_and_swept_and_nothing_else,
        ),
    ]
}

fn down_with_an_unknown_run_id_is_a_usage_error() -> Result<(), Failed> {
    // Run ids are 8 letters and digits; this one no run ever gets.
    let out = run(&["down", "zz0unkn0"], None);
    expect_code(&out, 2)?;
    if !out.stderr.contains("nothing labelled swarm-e2e.run=zz0unkn0") || !out.stderr.contains("swarm-e2e ls") {
        return Err(format!("no reason and hint\n{}", out.context()).into());
    }
    Ok(())
}

fn keep_prints_working_docker_cli_lines_and_down_removes() -> Result<(), Failed> {
    node_image()?;
    // Kept even though its check fails: a kept cluster is for inspecting failures.
    let out = run(&["run", "--keep", WRONG], None);
    let run_id = out.run_id();
    let result = (|| -> Result<(), Failed> {
        expect_code(&out, 1)?;
        let export = export_line(&out)?;
        // `swarm-e2e env RUN NODE` prints the same line for the first node (wp-1).
        let env = run(&["env", out.run_id().as_deref().unwrap_or_default(), "wp-1"], None);
        expect_code(&env, 0)?;
        if env.stdout.trim() != export.trim() {
            return Err(format!("`env` printed {:?}, `run --keep` printed {export:?}", env.stdout).into());
        }
        let info = docker_cli_for(export)
            .args(["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stdout);
        if !info.status.success() || !text.contains("active 2") {
            return Err(format!(
                "docker CLI with the printed lines: {text} {}\n{}",
                String::from_utf8_lossy(&info.stderr),
                out.context()
            )
            .into());
        }
        // `load` copies an image of this machine's engine onto every node of the run.
        let image = format!("swarm-e2e-test/load-me:{}", std::process::id());
        Command::new("docker")
            .args(["tag", "swarm-e2e/busybox:local", &image])
            .output()
            .unwrap();
        let run_id = out.run_id().unwrap_or_default();
        let loaded = run(&["load", &run_id, &image], None);
        let again = run(&["load", &run_id, &image], None);
        let on_node = docker_cli_for(export)
            .args(["image", "inspect", &image])
            .output()
            .unwrap();
        Command::new("docker").args(["rmi", &image]).output().unwrap();
        expect_code(&loaded, 0)?;
        expect_code(&again, 0)?;
        if !loaded.stdout.contains(&format!("copied {image}"))
            || !loaded.stdout.contains("onto 2 node(s)")
            || !again.stdout.contains("already on every node (wp-1, wp-2)")
            || !on_node.status.success()
        {
            return Err(format!(
                "`load` did not copy {image} onto both nodes\n{}\n{}",
                loaded.context(),
                again.context()
            )
            .into());
        }
        Ok(())
    })();
    let run_id = run_id.ok_or_else(|| format!("no run id\n{}", out.context()))?;
    let down = run(&["down", &run_id], None);
    result?;
    expect_code(&down, 0)?;
    let left = leftovers(&run_id);
    if !left.is_empty() {
        return Err(format!("down left {left:?}").into());
    }
    Ok(())
}

/// A kept run on DigitalOcean, against the fake served on its own with real engines
/// behind its droplets: the printed lines reach a droplet's engine with the docker CLI
/// (which verifies the address: each droplet minted its certificate with it), `env`
/// prints the same, `down --target digitalocean` removes the droplets and with them
/// what backs them.
fn digitalocean_keep_prints_working_docker_cli_lines_and_down_removes() -> Result<(), Failed> {
    node_image()?;
    // The serving fake records its exchanges here: held against the spec (and
    // removed) once it has stopped.
    let exchanges = exchanges_file();
    let mut serve = command(&["fake-do", "serve", "--port", "0", "--backed"])
        .env(swarm_e2e_digitalocean::fake::EXCHANGES_ENV, &exchanges)
        .spawn()
        .unwrap();
    let stop_serve = |serve: &mut std::process::Child| {
        let _ = Command::new("kill").args(["-INT", &serve.id().to_string()]).status();
        serve.wait().map(|s| s.success()).unwrap_or(false)
    };
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let Some(url) = first.strip_prefix("fake DigitalOcean API: ").map(str::to_string) else {
        stop_serve(&mut serve);
        let _ = std::fs::remove_file(&exchanges);
        return Err(format!("fake-do serve printed {first:?}").into());
    };
    let env = [
        ("DIGITALOCEAN_API_URL", url.as_str()),
        ("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_fake"),
    ];
    let out = run_env(
        &[
            "run",
            "--target",
            "digitalocean",
            "--keep",
            "fixtures/engines/overlay-ping.toml",
        ],
        &env,
    );
    let result = (|| -> Result<(), Failed> {
        expect_code(&out, 0)?;
        let export = export_line(&out)?;
        let run_id = out.run_id().unwrap_or_default();
        let printed = run_env(&["env", &run_id, "probe-1", "--target", "digitalocean"], &env);
        expect_code(&printed, 0)?;
        if printed.stdout.trim() != export.trim() {
            return Err(format!("`env` printed {:?}, `run --keep` printed {export:?}", printed.stdout).into());
        }
        let info = docker_cli_for(export)
            .args([
                "info",
                "--format",
                "{{.Name}} {{.Swarm.LocalNodeState}} {{.Swarm.Nodes}}",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stdout);
        if !info.status.success() || text.trim() != "probe-1 active 2" {
            return Err(format!(
                "docker CLI with the printed lines: {text} {}\n{}",
                String::from_utf8_lossy(&info.stderr),
                out.context()
            )
            .into());
        }
        let down = run_env(&["down", &run_id, "--target", "digitalocean"], &env);
        expect_code(&down, 0)?;
        if !down.stdout.contains("removed droplet probe-2") {
            return Err(format!("down did not remove the droplets\n{}", down.context()).into());
        }
        Ok(())
    })();
    let stopped = stop_serve(&mut serve);
    let conform = fake_exchanges_conform(&exchanges);
    result?;
    if !stopped {
        return Err("fake-do serve did not stop cleanly on SIGINT".into());
    }
    if let Err(deviations) = conform {
        return Err(deviations.into());
    }
    assert_clean(&out)
}

fn crash_leftovers_are_found_and_swept_and_nothing_else() -> Result<(), Failed> {
    node_image()?;
    // Decoys that look like ours but carry no mark: the sweeper must leave them.
    let decoy_dir = std::env::temp_dir().join("swarm-e2e-decoy-dir");
    std::fs::create_dir_all(&decoy_dir).unwrap();
    let docker = |args: &[&str]| Command::new("docker").args(args).output().unwrap();
    docker(&["network", "create", "--internal", "swarm-e2e-decoy"]);
    // SIGKILL: no teardown at all, as when CI kills a job.
    let mut child = command(&["run", WRONG]).spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut run_id = None;
    for line in stderr.lines().map_while(Result::ok) {
        if let Some(id) = line.strip_prefix("swarm-e2e: run ").and_then(|r| r.split(':').next()) {
            run_id = Some(id.to_string());
        }
        if line.contains("✓ cluster formed") {
            let _ = child.kill();
            break;
        }
    }
    let _ = child.wait();
    let run_id = run_id.ok_or("no run id")?;
    let result = (|| -> Result<(), Failed> {
        let left = leftovers(&run_id);
        if left.len() < 5 {
            return Err(format!("a killed run should leave its resources, found {left:?}").into());
        }
        // A container without our marks attached to the run's network: the sweeper
        // disconnects it to remove the network, and leaves the container.
        let net = docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=swarm-e2e.run={run_id}"),
        ]);
        let net = String::from_utf8_lossy(&net.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let attached = docker(&[
            "run",
            "-d",
            "--name",
            "swarm-e2e-decoy-attached",
            "--network",
            &net,
            "swarm-e2e/busybox:local",
            "sleep",
            "600",
        ]);
        if net.is_empty() || !attached.status.success() {
            return Err(format!(
                "attaching a decoy to the run's network {net:?}: {}",
                String::from_utf8_lossy(&attached.stderr)
            )
            .into());
        }
        let dry = run(&["sweep"], None);
        expect_code(&dry, 0)?;
        // The killed run's inner engines live on and may start a task (a new cgroup
        // directory) meanwhile: the dry run must keep what was there, not freeze the count.
        let kept = leftovers(&run_id);
        let gone: Vec<_> = left.iter().filter(|r| !kept.contains(r)).collect();
        if !dry.stdout.contains(&run_id) || !dry.stdout.contains("dry run") || !gone.is_empty() {
            return Err(format!(
                "the dry run must list and keep everything, gone: {gone:?}\n{}",
                dry.context()
            )
            .into());
        }
        let swept = run(&["sweep", "--yes"], None);
        expect_code(&swept, 0)?;
        let after = leftovers(&run_id);
        if !after.is_empty() {
            return Err(format!("sweep left {after:?}\n{}", swept.context()).into());
        }
        let decoy = docker(&["network", "inspect", "swarm-e2e-decoy"]);
        let decoy_container = docker(&["container", "inspect", "swarm-e2e-decoy-attached"]);
        if !decoy.status.success() || !decoy_dir.is_dir() || !decoy_container.status.success() {
            return Err("the sweeper removed resources without the swarm-e2e marks".into());
        }
        Ok(())
    })();
    docker(&["network", "rm", "swarm-e2e-decoy"]);
    docker(&["rm", "-f", "swarm-e2e-decoy-attached"]);
    let _ = std::fs::remove_dir(&decoy_dir);
    result
}

/// The first `export DOCKER_HOST=…` line a kept run printed.
fn export_line(out: &Output) -> Result<&str, Failed> {
    out.stderr
        .lines()
        .find(|l| l.trim_start().starts_with("export DOCKER_HOST="))
        .ok_or_else(|| format!("no export line\n{}", out.context()).into())
}

/// The real docker CLI with the assignments of a kept run's `export` line, as a user
/// who pasted it has them.
fn docker_cli_for(export: &str) -> Command {
    let mut cmd = Command::new("docker");
    for assignment in export.trim_start().trim_start_matches("export ").split_whitespace() {
        let (k, v) = assignment.split_once('=').expect("NAME=value");
        cmd.env(k, v);
    }
    cmd
}
