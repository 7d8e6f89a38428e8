//! The run loop: validated scenario -> provision -> engines ready -> cluster formed ->
//! checks -> teardown. Every phase is bounded and interruptible; teardown runs on every
//! path out of here (success, failing check, panic, timeout, SIGINT/SIGTERM).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use futures_util::future::try_join_all;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use swarm_e2e_model::{BUSYBOX, Scenario, Topology};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::checks::{CheckEnv, Outcome, deploy_workloads, host_has_ipvs, run_check};
use crate::cluster::{Cluster, EngineNode, form};
use crate::engine::{ENGINE_TLS_PORT, ServerIdentity, host_engine, ping_host_engine, tls_engine, wait_ready};
use crate::images::{BUSYBOX_IMAGE, busybox_image_tarball, load_image};
use crate::labels::new_run_id;
use crate::local::{self, NodeHandles, ProvisionedNode};
use crate::pki::Pki;
use crate::report::{Event, Phase, Reporter, Timings};

/// How long a stopped provisioning may take to land what it already sent.
pub(crate) const PROVISION_GRACE: Duration = Duration::from_secs(30);

/// Bound on creating a scenario's services and containers.
const WORKLOAD_DEPLOY_LIMIT: Duration = Duration::from_secs(60);

/// Documented, stable exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const CHECK_FAILED: i32 = 1;
    pub const INVALID_INPUT: i32 = 2;
    pub const INFRASTRUCTURE: i32 = 3;
    /// The scenario cannot run on its engines or target (reported, nothing provisioned).
    pub const UNSUPPORTED: i32 = 4;
    /// `matrix`: a check passed on the baseline engine and failed on a candidate.
    pub const REGRESSION: i32 = 5;
    pub const INTERRUPTED: i32 = 130;

    /// The more serious of two exit codes, for runs over several scenarios.
    pub fn worst(a: i32, b: i32) -> i32 {
        let rank = |c: i32| match c {
            OK => 0,
            UNSUPPORTED => 1,
            CHECK_FAILED => 2,
            REGRESSION => 3,
            INVALID_INPUT => 4,
            INFRASTRUCTURE => 5,
            _ => 6,
        };
        if rank(a) >= rank(b) { a } else { b }
    }
}

/// First signal: stop and tear down. Second: stop waiting for in-flight work, but still
/// remove everything.
#[derive(Clone, Default)]
pub struct Interrupt {
    pub stop: CancellationToken,
    pub hurry: CancellationToken,
}

impl Interrupt {
    /// Listens for SIGINT and SIGTERM on the runtime.
    pub fn install(rt: &Runtime) -> Interrupt {
        let it = Interrupt::default();
        let handle = it.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if handle.stop.is_cancelled() {
                    handle.hurry.cancel();
                } else {
                    handle.stop.cancel();
                }
            }
        });
        it
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub keep: bool,
    /// Arguments for the libtest-style runner (filters, --list, --ignored, ...).
    pub libtest_args: Vec<String>,
    /// Test hook: panic in the given phase (exercises teardown on panic).
    pub panic_in: Option<Phase>,
    /// Test hook: stop this node's engine before the checks start.
    pub stopped_engine: Option<String>,
    /// Where failure artefacts go (`<dir>/<run-id>/`); `None` collects none.
    pub artifacts: Option<std::path::PathBuf>,
    /// Where the cluster runs.
    pub target: Target,
}

/// Where a run's nodes come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Target {
    /// Node containers on the host engine.
    #[default]
    Local,
    /// The in-process fake DigitalOcean API.
    DoFake {
        no_engines: bool,
        boot_latency: Duration,
        /// From `--fake-faults`; `None`: the scenario's `[faults]`, if any.
        faults: Option<swarm_e2e_digitalocean::fake::Faults>,
    },
    /// The real DigitalOcean API (needs DIGITALOCEAN_ACCESS_TOKEN).
    DigitalOcean { no_engines: bool },
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::DoFake { .. } => "do-fake",
            Target::DigitalOcean { .. } => "digitalocean",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRecord {
    pub name: String,
    pub kind: String,
    pub outcome: String,
    pub message: Option<String>,
    pub duration: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRecord {
    pub name: String,
    pub role: String,
    pub address: String,
    pub engine_version: String,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub scenario: String,
    /// The scenario file, as given.
    pub source: String,
    pub target: String,
    pub exit_code: i32,
    pub timings: Timings,
    pub checks: Vec<CheckRecord>,
    pub nodes: Vec<NodeRecord>,
    pub error: Option<String>,
    pub leftovers: Vec<String>,
    /// Where failure artefacts were written, if any.
    pub artifacts: Option<std::path::PathBuf>,
    /// DigitalOcean API requests of the run (DigitalOcean targets only).
    pub digitalocean_requests: Option<serde_json::Value>,
}

pub(crate) enum PhaseError {
    Timeout(Duration),
    Interrupted,
    Failed(anyhow::Error),
}

async fn bounded<T>(
    limit: Duration,
    stop: &CancellationToken,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<T, PhaseError> {
    tokio::select! {
        r = tokio::time::timeout(limit, fut) => match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(PhaseError::Failed(e)),
            Err(_) => Err(PhaseError::Timeout(limit)),
        },
        _ = stop.cancelled() => Err(PhaseError::Interrupted),
    }
}

/// Tears the run down if the run loop is left by a panic.
struct TeardownGuard<'a> {
    rt: &'a Runtime,
    run_id: String,
    armed: bool,
}

impl Drop for TeardownGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("swarm-e2e: tearing down run {} after a panic", self.run_id);
            if let Ok(host) = host_engine() {
                let (_, errors) = self.rt.block_on(local::teardown(&host, &self.run_id, Vec::new()));
                for e in errors {
                    eprintln!("swarm-e2e: teardown: {e}");
                }
            }
        }
    }
}

/// The trials a scenario's checks become. `body` runs one check; `None` makes trials
/// that only serve `--list` and filtering.
pub(crate) fn trials(scenario: &Scenario, body: Option<Arc<dyn Fn(usize) -> Outcome + Send + Sync>>) -> Vec<Trial> {
    scenario
        .checks
        .iter()
        .enumerate()
        .map(|(i, check)| {
            let name = format!("{}::{}", scenario.name, check.name);
            let body = body.clone();
            Trial::ignorable_test(name, move || match body {
                None => Ok(Completion::Completed),
                Some(b) => match b(i) {
                    Outcome::Passed => Ok(Completion::Completed),
                    Outcome::Ignored(reason) => Ok(Completion::ignored_with(reason)),
                    Outcome::Failed(m) => Err(Failed::from(m)),
                },
            })
            .with_kind(check.kind.kind_name())
        })
        .collect()
}

/// Runs one scenario on the local target, from provisioning to teardown.
pub fn run_scenario(
    rt: &Runtime,
    scenario: Arc<Scenario>,
    opts: &RunOptions,
    reporter: Arc<dyn Reporter>,
    interrupt: &Interrupt,
) -> RunSummary {
    let args = Arguments::from_iter(std::iter::once("swarm-e2e".to_string()).chain(opts.libtest_args.iter().cloned()));
    let run_id = new_run_id();
    let mut summary = RunSummary {
        run_id: run_id.clone(),
        scenario: scenario.name.clone(),
        source: scenario.source.clone(),
        target: opts.target.name().into(),
        artifacts: None,
        digitalocean_requests: None,
        exit_code: exit::OK,
        timings: Timings::default(),
        checks: Vec::new(),
        nodes: Vec::new(),
        error: None,
        leftovers: Vec::new(),
    };
    // Listing or filtering everything away needs no cluster.
    let listed = trials(&scenario, None);
    // (A scenario without checks still builds its cluster: for --keep and benchmarks.)
    if args.list || (!listed.is_empty() && listed.iter().all(|t| args.is_filtered_out(t))) {
        let conclusion = libtest_mimic::run(&args, listed);
        summary.exit_code = if conclusion.has_failed() {
            exit::CHECK_FAILED
        } else {
            exit::OK
        };
        return summary;
    }
    if let Some(reason) = scenario.unsupported_reason() {
        return unsupported(summary, &scenario, &args, reason, &reporter);
    }
    if opts.target != Target::Local {
        return crate::do_run::run(rt, &scenario, opts, &args, reporter, interrupt, summary);
    }

    let host = match host_engine() {
        Ok(h) => h,
        Err(e) => return fail_early(summary, e),
    };
    if let Err(e) = rt.block_on(async {
        ping_host_engine(&host).await?;
        local::require_node_images(&host, &scenario).await
    }) {
        return fail_early(summary, e);
    }
    reporter.event(&Event::RunStarted {
        run_id: run_id.clone(),
        scenario: scenario.name.clone(),
        target: "local".into(),
        nodes: scenario.nodes.len(),
    });
    if scenario.faults.is_some() {
        reporter.event(&Event::Note {
            text: "  note: the scenario's [faults] are for the fake DigitalOcean API (--target do-fake); ignored here"
                .into(),
        });
    }

    let mut guard = TeardownGuard {
        rt,
        run_id: run_id.clone(),
        armed: true,
    };
    let mut handles: NodeHandles = Vec::new();
    let mut cluster: Option<Arc<Cluster>> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster_and_checks(
            rt,
            &host,
            &scenario,
            opts,
            &args,
            &reporter,
            interrupt,
            &run_id,
            &mut handles,
            &mut cluster,
            &mut summary,
        )
    }));
    record_outcome(result, &mut summary, &reporter);

    if let Some(dir) = &opts.artifacts
        && matches!(summary.exit_code, exit::CHECK_FAILED | exit::INFRASTRUCTURE)
    {
        let path = rt.block_on(crate::artifacts::collect(
            &host,
            &scenario,
            &summary,
            cluster.as_deref(),
            dir,
        ));
        summary.artifacts = Some(path);
    }

    if opts.keep && summary.exit_code != exit::INTERRUPTED {
        guard.armed = false;
        // The containers stay; forget the handles so their Drop does not remove them.
        for h in handles {
            std::mem::forget(h);
        }
        print_keep_lines(&reporter, &run_id, &summary.nodes);
        return summary;
    }
    reporter.event(&Event::PhaseStarted { phase: Phase::Teardown });
    let started = Instant::now();
    let limit = scenario.timeouts.teardown;
    let (removed, errors) = rt
        .block_on(async { tokio::time::timeout(limit, local::teardown(&host, &run_id, handles)).await })
        .unwrap_or_else(|_| {
            let hint = format!(
                "teardown timed out after {}s\nhint: run `swarm-e2e sweep --yes` to remove what run {run_id} left",
                limit.as_secs()
            );
            (Vec::new(), vec![hint])
        });
    guard.armed = false;
    let elapsed = started.elapsed();
    summary.timings.record(Phase::Teardown, elapsed);
    let ok = errors.is_empty();
    reporter.event(&Event::PhaseFinished {
        phase: Phase::Teardown,
        elapsed,
        ok,
        detail: format!("{} resource(s) removed", removed.len()),
    });
    if interrupt.stop.is_cancelled() {
        // Interrupted at any point, teardown included: it still ran to the end.
        summary.exit_code = exit::INTERRUPTED;
    }
    if !ok {
        for e in &errors {
            reporter.event(&Event::Note {
                text: format!("  teardown: {e}"),
            });
        }
        summary.leftovers = errors;
        summary.exit_code = exit::worst(summary.exit_code, exit::INFRASTRUCTURE);
    }
    summary
}

/// Reports every selected check as unsupported, with the reason, and provisions nothing.
fn unsupported(
    mut summary: RunSummary,
    scenario: &Scenario,
    args: &Arguments,
    reason: String,
    reporter: &Arc<dyn Reporter>,
) -> RunSummary {
    reporter.event(&Event::Note {
        text: format!(
            "swarm-e2e: {} is unsupported here, nothing was provisioned: {reason}",
            scenario.name
        ),
    });
    let listed = trials(scenario, None);
    summary.checks = scenario
        .checks
        .iter()
        .zip(&listed)
        .filter(|(_, t)| !args.is_filtered_out(t))
        .map(|(c, _)| CheckRecord {
            name: c.name.clone(),
            kind: c.kind.kind_name().into(),
            outcome: "unsupported".into(),
            message: Some(reason.clone()),
            duration: Duration::ZERO,
        })
        .collect();
    summary.exit_code = exit::UNSUPPORTED;
    summary
}

/// Records how the phases ended (a caught panic is an internal error) in the summary.
pub(crate) fn record_outcome(
    result: std::thread::Result<Result<i32, PhaseFailure>>,
    summary: &mut RunSummary,
    reporter: &Arc<dyn Reporter>,
) {
    let result = result.unwrap_or_else(|panic| {
        Err((
            exit::INFRASTRUCTURE,
            format!("internal error (panic: {}); tearing down", panic_message(&panic)),
        ))
    });
    match result {
        Ok(code) => summary.exit_code = code,
        Err((code, message)) => {
            summary.exit_code = code;
            reporter.event(&Event::Note {
                text: format!("swarm-e2e: {message}"),
            });
            summary.error = Some(message);
        }
    }
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn fail_early(mut summary: RunSummary, e: anyhow::Error) -> RunSummary {
    summary.exit_code = exit::INFRASTRUCTURE;
    summary.error = Some(format!("{e:#}"));
    summary
}

fn print_keep_lines(reporter: &Arc<dyn Reporter>, run_id: &str, nodes: &[NodeRecord]) {
    let certs = local::run_dir(run_id).join("certs");
    let mut text = format!("swarm-e2e: kept run {run_id}. Reach a node with the docker CLI:\n");
    for n in nodes {
        text.push_str(&format!(
            "  # {} ({})\n  export DOCKER_HOST=tcp://{}:{ENGINE_TLS_PORT} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}\n",
            n.name,
            n.role,
            n.address,
            certs.display()
        ));
    }
    if let Some(first) = nodes.first() {
        text.push_str(&format!("Or: eval \"$(swarm-e2e env {run_id} {})\"\n", first.name));
    }
    text.push_str(&format!("Remove it with: swarm-e2e down {run_id}"));
    reporter.event(&Event::Note { text });
}

pub(crate) type PhaseFailure = (i32, String);

#[allow(clippy::too_many_arguments)]
fn cluster_and_checks(
    rt: &Runtime,
    host: &Docker,
    scenario: &Arc<Scenario>,
    opts: &RunOptions,
    args: &Arguments,
    reporter: &Arc<dyn Reporter>,
    interrupt: &Interrupt,
    run_id: &str,
    handles: &mut NodeHandles,
    cluster_out: &mut Option<Arc<Cluster>>,
    summary: &mut RunSummary,
) -> Result<i32, PhaseFailure> {
    let timeouts = scenario.timeouts;
    let pki = Arc::new(Pki::new(run_id).map_err(|e| (exit::INFRASTRUCTURE, format!("{e:#}")))?);
    if opts.keep {
        pki.write_client_dir(&local::run_dir(run_id).join("certs"))
            .map_err(|e| (exit::INFRASTRUCTURE, format!("{e:#}")))?;
    }

    // Phase: provision. Runs as a task so an interrupt can let in-flight creations
    // finish (and be torn down) instead of abandoning them half-made.
    let provisioned: Vec<ProvisionedNode> = {
        let started = start_phase(reporter, Phase::Provision);
        let stop = CancellationToken::new();
        let mut task = {
            let (host, scenario, pki, run_id, keep, stop) = (
                host.clone(),
                scenario.clone(),
                pki.clone(),
                run_id.to_string(),
                opts.keep,
                stop.clone(),
            );
            rt.spawn(async move { local::provision(&host, &scenario, &run_id, keep, &pki, stop).await })
        };
        let abort = task.abort_handle();
        enum Ended {
            Done,
            TimedOut,
            Interrupted,
        }
        let (joined, ended) = rt.block_on(async {
            let ended = tokio::select! {
                r = &mut task => return (Some(r), Ended::Done),
                _ = tokio::time::sleep(timeouts.provision) => Ended::TimedOut,
                _ = interrupt.stop.cancelled() => Ended::Interrupted,
            };
            // Stop starting new work and let what is in flight land, so teardown sees
            // it; a second signal (or a stuck engine) cuts this short.
            stop.cancel();
            tokio::select! {
                r = &mut task => (Some(r), ended),
                _ = tokio::time::sleep(PROVISION_GRACE) => { abort.abort(); (None, ended) }
                _ = interrupt.hurry.cancelled() => { abort.abort(); (None, ended) }
            }
        });
        let provisioned = match joined {
            Some(Ok((h, r))) => {
                handles.extend(h);
                Some(r)
            }
            Some(Err(join)) if join.is_panic() => Some(Err(anyhow::anyhow!("provisioning panicked"))),
            _ => None,
        };
        let result = match (provisioned, ended) {
            (_, Ended::TimedOut) => Err(PhaseError::Timeout(timeouts.provision)),
            (_, Ended::Interrupted) => Err(PhaseError::Interrupted),
            (Some(Ok(nodes)), Ended::Done) => Ok(nodes),
            (Some(Err(e)), Ended::Done) => Err(PhaseError::Failed(e)),
            (None, Ended::Done) => Err(PhaseError::Interrupted),
        };
        let nodes = finish_phase(reporter, summary, Phase::Provision, started, result, |n| {
            format!("{} node container(s)", n.len())
        })?;
        inject_panic(opts, Phase::Provision);
        nodes
    };
    engines_cluster_checks(
        rt,
        host,
        scenario,
        opts,
        args,
        reporter,
        interrupt,
        &pki,
        provisioned,
        Verify::Address,
        Some(crate::conformance::NodeControl {
            host: host.clone(),
            run_id: run_id.to_string(),
        }),
        cluster_out,
        summary,
    )
}

/// A task that is aborted when its handle is dropped (a run left early stops it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Test hook: panics in `phase` when the run was asked to (`--inject-panic`).
pub(crate) fn inject_panic(opts: &RunOptions, phase: Phase) {
    if opts.panic_in == Some(phase) {
        panic!("injected panic in phase {}", phase.as_str());
    }
}

/// How the harness checks it talks to the right engine (see [`ServerIdentity`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verify {
    Address,
    NodeName,
}

/// The phases every target shares once its nodes exist: engines ready, cluster formed,
/// checks. `host` provides the test images.
#[allow(clippy::too_many_arguments)]
pub(crate) fn engines_cluster_checks(
    rt: &Runtime,
    host: &Docker,
    scenario: &Arc<Scenario>,
    opts: &RunOptions,
    args: &Arguments,
    reporter: &Arc<dyn Reporter>,
    interrupt: &Interrupt,
    pki: &Arc<Pki>,
    provisioned: Vec<ProvisionedNode>,
    verify: Verify,
    node_control: Option<crate::conformance::NodeControl>,
    cluster_out: &mut Option<Arc<Cluster>>,
    summary: &mut RunSummary,
) -> Result<i32, PhaseFailure> {
    let timeouts = scenario.timeouts;
    // Phase: engines ready (mTLS /_ping). The busybox test image is prepared meanwhile
    // and loaded into every node while the swarm forms (only workloads need it).
    let mut images_loaded: AbortOnDrop<anyhow::Result<()>>;
    let nodes: Vec<EngineNode> = {
        let started = start_phase(reporter, Phase::EnginesReady);
        let busybox = rt.spawn({
            let host = host.clone();
            async move { busybox_image_tarball(&host).await }
        });
        let result = rt.block_on(bounded(timeouts.engines_ready, &interrupt.stop, async {
            let nodes = try_join_all(provisioned.iter().map(|p| {
                let pki = pki.clone();
                let reporter = reporter.clone();
                async move {
                    let identity = match verify {
                        Verify::Address => ServerIdentity::Address,
                        Verify::NodeName => ServerIdentity::Name(&p.name),
                    };
                    let docker = tls_engine(SocketAddr::new(p.address, ENGINE_TLS_PORT), &pki.client, identity)?;
                    let waited = wait_ready(&docker, timeouts.engines_ready)
                        .await
                        .with_context(|| format!("node {} ({}:{ENGINE_TLS_PORT})", p.name, p.address))?;
                    let version = docker.version().await?.version.unwrap_or_default();
                    reporter.event(&Event::NodeReady {
                        node: p.name.clone(),
                        address: p.address.to_string(),
                        engine_version: version.clone(),
                        elapsed: waited,
                    });
                    let declared = scenario.node(&p.name).expect("provisioned from the scenario");
                    anyhow::Ok(EngineNode {
                        name: p.name.clone(),
                        role: declared.role,
                        address: p.address,
                        docker,
                        engine_version: version,
                        node_id: String::new(),
                    })
                }
            }))
            .await?;
            Ok(nodes)
        }));
        let nodes = finish_phase(reporter, summary, Phase::EnginesReady, started, result, |n| {
            format!("{} engine(s) answering over mTLS", n.len())
        })?;
        let engines: Vec<(String, Docker)> = nodes.iter().map(|n| (n.name.clone(), n.docker.clone())).collect();
        images_loaded = AbortOnDrop(rt.spawn(async move {
            let tarball = busybox.await.context("preparing the busybox image")??;
            try_join_all(engines.iter().map(|(name, docker)| {
                let tarball = tarball.clone();
                async move {
                    match load_image(docker, tarball).await {
                        Ok(()) => Ok(()),
                        // A node that died after the engines answered is a finding of
                        // the checks (they name it), not a harness failure: a crashed
                        // engine is what a release engineer runs this to see.
                        Err(e) if !crate::cluster::answers_ping(docker).await => {
                            tracing::warn!("node {name} stopped answering while busybox was loaded: {e:#}");
                            Ok(())
                        }
                        Err(e) => Err(e).with_context(|| format!("loading busybox into {name}")),
                    }
                }
            }))
            .await?;
            Ok(())
        }));
        summary.nodes = nodes
            .iter()
            .map(|n| NodeRecord {
                name: n.name.clone(),
                role: n.role.as_str().into(),
                address: n.address.to_string(),
                engine_version: n.engine_version.clone(),
            })
            .collect();
        inject_panic(opts, Phase::EnginesReady);
        nodes
    };

    // Phase: cluster formed.
    let cluster: Arc<Cluster> = {
        let started = start_phase(reporter, Phase::ClusterFormed);
        let result = rt.block_on(bounded(
            timeouts.cluster_formed,
            &interrupt.stop,
            form(scenario, nodes, timeouts.cluster_formed),
        ));
        let cluster = finish_phase(
            reporter,
            summary,
            Phase::ClusterFormed,
            started,
            result,
            |c| match scenario.topology {
                Topology::Swarm => format!(
                    "swarm of {} node(s), {} manager(s), {} overlay network(s)",
                    c.nodes.len(),
                    scenario.manager_count(),
                    scenario.networks.len()
                ),
                Topology::Classic => format!(
                    "{} engine(s) sharing a cluster store (etcd), {} global overlay network(s)",
                    c.nodes.len(),
                    scenario.networks.len()
                ),
            },
        )?;
        inject_panic(opts, Phase::ClusterFormed);
        let cluster = Arc::new(cluster);
        *cluster_out = Some(cluster.clone());
        cluster
    };

    // Phase: checks, as libtest-mimic trials running concurrently.
    let started = start_phase(reporter, Phase::Checks);
    let images = HashMap::from([(BUSYBOX.to_string(), BUSYBOX_IMAGE.to_string())]);
    let deploy_errors = {
        // `[timeouts] checks` bounds each check's waits; creating the workloads is a few
        // API calls with a bound of its own.
        let result = rt.block_on(bounded(WORKLOAD_DEPLOY_LIMIT, &interrupt.stop, async {
            (&mut images_loaded.0).await.context("loading the test images")??;
            Ok(deploy_workloads(scenario, &cluster, &images).await)
        }));
        match result {
            Ok(d) => d,
            Err(e) => {
                finish_phase::<()>(reporter, summary, Phase::Checks, started, Err(e), |_| String::new())?;
                unreachable!("finish_phase returns the error")
            }
        }
    };
    if let (Some(node), Some(control)) = (&opts.stopped_engine, &node_control) {
        rt.block_on(control.stop(node))
            .map_err(|e| (exit::INFRASTRUCTURE, format!("{e:#}")))?;
    }
    let env = Arc::new(CheckEnv {
        scenario: scenario.clone(),
        cluster: cluster.clone(),
        images,
        // Nodes the harness can stop (`node_control`) are containers on this kernel:
        // local nodes and the fake's droplets. Real droplets run their own (DigitalOcean's
        // Ubuntu kernels have IPVS and ESP).
        ipvs: node_control.is_none() || host_has_ipvs(),
        esp: node_control.is_none() || crate::checks::host_has_esp(),
        timeout: timeouts.checks,
        deploy_errors,
        node_control,
        disruption: tokio::sync::Mutex::new(()),
        plain_left: tokio::sync::watch::Sender::new(
            trials(scenario, None)
                .iter()
                .zip(&scenario.checks)
                .filter(|(t, c)| !c.kind.is_disruptive() && !args.is_filtered_out(t))
                .count(),
        ),
    });
    let records: Arc<Mutex<Vec<CheckRecord>>> = Arc::new(Mutex::new(Vec::new()));
    let body: Arc<dyn Fn(usize) -> Outcome + Send + Sync> = {
        let (env, records, handle, stop) = (
            env.clone(),
            records.clone(),
            rt.handle().clone(),
            interrupt.stop.clone(),
        );
        let panic_check = opts.panic_in == Some(Phase::Checks);
        Arc::new(move |i: usize| {
            let check = &env.scenario.checks[i];
            let started = Instant::now();
            if panic_check {
                panic!("injected panic in check {}", check.name);
            }
            let outcome = handle.block_on(async {
                tokio::select! {
                    o = run_check(&env, check) => o,
                    _ = stop.cancelled() => Outcome::Failed("interrupted".into()),
                }
            });
            let (label, message) = match &outcome {
                Outcome::Passed => ("passed", None),
                Outcome::Failed(m) => ("failed", Some(m.clone())),
                Outcome::Ignored(r) => ("ignored", Some(r.clone())),
            };
            records.lock().unwrap().push(CheckRecord {
                name: check.name.clone(),
                kind: check.kind.kind_name().into(),
                outcome: label.into(),
                message,
                duration: started.elapsed(),
            });
            outcome
        })
    };
    let mut args = args.clone();
    if args.test_threads.is_none() {
        // Checks wait on the cluster, not the CPU: run them all at once.
        args.test_threads = Some(scenario.checks.len().max(1));
    }
    let conclusion = libtest_mimic::run(&args, trials(scenario, Some(body)));
    summary.checks = records.lock().unwrap().clone();
    let elapsed = started.elapsed();
    summary.timings.record(Phase::Checks, elapsed);
    let interrupted = interrupt.stop.is_cancelled();
    reporter.event(&Event::PhaseFinished {
        phase: Phase::Checks,
        elapsed,
        ok: !conclusion.has_failed() && !interrupted,
        detail: format!(
            "{} passed, {} failed, {} ignored",
            conclusion.num_passed, conclusion.num_failed, conclusion.num_ignored
        ),
    });
    if interrupted {
        return Err((exit::INTERRUPTED, "interrupted during checks".into()));
    }
    Ok(if conclusion.has_failed() {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

pub(crate) fn start_phase(reporter: &Arc<dyn Reporter>, phase: Phase) -> Instant {
    reporter.event(&Event::PhaseStarted { phase });
    Instant::now()
}

pub(crate) fn finish_phase<T>(
    reporter: &Arc<dyn Reporter>,
    summary: &mut RunSummary,
    phase: Phase,
    started: Instant,
    result: Result<T, PhaseError>,
    detail: impl FnOnce(&T) -> String,
) -> Result<T, PhaseFailure> {
    let elapsed = started.elapsed();
    summary.timings.record(phase, elapsed);
    let (ok, text) = match &result {
        Ok(v) => (true, detail(v)),
        Err(PhaseError::Timeout(d)) => (false, format!("timed out after {}s", d.as_secs())),
        Err(PhaseError::Interrupted) => (false, "interrupted".into()),
        Err(PhaseError::Failed(e)) => (false, format!("{}", e.root_cause())),
    };
    reporter.event(&Event::PhaseFinished {
        phase,
        elapsed,
        ok,
        detail: text,
    });
    result.map_err(|e| match e {
        PhaseError::Timeout(d) => (
            exit::INFRASTRUCTURE,
            format!(
                "phase `{}` timed out after {}s\nhint: raise `[timeouts] {}` in the scenario if the machine is slow",
                phase.as_str(),
                d.as_secs(),
                phase.as_str().replace(' ', "_")
            ),
        ),
        PhaseError::Interrupted => (exit::INTERRUPTED, format!("interrupted during `{}`", phase.as_str())),
        PhaseError::Failed(e) => (
            exit::INFRASTRUCTURE,
            format!("phase `{}` failed: {e:#}", phase.as_str()),
        ),
    })
}
