//! Provisioning on DigitalOcean (the real API or the fake): the same code path for both.
//!
//! All state lives in tags and names (see [`crate::marks`]): droplets carry `swarm-e2e`
//! and `swarm-e2e-run-<run-id>` from their create request; the run's SSH key and
//! firewall are named `swarm-e2e-<run-id>`. Teardown and sweep find everything that way.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use swarm_e2e_digitalocean::client::{DoClient, DropletTemplate};
use swarm_e2e_model::{PhaseTimeouts, Scenario, Topology};

use super::cloud_init::{kv_store_user_data, user_data};
use crate::engine::ENGINE_TLS_PORT;
use crate::marks::{KEPT_TAG, PROJECT_TAG, run_resource_name, run_tag};
use crate::targets::local::nodes::{KV_STORE_NODE, KV_STORE_PORT, cluster_store_config};
use crate::targets::{Identity, ProvisionContext, ProvisionedNode};

/// The region, size and image droplets get when neither the command line (or its
/// environment variables) nor the scenario's `[digitalocean]` table says: what most
/// tooling uses (docker-machine, pydo's tests); the image also fits the engines (see
/// [`default_image`]).
pub const DEFAULT_REGION: &str = "nyc3";
pub const DEFAULT_SIZE: &str = "s-1vcpu-1gb";
pub const DEFAULT_IMAGE: &str = "ubuntu-24-04-x64";
/// The default image when an engine is older than Docker's packages for
/// [`DEFAULT_IMAGE`] (20.10 has no Ubuntu 24.04 packages).
pub const DEFAULT_IMAGE_FOR_OLD_ENGINES: &str = "ubuntu-22-04-x64";

/// The image droplets get when nothing names one: the newest distribution every engine
/// of the scenario installs on.
pub fn default_image(scenario: &Scenario) -> &'static str {
    let fits = |image| {
        scenario
            .nodes
            .iter()
            .all(|n| install_problem(&n.engine, image).is_none())
    };
    if fits(DEFAULT_IMAGE) || !fits(DEFAULT_IMAGE_FOR_OLD_ENGINES) {
        DEFAULT_IMAGE
    } else {
        DEFAULT_IMAGE_FOR_OLD_ENGINES
    }
}

/// Droplet settings from the command line: `--do-region`, `--do-size`, `--do-image`, or
/// their environment variables (`DIGITALOCEAN_REGION`, …). They win over the scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DropletOverrides {
    pub region: Option<String>,
    pub size: Option<String>,
    pub image: Option<String>,
}

impl DropletOverrides {
    /// The environment variables alone (commands without the flags: `doctor`).
    pub fn from_env() -> DropletOverrides {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        DropletOverrides {
            region: var("DIGITALOCEAN_REGION"),
            size: var("DIGITALOCEAN_SIZE"),
            image: var("DIGITALOCEAN_IMAGE"),
        }
    }
}

/// Where droplets go and what they run, resolved: the command line first, then the
/// scenario's `[digitalocean]` table, then the defaults above.
#[derive(Debug, Clone)]
pub struct DoSettings {
    pub region: String,
    /// The size of every droplet `sizes` does not name.
    pub size: String,
    pub image: String,
    /// Per-droplet sizes from the scenario (node name, or `kv-store`).
    pub sizes: std::collections::BTreeMap<String, String>,
    /// Run by each engine droplet's boot script before it installs the engine.
    pub boot_commands: Vec<String>,
    /// Addresses allowed to reach SSH and the engines' TLS port (the harness's egress).
    pub admin_cidrs: Vec<String>,
    pub boot_limit: Duration,
    pub poll_every: Duration,
}

impl DoSettings {
    pub fn resolve(overrides: &DropletOverrides, scenario: &Scenario) -> DoSettings {
        let table = &scenario.digitalocean;
        let pick = |flag: &Option<String>, table: &Option<String>, default: &str| {
            flag.clone()
                .or_else(|| table.clone())
                .unwrap_or_else(|| default.to_string())
        };
        DoSettings {
            region: pick(&overrides.region, &table.region, DEFAULT_REGION),
            size: pick(&overrides.size, &table.size, DEFAULT_SIZE),
            image: pick(&overrides.image, &table.image, default_image(scenario)),
            sizes: table.sizes.clone(),
            boot_commands: table.boot_commands.clone(),
            admin_cidrs: vec!["0.0.0.0/0".into(), "::/0".into()],
            boot_limit: Duration::from_secs(300),
            poll_every: Duration::from_secs(3),
        }
    }

    /// The size slug of droplet `name`.
    pub fn size_of(&self, name: &str) -> &str {
        self.sizes.get(name).unwrap_or(&self.size)
    }

    /// Every size slug the run's droplets use, each once.
    pub fn sizes_used<'a>(&'a self, droplets: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let mut used: Vec<&str> = droplets.into_iter().map(|d| self.size_of(d)).collect();
        used.sort();
        used.dedup();
        used
    }
}

/// The oldest engine release Docker's packages offer on a distribution image (what
/// `get.docker.com --version` can install there): Docker published no release older
/// than 26.0 for Ubuntu 24.04, none older than 20.10 for 22.04. Images not listed are
/// not judged.
const OLDEST_PACKAGED: &[(&str, &str, (u32, u32))] = &[
    ("ubuntu-24-04-x64", "Ubuntu 24.04", (26, 0)),
    ("ubuntu-22-04-x64", "Ubuntu 22.04", (20, 10)),
];

/// Why `engine` cannot be installed by a droplet booting `image`, if it cannot.
pub fn install_problem(engine: &str, image: &str) -> Option<String> {
    if engine.starts_with("http://") || engine.starts_with("https://") {
        return None;
    }
    if engine.starts_with('/') {
        return Some(format!(
            "engine `{engine}` is a path on this machine, which a droplet cannot read\n\
             hint: serve the archive and name its http(s) URL, or use --target local"
        ));
    }
    let parts: Vec<&str> = engine.split('.').collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    let Some(numbers) = numbers.filter(|n| (2..=3).contains(&n.len())) else {
        return Some(format!(
            "engine `{engine}` names a static-binaries image of this machine; a droplet installs Docker's \
             packages (MAJOR.MINOR or MAJOR.MINOR.PATCH) or a static archive by URL\n\
             hint: name the archive's http(s) URL the image was built from (`swarm-e2e node-image ls` shows it)"
        ));
    };
    let (major, minor) = (numbers[0], numbers[1]);
    let (_, distro, oldest) = OLDEST_PACKAGED.iter().find(|(slug, _, _)| *slug == image)?;
    ((major, minor) < *oldest).then(|| {
        let fits: Vec<&str> = OLDEST_PACKAGED
            .iter()
            .filter(|(_, _, o)| (major, minor) >= *o)
            .map(|(slug, _, _)| *slug)
            .collect();
        format!(
            "engine {engine} cannot be installed on image {image}: Docker's packages for {distro} start at {}.{}\n\
             hint: choose engine {}.{} or later, or an image that has {engine}{}",
            oldest.0,
            oldest.1,
            oldest.0,
            oldest.1,
            if fits.is_empty() {
                String::new()
            } else {
                format!(" ({})", fits.join(", "))
            }
        )
    })
}

/// Refuses a scenario whose engines its droplets cannot install (exit 2, before any
/// request).
pub fn refuse_uninstallable(scenario: &Scenario, settings: &DoSettings) -> Result<(), crate::exit::Failure> {
    let mut seen = std::collections::BTreeSet::new();
    for node in &scenario.nodes {
        if !seen.insert(node.engine.as_str()) {
            continue;
        }
        if let Some(problem) = install_problem(&node.engine, &settings.image) {
            let (message, hint) = problem.split_once("\nhint: ").unwrap_or((&problem, ""));
            return Err(crate::exit::Failure::invalid_input(format!(
                "scenario {} (node {}): {message}",
                scenario.name, node.name
            ))
            .with_hint(hint));
        }
    }
    Ok(())
}

/// Up to six of `candidates`, nearest to `word` first (edit distance).
fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let mut all: Vec<&str> = candidates.into_iter().collect();
    all.sort_by_key(|c| (strsim::levenshtein(word, c), *c));
    all.dedup();
    all.truncate(6);
    all.join(", ")
}

/// Checks the run's region, sizes and image against the API (regions, sizes and the
/// image by slug, at once) before anything is created: a slug that does not exist, is
/// closed to new droplets or is not offered in the region is invalid input (exit 2),
/// with the valid slugs nearest to it.
pub async fn check_settings(
    client: &DoClient,
    settings: &DoSettings,
    droplets: &[&str],
) -> Result<(), crate::exit::Failure> {
    use crate::exit::Failure;
    let api = |what: &str, e: swarm_e2e_digitalocean::client::DoError| {
        Failure::infrastructure(format!("checking the droplet settings ({what}): {e}"))
    };
    let (regions, sizes, image) = tokio::join!(client.regions(), client.sizes(), client.image(&settings.image));
    let (regions, sizes, image) = (
        regions.map_err(|e| api("GET /v2/regions", e))?,
        sizes.map_err(|e| api("GET /v2/sizes", e))?,
        image.map_err(|e| api("GET /v2/images", e))?,
    );
    let mut problems = Vec::new();
    let open: Vec<&str> = regions
        .iter()
        .filter(|r| r.available)
        .map(|r| r.slug.as_str())
        .collect();
    let region = regions.iter().find(|r| r.slug == settings.region);
    match region {
        None => problems.push(format!(
            "region `{}` does not exist (nearest open regions: {})",
            settings.region,
            nearest(&settings.region, open.iter().copied())
        )),
        Some(r) if !r.available => problems.push(format!(
            "region `{}` takes no new droplets now (open regions: {})",
            r.slug,
            nearest(&r.slug, open.iter().copied())
        )),
        Some(_) => {}
    }
    for size in settings.sizes_used(droplets.iter().copied()) {
        let offered_here = |s: &swarm_e2e_digitalocean::client::Size| {
            s.available
                && (s.regions.is_empty() || s.regions.contains(&settings.region))
                && region.is_none_or(|r| r.sizes.is_empty() || r.sizes.contains(&s.slug))
        };
        let here: Vec<&str> = sizes
            .iter()
            .filter(|s| offered_here(s))
            .map(|s| s.slug.as_str())
            .collect();
        let users: Vec<&str> = droplets
            .iter()
            .copied()
            .filter(|d| settings.size_of(d) == size)
            .collect();
        let whose = if users.len() == droplets.len() {
            String::new()
        } else {
            format!(" (for {})", users.join(", "))
        };
        match sizes.iter().find(|s| s.slug == size) {
            None => problems.push(format!(
                "size `{size}`{whose} does not exist (nearest sizes in {}: {})",
                settings.region,
                nearest(size, here.iter().copied())
            )),
            Some(s) if !offered_here(s) => problems.push(format!(
                "size `{size}`{whose} is not offered in region {} now (sizes there: {})",
                settings.region,
                nearest(size, here.iter().copied())
            )),
            Some(_) => {}
        }
    }
    match image {
        None => problems.push(format!(
            "image `{}` does not exist (images this harness installs engines on: ubuntu-24-04-x64, ubuntu-22-04-x64, debian-12-x64)",
            settings.image
        )),
        Some(i) if i.status != "available" => {
            problems.push(format!("image `{}` is {}, not available", settings.image, i.status))
        }
        Some(i) if !i.regions.is_empty() && !i.regions.contains(&settings.region) => {
            problems.push(format!(
                "image `{}` is not in region {} (it is in: {})",
                settings.image,
                settings.region,
                i.regions.join(", ")
            ))
        }
        Some(_) => {}
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Failure::invalid_input(format!(
        "the droplet settings do not work on this account:\n  {}\nnothing was created",
        problems.join("\n  ")
    ))
    .with_hint(
        "set them in the scenario's [digitalocean] table (region, size, sizes, image) or with \
         --do-region / --do-size / --do-image (DIGITALOCEAN_REGION, DIGITALOCEAN_SIZE, DIGITALOCEAN_IMAGE)",
    ))
}

/// The cloud firewall of a run: the engines' and swarm's ports only between the run's
/// droplets, SSH and the engine TLS port from the admin addresses, all egress.
pub fn firewall_body(run_id: &str, admin_cidrs: &[String]) -> Value {
    let tag = run_tag(run_id);
    let from_run = json!({"tags": [tag]});
    let admin = json!({"addresses": admin_cidrs});
    let everywhere = json!({"addresses": ["0.0.0.0/0", "::/0"]});
    json!({
        "name": run_resource_name(run_id),
        "tags": [tag],
        "inbound_rules": [
            {"protocol": "tcp", "ports": "22", "sources": admin},
            {"protocol": "tcp", "ports": "2376", "sources": {"tags": [tag], "addresses": admin_cidrs}},
            {"protocol": "tcp", "ports": "2377", "sources": from_run},
            {"protocol": "tcp", "ports": "2379", "sources": from_run},
            {"protocol": "tcp", "ports": "7946", "sources": from_run},
            {"protocol": "udp", "ports": "7946", "sources": from_run},
            {"protocol": "udp", "ports": "4789", "sources": from_run},
            {"protocol": "icmp", "sources": from_run}
        ],
        "outbound_rules": [
            {"protocol": "tcp", "ports": "0", "destinations": everywhere},
            {"protocol": "udp", "ports": "0", "destinations": everywhere},
            {"protocol": "icmp", "destinations": everywhere}
        ]
    })
}

/// What a run created on DigitalOcean, for teardown and `--keep`.
#[derive(Debug, Default, Clone)]
pub struct DoResources {
    pub ssh_key_id: Option<i64>,
    pub ssh_private_key: Option<secrecy::SecretString>,
    pub firewall_id: Option<String>,
}

/// Creates the run's tags, SSH key, firewall and droplets, and waits until every droplet
/// is active with a public IPv4. `ctx.stop` ends it between steps; what was created is
/// recorded in `created` as it happens, so teardown sees it even after an error. A kept
/// run's droplets carry the kept tag.
pub async fn provision(
    client: &DoClient,
    settings: &DoSettings,
    created: &std::sync::Mutex<DoResources>,
    ctx: &ProvisionContext,
) -> anyhow::Result<Vec<ProvisionedNode>> {
    let (scenario, run_id, pki, stop, keep) = (&*ctx.scenario, ctx.run_id.as_str(), &*ctx.pki, &ctx.stop, ctx.keep);
    let check_stop = || {
        if stop.is_cancelled() {
            bail!("provisioning stopped")
        } else {
            Ok(())
        }
    };
    let classic = scenario.topology == Topology::Classic;
    let n = scenario.nodes.len() as u64 + u64::from(classic);
    let account = client
        .account()
        .await
        .context("checking the account (GET /v2/account)")?;
    let existing = client.count_droplets().await?;
    if existing + n > u64::from(account.droplet_limit) {
        bail!(
            "the account may have {} droplets and has {existing}; this scenario needs {n} more\n\
             hint: remove droplets, or ask DigitalOcean to raise the droplet limit",
            account.droplet_limit
        );
    }
    check_stop()?;
    let tag = run_tag(run_id);
    client.create_tag(PROJECT_TAG).await?;
    client.create_tag(&tag).await?;
    let mut tags = vec![PROJECT_TAG.to_string(), tag.clone()];
    if keep {
        // Marked at creation, so a kept run is known by its droplets alone.
        client.create_tag(KEPT_TAG).await?;
        tags.push(KEPT_TAG.to_string());
    }

    let key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
        .map_err(|e| anyhow::anyhow!("generating the run's SSH key: {e}"))?;
    let public = key.public_key().to_openssh().map_err(|e| anyhow::anyhow!("{e}"))?;
    let private = key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the run's SSH key: {e}"))?;
    let registered = client.create_ssh_key(&run_resource_name(run_id), &public).await?;
    {
        let mut c = created.lock().unwrap();
        c.ssh_key_id = Some(registered.id);
        c.ssh_private_key = Some(secrecy::SecretString::from(private.to_string()));
    }
    check_stop()?;
    let firewall = client
        .create_firewall(&firewall_body(run_id, &settings.admin_cidrs))
        .await?;
    created.lock().unwrap().firewall_id = Some(firewall);
    check_stop()?;

    let template = |user_data: &str, size: &str| DropletTemplate {
        region: settings.region.clone(),
        size: size.to_string(),
        image: settings.image.clone(),
        tags: tags.clone(),
        ssh_keys: vec![registered.id],
        user_data: Some(user_data.to_string()),
    };
    // The classic topology: the key-value store droplet first, since every engine's
    // configuration names its address.
    let mut cluster_store = Vec::new();
    if classic {
        let kv = [KV_STORE_NODE.to_string()];
        let store = template(&kv_store_user_data(scenario), settings.size_of(KV_STORE_NODE));
        client.create_droplets(&kv, &store, &tag).await?;
        let active = tokio::select! {
            r = client.wait_active(&tag, &kv, settings.boot_limit, settings.poll_every) => r?,
            _ = stop.cancelled() => bail!("provisioning stopped"),
        };
        let address = active
            .iter()
            .find(|d| d.name == KV_STORE_NODE)
            .and_then(|d| d.public_ipv4())
            .context("the key-value store droplet is active without a public IPv4")?;
        cluster_store = cluster_store_config(&format!("etcd://{address}:{KV_STORE_PORT}"));
        check_stop()?;
    }
    let boot_script = user_data(scenario, pki, &cluster_store, &settings.boot_commands)?;
    let names: Vec<String> = scenario.nodes.iter().map(|n| n.name.clone()).collect();
    // One create request per size (and per 10 droplets): a request gives all its
    // droplets one size.
    for size in settings.sizes_used(names.iter().map(String::as_str)) {
        let sized: Vec<String> = names.iter().filter(|n| settings.size_of(n) == size).cloned().collect();
        client
            .create_droplets(&sized, &template(&boot_script, size), &tag)
            .await?;
        check_stop()?;
    }
    let droplets = tokio::select! {
        r = client.wait_active(&tag, &names, settings.boot_limit, settings.poll_every) => r?,
        _ = stop.cancelled() => bail!("provisioning stopped"),
    };
    let client_creds = Arc::new(pki.client.clone());
    let mut nodes = Vec::new();
    for name in &names {
        let d = droplets
            .iter()
            .find(|d| &d.name == name)
            .context("an active droplet vanished")?;
        let address = d.public_ipv4().context("an active droplet has no public IPv4")?;
        nodes.push(ProvisionedNode {
            name: name.clone(),
            address: IpAddr::V4(address),
            port: ENGINE_TLS_PORT,
            // Certificates were rendered into user_data before any address existed.
            identity: Identity::Name(name.clone()),
            client: client_creds.clone(),
        });
    }
    Ok(nodes)
}

/// Removes everything of a run: droplets by tag (verified by listing until none is
/// left), then the firewall and SSH key (by the ids recorded, and by name for anything
/// a lost answer hid). Returns the errors met; keeps going past them.
pub async fn teardown(client: &DoClient, run_id: &str, created: &DoResources, limit: Duration) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(e) = client.delete_by_tag_verified(&run_tag(run_id), limit).await {
        errors.push(format!("droplets: {e}"));
    }
    let name = run_resource_name(run_id);
    // Ids recorded at creation are enough; look up by name only when one is missing
    // (its create answer was lost, or the run stopped before it was recorded).
    let mut firewalls: Vec<String> = created.firewall_id.iter().cloned().collect();
    if firewalls.is_empty() {
        match client.firewalls().await {
            Ok(all) => firewalls.extend(
                all.iter()
                    .filter(|f| f["name"] == name.as_str())
                    .filter_map(|f| f["id"].as_str().map(str::to_string)),
            ),
            Err(e) => errors.push(format!("listing firewalls: {e}")),
        }
    }
    firewalls.sort();
    firewalls.dedup();
    for id in firewalls {
        if let Err(e) = client.delete_firewall(&id).await {
            errors.push(format!("firewall {id}: {e}"));
        }
    }
    let mut keys: Vec<i64> = created.ssh_key_id.into_iter().collect();
    if keys.is_empty() {
        match client.ssh_keys().await {
            Ok(all) => keys.extend(all.iter().filter(|k| k.name == name).map(|k| k.id)),
            Err(e) => errors.push(format!("listing SSH keys: {e}")),
        }
    }
    keys.sort();
    keys.dedup();
    for id in keys {
        if let Err(e) = client.delete_ssh_key(id).await {
            errors.push(format!("SSH key {id}: {e}"));
        }
    }
    errors
}

/// What a run would create on DigitalOcean, from the scenario alone: no request, no
/// token. `plan` prints it; `plan --format json` is this, serialised.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct ScenarioPlan {
    pub scenario: String,
    /// The scenario file.
    pub file: String,
    /// In creation order: the classic topology's key-value store first.
    pub droplets: Vec<PlannedDroplet>,
    /// Tags every droplet carries (the run's is `swarm-e2e-run-<run-id>`).
    pub tags: Vec<String>,
    /// The run's SSH key and cloud firewall (one name for both).
    pub ssh_key_and_firewall: String,
    /// The list price, when every size is in the price table.
    pub cost: Option<PlannedCost>,
    /// Sizes the price table does not know (then `cost` is absent).
    pub unpriced_sizes: Vec<String>,
    /// About how many API requests the run sends.
    pub expected_requests: usize,
    /// The most a healthy run may send: 2N + 15, plus one scope probe per scope a run
    /// needs (15) and the settings check's 3 (region, size, image), all sent at once
    /// before anything is created; the suite holds runs to it.
    pub request_budget: usize,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PlannedDroplet {
    pub name: String,
    pub region: String,
    pub size: String,
    pub image: String,
    /// The engine it runs, or `etcd` for the key-value store.
    pub engine: String,
    /// `node` (a scenario node) or `kv-store` (classic topology).
    pub role: String,
}

/// The run's list price. DigitalOcean bills by the second (at least a minute or $0.01 a
/// droplet); a run's length is known only afterwards, so this gives the rate, the least
/// a run can cost, and the most (every phase running to its bound).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PlannedCost {
    pub droplets: usize,
    /// All droplets together, per hour.
    pub usd_per_hour: f64,
    /// The least a run costs: every droplet billed its minimum.
    pub usd_minimum: f64,
    /// The most a run costs: every droplet living until every phase reached its bound.
    pub usd_at_most: f64,
    /// That bound, in minutes (provision + engines ready + cluster formed + checks +
    /// teardown).
    pub bound_minutes: u64,
    pub by_size: Vec<SizeCost>,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct SizeCost {
    pub size: String,
    pub droplets: usize,
    pub usd_per_droplet_hour: f64,
}

/// DigitalOcean bills a droplet by the second, at least a minute or $0.01, whichever is
/// more (the pricing page, 2026).
const MINIMUM_BILLED: Duration = Duration::from_secs(60);
const MINIMUM_CHARGE_USD: f64 = 0.01;

/// What a run would create and cost. `timeouts` are the run's phase bounds (as the
/// target applies them), which bound how long the droplets can live.
pub fn plan(scenario: &Scenario, settings: &DoSettings, timeouts: &PhaseTimeouts, run_id: &str) -> ScenarioPlan {
    let classic = scenario.topology == Topology::Classic;
    let droplet = |name: &str, engine: &str, role: &str| PlannedDroplet {
        name: name.into(),
        region: settings.region.clone(),
        size: settings.size_of(name).to_string(),
        image: settings.image.clone(),
        engine: engine.into(),
        role: role.into(),
    };
    let mut droplets = Vec::new();
    if classic {
        droplets.push(droplet(KV_STORE_NODE, "etcd", "kv-store"));
    }
    for node in &scenario.nodes {
        droplets.push(droplet(&node.name, &node.engine, "node"));
    }
    let n = droplets.len();
    let price = |size: &str| {
        swarm_e2e_digitalocean::SIZE_PRICES
            .iter()
            .find(|p| p.0 == size)
            .map(|p| p.5)
    };
    let mut by_size: Vec<SizeCost> = Vec::new();
    let mut unpriced = Vec::new();
    for size in settings.sizes_used(droplets.iter().map(|d| d.name.as_str())) {
        let count = droplets.iter().filter(|d| d.size == size).count();
        match price(size) {
            Some(hourly) => by_size.push(SizeCost {
                size: size.to_string(),
                droplets: count,
                usd_per_droplet_hour: hourly,
            }),
            None => unpriced.push(size.to_string()),
        }
    }
    // The longest a run keeps its droplets: every phase to its bound.
    let bound =
        timeouts.provision + timeouts.engines_ready + timeouts.cluster_formed + timeouts.checks + timeouts.teardown;
    let cost = unpriced.is_empty().then(|| {
        let per_hour: f64 = by_size.iter().map(|c| c.usd_per_droplet_hour * c.droplets as f64).sum();
        let charge = |hourly: f64, lived: Duration| {
            (hourly * lived.max(MINIMUM_BILLED).as_secs_f64() / 3600.0).max(MINIMUM_CHARGE_USD)
        };
        let whole = |lived: Duration| -> f64 {
            by_size
                .iter()
                .map(|c| charge(c.usd_per_droplet_hour, lived) * c.droplets as f64)
                .sum()
        };
        PlannedCost {
            droplets: n,
            usd_per_hour: per_hour,
            usd_minimum: whole(MINIMUM_BILLED),
            usd_at_most: whole(bound),
            bound_minutes: bound.as_secs().div_ceil(60),
            by_size: by_size.clone(),
        }
    });
    // regions, sizes and the image, account, droplet count, 2 tags, key, firewall, ceil(N/10) creates per size, ~8
    // polls with doubling intervals, delete by tag, ~2 verifying lists, firewall and key
    // deletes. The classic topology's store droplet adds a create and its own wait.
    let probes = swarm_e2e_digitalocean::scopes::RUN_SCOPES.len();
    let creates: usize = settings
        .sizes_used(scenario.nodes.iter().map(|n| n.name.as_str()))
        .iter()
        .map(|size| {
            scenario
                .nodes
                .iter()
                .filter(|d| settings.size_of(&d.name) == *size)
                .count()
                .div_ceil(10)
        })
        .sum();
    let expected_requests =
        probes + SETTINGS_CHECK_REQUESTS + 6 + creates + 8 + 1 + 2 + 2 + if classic { 1 + 4 } else { 0 };
    ScenarioPlan {
        scenario: scenario.name.clone(),
        file: scenario.source.clone(),
        droplets,
        tags: vec![PROJECT_TAG.to_string(), run_tag(run_id)],
        ssh_key_and_firewall: run_resource_name(run_id),
        cost,
        unpriced_sizes: unpriced,
        expected_requests,
        request_budget: request_budget(n),
    }
}

/// The requests a healthy run of `droplets` droplets may send (see
/// [`ScenarioPlan::request_budget`]).
pub fn request_budget(droplets: usize) -> usize {
    2 * droplets + 15 + swarm_e2e_digitalocean::scopes::RUN_SCOPES.len() + SETTINGS_CHECK_REQUESTS
}

/// The settings check's requests: regions, sizes and the image, at once.
const SETTINGS_CHECK_REQUESTS: usize = 3;

/// A plan for people: a table of droplets, what else is created, cost and requests.
pub fn render_plan(p: &ScenarioPlan) -> String {
    let mut out = format!(
        "plan for scenario {} on DigitalOcean (nothing is created)\n\n{:<24} {:<8} {:<14} {:<18} {}\n",
        p.scenario, "droplet", "region", "size", "image", "engine"
    );
    for d in &p.droplets {
        let engine = if d.role == "kv-store" {
            "etcd (key-value store, created first)"
        } else {
            &d.engine
        };
        out.push_str(&format!(
            "{:<24} {:<8} {:<14} {:<18} {}\n",
            d.name, d.region, d.size, d.image, engine
        ));
    }
    let tags: Vec<String> = p.tags.iter().map(|t| format!("`{t}`")).collect();
    out.push_str(&format!(
        "\nalso: tags {}, SSH key and firewall `{}` (2376/tcp mutual TLS, swarm ports between the run's droplets, 22/tcp)\n",
        tags.join(" and "),
        p.ssh_key_and_firewall
    ));
    match &p.cost {
        Some(c) => {
            let sizes: Vec<String> = c
                .by_size
                .iter()
                .map(|s| format!("{} × {} at ${:.5}/hour", s.droplets, s.size, s.usd_per_droplet_hour))
                .collect();
            out.push_str(&format!(
                "estimated cost: ${:.4}/hour for {} droplet(s) ({}, list prices: check GET /v2/sizes)\n\
                 a run costs at least ${:.2} (billed by the second, a minute or $0.01 a droplet at least) \
                 and at most ${:.2} (every phase to its bound: {} min)\n",
                c.usd_per_hour,
                c.droplets,
                sizes.join(", "),
                c.usd_minimum,
                c.usd_at_most,
                c.bound_minutes
            ));
        }
        None => out.push_str(&format!(
            "estimated cost: unknown for size(s) {} (not in the price table)\n",
            p.unpriced_sizes.join(", ")
        )),
    }
    out.push_str(&format!(
        "expected API requests: about {} (budget 2N + 15 + {} scope probes + {SETTINGS_CHECK_REQUESTS} settings checks = {}); droplets are created {} per request\n",
        p.expected_requests,
        swarm_e2e_digitalocean::scopes::RUN_SCOPES.len(),
        p.request_budget,
        p.droplets.len().min(10)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_a_droplet_cannot_install_are_refused_with_the_reason() {
        let refused = install_problem("20.10", "ubuntu-24-04-x64").unwrap();
        assert!(
            refused.contains("start at 26.0") && refused.contains("(ubuntu-22-04-x64)"),
            "{refused}"
        );
        assert_eq!(install_problem("26.1", "ubuntu-24-04-x64"), None);
        assert_eq!(install_problem("20.10", "ubuntu-22-04-x64"), None);
        assert_eq!(install_problem("20.10", "some-custom-image"), None);
        assert_eq!(
            install_problem("https://example.test/docker.tgz", "ubuntu-24-04-x64"),
            None
        );
        assert!(
            install_problem("/srv/docker.tgz", "ubuntu-22-04-x64")
                .unwrap()
                .contains("path on this machine")
        );
        assert!(
            install_problem("27.0.0-rc.1", "ubuntu-22-04-x64")
                .unwrap()
                .contains("static-binaries image")
        );
    }

    #[test]
    fn the_default_image_fits_the_engines() {
        let text = |engine: &str| {
            format!("name = \"x\"\nengine = \"{engine}\"\n[[nodes]]\nname = \"a\"\nrole = \"manager\"\n")
        };
        let parse = |engine: &str| swarm_e2e_model::parse_scenario("x.toml", &text(engine)).unwrap();
        let none = DropletOverrides::default();
        assert_eq!(DoSettings::resolve(&none, &parse("20.10")).image, "ubuntu-22-04-x64");
        assert_eq!(DoSettings::resolve(&none, &parse("28.5")).image, "ubuntu-24-04-x64");
        let given = DropletOverrides {
            image: Some("debian-12-x64".into()),
            ..Default::default()
        };
        assert_eq!(DoSettings::resolve(&given, &parse("20.10")).image, "debian-12-x64");
    }

    #[test]
    fn tags_and_names_obey_the_api_rules() {
        let tag = run_tag("ab12cd34");
        assert!(
            tag.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_'))
        );
        let fw = firewall_body("ab12cd34", &["203.0.113.7/32".into()]);
        assert_eq!(fw["tags"], json!([tag]));
        assert_eq!(fw["inbound_rules"].as_array().unwrap().len(), 8);
    }
}
