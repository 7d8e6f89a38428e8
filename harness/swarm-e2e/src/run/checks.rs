//! Phase: checks. The workloads are deployed, then every check becomes a libtest-mimic
//! trial; they run concurrently, each records its outcome (an event per check) for the
//! reports. Checks that cannot run (no engines, unsupported) go through the same trials,
//! reported with their reason, filters honoured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use libtest_mimic::{Arguments, Completion, Conclusion, Failed, Trial};
use swarm_e2e_model::{BUSYBOX, Scenario};

use super::RunContext;
use super::bounded::{AbortOnDrop, PhaseError, bounded, finish_phase, start_phase};
use crate::checks::{Attempts, CheckEnv, Outcome, deploy_workloads, run_check};
use crate::cluster::{Cluster, update_node_spec};
use crate::exit::{self, Failure};
use crate::images::BUSYBOX_IMAGE;
use crate::report::{CheckOutcome, CheckRecord, Event, Phase, Reporter, SlowestWait};
use crate::targets::{FaultMoment, NodeControl, NodeFault};
use crate::watchdog::Watchdog;

/// Bound on creating a scenario's services and containers.
const WORKLOAD_DEPLOY_LIMIT: Duration = Duration::from_secs(60);

type CheckBody = Arc<dyn Fn(usize) -> Outcome + Send + Sync>;

/// The trials a scenario's checks become. `body` runs one check; `None` makes trials
/// that only serve `--list` and filtering.
pub(super) fn trials(scenario: &Scenario, body: Option<CheckBody>) -> Vec<Trial> {
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

/// Runs every selected check as a trial that reports `outcome` with `reason` (it never
/// touches a cluster). Returns the records and libtest's conclusion.
pub(super) fn skip_all(
    scenario: &Arc<Scenario>,
    args: &Arguments,
    reporter: &Arc<dyn Reporter>,
    run_id: &str,
    outcome: CheckOutcome,
    reason: &str,
) -> (Vec<CheckRecord>, Conclusion) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let body: CheckBody = {
        let (scenario, records, reporter, run_id, reason) = (
            scenario.clone(),
            records.clone(),
            reporter.clone(),
            run_id.to_string(),
            reason.to_string(),
        );
        Arc::new(move |i| {
            let check = &scenario.checks[i];
            let r = check_record(
                check,
                outcome,
                Some(reason.clone()),
                CheckTimes::default(),
                Vec::new(),
                None,
            );
            record(&records, &reporter, &run_id, r);
            Outcome::Ignored(reason.clone())
        })
    };
    let conclusion = libtest_mimic::run(args, trials(scenario, Some(body)));
    let mut records = records.lock().unwrap().clone();
    // Records in scenario order, whatever order the trials ran in.
    records.sort_by_key(|r| scenario.checks.iter().position(|c| c.name == r.name));
    (records, conclusion)
}

/// The checks phase of a run whose nodes have no engines: each check is reported with
/// `outcome` and the reason, never passed.
pub(super) fn skip_phase(ctx: &mut RunContext, outcome: CheckOutcome, reason: &str) -> i32 {
    let started = start_phase(ctx, Phase::Checks);
    let (records, conclusion) = skip_all(&ctx.scenario, &ctx.args, &ctx.reporter, ctx.run_id(), outcome, reason);
    ctx.summary.checks = records;
    let elapsed = started.elapsed();
    ctx.summary.timings.record(Phase::Checks, elapsed);
    ctx.reporter.event(&Event::PhaseFinished {
        phase: Phase::Checks,
        elapsed,
        ok: true,
        detail: format!("{} ignored ({reason})", conclusion.num_ignored),
    });
    exit::OK
}

fn record(records: &Mutex<Vec<CheckRecord>>, reporter: &Arc<dyn Reporter>, run_id: &str, record: CheckRecord) {
    records.lock().unwrap().push(record.clone());
    reporter.event(&Event::CheckFinished {
        run_id: run_id.to_string(),
        record,
    });
}

/// When a check ran, from the start of the checks phase, and how long it waited for its
/// turn before.
#[derive(Default)]
struct CheckTimes {
    started: Duration,
    duration: Duration,
    queued: Duration,
}

impl CheckTimes {
    /// Its own time runs from its first attempt (`began`); the wait for its turn since
    /// its trial `started` is said apart (a disruptive check's bar must not cover the
    /// others').
    fn of(phase_started: Instant, started: Instant, began: Option<Instant>) -> CheckTimes {
        let began = began.unwrap_or(started);
        CheckTimes {
            started: began - phase_started,
            duration: began.elapsed(),
            queued: began - started,
        }
    }
}

/// An outcome as the reports label it, with its message.
fn labelled(outcome: &Outcome) -> (CheckOutcome, Option<String>) {
    match outcome {
        Outcome::Passed => (CheckOutcome::Passed, None),
        Outcome::Failed(m) => (CheckOutcome::Failed, Some(m.clone())),
        Outcome::Ignored(r) => (CheckOutcome::Ignored, Some(r.clone())),
    }
}

/// What a check's trial ended with, for the reports.
fn check_record(
    check: &swarm_e2e_model::Check,
    outcome: CheckOutcome,
    message: Option<String>,
    times: CheckTimes,
    failed_attempts: Vec<String>,
    slowest_wait: Option<crate::wait::WaitSpan>,
) -> CheckRecord {
    CheckRecord {
        name: check.name.clone(),
        kind: check.kind.kind_name().into(),
        outcome,
        message,
        duration: times.duration,
        started: times.started,
        queued: times.queued,
        nodes: check.kind.nodes().into_iter().map(str::to_string).collect(),
        line: check.line,
        failed_attempts,
        slowest_wait: slowest_wait.map(|w| SlowestWait {
            seconds: w.waited.as_secs_f64(),
            bound_seconds: w.bound.as_secs_f64(),
            at: w.source(),
        }),
    }
}

/// What `--inject-service-drift` adds to a service: a hotfix no Compose file has.
const DRIFT_ENV: &str = "SWARM_E2E_HOTFIX=1";

/// Test hooks: a stopped engine, node faults and services changed by hand, once the
/// workloads run. Label faults
/// go through the swarm API and underlay faults through the node's engine (every
/// target); only stopping an engine needs the target's node control.
fn inject_faults(ctx: &RunContext, cluster: &Cluster, control: Option<&dyn NodeControl>) -> Result<(), Failure> {
    let frozen = ctx.opts.nodes_with(&NodeFault::Frozen);
    if (ctx.opts.stopped_engine.is_some() || !frozen.is_empty()) && control.is_none() {
        return Err(Failure::invalid_input(format!(
            "target {} cannot stop or freeze nodes",
            ctx.target.name()
        )));
    }
    ctx.rt
        .block_on(async {
            for f in ctx
                .opts
                .faults
                .iter()
                .filter(|f| f.fault.moment() == FaultMoment::WhileRunning)
            {
                let node = cluster.node(&f.node);
                if let NodeFault::RemoveNodeLabel(key) = &f.fault {
                    update_node_spec(&cluster.manager().docker, &node.node_id, |s| {
                        s.labels.get_or_insert_with(HashMap::new).remove(key);
                    })
                    .await?;
                }
                if f.fault == NodeFault::Drained {
                    update_node_spec(&cluster.manager().docker, &node.node_id, |s| {
                        s.availability = Some(bollard::models::NodeSpecAvailabilityEnum::DRAIN)
                    })
                    .await?;
                }
                f.inject_underlay(node, &cluster.run_id).await?;
            }
            for service in &ctx.opts.drifted_services {
                crate::stacks::add_env(&cluster.manager().docker, service, DRIFT_ENV).await?;
            }
            if let (Some(control), Some(node)) = (control, &ctx.opts.stopped_engine) {
                control.stop(node).await?;
            }
            if let Some(control) = control {
                for node in &frozen {
                    control.freeze(node).await?;
                }
            }
            anyhow::Ok(())
        })
        .map_err(Failure::from)
}

/// The scenario's stacks, deployed by the docker CLI once the plain workloads are out;
/// recorded in the summary and reported. Returns why a stack failed to deploy, keyed by
/// [`crate::checks::stack_deploy_key`] (its checks fail with it).
fn deploy_stacks(ctx: &mut RunContext, cluster: &Cluster) -> HashMap<String, String> {
    let Some(cli) = ctx.docker_cli.clone() else {
        return HashMap::new();
    };
    let unprepared = prepare_stack_images(ctx, &cli, cluster);
    let stacks: Vec<_> = (ctx.scenario.stacks.iter())
        .filter(|s| !unprepared.contains_key(&s.name))
        .cloned()
        .collect();
    let mut results: Vec<(String, Result<crate::stacks::Deployed, String>)> =
        unprepared.into_iter().map(|(name, e)| (name, Err(e))).collect();
    let deployed = ctx
        .rt
        .block_on(bounded(WORKLOAD_DEPLOY_LIMIT, &ctx.interrupt.stop, async {
            Ok(crate::stacks::deploy_all(&cli, cluster, &stacks, WORKLOAD_DEPLOY_LIMIT).await)
        }));
    match deployed {
        Ok(r) => results.extend(r),
        Err(e) => {
            let why = phase_error_text(e, "deploying the stacks");
            results.extend(stacks.iter().map(|s| (s.name.clone(), Err(why.clone()))));
        }
    }
    let mut errors = HashMap::new();
    for (name, result) in results {
        let stack = ctx.scenario.stack(&name).expect("deployed from the scenario");
        let mut record = crate::report::StackRecord {
            name: name.clone(),
            files: stack.files.iter().map(|f| f.display().to_string()).collect(),
            cli_version: cli.version.clone(),
            deploy_seconds: None,
            cli_messages: Vec::new(),
            error: None,
        };
        match result {
            Ok(d) => {
                let said = match d.messages.len() {
                    0 => String::new(),
                    n => format!("; the CLI said ({n} line(s)):\n    {}", d.messages.join("\n    ")),
                };
                ctx.note(format!(
                    "  stack {name} deployed by docker {} in {:.2} s{said}",
                    cli.version, d.seconds
                ));
                record.deploy_seconds = Some(d.seconds);
                record.cli_messages = d.messages;
            }
            Err(e) => {
                ctx.note(format!("  stack {name} was not deployed: {e}"));
                errors.insert(crate::checks::stack_deploy_key(&name), e.clone());
                record.error = Some(e);
            }
        }
        ctx.summary.stacks.push(record);
    }
    errors
}

/// The stacks' images built and copied onto the nodes that lack them (bounded, as long
/// as building may take); why a stack cannot be deployed, by stack name.
fn prepare_stack_images(
    ctx: &mut RunContext,
    cli: &crate::stacks::DockerCli,
    cluster: &Cluster,
) -> HashMap<String, String> {
    let Some(host) = ctx.target.image_source().cloned() else {
        return HashMap::new();
    };
    let stacks = ctx.scenario.stacks.clone();
    let prepared = ctx
        .rt
        .block_on(bounded(crate::stacks::BUILD_LIMIT, &ctx.interrupt.stop, async {
            Ok(crate::stacks::prepare_images(&host, cli, cluster, &stacks).await)
        }));
    match prepared {
        Ok((notes, failed)) => {
            notes.into_iter().for_each(|n| ctx.note(n));
            failed
        }
        Err(e) => {
            let why = phase_error_text(e, "building and copying the stacks' images");
            stacks.iter().map(|s| (s.name.clone(), why.clone())).collect()
        }
    }
}

fn phase_error_text(e: PhaseError, what: &str) -> String {
    match e {
        PhaseError::Timeout(limit) => format!("{what} took longer than {limit:?}"),
        PhaseError::Interrupted => "interrupted".to_string(),
        PhaseError::Failed(e) => format!("{what}: {e:#}"),
    }
}

/// Phase: checks, against the formed cluster, once the test image is loaded.
pub(super) fn run(
    ctx: &mut RunContext,
    cluster: Arc<Cluster>,
    mut images_loaded: AbortOnDrop<anyhow::Result<()>>,
) -> Result<i32, Failure> {
    let started = start_phase(ctx, Phase::Checks);
    let images = HashMap::from([(BUSYBOX.to_string(), BUSYBOX_IMAGE.to_string())]);
    // `[timeouts] checks` bounds each check's waits; creating the workloads is a few API
    // calls with a bound of its own.
    let deployed = ctx
        .rt
        .block_on(bounded(WORKLOAD_DEPLOY_LIMIT, &ctx.interrupt.stop, async {
            (&mut images_loaded.0).await.context("loading the test images")??;
            tracing::debug!(elapsed = ?started.elapsed(), "test images loaded on every node");
            // Test hook: nodes an operator left paused take no task of the workloads.
            for node in ctx.opts.nodes_with(&NodeFault::Paused) {
                let id = &cluster.node(&node).node_id;
                update_node_spec(&cluster.manager().docker, id, |s| {
                    s.availability = Some(bollard::models::NodeSpecAvailabilityEnum::PAUSE)
                })
                .await?;
            }
            // Test hook: a control plane cut before the workloads are given out.
            for f in ctx
                .opts
                .faults
                .iter()
                .filter(|f| f.fault.moment() == FaultMoment::BeforeWorkloads)
            {
                f.inject_underlay(cluster.node(&f.node), &cluster.run_id).await?;
            }
            let failed = deploy_workloads(&ctx.scenario, &cluster, &images).await;
            tracing::debug!(elapsed = ?started.elapsed(), "workloads deployed");
            Ok(failed)
        }));
    let mut deploy_errors = match deployed {
        Ok(d) => d,
        Err(e) => {
            finish_phase::<()>(ctx, Phase::Checks, started, Err(e), |_| String::new())?;
            unreachable!("finish_phase returns the error")
        }
    };
    deploy_errors.extend(deploy_stacks(ctx, &cluster));
    let node_control = ctx.target.node_control(ctx.run_id());
    inject_faults(ctx, &cluster, node_control.as_deref())?;
    let env = check_env(ctx, cluster, images, deploy_errors, node_control);
    let records: Arc<Mutex<Vec<CheckRecord>>> = Arc::new(Mutex::new(Vec::new()));
    let body: CheckBody = {
        let (env, records, handle, stop, reporter, run_id) = (
            env.clone(),
            records.clone(),
            ctx.rt.handle().clone(),
            ctx.interrupt.stop.clone(),
            ctx.reporter.clone(),
            ctx.run_id().to_string(),
        );
        let panic_check = ctx.opts.panic_in == Some(Phase::Checks);
        let phase_started = started;
        let (default_retries, flaky_fails) = (ctx.opts.retries, ctx.opts.flaky_fails);
        Arc::new(move |i: usize| {
            let check = &env.scenario.checks[i];
            let started = Instant::now();
            if panic_check {
                panic!("injected panic in check {}", check.name);
            }
            let retries = check.retries.unwrap_or(default_retries);
            let (Attempts { outcome, failed, began }, slowest_wait) = handle.block_on(crate::wait::measured(async {
                tokio::select! {
                    a = run_check(&env, check, retries) => a,
                    _ = stop.cancelled() => Attempts { outcome: Outcome::Failed("interrupted".into()), failed: Vec::new(), began: None },
                }
            }));
            let outcome = flaky_verdict(outcome, &failed, retries, flaky_fails, |note| {
                reporter.event(&Event::Note {
                    text: format!("{}::{} is {note}", env.scenario.name, check.name),
                })
            });
            let (label, message) = labelled(&outcome);
            let times = CheckTimes::of(phase_started, started, began);
            record(
                &records,
                &reporter,
                &run_id,
                check_record(check, label, message, times, failed, slowest_wait),
            );
            outcome
        })
    };
    let mut args = ctx.args.clone();
    if args.test_threads.is_none() {
        // Checks wait on the cluster, not the CPU: run them all at once.
        args.test_threads = Some(ctx.scenario.checks.len().max(1));
    }
    let conclusion = libtest_mimic::run(&args, trials(&ctx.scenario, Some(body)));
    ctx.summary.checks = records.lock().unwrap().clone();
    let elapsed = started.elapsed();
    ctx.summary.timings.record(Phase::Checks, elapsed);
    let interrupted = ctx.interrupt.stop.is_cancelled();
    ctx.reporter.event(&Event::PhaseFinished {
        phase: Phase::Checks,
        elapsed,
        ok: !conclusion.has_failed() && !interrupted,
        detail: format!(
            "{} passed, {} failed, {} ignored",
            conclusion.num_passed, conclusion.num_failed, conclusion.num_ignored
        ),
    });
    if interrupted {
        return Err(Failure::new(exit::INTERRUPTED, "interrupted during checks"));
    }
    Ok(if conclusion.has_failed() {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}

/// What the checks share: the checks that will run are counted (the plain ones counted
/// down, the ones that run last take their turns in file order).
fn check_env(
    ctx: &RunContext,
    cluster: Arc<Cluster>,
    images: HashMap<String, String>,
    deploy_errors: HashMap<String, String>,
    node_control: Option<Arc<dyn NodeControl>>,
) -> Arc<CheckEnv> {
    // The checks that will run: the plain ones are counted down, the ones that run
    // last take their turns in file order.
    let (last, plain): (Vec<_>, Vec<_>) = trials(&ctx.scenario, None)
        .iter()
        .zip(&ctx.scenario.checks)
        .filter(|(t, _)| !ctx.args.is_filtered_out(t))
        .map(|(_, c)| c)
        .partition(|c| c.kind.runs_last());
    let plain = plain.len();
    let swarm = ctx.scenario.topology != swarm_e2e_model::Topology::Classic;
    let reporter = ctx.reporter.clone();
    let tell = Box::new(move |fact: String| {
        reporter.event(&Event::Note {
            text: format!("      watchdog: {fact}"),
        })
    });
    let watchdog = Watchdog::start(ctx.rt.handle(), cluster.clone(), node_control.clone(), swarm, tell);
    Arc::new(CheckEnv {
        scenario: ctx.scenario.clone(),
        cluster,
        images,
        kernel: ctx.target.kernel(),
        timeout: ctx.scenario.timeouts.checks,
        deploy_errors,
        target: ctx.target.name(),
        node_control,
        unhealed: ctx.opts.nodes_with(&NodeFault::StickyPartition),
        failed_first_attempts: ctx.opts.failed_first_attempts.clone(),
        host_at_start: ctx.host_at_start.clone(),
        disruption: tokio::sync::Mutex::new(()),
        last_order: last.iter().map(|c| c.name.clone()).collect(),
        turn: tokio::sync::watch::Sender::new(0),
        plain_left: tokio::sync::watch::Sender::new(plain),
        watchdog,
        control_plane: Default::default(),
        docker_cli: ctx.docker_cli.clone(),
    })
}

/// A check that passed only on a retry is flaky: `note` is told, and it counts as a
/// failure only with `--flaky-fails`.
fn flaky_verdict(
    outcome: Outcome,
    failed: &[String],
    retries: u32,
    flaky_fails: bool,
    note: impl FnOnce(&str),
) -> Outcome {
    match outcome {
        Outcome::Passed if !failed.is_empty() => {
            let text = format!(
                "flaky: passed on attempt {} of {}; attempt 1 failed: {}",
                failed.len() + 1,
                retries + 1,
                failed[0]
            );
            note(&text);
            if flaky_fails {
                Outcome::Failed(format!("{text}\n(--flaky-fails counts a flaky check as failed)"))
            } else {
                Outcome::Passed
            }
        }
        o => o,
    }
}
