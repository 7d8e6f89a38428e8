//! The run loop for the DigitalOcean targets (real API or the in-process fake).
//!
//! Provisioning and teardown go through the DigitalOcean API; once droplets are active
//! the phases are the ones every target shares (engines ready over mutual TLS, verified
//! by node name; cluster formed; checks). On `do-fake` the droplets are backed by node
//! containers (see [`crate::fake_backer`]); `--no-engines` is the API-only dry run, where
//! the checks are reported ignored with that reason.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bollard::Docker;
use libtest_mimic::{Arguments, Completion, Trial};
use secrecy::SecretString;
use swarm_e2e_digitalocean::client::DoClient;
use swarm_e2e_digitalocean::fake::{FakeConfig, FakeDigitalOcean};
use swarm_e2e_model::Scenario;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::do_target::{self, DoResources, DoSettings};
use crate::engine::{host_engine, ping_host_engine};
use crate::fake_backer::Backer;
use crate::local;
use crate::pki::Pki;
use crate::report::{Event, Phase, Reporter};
use crate::run::{
    CheckRecord, Interrupt, PROVISION_GRACE, PhaseError, PhaseFailure, RunOptions, RunSummary, Target, Verify,
    engines_cluster_checks, exit, finish_phase, inject_panic, record_outcome, start_phase,
};

/// Least `engines ready` bound on real droplets (cloud-init installs the engine).
pub const REAL_ENGINES_READY_FLOOR: std::time::Duration = std::time::Duration::from_secs(600);

/// The environment variable the real target reads its token from (as doctl does).
pub const TOKEN_VAR: &str = "DIGITALOCEAN_ACCESS_TOKEN";

/// A client for the real API from the environment: the token from
/// [`TOKEN_VAR`], the base URL from `DIGITALOCEAN_API_URL` (default: the real API).
/// Errors carry the exit code and what to do.
pub fn client_from_env() -> Result<DoClient, (i32, String)> {
    match std::env::var(TOKEN_VAR) {
        Ok(token) if !token.trim().is_empty() => {
            let base = std::env::var("DIGITALOCEAN_API_URL")
                .unwrap_or_else(|_| swarm_e2e_digitalocean::client::DEFAULT_BASE_URL.into());
            DoClient::new(&base, SecretString::from(token)).map_err(|e| (exit::INFRASTRUCTURE, e.to_string()))
        }
        _ => Err((
            exit::INVALID_INPUT,
            format!(
                "--target digitalocean needs an API token\nhint: export {TOKEN_VAR}=dop_v1_... (a token with droplet, \
                 tag, ssh_key and firewall scopes), or use --target do-fake for a dry run without an account"
            ),
        )),
    }
}

pub(crate) fn run(
    rt: &Runtime,
    scenario: &Arc<Scenario>,
    opts: &RunOptions,
    args: &Arguments,
    reporter: Arc<dyn Reporter>,
    interrupt: &Interrupt,
    mut summary: RunSummary,
) -> RunSummary {
    let no_engines = match &opts.target {
        Target::DoFake { no_engines, .. } | Target::DigitalOcean { no_engines } => *no_engines,
        Target::Local => unreachable!("local runs do not come here"),
    };
    let is_fake = matches!(opts.target, Target::DoFake { .. });
    // On a real droplet cloud-init installs and starts the engine after the droplet is
    // active: minutes, not the seconds a local node takes.
    let scenario = &if !is_fake && !no_engines && scenario.timeouts.engines_ready < REAL_ENGINES_READY_FLOOR {
        let mut s = (**scenario).clone();
        s.timeouts.engines_ready = REAL_ENGINES_READY_FLOOR;
        Arc::new(s)
    } else {
        scenario.clone()
    };
    if opts.keep {
        summary.exit_code = exit::INVALID_INPUT;
        summary.error = Some(format!(
            "--keep is not available on target {} yet\nhint: use --keep with --target local",
            opts.target.name()
        ));
        return summary;
    }
    // Engines need the host engine: it runs the containers behind fake droplets and
    // holds the test images every node gets.
    let host: Option<Docker> = if no_engines {
        None
    } else {
        let host = rt.block_on(async {
            let host = host_engine()?;
            ping_host_engine(&host).await?;
            if is_fake {
                local::require_node_images(&host, scenario).await?;
            }
            anyhow::Ok(host)
        });
        match host {
            Ok(h) => Some(h),
            Err(e) => {
                summary.exit_code = exit::INFRASTRUCTURE;
                summary.error = Some(format!("{e:#}"));
                return summary;
            }
        }
    };
    // The fake lives as long as the run; the client sees only a base URL and a token.
    let mut fake: Option<FakeDigitalOcean> = None;
    let mut backer: Option<Backer> = None;
    let client = match &opts.target {
        Target::DoFake {
            boot_latency, faults, ..
        } => {
            let f = rt.block_on(FakeDigitalOcean::start(
                FakeConfig {
                    boot_latency: *boot_latency,
                    faults: faults.clone().or_else(|| scenario.faults.clone()).unwrap_or_default(),
                    backed: host.is_some(),
                    ..Default::default()
                },
                None,
            ));
            if let Some(host) = &host {
                let _guard = rt.enter();
                backer = Some(Backer::spawn(host.clone(), f.control(), f.events()));
            }
            let c = DoClient::new(&f.base_url(), SecretString::from(f.token().to_string()));
            fake = Some(f);
            c
        }
        _ => match client_from_env() {
            Ok(c) => Ok(c),
            Err((code, message)) => {
                summary.exit_code = code;
                summary.error = Some(message);
                return summary;
            }
        },
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            summary.exit_code = exit::INFRASTRUCTURE;
            summary.error = Some(e.to_string());
            return summary;
        }
    };
    let mut settings = DoSettings::from_env();
    // The droplet wait gives up inside the phase bound, so its error (which names the
    // droplets not ready and their status) is the one reported.
    settings.boot_limit = scenario.timeouts.provision.mul_f64(0.9);
    if is_fake {
        settings.poll_every = std::time::Duration::from_secs(1);
    }
    reporter.event(&Event::RunStarted {
        run_id: summary.run_id.clone(),
        scenario: scenario.name.clone(),
        target: opts.target.name().into(),
        nodes: scenario.nodes.len(),
    });
    let run_id = summary.run_id.clone();
    let created = Arc::new(Mutex::new(DoResources::default()));
    let mut cluster: Option<Arc<Cluster>> = None;

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let pki = Arc::new(Pki::new(&run_id).map_err(|e| (exit::INFRASTRUCTURE, format!("{e:#}")))?);
        let nodes = provision_phase(
            rt,
            &client,
            scenario,
            &settings,
            &pki,
            &created,
            backer.as_ref(),
            &reporter,
            interrupt,
            &mut summary,
        )?;
        inject_panic(opts, Phase::Provision);
        match &host {
            Some(host) => engines_cluster_checks(
                rt,
                host,
                scenario,
                opts,
                args,
                &reporter,
                interrupt,
                &pki,
                nodes,
                Verify::NodeName,
                // Droplets of the fake are node containers on the host engine.
                is_fake.then(|| crate::conformance::NodeControl {
                    host: host.clone(),
                    run_id: run_id.clone(),
                }),
                &mut cluster,
                &mut summary,
            ),
            None => {
                ignored_checks(scenario, args, &reporter, &mut summary, &nodes);
                Ok(exit::OK)
            }
        }
    }));
    record_outcome(result, &mut summary, &reporter);
    if let (Some(dir), Some(host)) = (&opts.artifacts, &host)
        && matches!(summary.exit_code, exit::CHECK_FAILED | exit::INFRASTRUCTURE)
    {
        let path = rt.block_on(crate::artifacts::collect(
            host,
            scenario,
            &summary,
            cluster.as_deref(),
            dir,
        ));
        summary.artifacts = Some(path);
    }
    drop(cluster);

    // Teardown, always: droplets by tag (verified), firewall, key; then what backed the
    // fake's droplets, by run label.
    let started = Instant::now();
    reporter.event(&Event::PhaseStarted { phase: Phase::Teardown });
    let recorded = created.lock().unwrap().clone();
    let mut errors = rt.block_on(do_target::teardown(
        &client,
        &run_id,
        &recorded,
        scenario.timeouts.teardown,
    ));
    let mut backing_removed = 0;
    if let Some(host) = &host {
        let handles = match backer {
            Some(b) => rt.block_on(b.shutdown()),
            None => Vec::new(),
        };
        if is_fake {
            let (removed, local_errors) = rt.block_on(local::teardown(host, &run_id, handles));
            backing_removed = removed.len();
            errors.extend(local_errors);
        }
    }
    if let Some(f) = &fake {
        // The fake can say what is really left: the strongest leak check there is.
        let (droplets, keys, firewalls) = (f.live_droplets().len(), f.key_count(), f.firewall_count());
        if droplets + keys + firewalls > 0 {
            errors.push(format!(
                "left on the fake: {droplets} droplet(s), {keys} key(s), {firewalls} firewall(s)"
            ));
        }
    }
    let elapsed = started.elapsed();
    summary.timings.record(Phase::Teardown, elapsed);
    reporter.event(&Event::PhaseFinished {
        phase: Phase::Teardown,
        elapsed,
        ok: errors.is_empty(),
        detail: if host.is_some() && is_fake {
            format!("droplets, firewall and SSH key removed by run tag; {backing_removed} backing resource(s) removed")
        } else {
            "droplets, firewall and SSH key removed by run tag".into()
        },
    });
    if !errors.is_empty() {
        for e in &errors {
            reporter.event(&Event::Note {
                text: format!("  teardown: {e}"),
            });
        }
        summary.leftovers = errors;
        summary.exit_code = exit::worst(summary.exit_code, exit::INFRASTRUCTURE);
    }
    if interrupt.stop.is_cancelled() {
        summary.exit_code = exit::INTERRUPTED;
    }
    let client_stats = client.stats();
    summary.digitalocean_requests = Some(serde_json::json!({
        "client": client_stats,
        "fake": fake.as_ref().map(|f| f.stats()),
    }));
    reporter.event(&Event::Note {
        text: format!(
            "  DigitalOcean API: {} request(s), {} retried, {} rate-limited",
            client_stats.requests, client_stats.retries, client_stats.rate_limited
        ),
    });
    summary
}

/// Phase: provision. Tags, key, firewall and droplets through the API, until every
/// droplet is active (on the fake with engines: until its engine container exists).
#[allow(clippy::too_many_arguments)]
fn provision_phase(
    rt: &Runtime,
    client: &DoClient,
    scenario: &Arc<Scenario>,
    settings: &DoSettings,
    pki: &Arc<Pki>,
    created: &Arc<Mutex<DoResources>>,
    backer: Option<&Backer>,
    reporter: &Arc<dyn Reporter>,
    interrupt: &Interrupt,
    summary: &mut RunSummary,
) -> Result<Vec<local::ProvisionedNode>, PhaseFailure> {
    let started = start_phase(reporter, Phase::Provision);
    let stop = CancellationToken::new();
    let mut task = rt.spawn({
        let (client, scenario, created, settings, run_id, stop, pki) = (
            client.clone(),
            scenario.clone(),
            created.clone(),
            settings.clone(),
            summary.run_id.clone(),
            stop.clone(),
            pki.clone(),
        );
        async move { do_target::provision(&client, &scenario, &run_id, &settings, &pki, &created, &stop).await }
    });
    let limit = scenario.timeouts.provision;
    let backing_failed = async {
        match backer {
            Some(b) => b.failed().await,
            None => std::future::pending().await,
        }
    };
    let outcome = rt.block_on(async {
        let ended = tokio::select! {
            r = &mut task => return (Some(r), None),
            _ = tokio::time::sleep(limit) => PhaseError::Timeout(limit),
            _ = interrupt.stop.cancelled() => PhaseError::Interrupted,
            f = backing_failed => PhaseError::Failed(anyhow::anyhow!("{f}\nhint: `swarm-e2e node-image ls` shows the node images the fake's droplets run on")),
        };
        // Let requests in flight land (a create answered late is still ours).
        stop.cancel();
        tokio::select! {
            r = &mut task => (Some(r), Some(ended)),
            _ = tokio::time::sleep(PROVISION_GRACE) => (None, Some(ended)),
            _ = interrupt.hurry.cancelled() => (None, Some(ended)),
        }
    });
    let result = match outcome {
        (_, Some(ended)) => Err(ended),
        (Some(Ok(Ok(nodes))), None) => Ok(nodes),
        (Some(Ok(Err(e))), None) => Err(PhaseError::Failed(e)),
        (_, None) => Err(PhaseError::Failed(anyhow::anyhow!("provisioning panicked"))),
    };
    // The classic topology's key-value store is a droplet too, but no engine.
    let store = if scenario.topology == swarm_e2e_model::Topology::Classic {
        " + the key-value store"
    } else {
        ""
    };
    finish_phase(reporter, summary, Phase::Provision, started, result, |n| match backer {
        Some(b) => format!(
            "{} droplet(s){store} active, {} backed by containers",
            n.len(),
            b.backed()
        ),
        None => format!("{} droplet(s){store} active", n.len()),
    })
}

/// `--no-engines`: the checks are reported ignored, with the reason, never passed.
fn ignored_checks(
    scenario: &Scenario,
    args: &Arguments,
    reporter: &Arc<dyn Reporter>,
    summary: &mut RunSummary,
    nodes: &[local::ProvisionedNode],
) {
    summary.nodes = nodes
        .iter()
        .map(|n| crate::run::NodeRecord {
            name: n.name.clone(),
            role: scenario
                .node(&n.name)
                .map(|d| d.role.as_str())
                .unwrap_or("worker")
                .into(),
            address: n.address.to_string(),
            engine_version: "not started (--no-engines)".into(),
        })
        .collect();
    let started = start_phase(reporter, Phase::Checks);
    let reason = "--no-engines: API-only dry run, no engine behind the droplets";
    let trials: Vec<Trial> = scenario
        .checks
        .iter()
        .map(|c| {
            Trial::ignorable_test(format!("{}::{}", scenario.name, c.name), move || {
                Ok(Completion::ignored_with(reason))
            })
            .with_kind(c.kind.kind_name())
        })
        .collect();
    let conclusion = libtest_mimic::run(args, trials);
    summary.checks = scenario
        .checks
        .iter()
        .map(|c| CheckRecord {
            name: c.name.clone(),
            kind: c.kind.kind_name().into(),
            outcome: "ignored".into(),
            message: Some(reason.into()),
            duration: std::time::Duration::ZERO,
        })
        .collect();
    let elapsed = started.elapsed();
    summary.timings.record(Phase::Checks, elapsed);
    reporter.event(&Event::PhaseFinished {
        phase: Phase::Checks,
        elapsed,
        ok: true,
        detail: format!("{} ignored ({reason})", conclusion.num_ignored),
    });
}
