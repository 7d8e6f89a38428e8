//! Bounded waiting for a condition: the only way this crate waits.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// Calls `probe` until it returns `Ok(Some(v))`, at most every `interval`, for at most
/// `limit`. `Ok(None)` and `Err(_)` both mean "not yet"; the last error is reported when
/// the limit is reached, so a timeout says what was last seen. Inside [`measured`], the
/// wait's length, bound and caller are kept when it is the longest so far.
#[track_caller]
pub fn poll_until<T, F, Fut>(
    limit: Duration,
    interval: Duration,
    mut probe: F,
) -> impl Future<Output = anyhow::Result<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let at = std::panic::Location::caller();
    async move {
        let start = Instant::now();
        let mut last: Option<String> = None;
        loop {
            let round = Instant::now();
            match probe().await {
                Ok(Some(v)) => {
                    keep_if_longest(start.elapsed(), limit, at);
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => last = Some(format!("{e:#}")),
            }
            if start.elapsed() >= limit {
                keep_if_longest(start.elapsed(), limit, at);
                match last {
                    Some(e) => bail!("gave up after {:.1}s; last error: {e}", start.elapsed().as_secs_f64()),
                    None => bail!("gave up after {:.1}s", start.elapsed().as_secs_f64()),
                }
            }
            let spent = round.elapsed();
            if spent < interval {
                tokio::time::sleep(interval - spent).await;
            }
        }
    }
}

/// One wait that ended: how long it took, its bound, and where in the source it is. A
/// check's longest wait against its bound is its margin: a wait that takes most of its
/// bound on a clean run is the next flake.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaitSpan {
    pub waited: Duration,
    pub bound: Duration,
    pub at: &'static std::panic::Location<'static>,
}

impl WaitSpan {
    /// `src/checks/dns.rs:88`: the file relative to the crate, for reports.
    pub fn source(&self) -> String {
        let file = self.at.file();
        let file = file.find("src/").map_or(file, |i| &file[i..]);
        format!("{file}:{}", self.at.line())
    }
}

tokio::task_local! {
    static LONGEST: std::cell::Cell<Option<WaitSpan>>;
}

fn keep_if_longest(waited: Duration, bound: Duration, at: &'static std::panic::Location<'static>) {
    let _ = LONGEST.try_with(|longest| {
        if longest.get().is_none_or(|l| l.waited < waited) {
            longest.set(Some(WaitSpan { waited, bound, at }));
        }
    });
}

/// Runs `work` and says which of the [`poll_until`] waits it awaited (on its own task,
/// not on tasks it spawned) took longest.
pub async fn measured<F: Future>(work: F) -> (F::Output, Option<WaitSpan>) {
    LONGEST
        .scope(std::cell::Cell::new(None), async {
            let out = work.await;
            (out, LONGEST.with(std::cell::Cell::get))
        })
        .await
}

/// The blocking twin of [`poll_until`] for plain threads (tests, trials): true once
/// `probe` holds, false after `limit`.
pub fn poll_until_blocking(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if probe() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_first_success_and_reports_last_error() {
        let mut n = 0;
        let v = poll_until(Duration::from_secs(1), Duration::from_millis(1), || {
            n += 1;
            let k = n;
            async move {
                if k < 3 {
                    Err(anyhow::anyhow!("attempt {k}"))
                } else {
                    Ok(Some(k))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);

        let err = poll_until::<(), _, _>(Duration::from_millis(30), Duration::from_millis(5), || async {
            Err(anyhow::anyhow!("still broken"))
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("still broken"), "{err}");
    }

    #[tokio::test]
    async fn measured_keeps_the_longest_wait_with_its_bound_and_caller() {
        let ((), longest) = measured(async {
            let quick = poll_until(Duration::from_secs(5), Duration::from_millis(1), || async {
                Ok(Some(()))
            });
            quick.await.unwrap();
            let mut n = 0;
            poll_until(Duration::from_secs(7), Duration::from_millis(20), || {
                n += 1;
                let k = n;
                async move { Ok((k >= 3).then_some(())) }
            })
            .await
            .unwrap();
            let _ = poll_until::<(), _, _>(Duration::from_millis(10), Duration::from_millis(1), || async {
                Ok(None)
            })
            .await;
        })
        .await;
        let longest = longest.expect("a wait was measured");
        assert_eq!(longest.bound, Duration::from_secs(7));
        assert!(longest.waited >= Duration::from_millis(40), "{longest:?}");
        assert!(longest.source().starts_with("src/wait.rs:"), "{}", longest.source());
        // Outside `measured` nothing is kept and nothing fails.
        poll_until(Duration::from_secs(1), Duration::from_millis(1), || async {
            Ok(Some(()))
        })
        .await
        .unwrap();
    }
}
