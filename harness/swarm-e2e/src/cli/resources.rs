//! `ls`, `down`, `env` and `sweep`: what runs left, found by their marks alone.

use std::time::Duration;

use clap::Args;
use tokio::runtime::Runtime;

use super::listing::{self, Format};
use super::{host, say};
use crate::engine::ENGINE_TLS_PORT;
use crate::exit::{self, Failure};
use crate::marks::{now_unix, run_dir, run_resource_name, run_tag};
use crate::targets::digitalocean::{client_from_env, sweep as do_sweep};
use crate::targets::node_containers::node_address;
use crate::targets::node_containers::resources::{LocalResource, find_resources, remove_resources, teardown};
use swarm_e2e_digitalocean::client::DoClient;

pub const SWEEP_HELP: &str = "Examples:
  swarm-e2e sweep                       # dry run: show what would be removed
  swarm-e2e sweep --older-than 1h --yes # remove leftovers older than an hour
  swarm-e2e sweep --target digitalocean --older-than 2h --yes
  swarm-e2e sweep --format json | jq '.resources[].name'

Only resources carrying the project's marks are ever touched: locally the swarm-e2e.run
label (or a host path named swarm-e2e-<run-id>); on DigitalOcean droplets tagged
swarm-e2e and swarm-e2e-run-<id>, and SSH keys and firewalls named swarm-e2e-<id>.";

#[derive(Args)]
pub struct SweepArgs {
    /// Where to look: this machine's engine, or the DigitalOcean account of
    /// DIGITALOCEAN_ACCESS_TOKEN.
    #[arg(long, default_value = "local", value_parser = ["local", "digitalocean"])]
    target: String,
    /// Only resources older than this (e.g. 30m, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: Option<Duration>,
    /// Also sweep kept runs (they are skipped by default).
    #[arg(long)]
    include_kept: bool,
    /// Remove; without it, only show what would be removed.
    #[arg(long)]
    yes: bool,
    /// `human` (columns and a summary line) or `json` (one document; `swarm-e2e schema
    /// sweep`).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

const LS_DIGITALOCEAN_HINT: &str = "`swarm-e2e ls --target digitalocean` lists the runs with resources there";

/// Where `ls`, `down` and `env` look.
#[derive(Args)]
pub struct Place {
    /// `local`: this machine's engine; `digitalocean`: the account of
    /// DIGITALOCEAN_ACCESS_TOKEN (runs kept with `run --target digitalocean --keep`).
    #[arg(long, default_value = "local", value_parser = ["local", "digitalocean"])]
    target: String,
}

impl Place {
    fn cloud(&self) -> bool {
        self.target == "digitalocean"
    }
}

pub fn down(rt: &Runtime, run_id: &str, place: &Place) -> Result<i32, Failure> {
    if place.cloud() {
        let client = client_from_env()?;
        return rt.block_on(down_digitalocean(&client, run_id));
    }
    rt.block_on(async {
        let host = host().await?;
        let (removed, errors) = teardown(&host, run_id, Vec::new()).await;
        if removed.is_empty() {
            // An id nobody has is a wrong argument, not a broken machine.
            return Err(
                Failure::invalid_input(format!("nothing labelled swarm-e2e.run={run_id} was found"))
                    .with_hint("`swarm-e2e ls` lists runs with resources"),
            );
        }
        for r in &removed {
            say(&format!("removed {} {}", r.kind.as_str(), r.name));
        }
        if !errors.is_empty() {
            return Err(Failure::infrastructure(format!(
                "some resources could not be removed:\n{}",
                errors.join("\n")
            )));
        }
        Ok(exit::OK)
    })
}

/// Removes a kept run's droplets (by run tag, verified), firewall and SSH key, then its
/// local directory (client certificates, SSH key).
async fn down_digitalocean(client: &DoClient, run_id: &str) -> Result<i32, Failure> {
    let found: Vec<_> = do_sweep::find(client)
        .await?
        .into_iter()
        .filter(|r| r.run_id == run_id)
        .collect();
    if found.is_empty() {
        return Err(Failure::invalid_input(format!(
            "nothing of run {run_id} was found on DigitalOcean (droplets tagged {}, a firewall or SSH key named {})",
            run_tag(run_id),
            run_resource_name(run_id)
        ))
        .with_hint(LS_DIGITALOCEAN_HINT));
    }
    let errors = do_sweep::remove(client, &found, Duration::from_secs(300)).await;
    for r in &found {
        say(&format!("removed {} {}", r.kind.as_str(), r.name));
    }
    let dir = run_dir(run_id);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        say(&format!("could not remove {}: {e}", dir.display()));
    }
    let again = format!(
        "run `swarm-e2e down --target digitalocean {run_id}` again; deletes on DigitalOcean are eventually consistent"
    );
    removal_result(errors, Some(&again))
}

pub fn env(rt: &Runtime, run_id: &str, node: &str, place: &Place) -> Result<i32, Failure> {
    let client = if place.cloud() { Some(client_from_env()?) } else { None };
    rt.block_on(async {
        let address = match &client {
            Some(client) => droplet_address(client, run_id, node).await?,
            None => node_address(&host().await?, run_id, node).await?,
        };
        let certs = run_dir(run_id).join("certs");
        if !certs.join("key.pem").is_file() {
            return Err(Failure::infrastructure(format!(
                "run {run_id} has no client certificates at {}",
                certs.display()
            ))
            .with_hint("only runs started with `--keep` can be reached"));
        }
        say(&format!(
            "export DOCKER_HOST=tcp://{address}:{ENGINE_TLS_PORT} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}",
            certs.display()
        ));
        Ok(exit::OK)
    })
}

/// The public address of a kept run's droplet `node`.
async fn droplet_address(client: &DoClient, run_id: &str, node: &str) -> Result<std::net::IpAddr, Failure> {
    let droplets = client
        .droplets_by_tag(&run_tag(run_id))
        .await
        .map_err(Failure::infrastructure)?;
    let Some(droplet) = droplets.iter().find(|d| d.name == node) else {
        let names: Vec<&str> = droplets.iter().map(|d| d.name.as_str()).collect();
        return Err(Failure::invalid_input(format!(
            "run {run_id} has no droplet {node} on DigitalOcean{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" (it has {})", names.join(", "))
            }
        ))
        .with_hint(LS_DIGITALOCEAN_HINT));
    };
    droplet.public_ipv4().map(std::net::IpAddr::V4).ok_or_else(|| {
        Failure::infrastructure(format!("droplet {node} of run {run_id} has no public IPv4 address yet"))
            .with_hint("wait until it is active, then ask again")
    })
}

pub fn ls(rt: &Runtime, format: Format, place: &Place) -> Result<i32, Failure> {
    if place.cloud() {
        let client = client_from_env()?;
        return rt.block_on(async {
            let found = do_sweep::find(&client).await?;
            match format {
                Format::Human if found.is_empty() => say("no swarm-e2e resources on DigitalOcean"),
                Format::Human => print_cloud_resources(&found),
                Format::Json => listing::print_json(&listing::cloud_runs_listing(&found)),
            }
            Ok(exit::OK)
        });
    }
    rt.block_on(async {
        let host = host().await?;
        let found = find_resources(&host, None).await?;
        match format {
            Format::Human => print_runs(&found),
            Format::Json => listing::print_json(&listing::runs_listing(&found)),
        }
        Ok(exit::OK)
    })
}

pub fn sweep(rt: &Runtime, a: SweepArgs) -> Result<i32, Failure> {
    if a.target == "digitalocean" {
        let client = client_from_env()?;
        return rt.block_on(sweep_digitalocean(&client, &a));
    }
    rt.block_on(async {
        let host = host().await?;
        let now = now_unix();
        let min_age = a.older_than.map(|d| d.as_secs()).unwrap_or(0);
        let found: Vec<_> = find_resources(&host, None)
            .await?
            .into_iter()
            .filter(|r| a.include_kept || !r.kept)
            .filter(|r| r.created.is_none_or(|c| now.saturating_sub(c) >= min_age))
            .collect();
        let json = a.format == Format::Json;
        if found.is_empty() && !json {
            say("nothing to sweep");
            return Ok(exit::OK);
        }
        if !json {
            print_runs(&found);
        }
        if !a.yes {
            if json {
                listing::print_json(&listing::sweep_local(&found, true, Vec::new()));
            } else {
                say(&format!(
                    "dry run: nothing removed (add --yes to remove these {} resource(s))",
                    found.len()
                ));
            }
            return Ok(exit::OK);
        }
        let errors = remove_resources(&host, &found).await;
        if json {
            listing::print_json(&listing::sweep_local(&found, false, errors.clone()));
        } else {
            say(&format!(
                "removed {} resource(s)",
                found.len() - errors.len().min(found.len())
            ));
        }
        removal_result(errors, None)
    })
}

/// Exit 0, or 3 with what could not be removed.
fn removal_result(errors: Vec<String>, hint: Option<&str>) -> Result<i32, Failure> {
    if errors.is_empty() {
        return Ok(exit::OK);
    }
    let failure = Failure::infrastructure(format!("some resources could not be removed:\n{}", errors.join("\n")));
    Err(match hint {
        Some(h) => failure.with_hint(h),
        None => failure,
    })
}

async fn sweep_digitalocean(client: &swarm_e2e_digitalocean::client::DoClient, a: &SweepArgs) -> Result<i32, Failure> {
    let found: Vec<_> = do_sweep::find(client)
        .await?
        .into_iter()
        .filter(|r| a.include_kept || !r.kept)
        .collect();
    let found = do_sweep::older_than(found, a.older_than.unwrap_or_default());
    let json = a.format == Format::Json;
    if found.is_empty() && !json {
        say("nothing to sweep on DigitalOcean");
        return Ok(exit::OK);
    }
    if !json {
        print_cloud_resources(&found);
    }
    if !a.yes {
        if json {
            listing::print_json(&listing::sweep_digitalocean(&found, true, Vec::new()));
        } else {
            say(&format!(
                "dry run: nothing removed (add --yes to remove these {} resource(s))",
                found.len()
            ));
        }
        return Ok(exit::OK);
    }
    let errors = do_sweep::remove(client, &found, Duration::from_secs(300)).await;
    if json {
        listing::print_json(&listing::sweep_digitalocean(&found, false, errors.clone()));
    } else if errors.is_empty() {
        say(&format!("removed {} resource(s)", found.len()));
    }
    removal_result(
        errors,
        Some("run the sweep again; deletes on DigitalOcean are eventually consistent"),
    )
}

fn print_cloud_resources(found: &[do_sweep::CloudResource]) {
    say(&format!(
        "{:<10} {:<10} {:<9} {:<12} {:<5} name",
        "run", "age", "kind", "id", "kept"
    ));
    for r in found {
        let age = r
            .age
            .map(|a| humantime::format_duration(Duration::from_secs(a.as_secs())).to_string())
            .unwrap_or_else(|| "?".into());
        say(&format!(
            "{:<10} {:<10} {:<9} {:<12} {:<5} {}",
            r.run_id,
            age.split(' ').next().unwrap_or("?"),
            r.kind.as_str(),
            r.id,
            if r.kept { "yes" } else { "" },
            r.name
        ));
    }
}

fn print_runs(found: &[LocalResource]) {
    if found.is_empty() {
        say("no swarm-e2e resources on this machine");
        return;
    }
    let now = now_unix();
    say(&format!(
        "{:<10} {:<10} {:<11} {:<5} name",
        "run", "age", "kind", "kept"
    ));
    for r in found {
        let age = r
            .created
            .map(|c| humantime::format_duration(Duration::from_secs(now.saturating_sub(c))).to_string())
            .unwrap_or_else(|| "?".into());
        say(&format!(
            "{:<10} {:<10} {:<11} {:<5} {}",
            r.run_id,
            age.split(' ').next().unwrap_or("?"),
            r.kind.as_str(),
            if r.kept { "yes" } else { "" },
            r.name
        ));
    }
}
