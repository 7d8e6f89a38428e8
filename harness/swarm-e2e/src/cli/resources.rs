//! `ls`, `down`, `env` and `sweep`: what runs left, found by their marks alone through
//! the target's [`Leftovers`].

use std::time::Duration;

use clap::Args;
use tokio::runtime::Runtime;

use super::listing::{self, Format};
use super::say;
use crate::engine::ENGINE_TLS_PORT;
use crate::exit::{self, Failure};
use crate::marks::{now_unix, run_dir};
use crate::targets::{Leftover, LeftoverKind, Leftovers, leftovers};

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

/// Where `ls`, `down` and `env` look.
#[derive(Args)]
pub struct Place {
    /// `local`: this machine's engine; `digitalocean`: the account of
    /// DIGITALOCEAN_ACCESS_TOKEN (runs kept with `run --target digitalocean --keep`).
    #[arg(long, default_value = "local", value_parser = ["local", "digitalocean"])]
    target: String,
}

impl Place {
    /// What `down` and `env` add to name this place again (`--target digitalocean`).
    fn flag(&self) -> String {
        match self.target.as_str() {
            "local" => String::new(),
            other => format!(" --target {other}"),
        }
    }
}

pub fn down(rt: &Runtime, run_id: &str, place: &Place) -> Result<i32, Failure> {
    rt.block_on(async {
        let leftovers = leftovers(&place.target).await?;
        let (removed, errors) = leftovers.down(run_id).await?;
        for r in &removed {
            say(&format!("removed {} {}", r.kind.as_str(), r.name));
        }
        let again = format!("`swarm-e2e down {run_id}{}`", place.flag());
        removal_result(errors, leftovers.removal_hint(&again))
    })
}

pub fn env(rt: &Runtime, run_id: &str, node: &str, place: &Place) -> Result<i32, Failure> {
    rt.block_on(async {
        let address = leftovers(&place.target).await?.node_address(run_id, node).await?;
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

/// `swarm-e2e load RUN IMAGE…`: images copied from this machine's engine onto every
/// node of a kept run that lacks them, as a run does for a stack's `images`.
pub fn load(rt: &Runtime, run_id: &str, images: &[String], place: &Place) -> Result<i32, Failure> {
    rt.block_on(async {
        let leftovers = leftovers(&place.target).await?;
        let prefix = format!("{}{run_id}-", crate::marks::NAME_PREFIX);
        let mut nodes: Vec<String> = (leftovers.find().await?)
            .into_iter()
            .filter(|r| r.run_id == run_id)
            .filter_map(|r| match r.kind {
                LeftoverKind::Container => r.name.strip_prefix(&prefix).map(str::to_string),
                LeftoverKind::Droplet => Some(r.name),
                _ => None,
            })
            .filter(|n| n != swarm_e2e_model::KV_STORE_NODE)
            .collect();
        nodes.sort();
        if nodes.is_empty() {
            return Err(
                Failure::infrastructure(format!("no node of run {run_id} was found{}", place.flag()))
                    .with_hint("`swarm-e2e ls` lists the runs there are; only runs started with `--keep` stay up"),
            );
        }
        let client = kept_client(run_id)?;
        let mut engines = Vec::new();
        for node in &nodes {
            let address = leftovers.node_address(run_id, node).await?;
            let docker = crate::engine::tls_engine(
                std::net::SocketAddr::new(address, ENGINE_TLS_PORT),
                &client,
                crate::engine::ServerIdentity::Address,
            )
            .map_err(Failure::from)?;
            engines.push((node.as_str(), docker));
        }
        let host = crate::engine::host_engine()?;
        let pairs: Vec<(&str, &bollard::Docker)> = engines.iter().map(|(n, d)| (*n, d)).collect();
        for image in images {
            match crate::stacks::copy_to_nodes(&host, &pairs, image, true).await {
                Ok(Some(line)) => say(line.trim()),
                Ok(None) => say(&format!("{image} is already on every node ({})", nodes.join(", "))),
                Err(e) => {
                    return Err(Failure::infrastructure(e)
                        .with_hint("build or pull the image on this machine's engine first, then load it again"));
                }
            }
        }
        Ok(exit::OK)
    })
}

/// The client certificate a kept run left in its folder.
fn kept_client(run_id: &str) -> Result<crate::pki::CertBundle, Failure> {
    let certs = run_dir(run_id).join("certs");
    let read = |f: &str| std::fs::read_to_string(certs.join(f));
    match (read("ca.pem"), read("cert.pem"), read("key.pem")) {
        (Ok(ca_pem), Ok(cert_pem), Ok(key)) => Ok(crate::pki::CertBundle {
            ca_pem,
            cert_pem,
            key_pem: key.into(),
        }),
        _ => Err(Failure::infrastructure(format!(
            "run {run_id} has no client certificates at {}",
            certs.display()
        ))
        .with_hint("only runs started with `--keep` can be reached")),
    }
}

pub fn ls(rt: &Runtime, format: Format, place: &Place) -> Result<i32, Failure> {
    rt.block_on(async {
        let leftovers = leftovers(&place.target).await?;
        let found = leftovers.find().await?;
        match format {
            Format::Human => print_leftovers(leftovers.as_ref(), &found),
            Format::Json => listing::print_json(&listing::runs_listing(&found)),
        }
        Ok(exit::OK)
    })
}

pub fn sweep(rt: &Runtime, a: SweepArgs) -> Result<i32, Failure> {
    rt.block_on(async {
        let leftovers = leftovers(&a.target).await?;
        let now = now_unix();
        let found: Vec<Leftover> = (leftovers.find().await?)
            .into_iter()
            .filter(|r| a.include_kept || !r.kept)
            .filter(|r| r.older_than(now, a.older_than.unwrap_or_default()))
            .collect();
        let json = a.format == Format::Json;
        let document = |dry_run, errors| listing::sweep_document(leftovers.target(), &found, dry_run, errors);
        if found.is_empty() && !json {
            say(&format!("nothing to sweep on {}", leftovers.place()));
            return Ok(exit::OK);
        }
        if !json {
            print_leftovers(leftovers.as_ref(), &found);
        }
        if !a.yes {
            if json {
                listing::print_json(&document(true, Vec::new()));
            } else {
                say(&format!(
                    "dry run: nothing removed (add --yes to remove these {} resource(s))",
                    found.len()
                ));
            }
            return Ok(exit::OK);
        }
        let errors = leftovers.remove(&found).await;
        if json {
            listing::print_json(&document(false, errors.clone()));
        } else {
            say(&format!(
                "removed {} resource(s)",
                found.len() - errors.len().min(found.len())
            ));
        }
        removal_result(errors, leftovers.removal_hint("the sweep"))
    })
}

/// Exit 0, or 3 with what could not be removed.
fn removal_result(errors: Vec<String>, hint: Option<String>) -> Result<i32, Failure> {
    if errors.is_empty() {
        return Ok(exit::OK);
    }
    let failure = Failure::infrastructure(format!("some resources could not be removed:\n{}", errors.join("\n")));
    Err(match hint {
        Some(h) => failure.with_hint(h),
        None => failure,
    })
}

/// A table of leftovers: run, age, kind, the API's id where there is one, kept, name.
fn print_leftovers(leftovers: &dyn Leftovers, found: &[Leftover]) {
    if found.is_empty() {
        say(&format!("no swarm-e2e resources on {}", leftovers.place()));
        return;
    }
    let ids = found.iter().any(|r| r.id.is_some());
    let id_column = |id: &str| if ids { format!("{id:<12} ") } else { String::new() };
    let now = now_unix();
    say(&format!(
        "{:<10} {:<10} {:<11} {}{:<5} name",
        "run",
        "age",
        "kind",
        id_column("id"),
        "kept"
    ));
    for r in found {
        let age = r
            .created_unix
            .map(|c| humantime::format_duration(Duration::from_secs(now.saturating_sub(c))).to_string())
            .unwrap_or_else(|| "?".into());
        say(&format!(
            "{:<10} {:<10} {:<11} {}{:<5} {}",
            r.run_id,
            age.split(' ').next().unwrap_or("?"),
            r.kind.as_str(),
            id_column(r.id.as_deref().unwrap_or("")),
            if r.kept { "yes" } else { "" },
            r.name
        ));
    }
}
