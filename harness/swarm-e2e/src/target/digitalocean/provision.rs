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
use swarm_e2e_model::{Scenario, Topology};
use tokio_util::sync::CancellationToken;

use super::cloud_init::{kv_store_user_data, user_data};
use crate::engine::ENGINE_TLS_PORT;
use crate::marks::{PROJECT_TAG, run_resource_name, run_tag};
use crate::pki::Pki;
use crate::target::local::nodes::{KV_STORE_NODE, KV_STORE_PORT, cluster_store_config};
use crate::target::{Identity, ProvisionedNode};

/// Where droplets go and what they run. Defaults are what most tooling uses; each can be
/// overridden by environment (`DIGITALOCEAN_REGION`, `DIGITALOCEAN_SIZE`,
/// `DIGITALOCEAN_IMAGE`) or flags.
#[derive(Debug, Clone)]
pub struct DoSettings {
    pub region: String,
    pub size: String,
    pub image: String,
    /// Addresses allowed to reach SSH and the engines' TLS port (the harness's egress).
    pub admin_cidrs: Vec<String>,
    pub boot_limit: Duration,
    pub poll_every: Duration,
}

impl DoSettings {
    pub fn from_env() -> DoSettings {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        DoSettings {
            region: var("DIGITALOCEAN_REGION", "nyc3"),
            size: var("DIGITALOCEAN_SIZE", "s-1vcpu-1gb"),
            image: var("DIGITALOCEAN_IMAGE", "ubuntu-24-04-x64"),
            admin_cidrs: vec!["0.0.0.0/0".into(), "::/0".into()],
            boot_limit: Duration::from_secs(300),
            poll_every: Duration::from_secs(3),
        }
    }
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
/// is active with a public IPv4. `stop` ends it between steps; what was created is
/// recorded in `created` as it happens, so teardown sees it even after an error.
pub async fn provision(
    client: &DoClient,
    scenario: &Scenario,
    run_id: &str,
    settings: &DoSettings,
    pki: &Pki,
    created: &std::sync::Mutex<DoResources>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<ProvisionedNode>> {
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

    let template = |user_data: String| DropletTemplate {
        region: settings.region.clone(),
        size: settings.size.clone(),
        image: settings.image.clone(),
        tags: vec![PROJECT_TAG.into(), tag.clone()],
        ssh_keys: vec![registered.id],
        user_data: Some(user_data),
    };
    // The classic topology: the key-value store droplet first, since every engine's
    // configuration names its address.
    let mut cluster_store = Vec::new();
    if classic {
        let kv = [KV_STORE_NODE.to_string()];
        client
            .create_droplets(&kv, &template(kv_store_user_data(scenario)), &tag)
            .await?;
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
    let template = template(user_data(scenario, pki, &cluster_store)?);
    let names: Vec<String> = scenario.nodes.iter().map(|n| n.name.clone()).collect();
    client.create_droplets(&names, &template, &tag).await?;
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
    /// The list price, when the size is in the price table.
    pub cost: Option<PlannedCost>,
    /// About how many API requests the run sends.
    pub expected_requests: usize,
    /// The most a healthy run may send: 2N + 15, plus one scope probe per scope a run
    /// needs (13, sent at once before anything is created); the suite holds runs to it.
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

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PlannedCost {
    pub size: String,
    pub droplets: usize,
    pub usd_per_droplet_hour: f64,
    /// All droplets together, per hour (DigitalOcean bills by the second, at least a
    /// minute, up to the monthly cap).
    pub usd_per_hour: f64,
}

pub fn plan(scenario: &Scenario, settings: &DoSettings, run_id: &str) -> ScenarioPlan {
    let classic = scenario.topology == Topology::Classic;
    let droplet = |name: &str, engine: &str, role: &str| PlannedDroplet {
        name: name.into(),
        region: settings.region.clone(),
        size: settings.size.clone(),
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
    let cost = swarm_e2e_digitalocean::SIZE_PRICES
        .iter()
        .find(|s| s.0 == settings.size)
        .map(|p| PlannedCost {
            size: p.0.to_string(),
            droplets: n,
            usd_per_droplet_hour: p.5,
            usd_per_hour: p.5 * n as f64,
        });
    // account, droplet count, 2 tags, key, firewall, ceil(N/10) creates, ~8 polls with
    // doubling intervals, delete by tag, ~2 verifying lists, firewall and key deletes.
    // The classic topology's store droplet adds a create and its own wait.
    let probes = swarm_e2e_digitalocean::scopes::RUN_SCOPES.len();
    let expected_requests = probes + 6 + n.div_ceil(10) + 8 + 1 + 2 + 2 + if classic { 1 + 4 } else { 0 };
    ScenarioPlan {
        scenario: scenario.name.clone(),
        file: scenario.source.clone(),
        droplets,
        tags: vec![PROJECT_TAG.to_string(), run_tag(run_id)],
        ssh_key_and_firewall: run_resource_name(run_id),
        cost,
        expected_requests,
        request_budget: request_budget(n),
    }
}

/// The requests a healthy run of `droplets` droplets may send (see
/// [`ScenarioPlan::request_budget`]).
pub fn request_budget(droplets: usize) -> usize {
    2 * droplets + 15 + swarm_e2e_digitalocean::scopes::RUN_SCOPES.len()
}

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
        Some(c) => out.push_str(&format!(
            "estimated cost: ${:.4}/hour for {} droplet(s) of {} at ${:.5}/hour list price (check GET /v2/sizes)\n",
            c.usd_per_hour, c.droplets, c.size, c.usd_per_droplet_hour
        )),
        None => out.push_str(&format!(
            "estimated cost: unknown for size {} (not in the price table)\n",
            p.droplets.first().map(|d| d.size.as_str()).unwrap_or("?")
        )),
    }
    out.push_str(&format!(
        "expected API requests: about {} (budget 2N + 15 + {} scope probes = {}); droplets are created {} per request\n",
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
