//! The run loop, the only one: validated scenario -> target preflight -> provision ->
//! engines ready -> cluster formed -> checks -> report -> teardown. It calls the
//! [`Target`] trait and nothing of any target's implementation. Every phase is bounded
//! and interruptible ([`phases`]); teardown runs on every path out of here (success,
//! failing check, panic, timeout, SIGINT/SIGTERM).

mod bounded;
mod checks;
mod interrupt;
mod options;
mod phases;

use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use swarm_e2e_model::Scenario;
use tokio::runtime::Runtime;

pub use interrupt::Interrupt;
pub use options::{RunOptions, TargetChoice};

use crate::cluster::Cluster;
use crate::exit::{self, Failure};
use crate::marks::new_run_id;
use crate::report::{CheckOutcome, Event, Phase, Reporter, RunSummary};
use crate::stacks::DockerCli;
use crate::targets::{self, Target};

/// Everything one run's phases share: one context instead of long parameter lists.
pub(crate) struct RunContext<'a> {
    pub rt: &'a Runtime,
    pub target: Arc<dyn Target>,
    /// The scenario, its bounds as the target needs them.
    pub scenario: Arc<Scenario>,
    pub opts: &'a RunOptions,
    pub args: Arguments,
    pub reporter: Arc<dyn Reporter>,
    pub interrupt: &'a Interrupt,
    pub summary: RunSummary,
    /// Set once the cluster formed (artefacts read it).
    pub cluster: Option<Arc<Cluster>>,
    /// The host's counters when the run started, where the nodes share its kernel.
    pub host_at_start: Option<crate::hostlimits::HostFacts>,
    /// The docker CLI that deploys the scenario's stacks (found before provisioning).
    pub docker_cli: Option<crate::stacks::DockerCli>,
}

impl RunContext<'_> {
    pub fn run_id(&self) -> &str {
        &self.summary.run_id
    }

    pub fn note(&self, text: impl Into<String>) {
        self.reporter.event(&Event::Note { text: text.into() });
    }
}

/// Runs one scenario on the target `opts` names, from preflight to teardown. Every path
/// out ends with a `RunFinished` event (reports are written from those).
pub fn run_scenario(
    rt: &Runtime,
    scenario: Arc<Scenario>,
    opts: &RunOptions,
    reporter: Arc<dyn Reporter>,
    interrupt: &Interrupt,
) -> RunSummary {
    let summary = run(rt, scenario, opts, &reporter, interrupt);
    reporter.event(&Event::RunFinished {
        summary: Box::new(summary.clone()),
    });
    summary
}

/// Runs `scenarios` (each its own cluster) `jobs` at a time. The i-th run reports to
/// `reporter_for(i)`, and `finished(i, summary)` is called as each ends (in the order they
/// end); the summaries come back in the order given, each with its index (an interrupt
/// stops starting runs, so the ones never started have none). `jobs = 1` is the plain
/// sequence.
pub fn run_scenarios(
    rt: &Runtime,
    scenarios: Vec<Scenario>,
    jobs: usize,
    opts: &RunOptions,
    reporter_for: &(dyn Fn(usize) -> Arc<dyn Reporter> + Sync),
    finished: &(dyn Fn(usize, &RunSummary) + Sync),
    interrupt: &Interrupt,
) -> Vec<(usize, RunSummary)> {
    let total = scenarios.len();
    let queue = std::sync::Mutex::new(
        scenarios
            .into_iter()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    );
    let done = std::sync::Mutex::new(Vec::with_capacity(total));
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            scope.spawn(|| {
                loop {
                    if interrupt.stop.is_cancelled() {
                        return;
                    }
                    let Some((i, scenario)) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let summary = run_scenario(rt, Arc::new(scenario), opts, reporter_for(i), interrupt);
                    finished(i, &summary);
                    done.lock().unwrap().push((i, summary));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    done
}

fn run(
    rt: &Runtime,
    scenario: Arc<Scenario>,
    opts: &RunOptions,
    reporter: &Arc<dyn Reporter>,
    interrupt: &Interrupt,
) -> RunSummary {
    let mut args =
        Arguments::from_iter(std::iter::once("swarm-e2e".to_string()).chain(opts.libtest_args.iter().cloned()));
    if args.color.is_none() {
        // The test runner's own colour follows `--color` and NO_COLOR, unless given after `--`.
        args.color = Some(if crate::color::stdout() {
            libtest_mimic::ColorSetting::Always
        } else {
            libtest_mimic::ColorSetting::Never
        });
    }
    let mut summary = RunSummary::new(&new_run_id(), &scenario, opts.target.name());
    // Listing or filtering everything away needs no cluster.
    // (A scenario without checks still builds its cluster: for --keep and benchmarks.)
    let listed = checks::trials(&scenario, None);
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
        reporter.event(&Event::Note {
            text: format!(
                "swarm-e2e: {} is unsupported here, nothing was provisioned: {reason}",
                scenario.name
            ),
        });
        let (records, _) = checks::skip_all(
            &scenario,
            &args,
            reporter,
            &summary.run_id,
            CheckOutcome::Unsupported,
            &reason,
        );
        summary.checks = records;
        summary.exit_code = exit::UNSUPPORTED;
        return summary;
    }
    // Stacks are deployed by the docker CLI: without one, nothing is created.
    let choose = || rt.block_on(DockerCli::choose(&opts.docker_cli, &scenario, &summary.run_id));
    let docker_cli = match (!scenario.stacks.is_empty()).then(choose) {
        Some(Err(f)) => return failed_early(summary, f),
        found => found.and_then(Result::ok),
    };
    let target = match targets::select(&opts.target, rt, &scenario) {
        Ok(t) => t,
        Err(f) => return failed_early(summary, f),
    };
    if let Err(f) = rt.block_on(target.preflight(&scenario, opts.keep)) {
        return failed_early(summary, f);
    }
    let scenario = {
        let mut s = (*scenario).clone();
        s.timeouts = target.timeouts(s.timeouts);
        Arc::new(s)
    };
    reporter.event(&Event::RunStarted {
        run_id: summary.run_id.clone(),
        scenario: scenario.name.clone(),
        target: target.name().into(),
        nodes: scenario.nodes.len(),
    });
    if scenario.faults.is_some() && !target.honours_faults() {
        reporter.event(&Event::Note {
            text: "  note: the scenario's [faults] are for the fake DigitalOcean API (--target do-fake); ignored here"
                .into(),
        });
    }
    let mut guard = TeardownGuard {
        rt,
        target: target.clone(),
        run_id: summary.run_id.clone(),
        limit: scenario.timeouts.teardown,
        armed: true,
    };
    let target_shares_host = target.shares_host();
    let mut ctx = RunContext {
        rt,
        target,
        scenario,
        opts,
        args,
        reporter: reporter.clone(),
        interrupt,
        host_at_start: target_shares_host.then(crate::hostlimits::HostFacts::read),
        summary,
        cluster: None,
        docker_cli,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| phases::provision_to_checks(&mut ctx)));
    record_outcome(result, &mut ctx);
    collect_artifacts(&mut ctx);
    if opts.keep && ctx.summary.exit_code != exit::INTERRUPTED {
        // Disarmed only once the target kept the run: a panic in `keep` still tears down.
        let text = ctx.target.keep(ctx.run_id(), &ctx.summary.nodes);
        guard.armed = false;
        ctx.note(text);
        return ctx.summary;
    }
    ctx.cluster = None;
    teardown(&mut ctx);
    guard.armed = false;
    if let Some(text) = ctx.target.finish(&mut ctx.summary) {
        ctx.note(text);
    }
    ctx.summary
}

/// Tears the run down if the run loop is left by a panic outside the phases.
struct TeardownGuard<'a> {
    rt: &'a Runtime,
    target: Arc<dyn Target>,
    run_id: String,
    limit: Duration,
    armed: bool,
}

impl Drop for TeardownGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            eprintln!("swarm-e2e: tearing down run {} after a panic", self.run_id);
            let report = self.rt.block_on(self.target.teardown(&self.run_id, self.limit));
            for e in report.errors {
                eprintln!("swarm-e2e: teardown: {e}");
            }
        }
    }
}

/// Records how the phases ended (a caught panic is an internal error) in the summary.
fn record_outcome(result: std::thread::Result<Result<i32, Failure>>, ctx: &mut RunContext) {
    let result = result.unwrap_or_else(|panic| {
        Err(Failure::new(
            exit::INFRASTRUCTURE,
            format!("internal error (panic: {}); tearing down", panic_message(&panic)),
        ))
    });
    match result {
        Ok(code) => ctx.summary.exit_code = code,
        Err(mut failure) => {
            let nodes = ctx.scenario.nodes.len() as u64;
            let full = (ctx.host_at_start.as_ref()).and_then(|b| crate::hostlimits::neighbour_table_cause(b, nodes));
            if let Some(cause) = full {
                failure.message = format!("{}\n{cause}", failure.message);
            }
            ctx.summary.exit_code = failure.code;
            ctx.note(format!("swarm-e2e: {failure}"));
            ctx.summary.error = Some(failure.to_string());
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

fn failed_early(mut summary: RunSummary, failure: Failure) -> RunSummary {
    summary.exit_code = failure.code;
    summary.error = Some(failure.to_string());
    summary
}

/// Failure artefacts of a failed run, before teardown removes what they come from.
fn collect_artifacts(ctx: &mut RunContext) {
    let Some(dir) = &ctx.opts.artifacts else { return };
    if ctx.target.without_engines().is_some()
        || !matches!(ctx.summary.exit_code, exit::CHECK_FAILED | exit::INFRASTRUCTURE)
    {
        return;
    }
    let limit = crate::artifacts::COLLECTION_LIMIT;
    ctx.note(format!(
        "  … failure artefacts (every node at once, at most {} s)",
        limit.as_secs()
    ));
    let path = ctx.rt.block_on(crate::artifacts::collect(
        ctx.target.as_ref(),
        &ctx.scenario,
        &ctx.summary,
        ctx.cluster.as_deref(),
        dir,
        limit,
        &ctx.interrupt.stop,
    ));
    ctx.summary.artifacts = Some(path);
}

/// Phase: teardown, always (but for `--keep`).
fn teardown(ctx: &mut RunContext) {
    let started = Instant::now();
    ctx.reporter.event(&Event::PhaseStarted { phase: Phase::Teardown });
    let report = ctx
        .rt
        .block_on(ctx.target.teardown(&ctx.summary.run_id, ctx.scenario.timeouts.teardown));
    let elapsed = started.elapsed();
    ctx.summary.timings.record(Phase::Teardown, elapsed);
    ctx.reporter.event(&Event::PhaseFinished {
        phase: Phase::Teardown,
        elapsed,
        ok: report.errors.is_empty(),
        detail: report.detail,
    });
    if !report.errors.is_empty() {
        for e in &report.errors {
            ctx.note(format!("  teardown: {e}"));
        }
        ctx.summary.leftovers = report.errors;
        ctx.summary.exit_code = exit::worst(ctx.summary.exit_code, exit::INFRASTRUCTURE);
    }
    if ctx.interrupt.stop.is_cancelled() {
        // Interrupted at any point, teardown included: it still ran to the end.
        ctx.summary.exit_code = exit::INTERRUPTED;
    }
}
