//! Running the swarm-e2e binary from integration tests: to its end, or with a signal or
//! an action when a stderr line shows a marker. Shared by the real-engine test binaries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_swarm-e2e");
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The checked-in schema of document `name` (`harness/swarm-e2e/schemas/NAME.schema.json`,
/// derived from the types; `swarm_e2e::cli::listing::SCHEMAS` lists the names).
pub fn schema(name: &str) -> serde_json::Value {
    let path = repo().join(format!("harness/swarm-e2e/schemas/{name}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `doc` valid against the checked-in schema of `name`, or every violation and the
/// document.
pub fn valid_document(name: &str, doc: &serde_json::Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(&schema(name)).map_err(|e| format!("the {name} schema: {e}"))?;
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| e.to_string()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("the {name} document violates its schema: {errors:?}\n{doc:#}"))
    }
}

/// A report file (`--json`, `matrix --json`) read, parsed and validated against the
/// schema of `name` (`run-report`, `matrix-report`).
pub fn read_report(path: &Path, name: &str) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON ({e}):\n{text}", path.display()))?;
    valid_document(name, &doc)?;
    Ok(doc)
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn run_id(&self) -> Option<String> {
        self.stderr.lines().find_map(|l| {
            l.strip_prefix("swarm-e2e: run ")
                .and_then(|r| r.split(':').next())
                .map(str::to_string)
        })
    }

    pub fn context(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A file for the exchanges of the fake DigitalOcean API the command may start (see
/// [`fake_exchanges_conform`]); unique per command.
pub fn exchanges_file() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "swarm-e2e-test-exchanges-{}-{}.jsonl",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Holds every exchange the fake recorded in `path` (then removed) against DigitalOcean's
/// OpenAPI spec: how many there were, or every deviation, one per line.
pub fn fake_exchanges_conform(path: &Path) -> Result<usize, String> {
    use swarm_e2e_digitalocean::fake::Exchange;
    use swarm_e2e_digitalocean::spec::Spec;
    static SPEC: std::sync::OnceLock<Spec> = std::sync::OnceLock::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(0);
    };
    let _ = std::fs::remove_file(path);
    let spec = SPEC.get_or_init(Spec::vendored);
    let mut found = Vec::new();
    let mut count = 0;
    // A process killed mid-write may leave a last line unfinished: only whole lines count.
    let whole = text.rfind('\n').map_or("", |i| &text[..i]);
    for line in whole.lines() {
        let exchange: Exchange = serde_json::from_str(line).map_err(|e| format!("{line}: {e}"))?;
        count += 1;
        for d in spec.unexcused(&exchange) {
            found.push(format!("{d}  [{} {}]", exchange.method, exchange.path));
        }
    }
    if found.is_empty() {
        Ok(count)
    } else {
        Err(format!(
            "{} deviation(s) from DigitalOcean's spec in {count} exchanges with the fake:\n{}",
            found.len(),
            found.join("\n")
        ))
    }
}

pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(repo())
        .env(swarm_e2e_digitalocean::fake::EXCHANGES_ENV, exchanges_file())
        .env("CI", "1")
        .env_remove("DOCKER_HOST")
        // A test run inside GitHub Actions must not annotate the suite's own job.
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs the binary to its end (or, with `signal_at`, sends SIGINT when a stderr line
/// contains it).
pub fn run(args: &[&str], signal_at: Option<&str>) -> Output {
    match signal_at {
        Some(marker) => run_signalled(args, marker, "INT"),
        None => run_inner(args, None, |_, _| {}),
    }
}

/// Runs the binary; when a stderr line contains `marker`, sends `signal` (INT, TERM).
pub fn run_signalled(args: &[&str], marker: &str, signal: &'static str) -> Output {
    run_inner(args, Some(marker), move |_, pid| {
        let _ = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status();
    })
}

/// Runs the binary; when a stderr line contains `marker`, calls `action(run_id)`.
pub fn run_with_action(args: &[&str], marker: &str, action: impl FnOnce(&str)) -> Output {
    run_inner(args, Some(marker), move |run_id, _| action(run_id))
}

pub fn run_inner(args: &[&str], marker: Option<&str>, action: impl FnOnce(&str, u32)) -> Output {
    run_command(command(args), marker, action)
}

/// Runs the binary with `env` added to what [`command`] sets, to its end.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(args);
    cmd.envs(env.iter().copied());
    run_command(cmd, None, |_, _| {})
}

fn run_command(mut cmd: Command, marker: Option<&str>, action: impl FnOnce(&str, u32)) -> Output {
    let exchanges = cmd
        .get_envs()
        .find(|(k, _)| *k == swarm_e2e_digitalocean::fake::EXCHANGES_ENV)
        .and_then(|(_, v)| v.map(PathBuf::from));
    let mut child: Child = cmd.spawn().expect("spawn swarm-e2e");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel::<String>();
    let err_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let start = Instant::now();
    let mut run_id = String::new();
    let mut action = Some(action);
    while let Ok(line) = rx.recv_timeout(RUN_LIMIT.saturating_sub(start.elapsed())) {
        if let Some(id) = line.strip_prefix("swarm-e2e: run ").and_then(|r| r.split(':').next()) {
            run_id = id.to_string();
        }
        if marker.is_some_and(|m| line.contains(m))
            && let Some(a) = action.take()
        {
            a(&run_id, pid);
        }
    }
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        code,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    if let Some(path) = exchanges
        && let Err(deviations) = fake_exchanges_conform(&path)
    {
        panic!("{deviations}\n{}", out.context());
    }
    out
}

/// A `fixtures/broken/NAME.expect` file: how the run of `NAME.toml` must fail. An unknown
/// key is an error (a misspelt `failures` would otherwise expect nothing).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Extra `swarm-e2e run` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Every check that must fail, with a piece of its failure message.
    #[serde(default)]
    pub failures: std::collections::BTreeMap<String, String>,
    /// The run's exit code, when not 1 (a cluster broken before its checks).
    pub exit: Option<i32>,
    /// A piece of the run's error, for a cluster broken before its checks.
    pub error: Option<String>,
}

impl Expect {
    /// The `.expect` file beside `scenario`.
    pub fn of(scenario: &Path) -> Result<Expect, String> {
        let path = scenario.with_extension("expect");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What a headless browser made of a page.
pub struct Loaded {
    /// The document after its scripts ran (`--dump-dom`).
    pub dom: String,
    /// Wall time of the whole browser process: start, load, render, screenshot.
    pub wall: Duration,
}

impl Loaded {
    /// The page's own measure of when its last element was parsed and its script ran
    /// (`data-render-ms` on `<body>`).
    pub fn render_ms(&self) -> Option<u64> {
        let at = self.dom.find("data-render-ms=\"")? + "data-render-ms=\"".len();
        self.dom[at..].split('"').next()?.parse().ok()
    }
}

/// Where test screenshots are kept (a CI artefact beside the failure artefacts).
pub fn screenshot_dir() -> PathBuf {
    let dir = repo().join("target/swarm-e2e-artifacts/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `page` from disk in Debian's `chromium`, headless, with a profile of its own
/// and every host name unresolvable (the browser's own background requests go nowhere),
/// keeps a screenshot at `screenshot`, and fails on any console message: a script
/// error, or a fetch the page's Content-Security-Policy (`default-src 'none'`) blocked.
pub fn browser_load(page: &Path, screenshot: &Path) -> Result<Loaded, String> {
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let page = page.canonicalize().map_err(|e| format!("{}: {e}", page.display()))?;
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["--kill-after=5", "60", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1300,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .map_err(|e| format!("starting chromium: {e}"))?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let hint = if stderr.contains("chromium: No such file") || out.status.code() == Some(127) {
            "\nhint: install Debian's chromium (scripts/setup.sh does: apt-get install chromium)"
        } else {
            ""
        };
        return Err(format!(
            "chromium exited with {} on {}:{hint}\n{stderr}",
            out.status,
            page.display()
        ));
    }
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    if !console.is_empty() {
        return Err(format!(
            "{} logged to the console:\n{}",
            page.display(),
            console.join("\n")
        ));
    }
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    if !dom.contains("default-src 'none'") {
        return Err(format!(
            "{} has no Content-Security-Policy that forbids fetching",
            page.display()
        ));
    }
    Ok(Loaded { dom, wall })
}
