//! Engines and hosts: a host too small is refused with the sysctl, an engine that cannot
//! run a topology is unsupported before provisioning, the engine matrix, and node images
//! from a release candidate's static binaries.

use std::path::Path;
use std::process::Command;

use libtest_mimic::{Failed, Trial};

use crate::common::*;
use crate::support::*;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "preflight::a-host-too-small-is-refused-with-the-sysctl",
            a_host_too_small_is_refused_with_the_sysctl,
        ),
        Trial::test(
            "engines::classic-on-28.5-is-unsupported-before-provisioning",
            classic_on_28_5_is_unsupported_before_provisioning,
        ),
        Trial::test(
            "engines::matrix-seed-and-classic-on-20.10-and-26.1",
            matrix_seed_and_classic_on_20_10_and_26_1,
        ),
        Trial::test(
            "engines::static-binaries-image-runs-the-seed-and-a-broken-candidate-is-a-regression",
            static_binaries_image_runs_the_seed_and_a_broken_candidate_is_a_regression,
        ),
    ]
}

/// A size this host's kernel cannot hold is refused before anything is created, naming
/// the limit and the sysctl that raises it; `doctor --nodes N` says the same. The size
/// comes from the host's real neighbour-table limit.
fn a_host_too_small_is_refused_with_the_sysctl() -> Result<(), Failed> {
    let facts = swarm_e2e::hostlimits::HostFacts::read();
    let Some(max) = facts.neigh_max else {
        return Err("this kernel's neighbour-table limit is unreadable".into());
    };
    // A margin over what the host holds now, which other trials change meanwhile:
    // the run must be refused, never provisioned.
    let nodes = (2..=swarm_e2e_model::MAX_NODES as u64)
        .find(|n| swarm_e2e::hostlimits::neighbour_entries_needed(*n) > max + 1000)
        .ok_or_else(|| {
            format!(
                "gc_thresh3 = {max} holds {} nodes: no refusal to show",
                swarm_e2e_model::MAX_NODES
            )
        })?;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("too-big.toml");
    let mut text = String::from("name = \"too-big\"\n");
    for i in 1..=nodes {
        let role = if i == 1 { "role = \"manager\"\n" } else { "" };
        text.push_str(&format!("[[nodes]]\nname = \"tb-{i}\"\n{role}"));
    }
    std::fs::write(&file, text).unwrap();
    let out = run(&["run", file.to_str().unwrap()], None);
    expect_code(&out, 3)?;
    let refused = out.stderr.contains(&format!(
        "this host cannot hold {nodes} node containers; nothing was created"
    )) && out.stderr.contains("neighbour table")
        && out.stderr.contains("sysctl -w net.ipv4.neigh.default.gc_thresh1=");
    if !refused || out.run_id().is_some() {
        return Err(format!("not refused before provisioning\n{}", out.context()).into());
    }
    let doctor = run(&["doctor", "--nodes", &nodes.to_string()], None);
    expect_code(&doctor, 3)?;
    if !doctor.stdout.contains("✗ neighbour table") || !doctor.stdout.contains("gc_thresh3=") {
        return Err(format!("doctor does not name the limit\n{}", doctor.context()).into());
    }
    Ok(())
}

fn classic_on_28_5_is_unsupported_before_provisioning() -> Result<(), Failed> {
    let classic = "scenarios/swarm-demo-classic.toml";
    for target in ["local", "do-fake"] {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("report.json");
        // No 28.5 image is needed: nothing is provisioned.
        let out = run(
            &[
                "run",
                "--target",
                target,
                "--engine",
                "28.5",
                "--json",
                json.to_str().unwrap(),
                classic,
            ],
            None,
        );
        expect_unsupported(&out, &json, 4)?;
        if !out.stderr.contains("Engine 23.0 removed") {
            return Err(format!("the reason is not given\n{}", out.context()).into());
        }
    }
    Ok(())
}

fn matrix_seed_and_classic_on_20_10_and_26_1() -> Result<(), Failed> {
    node_image_for("20.10")?;
    node_image_for("26.1")?;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("matrix.json");
    let junit = dir.path().join("matrix.xml");
    let out = run(
        &[
            "matrix",
            "--engine",
            "20.10",
            "--engine",
            "26.1",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "scenarios/swarm-demo.toml",
            "scenarios/swarm-demo-classic.toml",
        ],
        None,
    );
    expect_code(&out, 0)?;
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    valid_document("matrix-report", &m)?;
    let rows = m["rows"].as_array().cloned().unwrap_or_default();
    let outcome = |row: &serde_json::Value, e: &str| row["outcomes"][e]["outcome"].as_str().unwrap_or("").to_string();
    let seed: Vec<_> = rows.iter().filter(|r| r["scenario"] == "swarm-demo").collect();
    let classic: Vec<_> = rows.iter().filter(|r| r["scenario"] == "swarm-demo-classic").collect();
    // The files' checks and the implicit `declared-state` of each.
    let ok = seed.len() == 8
        && seed
            .iter()
            .all(|r| outcome(r, "20.10") == "passed" && outcome(r, "26.1") == "passed")
        && classic.len() == 4
        && classic.iter().all(|r| {
            outcome(r, "20.10") == "passed"
                && outcome(r, "26.1") == "unsupported"
                && r["outcomes"]["26.1"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("23.0"))
                && r["differs"] == true
        })
        && m["regressions"] == 0;
    if !ok || !out.stdout.contains("<- differs") {
        return Err(format!("unexpected comparison: {m:#}\n{}", out.context()).into());
    }
    // JUnit: one testsuite per scenario and engine, unsupported checks skipped.
    let xml = std::fs::read_to_string(&junit).map_err(|e| format!("no JUnit file: {e}"))?;
    let doc = roxmltree::Document::parse(&xml).map_err(|e| format!("JUnit does not parse: {e}"))?;
    let suites: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    let skipped = doc.descendants().filter(|n| n.has_tag_name("skipped")).count();
    let want = [
        "swarm-demo@20.10",
        "swarm-demo@26.1",
        "swarm-demo-classic@20.10",
        "swarm-demo-classic@26.1",
    ];
    if suites != want || skipped != 4 {
        return Err(format!("JUnit suites {suites:?} with {skipped} skipped:\n{xml}").into());
    }
    // The engines that answered are the ones asked for, and every run left nothing.
    for r in m["runs"].as_array().cloned().unwrap_or_default() {
        let engine = r["engine"].as_str().unwrap_or_default();
        let versions = r["engine_versions"].as_array().cloned().unwrap_or_default();
        let provisioned = r["exit_code"] != 4;
        if provisioned
            && (versions.len() != 3
                || !versions
                    .iter()
                    .all(|v| v.as_str().is_some_and(|v| v.starts_with(engine))))
        {
            return Err(format!("run on {engine} reported engines {versions:?}").into());
        }
        let left = leftovers(r["run_id"].as_str().unwrap_or_default());
        if !left.is_empty() {
            return Err(format!("matrix run left {left:?}").into());
        }
    }
    Ok(())
}

fn static_binaries_image_runs_the_seed_and_a_broken_candidate_is_a_regression() -> Result<(), Failed> {
    node_image()?;
    // The images this trial builds go when it ends, passed or not: each build
    // would otherwise leave the previous one dangling.
    // The broken one is built by `matrix --build-images`, tagged with the version its
    // dockerd reports (this machine's packaged 20.10.24+dfsg1).
    const BUILT: &[&str] = &[
        "swarm-e2e/node:20.10.24-rc.1",
        "swarm-e2e/node:20.10.24-dfsg1",
        "swarm-e2e/node:26.0.99",
    ];
    let _images = RemoveImagesOnDrop(BUILT);
    let dir = tempfile::tempdir().unwrap();
    // An archive in the layout of Docker's static releases, assembled from the
    // packaged binaries this machine's engine runs (docker-init is tini).
    let good = dir.path().join("good/docker");
    std::fs::create_dir_all(&good).unwrap();
    for bin in [
        "dockerd",
        "containerd",
        "runc",
        "docker",
        "containerd-shim-runc-v2",
        "docker-proxy",
        "docker-init",
        "ctr",
    ] {
        let found = std::env::var("PATH")
            .unwrap()
            .split(':')
            .map(|d| Path::new(d).join(bin))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("`{bin}` is not installed on this machine"))?;
        std::fs::copy(&found, good.join(bin)).unwrap();
    }
    let tgz = dir.path().join("docker-static.tgz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir.path().join("good"))
        .arg("-czf")
        .arg(&tgz)
        .arg("docker")
        .status()
        .unwrap();
    if !status.success() {
        return Err("tar failed".into());
    }
    // Served over HTTP on loopback, as a release candidate's URL would be.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(wiremock::MockServer::start());
    rt.block_on(
        wiremock::Mock::given(wiremock::matchers::path("/rc/docker-static.tgz"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_bytes(std::fs::read(&tgz).unwrap()))
            .mount(&server),
    );
    let url = format!("{}/rc/docker-static.tgz", server.uri());
    let built = run(
        &["node-image", "build", "--static", &url, "--engine", "20.10.24-rc.1"],
        None,
    );
    expect_code(&built, 0)?;
    if !built.stdout.contains("swarm-e2e/node:20.10.24-rc.1") || !built.stdout.contains("static: engine 20.10") {
        return Err(format!("unexpected build output\n{}", built.context()).into());
    }
    let json = dir.path().join("seed.json");
    let seed = run(
        &[
            "run",
            "--engine",
            "20.10.24-rc.1",
            "--json",
            json.to_str().unwrap(),
            "scenarios/swarm-demo.toml",
        ],
        None,
    );
    expect_code(&seed, 0)?;
    assert_clean(&seed)?;
    // The same scenario names the image by its archive's URL.
    let by_url = run(&["run", "--engine", &url, "fixtures/engines/overlay-ping.toml"], None);
    expect_code(&by_url, 0)?;
    assert_clean(&by_url)?;
    // On do-fake the droplets' boot script installs the archive itself, from a
    // mirror on each droplet's loopback, on a machine without an engine: the
    // engine that answers is the one the script installed.
    let fake = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--engine",
            &url,
            "fixtures/engines/overlay-ping.toml",
        ],
        None,
    );
    expect_code(&fake, 0)?;
    if !fake.stderr.contains("engine 20.10.24") {
        return Err(format!("no engine of the archive answered\n{}", fake.context()).into());
    }
    assert_clean(&fake)?;
    // A packaged version the machine's engine is not: the script's own check says
    // it is not installed, so it runs Docker's install script, which cannot be
    // fetched here (its host resolves to the droplet's loopback): provisioning
    // fails at once, saying so.
    let built = run(&["node-image", "build", "--static", &url, "--engine", "26.0.99"], None);
    expect_code(&built, 0)?;
    let dir2 = tempfile::tempdir().unwrap();
    let artifacts = dir2.path().join("a");
    let mismatch = run(
        &[
            "run",
            "--target",
            "do-fake",
            "--engine",
            "26.0.99",
            "--artifacts",
            artifacts.to_str().unwrap(),
            "fixtures/engines/overlay-ping.toml",
        ],
        None,
    );
    expect_code(&mismatch, 3)?;
    for want in [
        "installing engine 26.0.99 with Docker's install script",
        "get.docker.com",
        "exited with status",
    ] {
        if !mismatch.stderr.contains(want) {
            return Err(format!("the failed install lacks `{want}`\n{}", mismatch.context()).into());
        }
    }
    assert_clean(&mismatch)?;

    // A broken candidate: the same binaries with a runc that cannot start
    // anything, given as a folder. Passing on the baseline and failing on it is a
    // regression: exit code 5.
    let broken = dir.path().join("broken/docker");
    std::fs::create_dir_all(&broken).unwrap();
    for entry in std::fs::read_dir(&good).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        broken.join("runc"),
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'runc version 1.1.5-broken'; exit 0; }\necho 'broken runc' >&2\nexit 1\n",
    )
    .unwrap();
    // Named by its folder, which no image was built from yet: `matrix` refuses
    // (before any cluster) and says how; with `--build-images` it builds it.
    let folder = dir.path().join("broken");
    let folder = folder.to_str().unwrap();
    let mjson = dir.path().join("matrix.json");
    let mhtml = dir.path().join("matrix.html");
    let matrix_args = [
        "matrix",
        "--engine",
        "20.10.24-rc.1",
        "--engine",
        folder,
        "--json",
        mjson.to_str().unwrap(),
        "--html",
        mhtml.to_str().unwrap(),
        "fixtures/engines/overlay-ping.toml",
    ];
    let refused = run(&matrix_args, None);
    expect_code(&refused, 3)?;
    if !refused.stderr.contains("--build-images") || refused.stderr.contains("swarm-e2e: run ") {
        return Err(format!(
            "a missing image must be refused before any run, naming --build-images\n{}",
            refused.context()
        )
        .into());
    }
    let mut build_args = matrix_args.to_vec();
    build_args.insert(1, "--build-images");
    let matrix = run(&build_args, None);
    expect_code(&matrix, 5)?;
    if !matrix
        .stderr
        .contains(&format!("no node image from {folder} yet: building it"))
    {
        return Err(format!("--build-images did not say what it built\n{}", matrix.context()).into());
    }
    let listed = run(&["node-image", "ls", "--format", "json"], None);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap_or_default();
    let from_folder = listed["images"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["suite"] == folder)
        .and_then(|i| i["tag"].as_str().map(String::from));
    if !from_folder.as_deref().is_some_and(|t| BUILT.contains(&t)) {
        return Err(format!("the image built from {folder} is {from_folder:?}, not one this trial removes").into());
    }
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mjson).unwrap()).unwrap();
    valid_document("matrix-report", &m)?;
    if m["regressions"] != 1 || !matrix.stdout.contains(&format!("REGRESSION on {folder}")) {
        return Err(format!("the broken candidate was not a regression: {m:#}\n{}", matrix.context()).into());
    }
    // The page, in a browser: the regression cell is marked in words on the candidate.
    let page = browser_load(&mhtml, &screenshot_dir().join("matrix-broken-candidate.png"))?;
    let marked = format!("<td class=\"cell regression\" data-engine=\"{folder}\" data-outcome=\"failed\">");
    if !page.dom.contains(&marked) || !page.dom.contains("▼ regression") {
        return Err(format!(
            "the matrix page does not mark the regression on {folder}:\n{}",
            page.dom
        )
        .into());
    }
    for r in m["runs"].as_array().cloned().unwrap_or_default() {
        let left = leftovers(r["run_id"].as_str().unwrap_or_default());
        if !left.is_empty() {
            return Err(format!("matrix run left {left:?}").into());
        }
    }
    Ok(())
}
