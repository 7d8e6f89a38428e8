//! Long steps that say they are alive: debootstrap, downloads, a run's phases. On a
//! terminal an indicatif spinner or byte bar; in a CI log (no terminal, or `CI` set) a
//! heartbeat line at most once a minute (`SWARM_E2E_HEARTBEAT` changes the interval),
//! so a job that has gone quiet for ten minutes is told apart from a hung one.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a heartbeat line is written when nothing else is: 60 s, or
/// `SWARM_E2E_HEARTBEAT` (`10s`, `2m`; at least 100 ms).
pub fn heartbeat_interval() -> Duration {
    std::env::var("SWARM_E2E_HEARTBEAT")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .map(|d| d.max(Duration::from_millis(100)))
        .unwrap_or(Duration::from_secs(60))
}

/// Whether stderr gets live bars (a terminal outside CI) or heartbeat lines.
pub fn live_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A line every `every` while it lives: `{label}: still going after 2m 0s (status)`.
/// Dropping it stops the beat at once.
pub struct Heartbeat {
    stop: Option<Sender<()>>,
    status: Arc<Mutex<String>>,
}

impl Heartbeat {
    pub fn start(label: impl Into<String>, every: Duration, line: impl Fn(&str) + Send + 'static) -> Heartbeat {
        let (stop, stopped) = channel::<()>();
        let status = Arc::new(Mutex::new(String::new()));
        let shown = status.clone();
        let label = label.into();
        let started = Instant::now();
        std::thread::spawn(move || {
            // A sender dropped (the step ended) or a message both end the beat.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let status = shown.lock().unwrap().clone();
                let status = if status.is_empty() {
                    String::new()
                } else {
                    format!(" ({status})")
                };
                let elapsed = humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()));
                line(&format!("{label}: still going after {elapsed}{status}"));
            }
        });
        Heartbeat {
            stop: Some(stop),
            status,
        }
    }

    /// What the step is doing now; the next beat says it.
    pub fn status(&self, text: &str) {
        *self.status.lock().unwrap() = text.to_string();
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// One long step: a spinner (or a byte bar when the size is known) on a terminal, a
/// heartbeat on stderr otherwise. Ends when dropped.
pub struct LongStep {
    bar: Option<ProgressBar>,
    beat: Option<Heartbeat>,
}

impl LongStep {
    /// A step of unknown length: `label` and, as it goes, its latest status.
    pub fn spinner(label: &str) -> LongStep {
        if live_stderr() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("  {spinner} {prefix} {elapsed} {wide_msg}").unwrap());
            bar.set_prefix(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            return LongStep {
                bar: Some(bar),
                beat: None,
            };
        }
        LongStep {
            bar: None,
            beat: Some(Heartbeat::start(label, heartbeat_interval(), stderr_line)),
        }
    }

    /// A transfer of `total` bytes (when known).
    pub fn bytes(label: &str, total: Option<u64>) -> LongStep {
        if !live_stderr() {
            return LongStep::spinner(label);
        }
        let bar = match total {
            Some(t) => {
                let bar = ProgressBar::new(t);
                bar.set_style(
                    ProgressStyle::with_template("  {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                        .unwrap()
                        .progress_chars("=> "),
                );
                bar
            }
            None => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(ProgressStyle::with_template("  {spinner} {prefix} {bytes} {bytes_per_sec}").unwrap());
                bar
            }
        };
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        LongStep {
            bar: Some(bar),
            beat: None,
        }
    }

    /// The step's latest status (a debootstrap line, bytes so far).
    pub fn status(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_string());
        }
        if let Some(beat) = &self.beat {
            beat.status(text);
        }
    }

    /// `n` more bytes done (byte bars).
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }
}

impl Drop for LongStep {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A line on stderr in one write, so lines of runs going on at once never mix.
pub fn stderr_line(text: &str) {
    let _ = std::io::stderr().lock().write_all(format!("{text}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_beats_while_it_lives_and_stops_when_dropped() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let beat = Heartbeat::start("debootstrap", Duration::from_millis(50), move |l| {
            sink.lock().unwrap().push(l.to_string())
        });
        beat.status("I: Retrieving libc6");
        // Waits for beats (bounded), never for a fixed time.
        let waited = Instant::now();
        while lines.lock().unwrap().len() < 2 && waited.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(beat);
        let after_drop = lines.lock().unwrap().len();
        assert!(after_drop >= 2, "{:?}", lines.lock().unwrap());
        assert!(
            lines.lock().unwrap()[1].starts_with("debootstrap: still going after ")
                && lines.lock().unwrap()[1].ends_with("(I: Retrieving libc6)"),
            "{:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            lines.lock().unwrap().len() <= after_drop + 1,
            "it kept beating after the step ended: {:?}",
            lines.lock().unwrap()
        );
    }
}
