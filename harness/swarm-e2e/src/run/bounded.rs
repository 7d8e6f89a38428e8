//! What makes every phase bounded, interruptible and reported: `bounded` (a limit and
//! the run's stop), `start_phase` / `finish_phase` (the events and the failure a phase
//! ends with), and `AbortOnDrop` for the tasks a phase leaves running.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::RunContext;
use crate::exit::{self, Failure};
use crate::report::{Event, Phase};

pub(super) enum PhaseError {
    Timeout(Duration),
    Interrupted,
    Failed(anyhow::Error),
}

/// A task that is aborted when its handle is dropped (a run left early stops it).
pub(super) struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `fut`, bounded by `limit` and ended by `stop`.
pub(super) async fn bounded<T>(
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

pub(super) fn start_phase(ctx: &RunContext, phase: Phase) -> Instant {
    ctx.reporter.event(&Event::PhaseStarted { phase });
    Instant::now()
}

/// Reports how a phase ended and turns its error into the run's failure.
pub(super) fn finish_phase<T>(
    ctx: &mut RunContext,
    phase: Phase,
    started: Instant,
    result: Result<T, PhaseError>,
    detail: impl FnOnce(&T) -> String,
) -> Result<T, Failure> {
    let elapsed = started.elapsed();
    ctx.summary.timings.record(phase, elapsed);
    let (ok, text) = match &result {
        Ok(v) => (true, detail(v)),
        Err(PhaseError::Timeout(d)) => (false, format!("timed out after {}s", d.as_secs())),
        Err(PhaseError::Interrupted) => (false, "interrupted".into()),
        Err(PhaseError::Failed(e)) => (false, format!("{}", e.root_cause())),
    };
    ctx.reporter.event(&Event::PhaseFinished {
        phase,
        elapsed,
        ok,
        detail: text,
    });
    result.map_err(|e| match e {
        PhaseError::Timeout(d) => Failure::new(
            exit::INFRASTRUCTURE,
            format!("phase `{}` timed out after {}s", phase.as_str(), d.as_secs()),
        )
        .with_hint(format!(
            "raise `[timeouts] {}` in the scenario if the machine is slow",
            phase.as_str().replace(' ', "_")
        )),
        PhaseError::Interrupted => Failure::new(exit::INTERRUPTED, format!("interrupted during `{}`", phase.as_str())),
        PhaseError::Failed(e) => Failure::new(
            exit::INFRASTRUCTURE,
            format!("phase `{}` failed: {e:#}", phase.as_str()),
        ),
    })
}
