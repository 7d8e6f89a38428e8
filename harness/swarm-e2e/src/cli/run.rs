//! `run`, `matrix` and `plan`: scenarios on a target, on several engines, or on paper.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::runtime::Runtime;

use super::{check_engine, host, load_all, say};
use crate::exit::{self, Failure};
use crate::images;
use crate::matrix::{Comparison, default_jobs, run_matrix};
use crate::report::{self, FileReporter, HumanReporter, Phase, Reporter, Reporters, RunSummary, summary_table};
use crate::run::{Interrupt, RunOptions, TargetChoice};

pub const RUN_HELP: &str = concat!(
    "Examples:
  swarm-e2e run scenarios/swarm-demo.toml
  swarm-e2e run --timings scenarios/swarm-demo.toml
  swarm-e2e run --keep scenarios/swarm-demo.toml      # leave it up; prints DOCKER_HOST lines
  swarm-e2e run scenarios/swarm-demo.toml -- --list    # list checks
  swarm-e2e run scenarios/swarm-demo.toml -- placement --exact swarm-demo::placement-hostname
  swarm-e2e run --engine 26.1 scenarios/swarm-demo.toml   # every node on Debian 13's engine
  swarm-e2e run --target engines --hosts hosts.toml scenarios/swarm-demo.toml   # your own engines
  swarm-e2e run --jobs 2 scenarios/*.toml              # two clusters at once, lines prefixed

Arguments after `--` go to the libtest-style runner: FILTER, --exact, --skip, --list,
--ignored, --include-ignored, --test-threads, --format, -q.

",
    "Exit codes:
  0    every check passed (or was ignored with a reason)
  1    a check failed
  2    invalid input: a scenario file, a hosts file or the command line
  3    infrastructure error: engine, image, provisioning, cluster formation, or teardown
  4    unsupported: the scenario cannot run on its engines or target (e.g. the classic
       topology on Engine 23.0 or later); reported before anything was provisioned
  130  interrupted (SIGINT/SIGTERM); the run was torn down"
);

/// Where droplets go and what they run, on the DigitalOcean targets. Each wins over the
/// scenario's `[digitalocean]` table; clap reads the environment variable when the flag
/// is absent.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "DigitalOcean droplets (override the scenario's [digitalocean] table)")]
pub struct DropletArgs {
    /// Region slug (default nyc3).
    #[arg(long, value_name = "SLUG", env = "DIGITALOCEAN_REGION")]
    do_region: Option<String>,
    /// Size slug of every droplet the scenario's `sizes` does not name (default
    /// s-1vcpu-1gb).
    #[arg(long, value_name = "SLUG", env = "DIGITALOCEAN_SIZE")]
    do_size: Option<String>,
    /// Image slug (default ubuntu-24-04-x64, or ubuntu-22-04-x64 for engines Docker has
    /// no Ubuntu 24.04 packages of, such as 20.10).
    #[arg(long, value_name = "SLUG", env = "DIGITALOCEAN_IMAGE")]
    do_image: Option<String>,
}

impl DropletArgs {
    fn overrides(&self) -> crate::targets::digitalocean::settings::DropletOverrides {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        crate::targets::digitalocean::settings::DropletOverrides {
            region: given(&self.do_region),
            size: given(&self.do_size),
            image: given(&self.do_image),
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Scenario files (TOML); each builds its own cluster.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Scenarios at once, each its own cluster (default: one per two cores, as `matrix`).
    /// With more than one at once, every line on stderr starts with `[scenario]`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: Option<u16>,
    /// Run every node on this engine instead of the scenario's: a version (20.10,
    /// 26.1, 28.5), a static-binaries image's version, or a static archive's URL/path.
    #[arg(long, value_name = "ENGINE")]
    engine: Option<String>,
    /// Where the cluster runs: `local` (node containers on this machine), `do-fake`
    /// (the DigitalOcean code path against an in-process fake API), `digitalocean`
    /// (the real API; needs DIGITALOCEAN_ACCESS_TOKEN), or `engines` (engines you run,
    /// named in --hosts).
    #[arg(long, default_value = "local", value_parser = ["local", "do-fake", "digitalocean", "engines"])]
    target: String,
    /// --target engines: a TOML file with one [[engine]] per scenario node: node = NAME,
    /// host = "tcp://ADDR:2376", tls = DIR holding ca.pem, cert.pem, key.pem.
    #[arg(long, value_name = "FILE", required_if_eq("target", "engines"))]
    hosts: Option<PathBuf>,
    /// --target engines: make engines that are already in a swarm leave it first
    /// (that swarm's state on them is lost); without it such engines are refused.
    #[arg(long)]
    force_leave: bool,
    /// DigitalOcean targets: provision and tear down through the API only; engine
    /// checks are reported ignored with that reason.
    #[arg(long)]
    no_engines: bool,
    #[command(flatten)]
    droplets: DropletArgs,
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
    /// Which docker CLI deploys the stacks: `host` (SWARM_E2E_DOCKER_CLI, else `docker` on
    /// PATH), `engine` (the one that ships with the engine under test, copied out of its
    /// node image), or a path.
    #[arg(long, value_name = "host|engine|PATH", default_value = "host")]
    docker_cli: crate::stacks::CliChoice,
    /// Try a failed check again up to N times (0-5; a check's own `retries` wins); one
    /// that passes on a retry is reported flaky.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=swarm_e2e_model::MAX_RETRIES as i64))]
    retries: u32,
    /// A flaky check (passed only on a retry) fails the run.
    #[arg(long)]
    flaky_fails: bool,
    /// Run only shard K of N of the (scenario, check) pairs: `count:K/N` deals them out
    /// in order, `hash:K/N` by a stable hash of their names. Scenarios with no check in
    /// the shard are not provisioned.
    #[arg(long = "partition", value_name = "count:K/N|hash:K/N")]
    shard: Option<crate::shard::Shard>,
    /// Print the per-phase timing table at the end.
    #[arg(long)]
    timings: bool,
    /// Write a JUnit XML report (one testsuite per scenario, one testcase per check).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write a JSON report (schema: `swarm-e2e schema run-report`).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write one self-contained HTML page: the cluster drawn with each failure's broken
    /// path, the checks (filter by outcome), a timeline. Opens from disk.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
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
    /// Test hook: break a node's underlay once the workloads are deployed:
    /// `mtu=1280@NODE`, `loss=40@NODE`, `drop-vxlan@NODE`, `drop-gossip@NODE`,
    /// `drop-control@MANAGER`, `block-joins@MANAGER` (before the swarm forms), `pause@NODE`,
    /// `freeze@NODE`, `drain@NODE` (repeatable).
    #[arg(long, hide = true, value_name = "FAULT@NODE")]
    inject_fault: Vec<crate::targets::InjectedFault>,
    /// Test hook: once the stacks are deployed, add an environment variable to this
    /// stack service by hand (its full name, `app_api`), as an operator's hotfix the
    /// Compose files do not have (repeatable).
    #[arg(long, hide = true, value_name = "SERVICE")]
    inject_service_drift: Vec<String>,
    /// Test hook: the first attempt of this check fails whatever it saw (repeatable):
    /// a check that passes on its retry, deterministically, for the flaky reports.
    #[arg(long, hide = true, value_name = "CHECK")]
    inject_attempt_failure: Vec<String>,
    /// Arguments for the test runner (after `--`).
    #[arg(last = true)]
    libtest: Vec<String>,
}

impl RunArgs {
    fn target(&self) -> Result<TargetChoice, Failure> {
        Ok(match self.target.as_str() {
            "local" => TargetChoice::Local,
            "do-fake" => TargetChoice::DoFake {
                no_engines: self.no_engines,
                boot_latency: self.fake_boot_latency,
                faults: self
                    .fake_faults
                    .as_deref()
                    .map(toml::from_str::<swarm_e2e_model::FakeFaults>)
                    .transpose()
                    .map_err(|e| Failure::invalid_input(format!("--fake-faults: {e}")))?
                    .map(|f| match f.timing_problems().into_iter().next() {
                        Some((message, hint)) => {
                            Err(Failure::invalid_input(format!("--fake-faults: {message}")).with_hint(hint))
                        }
                        None => Ok(f),
                    })
                    .transpose()?,
                droplets: self.droplets.overrides(),
            },
            "engines" => TargetChoice::Engines {
                hosts: self.hosts.clone().expect("clap requires --hosts with --target engines"),
                force_leave: self.force_leave,
            },
            _ => TargetChoice::DigitalOcean {
                no_engines: self.no_engines,
                droplets: self.droplets.overrides(),
            },
        })
    }
}

pub fn run(rt: &Runtime, a: RunArgs) -> Result<i32, Failure> {
    let scenarios = load_all(&a.files)?;
    let scenarios = match a.shard {
        Some(p) => {
            let selected = p.select(scenarios);
            if selected.is_empty() {
                say(&format!(
                    "swarm-e2e: shard {} has no checks of these scenarios; nothing to run",
                    p
                ));
                return Ok(exit::OK);
            }
            selected
        }
        None => scenarios,
    };
    let scenarios = match a.engine.as_deref().map(check_engine).transpose()? {
        Some(e) => scenarios.iter().map(|s| s.with_engine(&e)).collect(),
        None => scenarios,
    };
    let opts = RunOptions {
        target: a.target()?,
        keep: a.keep,
        artifacts: Some(a.artifacts.clone()),
        libtest_args: a.libtest.clone(),
        stopped_engine: a.inject_stopped_engine.clone(),
        drifted_services: a.inject_service_drift.clone(),
        faults: a.inject_fault.clone(),
        failed_first_attempts: a.inject_attempt_failure.clone(),
        panic_in: a.inject_panic.as_deref().map(|p| match p {
            "provision" => Phase::Provision,
            "engines-ready" => Phase::EnginesReady,
            "cluster-formed" => Phase::ClusterFormed,
            _ => Phase::Checks,
        }),
        retries: a.retries,
        flaky_fails: a.flaky_fails,
        docker_cli: a.docker_cli.clone(),
    };
    let interrupt = Interrupt::install(rt);
    let files: Vec<Arc<FileReporter>> = [
        a.junit
            .clone()
            .map(|p| FileReporter::new(p, |runs, _| report::junit::render(runs))),
        a.json
            .clone()
            .map(|p| FileReporter::new(p, |runs, _| report::json::render(runs))),
        a.html.clone().map(|p| FileReporter::new(p, report::html::render_runs)),
    ]
    .into_iter()
    .flatten()
    .map(Arc::new)
    .collect();
    let github: Option<Arc<dyn Reporter>> =
        report::github::GithubReporter::from_env().map(|g| Arc::new(g) as Arc<dyn Reporter>);
    let jobs = a.jobs.map(usize::from).unwrap_or_else(|| default_jobs(scenarios.len()));
    // Several at once: each run's lines carry its label (the scenario's name, numbered
    // when a name comes twice).
    let labels = (jobs > 1 && scenarios.len() > 1).then(|| run_labels(&scenarios));
    let reporter_for = |i: usize| -> Arc<dyn Reporter> {
        let human = match &labels {
            Some(l) => HumanReporter::prefixed(&l[i]),
            None => HumanReporter::new(),
        };
        let mut all: Vec<Arc<dyn Reporter>> = vec![Arc::new(human)];
        all.extend(files.iter().map(|f| f.clone() as Arc<dyn Reporter>));
        all.extend(github.clone());
        Arc::new(Reporters(all))
    };
    let finished = |i: usize, summary: &RunSummary| {
        let mut text = String::new();
        if let Some(e) = &summary.error {
            text.push_str(&format!("error: {e}\n"));
        }
        if a.timings && !summary.timings.phases.is_empty() {
            text.push_str(&format!("\n{}", summary.timings.table()));
        }
        if text.is_empty() {
            return;
        }
        if let Some(l) = &labels {
            text = report::human::prefix_lines(&format!("[{}] ", l[i]), &text) + "\n";
        }
        use std::io::Write as _;
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    };
    let summaries: Vec<RunSummary> =
        crate::run::run_scenarios(rt, scenarios, jobs, &opts, &reporter_for, &finished, &interrupt)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
    let mut code = summaries.iter().fold(exit::OK, |c, s| exit::worst(c, s.exit_code));
    if interrupt.stop.is_cancelled() {
        code = exit::INTERRUPTED;
    }
    if summaries.len() > 1 {
        eprintln!("\n{}", summary_table(&summaries));
    }
    for f in &files {
        code = exit::worst(code, written(f.write(), f.path()));
    }
    for s in &summaries {
        if let Some(dir) = &s.artifacts {
            eprintln!("artifacts of failed run {}: {}", s.run_id, dir.display());
        }
    }
    Ok(code)
}

/// A label per run: the scenario's name, `name#2` for its second run and so on.
fn run_labels(scenarios: &[swarm_e2e_model::Scenario]) -> Vec<String> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    scenarios
        .iter()
        .map(|s| {
            let n = seen.entry(s.name.as_str()).or_default();
            *n += 1;
            if *n == 1 {
                s.name.clone()
            } else {
                format!("{}#{n}", s.name)
            }
        })
        .collect()
}

/// Says where a report went; a report that cannot be written makes the exit code an
/// infrastructure error (the run's own outcome stays visible above it).
fn written(result: anyhow::Result<&std::path::Path>, path: &std::path::Path) -> i32 {
    match result {
        Ok(p) => {
            eprintln!("report: {}", p.display());
            exit::OK
        }
        Err(e) => {
            eprintln!("error: writing {}: {e:#}", path.display());
            exit::INFRASTRUCTURE
        }
    }
}

pub const MATRIX_HELP: &str = "Examples:
  swarm-e2e matrix --engine 20.10 --engine 26.1 scenarios/swarm-demo.toml
  swarm-e2e matrix --engine 20.10 --engine 26.1 --engine 28.5 --json matrix.json scenarios/*.toml
  swarm-e2e matrix --engine 20.10 --engine 27.0.0-rc.1 scenarios/swarm-demo.toml   # a static-binaries image
  swarm-e2e matrix --build-images --engine 20.10 --engine ./docker-27.0.0-rc.1.tgz scenarios/swarm-demo.toml

The first --engine is the baseline. Each scenario runs once per engine with every node on
that engine, as `run --engine` would. The table shows check x engine -> passed / failed /
ignored / unsupported with timings, marks checks whose outcome differs, and the per-engine
phase timings. A scenario an engine cannot run (the classic topology on 23.0+) is reported
unsupported, never provisioned.

Exit codes: 0 no regression, 5 a check passed on the baseline and failed on another
engine, 1 a check failed but not as a regression (it failed on the baseline too),
2 invalid input, 3 infrastructure, 130 interrupted.";

#[derive(Args)]
pub struct MatrixArgs {
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
    /// Write one self-contained HTML page: the check × engine grid with regressions
    /// marked, phase times per engine, and each run with its cluster drawn.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// Where failure artefacts go.
    #[arg(long, value_name = "DIR", default_value = "target/swarm-e2e-artifacts")]
    artifacts: PathBuf,
    /// Which docker CLI deploys the stacks: `host` (SWARM_E2E_DOCKER_CLI, else `docker` on
    /// PATH), `engine` (the one that ships with each column's engine, copied out of its
    /// node image), or a path.
    #[arg(long, value_name = "host|engine|PATH", default_value = "host")]
    docker_cli: crate::stacks::CliChoice,
    /// Build the node images that are missing (packaged releases, static archives given
    /// by path or URL) before any cluster, instead of refusing.
    #[arg(long)]
    build_images: bool,
}

pub fn matrix(rt: &Runtime, a: MatrixArgs) -> Result<i32, Failure> {
    let scenarios = load_all(&a.files)?;
    let engines = a
        .engines
        .iter()
        .map(|e| check_engine(e))
        .collect::<Result<Vec<_>, _>>()?;
    if engines.len() < 2 {
        return Err(Failure::invalid_input("a matrix compares at least two engines")
            .with_hint("add another --engine, e.g. --engine 20.10 --engine 26.1"));
    }
    // Every image first: a missing one is built (`--build-images`) or fails the matrix
    // before any cluster is.
    rt.block_on(async {
        let host = host().await?;
        let progress = |line: &str| eprintln!("node-image: {line}");
        for e in &engines {
            if a.build_images {
                images::ensure_node_image(&host, e, &progress).await?;
                continue;
            }
            if let Err(missing) = images::resolve_node_image(&host, e).await {
                let mut failure = Failure::from(missing);
                let build = "add --build-images to build every missing image first";
                failure.hint = Some(match failure.hint.take() {
                    Some(h) => format!("{h}; or {build}"),
                    None => build.to_string(),
                });
                return Err(failure);
            }
        }
        Ok::<_, Failure>(())
    })?;
    let interrupt = Interrupt::install(rt);
    let github: Option<Arc<dyn Reporter>> =
        report::github::GithubReporter::from_env().map(|g| Arc::new(g) as Arc<dyn Reporter>);
    let opts = RunOptions {
        artifacts: Some(a.artifacts.clone()),
        docker_cli: a.docker_cli.clone(),
        ..Default::default()
    };
    let jobs = a.jobs.unwrap_or_else(|| default_jobs(scenarios.len() * engines.len()));
    // Each cell's lines say `[scenario@engine]` when cells run at once.
    let reporter_for = |label: &str| -> Arc<dyn Reporter> {
        let human = if jobs > 1 {
            HumanReporter::prefixed(label)
        } else {
            HumanReporter::new()
        };
        let mut all: Vec<Arc<dyn Reporter>> = vec![Arc::new(human)];
        all.extend(github.clone());
        Arc::new(Reporters(all))
    };
    let cells = run_matrix(rt, &scenarios, &engines, jobs, &opts, &reporter_for, &interrupt);
    let comparison = Comparison::new(&engines, &cells);
    say(&format!("\n{}", comparison.table()));
    // One JUnit testsuite per scenario and engine: `swarm-demo@26.1`.
    let summaries: Vec<RunSummary> = cells
        .into_iter()
        .map(|c| RunSummary {
            scenario: format!("{}@{}", c.scenario, c.engine),
            ..c.summary
        })
        .collect();
    let mut code = comparison.exit_code();
    // Only the reports asked for are rendered.
    let reports = [
        a.json.map(|p| {
            let body = serde_json::to_string_pretty(&comparison).map_err(anyhow::Error::from);
            (p, body)
        }),
        a.junit.map(|p| (p, report::junit::render(&summaries))),
        a.html.map(|p| {
            let body = Ok(crate::matrix::page::render(&comparison, &summaries, &p));
            (p, body)
        }),
    ];
    for (path, body) in reports.into_iter().flatten() {
        let result = body.and_then(|b| report::write(&path, &b)).map(|_| path.as_path());
        code = exit::worst(code, written(result, &path));
    }
    Ok(if interrupt.stop.is_cancelled() {
        exit::INTERRUPTED
    } else {
        code
    })
}

pub const PLAN_HELP: &str = "Examples:\n  swarm-e2e plan scenarios/swarm-demo.toml --do-size s-2vcpu-4gb\n  swarm-e2e plan scenarios/*.toml --format json | jq '.plans[].cost.usd_at_most'\n\nRegion, size and image: --do-region/--do-size/--do-image (or DIGITALOCEAN_REGION,\nDIGITALOCEAN_SIZE, DIGITALOCEAN_IMAGE), else the scenario's [digitalocean] table, else\nnyc3, s-1vcpu-1gb, ubuntu-24-04-x64. A run checks the slugs against the API first;\nplan sends no request.";

#[derive(Args)]
pub struct PlanArgs {
    /// Scenario files (TOML).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The target to plan for.
    #[arg(long, default_value = "digitalocean", value_parser = ["digitalocean", "do-fake"])]
    target: String,
    /// `human` (a table per scenario) or `json` (one document; `swarm-e2e schema plan`).
    #[arg(long, value_enum, default_value_t = super::listing::Format::Human)]
    format: super::listing::Format,
    #[command(flatten)]
    droplets: DropletArgs,
}

pub fn plan(a: PlanArgs) -> Result<i32, Failure> {
    use crate::targets::digitalocean::{plan as planning, settings};
    let scenarios = load_all(&a.files)?;
    let overrides = a.droplets.overrides();
    let mut plans = Vec::new();
    for s in &scenarios {
        let settings = settings::DoSettings::resolve(&overrides, s);
        settings::refuse_uninstallable(s, &settings)?;
        let timeouts = crate::targets::digitalocean::applied_timeouts(s.timeouts, a.target == "digitalocean", true);
        plans.push(planning::plan(s, &settings, &timeouts, "<run-id>"));
    }
    match a.format {
        super::listing::Format::Human => plans.iter().for_each(|p| super::say(&planning::render_plan(p))),
        super::listing::Format::Json => super::listing::print_json(&super::listing::plan(plans)),
    }
    Ok(exit::OK)
}
