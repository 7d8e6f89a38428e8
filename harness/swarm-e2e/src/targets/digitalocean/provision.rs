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
use swarm_e2e_model::Topology;

use super::cloud_init::{kv_store_user_data, user_data};
use super::settings::DoSettings;
use crate::engine::ENGINE_TLS_PORT;
use crate::marks::{KEPT_TAG, PROJECT_TAG, run_resource_name, run_tag};
use crate::targets::classic::{KV_STORE_NODE, KV_STORE_PORT, cluster_store_config};
use crate::targets::{Identity, ProvisionContext, ProvisionedNode};

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
            cli_host: format!("tcp://{address}:{ENGINE_TLS_PORT}"),
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
