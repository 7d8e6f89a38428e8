//! The DigitalOcean targets: `digitalocean` (the real API) and `do-fake` (the
//! in-process fake, its droplets backed by node containers, see [`fake_backer`]). Both
//! share one implementation: provisioning and teardown go through the API
//! ([`provision`]), the droplets boot from the rendered `user_data` ([`cloud_init`]);
//! `--no-engines` is the API-only dry run, where the checks are reported ignored.

pub mod cloud_init;
pub mod droplet_logs;
pub mod fake_backer;
pub mod plan;
pub mod provision;
pub mod settings;
pub mod sweep;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use swarm_e2e_digitalocean::client::DoClient;
use swarm_e2e_digitalocean::fake::{FakeConfig, FakeDigitalOcean};
use swarm_e2e_model::{PhaseTimeouts, Scenario, Topology};
use tokio::runtime::Runtime;

use super::node_containers::{ContainerNodeControl, host_kernel, node_container_exited};
use super::{KernelFacts, NodeControl, ProvisionContext, ProvisionedNode, Target, TargetChoice, TeardownReport};
use crate::engine::{host_engine, ping_host_engine};
use crate::exit::Failure;
use crate::marks::{node_container_name, run_dir};
use crate::report::{NodeRecord, RunSummary};
use fake_backer::Backer;
use provision::DoResources;
use settings::DoSettings;

/// Least `engines ready` bound on real droplets (cloud-init installs the engine).
pub const REAL_ENGINES_READY_FLOOR: Duration = Duration::from_secs(600);

/// The environment variable the real target reads its token from (as doctl does).
pub const TOKEN_VAR: &str = "DIGITALOCEAN_ACCESS_TOKEN";

/// The scopes a custom-scoped token needs for runs, `doctor` and `sweep`.
pub use swarm_e2e_digitalocean::scopes::RUN_SCOPES;

/// Why the checks of a `--no-engines` run are ignored.
const NO_ENGINES: &str = "--no-engines: API-only dry run, no engine behind the droplets";

/// A client for the real API from the environment: the token from [`TOKEN_VAR`], the
/// base URL from `DIGITALOCEAN_API_URL` (default: the real API).
pub fn client_from_env() -> Result<DoClient, Failure> {
    match std::env::var(TOKEN_VAR) {
        Ok(token) if !token.trim().is_empty() => {
            let base = std::env::var("DIGITALOCEAN_API_URL")
                .unwrap_or_else(|_| swarm_e2e_digitalocean::client::DEFAULT_BASE_URL.into());
            DoClient::new(&base, SecretString::from(token)).map_err(Failure::infrastructure)
        }
        _ => Err(
            Failure::invalid_input("--target digitalocean needs an API token").with_hint(format!(
                "export {TOKEN_VAR}=dop_v1_... (a token with droplet, tag, ssh_key and firewall scopes), or use \
             --target do-fake for a dry run without an account"
            )),
        ),
    }
}

/// Droplets through the DigitalOcean API (real, or the fake this target runs).
pub struct DoTarget {
    name: &'static str,
    client: DoClient,
    settings: DoSettings,
    /// The fake lives as long as the run; the client sees only its base URL and token.
    fake: Option<FakeDigitalOcean>,
    /// Gives the fake's droplets engines (node containers); it owns what it creates.
    backer: tokio::sync::Mutex<Option<Backer>>,
    backed: Arc<std::sync::atomic::AtomicUsize>,
    backer_failed: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// The host engine: it runs the containers behind fake droplets and holds the test
    /// images every node gets. `None` on an API-only dry run.
    host: Option<Docker>,
    /// What the run created, recorded as it happens, for teardown.
    created: Arc<Mutex<DoResources>>,
    /// The classic topology's key-value store is a droplet too, but no engine.
    kv_store: bool,
}

impl DoTarget {
    pub fn new(choice: &TargetChoice, rt: &Runtime, scenario: &Scenario) -> Result<DoTarget, Failure> {
        let (no_engines, fake, droplets) = match choice {
            TargetChoice::DoFake {
                no_engines,
                boot_latency,
                faults,
                droplets,
            } => (*no_engines, Some((*boot_latency, faults.clone())), droplets),
            TargetChoice::DigitalOcean { no_engines, droplets } => (*no_engines, None, droplets),
            _ => unreachable!("DoTarget is chosen for DigitalOcean targets only"),
        };
        let host = if no_engines { None } else { Some(host_engine()?) };
        let mut settings = DoSettings::resolve(droplets, scenario);
        // The droplet wait gives up inside the phase bound, so its error (which names the
        // droplets not ready and their status) is the one reported.
        settings.boot_limit = scenario.timeouts.provision.mul_f64(0.9);
        let (client, fake, backer) = match fake {
            Some((boot_latency, faults)) => {
                settings.poll_every = Duration::from_secs(1);
                let config = FakeConfig {
                    boot_latency,
                    faults: faults.or_else(|| scenario.faults.clone()).unwrap_or_default(),
                    backed: host.is_some(),
                    ..Default::default()
                }
                .with_profile();
                // A lost create's droplets are looked for as long as this fake can hide
                // them (three times its list lag), not the real API's 30 s.
                let list_lag_bound = (config.list_lag * 3).max(Duration::from_secs(1));
                let f = rt.block_on(FakeDigitalOcean::start(config, None));
                let backer = host.as_ref().map(|host| {
                    let _guard = rt.enter();
                    Backer::spawn(host.clone(), f.control(), f.events())
                });
                let client = DoClient::new(&f.base_url(), SecretString::from(f.token().to_string()))
                    .map_err(Failure::infrastructure)?
                    .with_list_lag_bound(list_lag_bound);
                (client, Some(f), backer)
            }
            None => (client_from_env()?, None, None),
        };
        Ok(DoTarget {
            name: if fake.is_some() { "do-fake" } else { "digitalocean" },
            client,
            settings,
            backed: backer.as_ref().map(Backer::backed_counter).unwrap_or_default(),
            backer_failed: backer.as_ref().map(Backer::failure),
            backer: tokio::sync::Mutex::new(backer),
            fake,
            host,
            created: Arc::new(Mutex::new(DoResources::default())),
            kv_store: scenario.topology == Topology::Classic,
        })
    }

    fn is_fake(&self) -> bool {
        self.fake.is_some()
    }

    /// A log file of a droplet, read through its engine ([`droplet_logs`]). Where that
    /// engine never answered or the read fails, the fake's droplet is read from the host
    /// side instead (its node container), and the artefact's first line says so; a real
    /// droplet's file is out of reach then.
    async fn droplet_log(
        &self,
        run_id: &str,
        node: &str,
        engine: Option<&Docker>,
        path: &str,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(self.host.is_some(), "{NO_ENGINES}");
        let through_engine = match engine {
            Some(engine) => match droplet_logs::read_droplet_log(engine, run_id, path).await {
                Ok(text) => return Ok(text),
                Err(e) => format!("reading it through {node}'s engine failed: {e:#}"),
            },
            None => format!("{node}'s engine never answered"),
        };
        let (Some(host), true) = (&self.host, self.is_fake()) else {
            anyhow::bail!(
                "{path} of droplet {node} cannot be read: {through_engine}\nhint: a droplet's logs are read \
                 through its engine; where it never started, the provision error has the boot script's status"
            );
        };
        let container = node_container_name(run_id, node);
        let (code, out) = crate::engine::exec(host, &container, &["cat", path]).await?;
        anyhow::ensure!(code == 0, "{} ({through_engine})", out.trim());
        Ok(format!(
            "[{through_engine}: read from the droplet's node container instead]\n{out}"
        ))
    }
}

/// The phase bounds a DigitalOcean target applies to a scenario's: on a real droplet
/// cloud-init installs and starts the engine after the droplet is active, which takes
/// minutes, not the seconds a local node takes.
pub fn applied_timeouts(mut declared: PhaseTimeouts, real: bool, engines: bool) -> PhaseTimeouts {
    if real && engines {
        declared.engines_ready = declared.engines_ready.max(REAL_ENGINES_READY_FLOOR);
    }
    declared
}

/// The failure of a token that lacks scopes: which, and the whole set to grant.
pub fn missing_scopes_failure(report: &swarm_e2e_digitalocean::scopes::ScopeReport) -> Failure {
    let unjudged = if report.unjudged.is_empty() {
        String::new()
    } else {
        format!(" ({} could not be checked without them)", report.unjudged.join(", "))
    };
    Failure::infrastructure(format!(
        "the DigitalOcean token lacks scope(s) {}{unjudged}; nothing was created",
        report.missing.join(", ")
    ))
    .with_hint(format!(
        "give the token full access, or custom scopes {} (Control Panel → API → Tokens)",
        RUN_SCOPES.join(", ")
    ))
}

impl Target for DoTarget {
    fn name(&self) -> &'static str {
        self.name
    }

    fn preflight<'a>(&'a self, scenario: &'a Scenario, keep: bool) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            if keep && self.is_fake() {
                // The in-process fake ends with the run: nothing could list or remove
                // what it kept.
                return Err(Failure::invalid_input(
                    "--keep needs an API that outlives the run; the do-fake target's ends with it",
                )
                .with_hint(
                    "serve the fake on its own: `swarm-e2e fake-do serve --backed`, then run with \
                     --target digitalocean --keep and DIGITALOCEAN_API_URL and DIGITALOCEAN_ACCESS_TOKEN as it prints",
                ));
            }
            // Decided from the scenario alone, before any request.
            settings::refuse_uninstallable(scenario, &self.settings)?;
            if self.shares_host() {
                // The fake's droplets are node containers on this host.
                crate::hostlimits::preflight(scenario)?;
            }
            // A token without a scope the run needs would fail mid-run, with droplets up
            // (or, lacking a delete scope, left behind): say so before creating anything.
            let scopes = self
                .client
                .probe_scopes(&self.settings.image)
                .await
                .map_err(|e| Failure::infrastructure(format!("checking the token's scopes: {e}")))?;
            if !scopes.missing.is_empty() {
                return Err(missing_scopes_failure(&scopes));
            }
            let mut droplets: Vec<&str> = scenario.nodes.iter().map(|n| n.name.as_str()).collect();
            if self.kv_store {
                droplets.push(swarm_e2e_model::KV_STORE_NODE);
            }
            settings::check_settings(&self.client, &self.settings, &droplets).await?;
            if let Some(host) = &self.host {
                async {
                    ping_host_engine(host).await?;
                    if self.is_fake() {
                        fake_backer::require_droplet_images(host, scenario).await?;
                    }
                    anyhow::Ok(())
                }
                .await?;
            }
            Ok(())
        })
    }

    fn timeouts(&self, declared: PhaseTimeouts) -> PhaseTimeouts {
        applied_timeouts(declared, !self.is_fake(), self.host.is_some())
    }

    fn honours_faults(&self) -> bool {
        self.is_fake()
    }

    fn shares_host(&self) -> bool {
        self.is_fake() && self.host.is_some()
    }

    fn provision(self: Arc<Self>, ctx: ProvisionContext) -> BoxFuture<'static, anyhow::Result<Vec<ProvisionedNode>>> {
        Box::pin(async move {
            if ctx.keep && self.host.is_some() {
                ctx.pki.write_client_dir(&run_dir(&ctx.run_id).join("certs"))?;
            }
            provision::provision(&self.client, &self.settings, &self.created, &ctx).await
        })
    }

    fn provision_failed(&self) -> BoxFuture<'_, anyhow::Error> {
        Box::pin(async move {
            let Some(mut rx) = self.backer_failed.clone() else {
                return std::future::pending().await;
            };
            let failure = rx
                .wait_for(Option::is_some)
                .await
                .map(|f| f.clone().unwrap_or_default());
            match failure {
                // A failure that knows what to do next says so itself (a boot script's).
                Ok(f) if f.contains("\nhint: ") => anyhow::anyhow!("{f}"),
                Ok(f) => anyhow::anyhow!(
                    "{f}\nhint: `swarm-e2e node-image ls` shows the node images the fake's droplets run on"
                ),
                // The backer is gone: it can fail no more.
                Err(_) => std::future::pending().await,
            }
        })
    }

    fn provisioned(&self, nodes: &[ProvisionedNode]) -> String {
        let store = if self.kv_store { " + the key-value store" } else { "" };
        if self.backer_failed.is_some() {
            format!(
                "{} droplet(s){store} active, {} backed by containers",
                nodes.len(),
                self.backed.load(std::sync::atomic::Ordering::Relaxed)
            )
        } else {
            format!("{} droplet(s){store} active", nodes.len())
        }
    }

    fn node_exited<'a>(&'a self, run_id: &'a str, nodes: &'a [String]) -> BoxFuture<'a, anyhow::Error> {
        match (&self.host, self.is_fake()) {
            // The fake's droplets are node containers: one that exits is a droplet gone.
            (Some(host), true) => Box::pin(node_container_exited(host, run_id, nodes)),
            _ => Box::pin(std::future::pending()),
        }
    }

    fn without_engines(&self) -> Option<&'static str> {
        self.host.is_none().then_some(NO_ENGINES)
    }

    fn image_source(&self) -> Option<&Docker> {
        self.host.as_ref()
    }

    fn node_control(&self, run_id: &str) -> Option<Arc<dyn NodeControl>> {
        // The fake's droplets are node containers on the host engine; real droplets
        // cannot be reached that way.
        match (&self.host, self.is_fake()) {
            (Some(host), true) => Some(Arc::new(ContainerNodeControl {
                host: host.clone(),
                run_id: run_id.to_string(),
            })),
            _ => None,
        }
    }

    fn kernel(&self) -> KernelFacts {
        if self.is_fake() {
            host_kernel()
        } else {
            // DigitalOcean's Ubuntu kernels have IPVS and ESP.
            KernelFacts { ipvs: true, esp: true }
        }
    }

    fn node_log<'a>(
        &'a self,
        run_id: &'a str,
        node: &'a str,
        engine: Option<&'a Docker>,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(self.droplet_log(run_id, node, engine, cloud_init::ENGINE_LOG))
    }

    fn boot_log<'a>(
        &'a self,
        run_id: &'a str,
        node: &'a str,
        engine: Option<&'a Docker>,
    ) -> Option<BoxFuture<'a, anyhow::Result<String>>> {
        self.host
            .as_ref()
            .map(|_| Box::pin(self.droplet_log(run_id, node, engine, cloud_init::BOOT_LOG)) as BoxFuture<'a, _>)
    }

    fn keep(&self, run_id: &str, nodes: &[NodeRecord]) -> String {
        let flag = " --target digitalocean";
        let mut text = if self.host.is_some() {
            super::keep_lines(run_id, nodes, flag)
        } else {
            format!(
                "swarm-e2e: kept run {run_id} (API-only: its droplets run no engine)\nRemove it with: swarm-e2e down {run_id}{flag}"
            )
        };
        // The run's SSH key reaches the droplets as root (port 22 from the admin
        // addresses); written only for a kept run, beside its client certificates.
        let key = self.created.lock().unwrap().ssh_private_key.clone();
        if let Some(key) = key {
            let path = run_dir(run_id).join("id_ed25519");
            match crate::pki::write_file(&path, key.expose_secret(), 0o600) {
                Ok(()) => text.push_str(&format!(
                    "\nLog in to a droplet: ssh -i {} root@ADDRESS",
                    path.display()
                )),
                Err(e) => text.push_str(&format!("\n(the run's SSH key was not written: {e:#})")),
            }
        }
        text.push_str("\nIts droplets are billed until it is removed.");
        text
    }

    fn teardown<'a>(&'a self, run_id: &'a str, limit: Duration) -> BoxFuture<'a, TeardownReport> {
        Box::pin(async move {
            // Droplets by tag (verified), firewall, key; then what backed the fake's
            // droplets, by run label.
            let recorded = self.created.lock().unwrap().clone();
            let mut errors = provision::teardown(&self.client, run_id, &recorded, limit).await;
            let mut detail = "droplets, firewall and SSH key removed by run tag".to_string();
            if let (Some(host), true) = (&self.host, self.is_fake()) {
                let handles = match self.backer.lock().await.take() {
                    Some(b) => b.shutdown().await,
                    None => Vec::new(),
                };
                match tokio::time::timeout(limit, super::node_containers::resources::teardown(host, run_id, handles)).await {
                    Ok((removed, local_errors)) => {
                        detail.push_str(&format!("; {} backing resource(s) removed", removed.len()));
                        errors.extend(local_errors);
                    }
                    Err(_) => errors.push(format!(
                        "removing the containers behind the droplets timed out after {}s\nhint: run `swarm-e2e sweep --yes`",
                        limit.as_secs()
                    )),
                }
            }
            if let Some(f) = &self.fake {
                // The fake can say what is really left: the strongest leak check there is.
                let (droplets, keys, firewalls) = (f.live_droplets().len(), f.key_count(), f.firewall_count());
                if droplets + keys + firewalls > 0 {
                    errors.push(format!(
                        "left on the fake: {droplets} droplet(s), {keys} key(s), {firewalls} firewall(s)"
                    ));
                }
            }
            TeardownReport { detail, errors }
        })
    }

    fn finish(&self, summary: &mut RunSummary) -> Option<String> {
        let client_stats = self.client.stats();
        summary.digitalocean_requests = Some(serde_json::json!({
            "client": client_stats,
            "fake": self.fake.as_ref().map(|f| f.stats()),
        }));
        Some(format!(
            "  DigitalOcean API: {} request(s), {} retried, {} rate-limited",
            client_stats.requests, client_stats.retries, client_stats.rate_limited
        ))
    }
}
