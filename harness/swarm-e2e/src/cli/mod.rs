//! The `swarm-e2e` command line: one file per subcommand family, each handler returning
//! an exit code or a [`Failure`], printed once here as `error: …` / `hint: …`.

mod doctor;
mod fake_do;
pub mod listing;
mod node_image;
mod report;
mod resources;
mod run;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use bollard::Docker;
use clap::{CommandFactory, Parser, Subcommand};
use miette::{GraphicalReportHandler, GraphicalTheme};
use swarm_e2e_model::{Scenario, ScenarioError, parse_scenario_file};

use crate::color::ColorChoice;
use crate::exit::{self, Failure};

#[derive(Parser)]
#[command(
    name = "swarm-e2e",
    version,
    long_version = long_version(),
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
    /// When output gets colour: `auto` (a terminal, unless NO_COLOR is set), `always`,
    /// `never`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
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
    #[command(after_help = run::RUN_HELP)]
    Run(Box<run::RunArgs>),
    /// Run scenarios on several engines and compare them check by check.
    #[command(after_help = run::MATRIX_HELP)]
    Matrix(run::MatrixArgs),
    /// Show what a run would create on DigitalOcean and what it would cost; sends no
    /// request and needs no token.
    #[command(after_help = run::PLAN_HELP)]
    Plan(run::PlanArgs),
    /// Build or list node images (Debian root filesystems with a packaged engine).
    #[command(subcommand)]
    NodeImage(node_image::NodeImageCommand),
    /// A stateful fake of the DigitalOcean API (no account needed).
    #[command(subcommand)]
    FakeDo(fake_do::FakeDoCommand),
    /// Remove a kept run (`run --keep`) and everything labelled or tagged with its id.
    #[command(
        after_help = "Examples:\n  swarm-e2e down k3x9a0qz\n  swarm-e2e down k3x9a0qz --target digitalocean   # its droplets, firewall and SSH key"
    )]
    Down {
        /// The run id printed by `run`.
        run_id: String,
        #[command(flatten)]
        place: resources::Place,
    },
    /// Print the environment that points the docker CLI at a node of a kept run.
    #[command(
        after_help = "Examples:\n  eval \"$(swarm-e2e env k3x9a0qz swarm-demo-1)\"\n  docker node ls\n  eval \"$(swarm-e2e env k3x9a0qz swarm-demo-1 --target digitalocean)\""
    )]
    Env {
        /// The run id printed by `run --keep`.
        run_id: String,
        /// The node's name in the scenario.
        node: String,
        #[command(flatten)]
        place: resources::Place,
    },
    /// Copy images from this machine's engine onto every node of a kept run (no registry).
    #[command(
        after_help = "Examples:\n  docker build -t myapp:1.2 .\n  swarm-e2e load k3x9a0qz myapp:1.2\n  swarm-e2e load k3x9a0qz myapp:1.2 worker:dev --target digitalocean\n\nEach image is saved once and loaded into the nodes that lack it, at once."
    )]
    Load {
        /// The run id printed by `run --keep`.
        run_id: String,
        /// Images on this machine's engine, as `docker images` names them.
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        place: resources::Place,
    },
    /// List runs that still have resources on this machine or account (kept or leaked).
    #[command(
        after_help = "Examples:\n  swarm-e2e ls\n  swarm-e2e ls --format json | jq '.runs[].run_id'\n  swarm-e2e ls --target digitalocean\n\nSchema: swarm-e2e schema ls"
    )]
    Ls {
        /// `human` (columns) or `json` (a versioned document; `swarm-e2e schema ls`).
        #[arg(long, value_enum, default_value_t = listing::Format::Human)]
        format: listing::Format,
        #[command(flatten)]
        place: resources::Place,
    },
    /// A history of many run and matrix JSON reports: per check its nights, the flakiest
    /// first, and since when a check fails.
    #[command(after_help = report::REPORT_HELP)]
    Report(report::ReportArgs),
    /// Check that a target can be used, before anything is created.
    #[command(after_help = doctor::DOCTOR_HELP)]
    Doctor(doctor::DoctorArgs),
    /// Find resources any run left behind (crashes, kills) and remove them.
    #[command(after_help = resources::SWEEP_HELP)]
    Sweep(resources::SweepArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  swarm-e2e completions bash > /etc/bash_completion.d/swarm-e2e
  swarm-e2e completions zsh > \"${fpath[1]}/_swarm-e2e\"
  swarm-e2e completions fish > ~/.config/fish/completions/swarm-e2e.fish")]
    Completions {
        /// The shell: bash, zsh, fish, elvish, powershell.
        shell: clap_complete::Shell,
    },
    /// Print the JSON schema of a `--format json` document: ls, node-image-ls.
    #[command(after_help = "Example:\n  swarm-e2e schema ls > ls.schema.json")]
    Schema {
        /// Which document.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(listing::SCHEMAS))]
        name: String,
    },
    /// Print the manual page (roff), every subcommand included.
    #[command(after_help = "Example:\n  swarm-e2e man > /usr/local/share/man/man1/swarm-e2e.1 && man swarm-e2e")]
    Man,
}

/// `--version`: the commit, the node-image recipe and the engines it can build node
/// images for, which is what a bug report needs.
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let engines: Vec<String> = crate::images::ENGINE_RELEASES
            .iter()
            .map(|r| format!("{} ({}, {})", r.engine, r.debian, r.suite))
            .collect();
        format!(
            "{}\ncommit: {}\nnode-image recipe: {}\npackaged engines: {}\nstatic engines: any Docker static archive (`node-image build --static`)",
            env!("CARGO_PKG_VERSION"),
            env!("SWARM_E2E_COMMIT"),
            crate::images::NODE_IMAGE_RECIPE,
            engines.join(", ")
        )
    })
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    crate::install_crypto_provider();
    crate::hostlimits::raise_open_files();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::INVALID_INPUT as u8 } else { 0 });
        }
    };
    crate::color::set(cli.color);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(crate::color::stderr())
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Run(a) => run::run(&rt, *a),
        Command::Matrix(a) => run::matrix(&rt, a),
        Command::Plan(a) => run::plan(a),
        Command::NodeImage(c) => node_image::main(&rt, c),
        Command::FakeDo(c) => fake_do::main(&rt, c),
        Command::Down { run_id, place } => resources::down(&rt, &run_id, &place),
        Command::Env { run_id, node, place } => resources::env(&rt, &run_id, &node, &place),
        Command::Load { run_id, images, place } => resources::load(&rt, &run_id, &images, &place),
        Command::Ls { format, place } => resources::ls(&rt, format, &place),
        Command::Schema { name } => {
            let schema = listing::schema(&name).expect("clap allows only known names");
            listing::print_json(&schema);
            Ok(exit::OK)
        }
        Command::Report(a) => report::main(a),
        Command::Doctor(a) => doctor::main(&rt, a),
        Command::Sweep(a) => resources::sweep(&rt, a),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "swarm-e2e", &mut script);
            write_stdout(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                Ok(()) => write_stdout(&page),
                Err(e) => Err(Failure::new(
                    exit::INFRASTRUCTURE,
                    format!("rendering the man page: {e}"),
                )),
            }
        }
    };
    let code = result.unwrap_or_else(|failure| {
        failure.print();
        failure.code
    });
    ExitCode::from(code as u8)
}

fn validate(files: &[PathBuf]) -> Result<i32, Failure> {
    for s in &load_all(files)? {
        say(&format!(
            "{}: ok ({} nodes, {} checks)",
            s.source,
            s.nodes.len(),
            s.checks.len()
        ));
    }
    Ok(exit::OK)
}

/// Bytes on stdout; a reader that closed the pipe early (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<i32, Failure> {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
    Ok(exit::OK)
}

/// A line on stdout; a reader that closed the pipe is not an error worth a panic.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// The host engine, answering, or the failure that says how to start one.
async fn host() -> Result<Docker, Failure> {
    let host = crate::engine::host_engine()?;
    crate::engine::ping_host_engine(&host).await?;
    Ok(host)
}

/// An engine given on the command line, checked like a scenario's `engine` field.
fn check_engine(engine: &str) -> Result<String, Failure> {
    if swarm_e2e_model::valid_engine(engine) {
        Ok(engine.to_string())
    } else {
        Err(Failure::invalid_input(format!("`{engine}` is not an engine")).with_hint(
            "give MAJOR.MINOR (20.10, 26.1, 28.5), a static-binaries image's version (27.0.0-rc.1), or a static archive's URL or absolute path",
        ))
    }
}

/// Parses every file; prints all problems of all files, then fails with exit code 2.
fn load_all(files: &[PathBuf]) -> Result<Vec<Scenario>, Failure> {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for f in files {
        match parse_scenario_file(f) {
            Ok(s) => ok.push(s),
            Err(e) => {
                print_scenario_error(&e);
                failed.push(e.to_string());
            }
        }
    }
    match failed.len() {
        0 => Ok(ok),
        1 => Err(Failure::invalid_input(failed.remove(0))),
        n => Err(Failure::invalid_input(format!("{n} scenario files are invalid"))),
    }
}

/// Each problem once: framed with its source lines on a terminal (or with `--color
/// always`), one grep-able `file:line:column: message (hint: …)` line otherwise.
fn print_scenario_error(e: &ScenarioError) {
    let mut err = std::io::stderr().lock();
    let framed = std::io::IsTerminal::is_terminal(&std::io::stderr()) || crate::color::stderr();
    if !framed {
        for line in e.short_lines() {
            let _ = writeln!(err, "{line}");
        }
        return;
    }
    let theme = if crate::color::stderr() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme);
    for d in e.diagnostics() {
        let mut out = String::new();
        if handler.render_report(&mut out, &d).is_ok() {
            let _ = writeln!(err, "{out}");
        }
    }
}
