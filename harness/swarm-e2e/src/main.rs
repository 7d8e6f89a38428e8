//! The `swarm-e2e` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use miette::{GraphicalReportHandler, GraphicalTheme};
use swarm_e2e::report::{HumanReporter, Phase, Reporter};
use swarm_e2e::run::{Interrupt, RunOptions, exit, run_scenario};
use swarm_e2e::{engine, images, local};
use swarm_e2e_model::{Scenario, ScenarioError, parse_scenario_file};

#[derive(Parser)]
#[command(
    name = "swarm-e2e",
    version,
    about = "End-to-end tests for multi-host Docker clusters, declared in scenario files",
    long_about = "swarm-e2e builds the cluster a scenario file declares (real Docker engines in node \
                  containers on this machine), runs its checks as tests, and always tears it down.",
    after_help = concat!("Examples:
  swarm-e2e node-image build                      # once: Debian 12 engine (20.10)
  swarm-e2e run scenarios/swarm-demo.toml         # the 2015 demo as a test
  swarm-e2e run scenarios/*.toml -- --list        # list checks without building anything
  swarm-e2e run scenarios/swarm-demo.toml -- overlay   # only checks matching `overlay`
  swarm-e2e validate scenarios/*.toml

", "Exit codes: 0 passed, 1 check failed, 2 invalid input, 3 infrastructure, 4 unsupported,
5 regression (matrix), 130 interrupted")
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate scenario files and report every problem with file:line:column.
    #[command(
        after_help = "Example:\n  swarm-e2e validate scenarios/*.toml\n\nExits 0 when all are valid, 2 otherwise."
    )]
    Validate {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Build each scenario's cluster, run its checks as tests, tear it down.
    #[command(after_help = concat!("Examples:
  swarm-e2e run scenarios/swarm-demo.toml
  swarm-e2e run --timings scenarios/swarm-demo.toml
  swarm-e2e run --keep scenarios/swarm-demo.toml      # leave it up; prints DOCKER_HOST lines
  swarm-e2e run scenarios/swarm-demo.toml -- --list    # list checks
  swarm-e2e run scenarios/swarm-demo.toml -- placement --exact swarm-demo::placement-hostname
  swarm-e2e run --engine 26.1 scenarios/swarm-demo.toml   # every node on Debian 13's engine

Arguments after `--` go to the libtest-style runner: FILTER, --exact, --skip, --list,
--ignored, --include-ignored, --test-threads, --format, -q.

", "Exit codes:
  0    every check passed (or was ignored with a reason)
  1    a check failed
  2    invalid input: a scenario file or the command line
  3    infrastructure error: engine, image, provisioning, cluster formation, or teardown
  4    unsupported: the scenario cannot run on its engines or target (e.g. the classic
       topology on Engine 23.0 or later); reported before anything was provisioned
  130  interrupted (SIGINT/SIGTERM); the run was torn down"))]
    Run {
        /// Scenario files (TOML); each builds its own cluster, one after the other.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Run every node on this engine instead of the scenario's: a version (20.10,
        /// 26.1, 28.5), a static-binaries image's version, or a static archive's URL/path.
        #[arg(long, value_name = "ENGINE")]
        engine: Option<String>,
        /// Where the cluster runs: `local` (node containers on this machine), `do-fake`
        /// (the DigitalOcean code path against an in-process fake API), or `digitalocean`
        /// (the real API; needs DIGITALOCEAN_ACCESS_TOKEN).
        #[arg(long, default_value = "local", value_parser = ["local", "do-fake", "digitalocean"])]
        target: String,
        /// DigitalOcean targets: provision and tear down through the API only; engine
        /// checks are reported ignored with that reason.
        #[arg(long)]
        no_engines: bool,
        /// do-fake: how long fake droplets stay `new`.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        fake_boot_latency: Duration,
        /// do-fake: faults to inject, as TOML, e.g. 'burst_429 = 3' or
        /// 'lose_create_responses = 1' (see `fake-do serve --help`).
        #[arg(long)]
        fake_faults: Option<String>,
        /// Leave the cluster up and print how to reach each node; remove it with `down`.
        #[arg(long)]
        keep: bool,
        /// Print the per-phase timing table at the end.
        #[arg(long)]
        timings: bool,
        /// Write a JUnit XML report (one testsuite per scenario, one testcase per check).
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
        /// Write a JSON report (schema: harness/swarm-e2e/report.schema.json).
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Where failure artefacts go: engine logs, docker info, nodes, tasks, networks.
        #[arg(long, value_name = "DIR", default_value = "target/swarm-e2e-artifacts")]
        artifacts: PathBuf,
        /// Test hook: panic in this phase to prove teardown still happens.
        #[arg(long, hide = true, value_parser = ["provision", "engines-ready", "cluster-formed", "checks"])]
        inject_panic: Option<String>,
        /// Test hook: stop this node's engine once the workloads are deployed, before
        /// the checks (proves the checks notice a dead node).
        #[arg(long, hide = true)]
        inject_stopped_engine: Option<String>,
        /// Arguments for the test runner (after `--`).
        #[arg(last = true)]
        libtest: Vec<String>,
    },
    /// Run scenarios on several engines and compare them check by check.
    #[command(after_help = "Examples:
  swarm-e2e matrix --engine 20.10 --engine 26.1 scenarios/swarm-demo.toml
  swarm-e2e matrix --engine 20.10 --engine 26.1 --engine 28.5 --json matrix.json scenarios/*.toml
  swarm-e2e matrix --engine 20.10 --engine 27.0.0-rc.1 scenarios/swarm-demo.toml   # a static-binaries image

The first --engine is the baseline. Each scenario runs once per engine with every node on
that engine, as `run --engine` would. The table shows check x engine -> passed / failed /
ignored / unsupported with timings, marks checks whose outcome differs, and the per-engine
phase timings. A scenario an engine cannot run (the classic topology on 23.0+) is reported
unsupported, never provisioned.

Exit codes: 0 no regression, 5 a check passed on the baseline and failed on another
engine, 1 a check failed but not as a regression (it failed on the baseline too),
2 invalid input, 3 infrastructure, 130 interrupted.")]
    Matrix {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// An engine to run on (at least two; the first is the baseline).
        #[arg(long = "engine", value_name = "ENGINE", required = true, num_args = 1)]
        engines: Vec<String>,
        /// Clusters at once (default: one per two cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write the comparison as JSON.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Write a JUnit XML report of every run (one testsuite per scenario and engine).
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
        /// Where failure artefacts go.
        #[arg(long, value_name = "DIR", default_value = "target/swarm-e2e-artifacts")]
        artifacts: PathBuf,
    },
    /// Show what a run would create on DigitalOcean and what it would cost; sends no
    /// request and needs no token.
    #[command(
        after_help = "Example:\n  DIGITALOCEAN_SIZE=s-2vcpu-4gb swarm-e2e plan scenarios/swarm-demo.toml --target digitalocean\n\nRegion, size and image come from DIGITALOCEAN_REGION, DIGITALOCEAN_SIZE, DIGITALOCEAN_IMAGE\n(defaults nyc3, s-1vcpu-1gb, ubuntu-24-04-x64)."
    )]
    Plan {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The target to plan for.
        #[arg(long, default_value = "digitalocean", value_parser = ["digitalocean", "do-fake"])]
        target: String,
    },
    /// Build or list node images (Debian root filesystems with a packaged engine).
    #[command(subcommand)]
    NodeImage(NodeImageCommand),
    /// A stateful fake of the DigitalOcean API (no account needed).
    #[command(subcommand)]
    FakeDo(FakeDoCommand),
    /// Remove a kept run (`run --keep`) and everything labelled with its id.
    #[command(after_help = "Example:\n  swarm-e2e down k3x9a0qz")]
    Down {
        /// The run id printed by `run`.
        run_id: String,
    },
    /// Print the environment that points the docker CLI at a node of a kept run.
    #[command(after_help = "Example:\n  eval \"$(swarm-e2e env k3x9a0qz swarm-demo-1)\"\n  docker node ls")]
    Env {
        /// The run id printed by `run --keep`.
        run_id: String,
        /// The node's name in the scenario.
        node: String,
    },
    /// List runs that still have resources on this machine (kept or leaked).
    Ls,
    /// Check that a target can be used, before anything is created.
    #[command(after_help = "Examples:
  swarm-e2e doctor                          # host engine, node images, busybox, kernel
  DIGITALOCEAN_ACCESS_TOKEN=dop_v1_... swarm-e2e doctor --target digitalocean

--target digitalocean checks the token (GET /v2/account), that the account is active,
that the droplet limit leaves room, and lists leftovers of earlier runs. Exit code 0 when
the target is usable, 2 when the token is missing, 3 when something else is wrong.")]
    Doctor {
        #[arg(long, default_value = "local", value_parser = ["local", "digitalocean"])]
        target: String,
        /// Droplets a run will need (checked against the droplet limit).
        #[arg(long, default_value_t = 3)]
        nodes: u64,
    },
    /// Find resources any run left behind (crashes, kills) and remove them.
    #[command(after_help = "Examples:
  swarm-e2e sweep                       # dry run: show what would be removed
  swarm-e2e sweep --older-than 1h --yes # remove leftovers older than an hour
  swarm-e2e sweep --target digitalocean --older-than 2h --yes

Only resources carrying the project's marks are ever touched: locally the swarm-e2e.run
label (or a host path named swarm-e2e-<run-id>); on DigitalOcean droplets tagged
swarm-e2e and swarm-e2e-run-<id>, and SSH keys and firewalls named swarm-e2e-<id>.")]
    Sweep {
        /// Where to look: this machine's engine, or the DigitalOcean account of
        /// DIGITALOCEAN_ACCESS_TOKEN.
        #[arg(long, default_value = "local", value_parser = ["local", "digitalocean"])]
        target: String,
        /// Only resources older than this (e.g. 30m, 2h).
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Also sweep kept runs (they are skipped by default).
        #[arg(long)]
        include_kept: bool,
        /// Remove; without it, only show what would be removed.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum FakeDoCommand {
    /// Serve the fake DigitalOcean API until interrupted; prints its base URL and token.
    #[command(after_help = "Examples:
  swarm-e2e fake-do serve --port 8080
  curl -H \"Authorization: Bearer dop_v1_fake\" http://127.0.0.1:8080/v2/account
  doctl --api-url http://127.0.0.1:8080 -t dop_v1_fake compute droplet list

Point any client at it: pydo `endpoint=`, python-digitalocean `DIGITALOCEAN_END_POINT`
(with /v2/), terraform `api_endpoint`, godo `SetBaseURL`.")]
    Serve {
        /// Port on the listen address (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to listen on. Loopback by default; node containers need the bridge.
        #[arg(long, default_value = "127.0.0.1")]
        listen: std::net::IpAddr,
        /// The bearer token the fake accepts.
        #[arg(long, default_value = "dop_v1_fake")]
        token: String,
        /// How long new droplets stay `new`.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        boot_latency: Duration,
        /// Faults to inject, as TOML (the keys of a scenario's `[faults]` table), e.g.
        /// 'burst_429 = 3' or 'lose_create_responses = 1'.
        #[arg(long)]
        faults: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeImageCommand {
    /// Build the node image for an engine version (a no-op when cached).
    #[command(after_help = "Examples:
  swarm-e2e node-image build                 # engine 20.10 from Debian 12
  swarm-e2e node-image build --engine 26.1   # Debian 13
  swarm-e2e node-image build --engine 28.5   # Debian unstable
  swarm-e2e node-image build --force         # rebuild even if cached
  swarm-e2e node-image build --static ./docker-27.0.0-rc.1.tgz          # a release candidate
  swarm-e2e node-image build --static https://example.org/docker.tgz --engine 27.0.0-rc.1

A static archive has Docker's static release layout: docker/dockerd, docker/containerd,
docker/runc (and docker-init, docker-proxy, containerd-shim-runc-v2, ...). Its image is
tagged with --engine, or the version `dockerd --version` reports; scenarios and `matrix`
select it by that name (`engine = \"27.0.0-rc.1\"`) or by the archive's path or URL.

Needs root, debootstrap and a reachable Debian mirror (SWARM_E2E_DEBIAN_MIRROR).")]
    Build {
        /// Engine version: 20.10 (Debian 12), 26.1 (Debian 13), 28.5 (Debian unstable);
        /// with --static, the name to tag the image with.
        #[arg(long)]
        engine: Option<String>,
        /// Build from static engine binaries: a .tgz, a folder holding `docker/`, or an
        /// http(s) URL.
        #[arg(long = "static", value_name = "PATH-OR-URL")]
        static_source: Option<String>,
        /// Rebuild even if a current image is cached.
        #[arg(long)]
        force: bool,
    },
    /// Show which node images are built.
    Ls,
}

fn main() -> ExitCode {
    swarm_e2e::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::INVALID_INPUT as u8 } else { 0 });
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match cli.command {
        Command::Validate { files } => match load_all(&files) {
            Ok(scenarios) => {
                for s in &scenarios {
                    println!(
                        "{}: ok ({} nodes, {} checks)",
                        s.source,
                        s.nodes.len(),
                        s.checks.len()
                    );
                }
                exit::OK
            }
            Err(code) => code,
        },
        Command::Run {
            files,
            engine,
            target,
            no_engines,
            fake_boot_latency,
            fake_faults,
            keep,
            timings,
            junit,
            json,
            artifacts,
            inject_panic,
            inject_stopped_engine,
            libtest,
        } => {
            let scenarios = match load_all(&files) {
                Ok(s) => s,
                Err(code) => return ExitCode::from(code as u8),
            };
            let scenarios = match engine.as_deref().map(check_engine).transpose() {
                Ok(Some(e)) => scenarios.iter().map(|s| s.with_engine(&e)).collect(),
                Ok(None) => scenarios,
                Err(code) => return ExitCode::from(code as u8),
            };
            let interrupt = Interrupt::install(&rt);
            let reporter: Arc<dyn Reporter> = Arc::new(HumanReporter::new());
            let target = match target.as_str() {
                "local" => swarm_e2e::run::Target::Local,
                "do-fake" => {
                    let faults = match fake_faults.as_deref().map(toml::from_str).transpose() {
                        Ok(f) => f,
                        Err(e) => {
                            eprintln!("error: --fake-faults: {e}");
                            return ExitCode::from(exit::INVALID_INPUT as u8);
                        }
                    };
                    swarm_e2e::run::Target::DoFake {
                        no_engines,
                        boot_latency: fake_boot_latency,
                        faults,
                    }
                }
                _ => swarm_e2e::run::Target::DigitalOcean { no_engines },
            };
            let opts = RunOptions {
                target,
                keep,
                artifacts: Some(artifacts),
                libtest_args: libtest,
                stopped_engine: inject_stopped_engine,
                panic_in: inject_panic.as_deref().map(|p| match p {
                    "provision" => Phase::Provision,
                    "engines-ready" => Phase::EnginesReady,
                    "cluster-formed" => Phase::ClusterFormed,
                    _ => Phase::Checks,
                }),
            };
            let mut code = exit::OK;
            let mut summaries = Vec::new();
            for scenario in scenarios {
                let summary = run_scenario(&rt, Arc::new(scenario), &opts, reporter.clone(), &interrupt);
                if let Some(e) = &summary.error {
                    eprintln!("error: {e}");
                }
                if timings && !summary.timings.phases.is_empty() {
                    eprint!("\n{}", summary.timings.table());
                }
                code = exit::worst(code, summary.exit_code);
                summaries.push(summary);
                if interrupt.stop.is_cancelled() {
                    code = exit::INTERRUPTED;
                    break;
                }
            }
            if summaries.len() > 1 {
                eprintln!("\n{}", swarm_e2e::report::summary_table(&summaries));
            }
            code = write_reports(
                [
                    (junit, swarm_e2e::reports::junit(&summaries)),
                    (json, swarm_e2e::reports::json(&summaries)),
                ],
                code,
            );
            for s in &summaries {
                if let Some(dir) = &s.artifacts {
                    eprintln!("artifacts of failed run {}: {}", s.run_id, dir.display());
                }
            }
            code
        }
        Command::Plan { files, target: _ } => match load_all(&files) {
            Ok(scenarios) => {
                let settings = swarm_e2e::do_target::DoSettings::from_env();
                for s in &scenarios {
                    println!("{}", swarm_e2e::do_target::plan(s, &settings, "<run-id>"));
                }
                exit::OK
            }
            Err(code) => code,
        },
        Command::Matrix {
            files,
            engines,
            jobs,
            json,
            junit,
            artifacts,
        } => {
            let scenarios = match load_all(&files) {
                Ok(s) => s,
                Err(code) => return ExitCode::from(code as u8),
            };
            let engines = match engines.iter().map(|e| check_engine(e)).collect::<Result<Vec<_>, _>>() {
                Ok(e) => e,
                Err(code) => return ExitCode::from(code as u8),
            };
            if engines.len() < 2 {
                eprintln!("error: a matrix compares at least two engines\nhint: add another --engine, e.g. --engine 20.10 --engine 26.1");
                return ExitCode::from(exit::INVALID_INPUT as u8);
            }
            // Every image first: a missing one fails before any cluster is built.
            if let Err(e) = rt.block_on(async {
                let host = engine::host_engine()?;
                engine::ping_host_engine(&host).await?;
                for e in &engines {
                    images::resolve_node_image(&host, e).await?;
                }
                anyhow::Ok(())
            }) {
                return ExitCode::from(report_error(e) as u8);
            }
            let interrupt = Interrupt::install(&rt);
            let reporter: Arc<dyn Reporter> = Arc::new(HumanReporter::new());
            let opts = RunOptions {
                artifacts: Some(artifacts),
                ..Default::default()
            };
            let jobs = jobs.unwrap_or_else(|| swarm_e2e::matrix::default_jobs(scenarios.len() * engines.len()));
            let cells = swarm_e2e::matrix::run_matrix(&rt, &scenarios, &engines, jobs, &opts, reporter, &interrupt);
            let comparison = swarm_e2e::matrix::Comparison::new(&engines, &cells);
            println!("\n{}", comparison.table());
            // One JUnit testsuite per scenario and engine: `swarm-demo@26.1`.
            let summaries: Vec<_> = cells
                .into_iter()
                .map(|c| swarm_e2e::run::RunSummary {
                    scenario: format!("{}@{}", c.scenario, c.engine),
                    ..c.summary
                })
                .collect();
            let code = write_reports(
                [
                    (json, serde_json::to_string_pretty(&comparison).map_err(anyhow::Error::from)),
                    (junit, swarm_e2e::reports::junit(&summaries)),
                ],
                comparison.exit_code(),
            );
            if interrupt.stop.is_cancelled() { exit::INTERRUPTED } else { code }
        }
        Command::NodeImage(NodeImageCommand::Build {
            engine,
            static_source,
            force,
        }) => rt.block_on(async {
            let result = async {
                let host = engine::host_engine()?;
                engine::ping_host_engine(&host).await?;
                let progress = |line: &str| eprintln!("node-image: {line}");
                match &static_source {
                    Some(source) => images::build_static_node_image(&host, source, engine.as_deref(), &progress).await,
                    None => {
                        let engine = engine.as_deref().unwrap_or(swarm_e2e_model::DEFAULT_ENGINE);
                        images::build_node_image(&host, engine, force, &progress).await
                    }
                }
            }
            .await;
            match result {
                Ok(info) => {
                    println!(
                        "{} {} ({}: engine {}, containerd {}, runc {}, {} MB)",
                        info.tag,
                        &info.id,
                        info.kind,
                        info.engine_package,
                        info.containerd_package,
                        info.runc_package,
                        info.size_bytes / 1_000_000
                    );
                    exit::OK
                }
                Err(e) => report_error(e),
            }
        }),
        Command::NodeImage(NodeImageCommand::Ls) => rt.block_on(async {
            let result = async {
                let host = engine::host_engine()?;
                engine::ping_host_engine(&host).await?;
                let built = images::list_node_images(&host).await?;
                for r in images::ENGINE_RELEASES {
                    if !built.iter().any(|i| i.tag == images::node_image_tag(r.engine)) {
                        println!(
                            "{:<32} missing   (swarm-e2e node-image build --engine {})",
                            images::node_image_tag(r.engine),
                            r.engine
                        );
                    }
                }
                for info in &built {
                    println!(
                        "{:<32} {:<9} engine {}, containerd {}, runc {} ({})",
                        info.tag, info.kind, info.engine_package, info.containerd_package, info.runc_package, info.suite
                    );
                }
                anyhow::Ok(())
            }
            .await;
            result.map(|_| exit::OK).unwrap_or_else(report_error)
        }),
        Command::FakeDo(FakeDoCommand::Serve {
            port,
            listen,
            token,
            boot_latency,
            faults,
        }) => rt.block_on(async {
            use swarm_e2e_digitalocean::fake::{FakeConfig, FakeDigitalOcean, Faults};
            let faults: Faults = match faults.as_deref().map(toml::from_str).transpose() {
                Ok(f) => f.unwrap_or_default(),
                Err(e) => {
                    eprintln!("error: --faults: {e}");
                    return exit::INVALID_INPUT;
                }
            };
            let listener = match std::net::TcpListener::bind((listen, port)) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {listen}:{port}: {e}\nhint: pick another --port, or 0 for a free one");
                    return exit::INFRASTRUCTURE;
                }
            };
            let config = FakeConfig {
                token,
                boot_latency,
                faults,
                ..Default::default()
            };
            let fake = FakeDigitalOcean::start(config, Some(listener)).await;
            // A reader that takes only the URL line and closes the pipe must not kill the
            // fake (println! panics on EPIPE), so write errors are ignored here.
            {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "fake DigitalOcean API: {}\ntoken: {}", fake.base_url(), fake.token());
                let _ = out.flush();
            }
            eprintln!("serving until Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            let stats = fake.stats();
            eprintln!(
                "served {} request(s), peak {}/min, {} rate-limited",
                stats.total, stats.peak_per_minute, stats.rate_limited
            );
            exit::OK
        }),
        Command::Down { run_id } => rt.block_on(async {
            let result = async {
                let host = engine::host_engine()?;
                engine::ping_host_engine(&host).await?;
                let (removed, errors) = local::teardown(&host, &run_id, Vec::new()).await;
                if removed.is_empty() {
                    anyhow::bail!(
                        "nothing labelled swarm-e2e.run={run_id} was found\nhint: `swarm-e2e ls` lists runs with resources"
                    );
                }
                for r in &removed {
                    println!("removed {} {}", r.kind.as_str(), r.name);
                }
                if !errors.is_empty() {
                    anyhow::bail!("some resources could not be removed:\n{}", errors.join("\n"));
                }
                anyhow::Ok(())
            }
            .await;
            result.map(|_| exit::OK).unwrap_or_else(report_error)
        }),
        Command::Env { run_id, node } => rt.block_on(async {
            let result = async {
                let host = engine::host_engine()?;
                engine::ping_host_engine(&host).await?;
                let address = local::node_address(&host, &run_id, &node).await?;
                let certs = local::run_dir(&run_id).join("certs");
                if !certs.join("key.pem").is_file() {
                    anyhow::bail!(
                        "run {run_id} has no client certificates at {}\nhint: only runs started with `--keep` can be reached",
                        certs.display()
                    );
                }
                println!(
                    "export DOCKER_HOST=tcp://{address}:{} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}",
                    engine::ENGINE_TLS_PORT,
                    certs.display()
                );
                anyhow::Ok(())
            }
            .await;
            result.map(|_| exit::OK).unwrap_or_else(report_error)
        }),
        Command::Ls => rt.block_on(async {
            let result = async {
                let host = engine::host_engine()?;
                engine::ping_host_engine(&host).await?;
                let found = local::find_resources(&host, None).await?;
                print_runs(&found);
                anyhow::Ok(())
            }
            .await;
            result.map(|_| exit::OK).unwrap_or_else(report_error)
        }),
        Command::Doctor { target, nodes } => rt.block_on(async {
            let (findings, failed_code) = if target == "digitalocean" {
                match swarm_e2e::do_run::client_from_env() {
                    Ok(client) => (swarm_e2e::doctor::digitalocean(&client, nodes).await, exit::INFRASTRUCTURE),
                    Err((code, message)) => {
                        eprintln!("error: {message}");
                        return code;
                    }
                }
            } else {
                (swarm_e2e::doctor::local().await, exit::INFRASTRUCTURE)
            };
            let (text, code) = swarm_e2e::doctor::render(&findings, failed_code);
            print!("{text}");
            code
        }),
        Command::Sweep {
            target,
            older_than,
            include_kept: _,
            yes,
        } if target == "digitalocean" => rt.block_on(async {
            let client = match swarm_e2e::do_run::client_from_env() {
                Ok(c) => c,
                Err((code, message)) => {
                    eprintln!("error: {message}");
                    return code;
                }
            };
            let result = async {
                let found = swarm_e2e::do_sweep::find(&client).await?;
                let found = swarm_e2e::do_sweep::older_than(found, older_than.unwrap_or_default());
                if found.is_empty() {
                    println!("nothing to sweep on DigitalOcean");
                    return anyhow::Ok(());
                }
                println!("{:<10} {:<10} {:<9} {:<12} name", "run", "age", "kind", "id");
                for r in &found {
                    let age = r
                        .age
                        .map(|a| humantime::format_duration(Duration::from_secs(a.as_secs())).to_string())
                        .unwrap_or_else(|| "?".into());
                    println!(
                        "{:<10} {:<10} {:<9} {:<12} {}",
                        r.run_id,
                        age.split(' ').next().unwrap_or("?"),
                        r.kind.as_str(),
                        r.id,
                        r.name
                    );
                }
                if !yes {
                    println!("dry run: nothing removed (add --yes to remove these {} resource(s))", found.len());
                    return Ok(());
                }
                let errors = swarm_e2e::do_sweep::remove(&client, &found, Duration::from_secs(300)).await;
                if !errors.is_empty() {
                    anyhow::bail!(
                        "some resources could not be removed:\n{}\nhint: run the sweep again; deletes on DigitalOcean are eventually consistent",
                        errors.join("\n")
                    );
                }
                println!("removed {} resource(s)", found.len());
                Ok(())
            }
            .await;
            result.map(|_| exit::OK).unwrap_or_else(report_error)
        }),
        Command::Sweep {
            target: _,
            older_than,
            include_kept,
            yes,
        } => rt.block_on(async {
            let result = async {
                let host = engine::host_engine()?;
                engine::ping_host_engine(&host).await?;
                let now = swarm_e2e::labels::now_unix();
                let min_age = older_than.map(|d| d.as_secs()).unwrap_or(0);
                let found: Vec<_> = local::find_resources(&host, None)
                    .await?
                    .into_iter()
                    .filter(|r| include_kept || !r.kept)
                    .filter(|r| r.created.is_none_or(|c| now.saturating_sub(c) >= min_age))
                    .collect();
                if found.is_empty() {
                    println!("nothing to sweep");
                    return anyhow::Ok(());
                }
                print_runs(&found);
                if !yes {
                    println!("dry run: nothing removed (add --yes to remove these {} resource(s))", found.len());
                    return Ok(());
                }
                let errors = local::remove_resources(&host, &found).await;
                println!("removed {} resource(s)", found.len() - errors.len().min(found.len()));
                if !errors.is_empty() {
                    anyhow::bail!("some resources could not be removed:\n{}", errors.join("\n"));
                }
                Ok(())
            }
            .await;
            result.map(|_| exit::OK).unwrap_or_else(report_error)
        }),
    };
    ExitCode::from(code as u8)
}

fn print_runs(found: &[local::LocalResource]) {
    if found.is_empty() {
        println!("no swarm-e2e resources on this machine");
        return;
    }
    let now = swarm_e2e::labels::now_unix();
    println!("{:<10} {:<10} {:<11} {:<5} name", "run", "age", "kind", "kept");
    for r in found {
        let age = r
            .created
            .map(|c| humantime::format_duration(Duration::from_secs(now.saturating_sub(c))).to_string())
            .unwrap_or_else(|| "?".into());
        println!(
            "{:<10} {:<10} {:<11} {:<5} {}",
            r.run_id,
            age.split(' ').next().unwrap_or("?"),
            r.kind.as_str(),
            if r.kept { "yes" } else { "" },
            r.name
        );
    }
}

/// Writes each requested report; a report that cannot be written makes the exit code an
/// infrastructure error (the run's own outcome stays visible above it).
fn write_reports<const N: usize>(reports: [(Option<PathBuf>, anyhow::Result<String>); N], mut code: i32) -> i32 {
    for (path, body) in reports {
        let Some(path) = path else { continue };
        match body.and_then(|b| swarm_e2e::reports::write(&path, &b)) {
            Ok(()) => eprintln!("report: {}", path.display()),
            Err(e) => {
                eprintln!("error: writing {}: {e:#}", path.display());
                code = exit::worst(code, exit::INFRASTRUCTURE);
            }
        }
    }
    code
}

/// An engine given on the command line, checked like a scenario's `engine` field.
fn check_engine(engine: &str) -> Result<String, i32> {
    if swarm_e2e_model::valid_engine(engine) {
        Ok(engine.to_string())
    } else {
        eprintln!(
            "error: `{engine}` is not an engine\nhint: give MAJOR.MINOR (20.10, 26.1, 28.5), a static-binaries image's version (27.0.0-rc.1), or a static archive's URL or absolute path"
        );
        Err(exit::INVALID_INPUT)
    }
}

fn report_error(e: anyhow::Error) -> i32 {
    eprintln!("error: {e:#}");
    exit::INFRASTRUCTURE
}

/// Parses every file; prints all problems of all files, then fails with exit code 2.
fn load_all(files: &[PathBuf]) -> Result<Vec<Scenario>, i32> {
    let mut ok = Vec::new();
    let mut failed = false;
    for f in files {
        match parse_scenario_file(f) {
            Ok(s) => ok.push(s),
            Err(e) => {
                failed = true;
                print_scenario_error(&e);
            }
        }
    }
    if failed { Err(exit::INVALID_INPUT) } else { Ok(ok) }
}

fn print_scenario_error(e: &ScenarioError) {
    let theme = if std::io::stderr().is_terminal() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    for d in e.diagnostics() {
        let mut out = String::new();
        if handler.render_report(&mut out, &d).is_ok() {
            eprintln!("{out}");
        }
    }
    for line in e.short_lines() {
        eprintln!("{line}");
    }
    eprintln!("error: {e}");
}
