//! `doctor`: is a target usable, before anything is created?

use clap::Args;
use tokio::runtime::Runtime;

use crate::exit::{self, Failure};

pub const DOCTOR_HELP: &str = "Examples:
  swarm-e2e doctor                          # host engine, node images, busybox, kernel
  swarm-e2e doctor --nodes 60               # ... and whether this host holds 60 nodes
  DIGITALOCEAN_ACCESS_TOKEN=dop_v1_... swarm-e2e doctor --target digitalocean
  swarm-e2e doctor --format json | jq '.findings[] | select(.status != \"ok\")'

--target digitalocean checks the token (GET /v2/account), that the account is active,
that the droplet limit leaves room, and lists leftovers of earlier runs. Exit code 0 when
the target is usable, 2 when the token is missing, 3 when something else is wrong.";

#[derive(Args)]
pub struct DoctorArgs {
    #[arg(long, default_value = "local", value_parser = ["local", "digitalocean"])]
    target: String,
    /// Nodes a run will need: checked against the droplet limit, or (local) against this
    /// host's limits (neighbour table, inotify instances, memory, open files, process IDs, disk).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// `human` (a line per finding) or `json` (one document; `swarm-e2e schema doctor`).
    #[arg(long, value_enum, default_value_t = super::listing::Format::Human)]
    format: super::listing::Format,
}

pub fn main(rt: &Runtime, a: DoctorArgs) -> Result<i32, Failure> {
    rt.block_on(async {
        let findings = if a.target == "digitalocean" {
            let client = crate::targets::digitalocean::client_from_env()?;
            crate::doctor::digitalocean(&client, a.nodes).await
        } else {
            crate::doctor::local(a.nodes).await
        };
        let (text, code) = crate::doctor::render(&findings, exit::INFRASTRUCTURE);
        match a.format {
            super::listing::Format::Human => {
                use std::io::Write as _;
                let _ = write!(std::io::stdout().lock(), "{text}");
            }
            super::listing::Format::Json => {
                super::listing::print_json(&super::listing::doctor(&a.target, a.nodes, &findings))
            }
        }
        Ok(code)
    })
}
