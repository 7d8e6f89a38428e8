//! Bounded waiting for a condition: the only way this crate waits.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// Calls `probe` until it returns `Ok(Some(v))`, at most every `interval`, for at most
/// `limit`. `Ok(None)` and `Err(_)` both mean "not yet"; the last error is reported when
/// the limit is reached, so a timeout says what was last seen.
pub async fn poll_until<T, F, Fut>(limit: Duration, interval: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last: Option<String> = None;
    loop {
        let round = Instant::now();
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(format!("{e:#}")),
        }
        if start.elapsed() >= limit {
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
}
