//! `--target engines` against engines this test starts itself (node containers with a
//! CA of the test's own, no swarm), standing in for a user's lab machines. Each engine
//! holds a decoy container and network and the test image before any run: every run
//! (passing, failing, interrupted, refused) must leave them, and leave the engines out
//! of a swarm with nothing of the run's left on them.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, LocalNodeState, NetworkCreateRequest, SwarmInitRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
};
use support::{Output, read_report, repo, run, run_signalled};
use swarm_e2e::engine::{ENGINE_TLS_PORT, ServerIdentity, host_engine, tls_engine};
use swarm_e2e::marks;
use swarm_e2e::pki::Pki;
use swarm_e2e::targets::node_containers::resources::teardown;
use swarm_e2e::targets::node_containers::{EngineConfig, NodeSpec, create_run_network, start_node};
use swarm_e2e_model::{Scenario, parse_scenario_file};
use testcontainers::{ContainerAsync, GenericImage};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const DECOY: &str = "decoy-of-the-user";

/// The test's own engines: one node container per node of the seed scenario.
struct Engines {
    rt: Runtime,
    run_id: String,
    handles: Vec<ContainerAsync<GenericImage>>,
    engines: Vec<(String, IpAddr, Docker)>,
    dir: tempfile::TempDir,
}

impl Engines {
    fn start(scenario: &Scenario) -> Engines {
        let rt = Runtime::new().unwrap();
        let run_id = marks::new_run_id();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&run_id).unwrap();
        pki.write_client_dir(&dir.path().join("tls")).unwrap();
        let host = host_engine().unwrap();
        let (handles, engines) = rt.block_on(async {
            let labels = marks::run_labels(&run_id, "engines-fixture", false);
            let network = create_run_network(&host, &run_id, &labels).await.unwrap();
            let mut handles = Vec::new();
            let mut engines = Vec::new();
            for node in &scenario.nodes {
                let spec = NodeSpec {
                    name: &node.name,
                    engine: &node.engine,
                    config: EngineConfig::Issue {
                        pki: &pki,
                        node,
                        extra: &[],
                    },
                };
                let (started, handle) = start_node(
                    &host,
                    &run_id,
                    spec,
                    &network,
                    labels.clone(),
                    &CancellationToken::new(),
                )
                .await
                .unwrap();
                handles.push(handle);
                let docker = tls_engine(
                    SocketAddr::new(started.address, ENGINE_TLS_PORT),
                    &pki.client,
                    ServerIdentity::Address,
                )
                .unwrap();
                swarm_e2e::engine::wait_ready(&docker, std::time::Duration::from_secs(60))
                    .await
                    .unwrap();
                engines.push((node.name.clone(), started.address, docker));
            }
            (handles, engines)
        });
        Engines {
            rt,
            run_id,
            handles,
            engines,
            dir,
        }
    }

    /// What the user had before: the test image, a network and a container on it.
    fn plant_decoys(&self) {
        self.rt.block_on(async {
            let host = host_engine().unwrap();
            let tarball = swarm_e2e::images::busybox_image_tarball(&host).await.unwrap();
            for (_, _, docker) in &self.engines {
                swarm_e2e::images::load_image(docker, tarball.clone()).await.unwrap();
                docker
                    .create_network(NetworkCreateRequest {
                        name: DECOY.into(),
                        driver: Some("bridge".into()),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let body = ContainerCreateBody {
                    image: Some(swarm_e2e::images::BUSYBOX_IMAGE.into()),
                    cmd: Some(vec!["top".into()]),
                    host_config: Some(HostConfig {
                        init: Some(true),
                        network_mode: Some(DECOY.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let c = docker
                    .create_container(Some(CreateContainerOptionsBuilder::new().name(DECOY).build()), body)
                    .await
                    .unwrap();
                docker.start_container(&c.id, None).await.unwrap();
            }
        });
    }

    /// A hosts file naming the engines under the given node names (in engine order).
    fn hosts_file(&self, names: &[&str]) -> PathBuf {
        let mut text = String::from("# engines of the test's own\n");
        for (name, (_, address, _)) in names.iter().zip(&self.engines) {
            text.push_str(&format!(
                "[[engine]]\nnode = \"{name}\"\nhost = \"tcp://{address}:{ENGINE_TLS_PORT}\"\ntls = \"tls\"\n\n"
            ));
        }
        let path = self.dir.path().join(format!("hosts-{}.toml", names.join("-")));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Every engine is as the user left it: decoys and test image there, no swarm,
    /// nothing carrying the run's label, no `docker_gwbridge` the swarm made.
    fn assert_as_before(&self, out: &Output) {
        let run_id = out.run_id();
        self.rt.block_on(async {
            for (name, _, docker) in &self.engines {
                let what = format!("{name} after run {run_id:?}\n{}", out.context());
                let decoy = docker.inspect_container(DECOY, None).await.expect(&what);
                assert!(
                    decoy.state.and_then(|s| s.running) == Some(true),
                    "decoy stopped on {what}"
                );
                docker.inspect_network(DECOY, None).await.expect(&what);
                docker
                    .inspect_image(swarm_e2e::images::BUSYBOX_IMAGE)
                    .await
                    .expect(&what);
                let info = docker.info().await.unwrap();
                let state = info.swarm.and_then(|s| s.local_node_state);
                assert_eq!(state, Some(LocalNodeState::INACTIVE), "still in a swarm: {what}");
                assert!(
                    docker.inspect_network("docker_gwbridge", None).await.is_err(),
                    "gwbridge left: {what}"
                );
                if let Some(id) = &run_id {
                    let filter = marks::run_filter(Some(id));
                    let containers = docker
                        .list_containers(Some(
                            ListContainersOptionsBuilder::new().all(true).filters(&filter).build(),
                        ))
                        .await
                        .unwrap();
                    let networks = docker
                        .list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filter).build()))
                        .await
                        .unwrap();
                    assert!(
                        containers.is_empty() && networks.is_empty(),
                        "the run's things left: {what}"
                    );
                }
                let all = docker
                    .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
                    .await
                    .unwrap();
                assert_eq!(all.len(), 1, "only the decoy may remain: {what}");
            }
        });
    }

    /// No iptables chain of ours is left on any engine's host.
    fn assert_no_fault_chains(&self, out: &Output) {
        self.rt.block_on(async {
            let host = host_engine().unwrap();
            for (name, _, _) in &self.engines {
                let container = marks::node_container_name(&self.run_id, name);
                let (code, rules) = swarm_e2e::engine::exec(&host, &container, &["iptables", "-S"])
                    .await
                    .unwrap();
                assert_eq!(code, 0, "{rules}");
                assert!(
                    !rules.contains("SWARM-E2E"),
                    "chains left on {name}:\n{rules}\n{}",
                    out.context()
                );
            }
        });
    }

    fn docker(&self, i: usize) -> &Docker {
        &self.engines[i].2
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        let host = host_engine().unwrap();
        let handles = std::mem::take(&mut self.handles);
        let (_, errors) = self.rt.block_on(teardown(&host, &self.run_id, handles));
        assert!(errors.is_empty(), "fixture teardown: {errors:?}");
    }
}

fn expect(out: &Output, code: i32, what: &str) {
    let phases: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("✓") || l.contains("✗"))
        .map(str::trim)
        .collect();
    let teardown = phases.join(" | ");
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let at = START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64();
    eprintln!(
        "engines_target: {at:6.1}s {what}: exit {}; {}",
        out.code,
        teardown.trim()
    );
    assert_eq!(out.code, code, "{what}: expected exit {code}\n{}", out.context());
}

fn args<'a>(hosts: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "--target", "engines", "--hosts", hosts.to_str().unwrap()];
    a.extend_from_slice(rest);
    a
}

#[test]
fn existing_engines_are_used_and_left_as_they_were() {
    swarm_e2e::install_crypto_provider();
    let built = run(&["node-image", "build"], None);
    expect(&built, 0, "node image");
    let seed = repo().join("scenarios/swarm-demo.toml");
    let scenario = parse_scenario_file(&seed).unwrap();
    let engines = Engines::start(&scenario);
    engines.plant_decoys();
    let names: Vec<&str> = scenario.nodes.iter().map(|n| n.name.as_str()).collect();
    let hosts = engines.hosts_file(&names);
    let seed = seed.to_str().unwrap();

    // The seed passes on them, with the same report schema as every target.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = run(&args(&hosts, &["--json", json.to_str().unwrap(), seed]), None);
    expect(&out, 0, "seed on existing engines");
    assert!(out.stdout.contains("test result: ok. 8 passed"), "{}", out.context());
    let report = read_report(&json, "run-report").unwrap();
    assert_eq!(report["runs"][0]["target"], "engines");
    engines.assert_as_before(&out);

    // A Compose stack, deployed by the docker CLI on the user's engines: its services
    // carry the CLI's namespace label, not the run's, and go with the run too.
    let stack = dir.path().join("stack-on-your-engines.toml");
    let app = repo().join("scenarios/compose-stack/app.yml");
    std::fs::write(
        &stack,
        format!(
            r#"name = "stack-on-your-engines"
[[nodes]]
name = "swarm-demo-1"
role = "manager"
[[nodes]]
name = "swarm-demo-2"
[[nodes]]
name = "swarm-demo-3"
[[stacks]]
name = "shop"
files = ["{}"]
[[checks]]
name = "shop-reach"
kind = "stack-reach"
stack = "shop"
"#,
            app.display()
        ),
    )
    .unwrap();
    let out = run(&args(&hosts, &[stack.to_str().unwrap()]), None);
    expect(&out, 0, "a stack on existing engines");
    assert!(out.stdout.contains("test result: ok. 3 passed"), "{}", out.context());
    engines.assert_as_before(&out);

    // Hostname constraints name engines by their own hostname: a scenario whose node
    // names differ from the engines' hostnames is refused before anything is touched.
    let wrong = engines.hosts_file(&["wp-1", "wp-2"]);
    let wp = repo().join("fixtures/run-outcomes/wrong-placement.toml");
    let out = run(&args(&wrong, &[wp.to_str().unwrap()]), None);
    expect(&out, 3, "hostnames differ");
    assert!(out.stderr.contains("has hostname `swarm-demo-1`"), "{}", out.context());
    engines.assert_as_before(&out);

    // A failing check fails the run (exit 1) and still removes what the run made.
    let failing = dir.path().join("wrong-placement-on-your-engines.toml");
    std::fs::write(
        &failing,
        r#"name = "wrong-placement-on-your-engines"
[[nodes]]
name = "swarm-demo-1"
role = "manager"
[[nodes]]
name = "swarm-demo-2"
[[services]]
name = "pinned"
constraints = ["node.hostname==swarm-demo-2"]
[[checks]]
name = "placement-claims-node-1"
kind = "placement"
service = "pinned"
expect_nodes = ["swarm-demo-1"]
"#,
    )
    .unwrap();
    let two = engines.hosts_file(&names[..2]);
    let out = run(&args(&two, &[failing.to_str().unwrap()]), None);
    expect(&out, 1, "failing check");
    assert!(out.stdout.contains("placement-claims-node-1"), "{}", out.context());
    engines.assert_as_before(&out);

    // Chaos checks work on the user's engines through their Engine API, and leave no
    // rule behind.
    let chaos = dir.path().join("chaos-on-your-engines.toml");
    std::fs::write(
        &chaos,
        r#"name = "chaos-on-your-engines"
[[nodes]]
name = "swarm-demo-1"
role = "manager"
[[nodes]]
name = "swarm-demo-2"
[[nodes]]
name = "swarm-demo-3"
[[networks]]
name = "chaos-net"
attachable = true
[[services]]
name = "pinned"
networks = ["chaos-net"]
constraints = ["node.hostname==swarm-demo-2"]
[[checks]]
name = "tcp-under-loss"
kind = "packet-loss"
from = "swarm-demo-3"
to = "swarm-demo-2"
network = "chaos-net"
bytes = 1048576
[[checks]]
name = "names-after-partition"
kind = "partition"
nodes = ["swarm-demo-2"]
from = "swarm-demo-3"
network = "chaos-net"
target = "pinned"
"#,
    )
    .unwrap();
    let out = run(&args(&hosts, &[chaos.to_str().unwrap()]), None);
    expect(&out, 0, "chaos checks on existing engines");
    assert!(out.stdout.contains("test result: ok. 3 passed"), "{}", out.context());
    engines.assert_as_before(&out);
    engines.assert_no_fault_chains(&out);

    // SIGINT while the checks run: 130, torn down.
    let out = run_signalled(&args(&hosts, &[seed]), "✓ cluster formed", "INT");
    expect(&out, 130, "interrupted run");
    engines.assert_as_before(&out);

    // A node the hosts file does not name: invalid input, nothing touched.
    let out = run(&args(&wrong, &[seed]), None);
    expect(&out, 2, "incomplete hosts file");
    assert!(
        out.stderr
            .contains("names no engine for node(s) swarm-demo-1, swarm-demo-2, swarm-demo-3"),
        "{}",
        out.context()
    );

    // An engine already in a swarm is refused, and left in it ...
    engines.rt.block_on(async {
        engines
            .docker(0)
            .init_swarm(SwarmInitRequest {
                listen_addr: Some("0.0.0.0:2377".into()),
                advertise_addr: Some(format!("{}:2377", engines.engines[0].1)),
                ..Default::default()
            })
            .await
            .unwrap();
    });
    let out = run(&args(&hosts, &[seed]), None);
    expect(&out, 3, "engine in a swarm");
    assert!(
        out.stderr.contains("already part of a swarm")
            && out.stderr.contains("hint: ")
            && out.stderr.contains("--force-leave"),
        "{}",
        out.context()
    );
    engines.rt.block_on(async {
        let info = engines.docker(0).info().await.unwrap();
        assert_eq!(
            info.swarm.and_then(|s| s.local_node_state),
            Some(LocalNodeState::ACTIVE)
        );
        let services = engines.docker(0).list_services(None).await.unwrap();
        assert!(services.is_empty());
    });
    // ... unless the run may make it leave.
    let out = run(&args(&hosts, &["--force-leave", seed]), None);
    expect(&out, 0, "--force-leave");
    engines.rt.block_on(async {
        // The swarm's own bridge came with the user's swarm: after --force-leave it is
        // the run's to remove too only if it was not there before; it was.
        let _ = engines.docker(0).remove_network("docker_gwbridge").await;
    });
    engines.assert_as_before(&out);
}
