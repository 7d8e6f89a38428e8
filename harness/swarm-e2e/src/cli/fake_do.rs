//! `fake-do serve`: the fake DigitalOcean API standalone, for any client.

use std::time::Duration;

use clap::Subcommand;
use swarm_e2e_digitalocean::fake::{FakeConfig, FakeDigitalOcean, Faults};
use tokio::runtime::Runtime;

use crate::engine::{host_engine, ping_host_engine};
use crate::exit::{self, Failure};
use crate::targets::digitalocean::fake_backer::Backer;
use crate::targets::node_containers::resources::teardown;

#[derive(Subcommand)]
pub enum FakeDoCommand {
    /// Serve the fake DigitalOcean API until interrupted; prints its base URL and token.
    #[command(after_help = "Examples:
  swarm-e2e fake-do serve --port 8080
  curl -H \"Authorization: Bearer dop_v1_fake\" http://127.0.0.1:8080/v2/account
  doctl --api-url http://127.0.0.1:8080 -t dop_v1_fake compute droplet list
  swarm-e2e fake-do serve --scopes account:read,droplet:read   # a read-only custom token
  swarm-e2e fake-do serve --profile digitalocean --time-scale 0.1   # real-like timings, 10x faster
  swarm-e2e fake-do serve --backed --listen 0.0.0.0 --port 8080   # droplets with real engines
  DIGITALOCEAN_API_URL=http://127.0.0.1:8080 DIGITALOCEAN_ACCESS_TOKEN=dop_v1_fake \\
    swarm-e2e run --target digitalocean --keep scenarios/swarm-demo.toml   # a kept cluster

Point any client at it: pydo `endpoint=`, python-digitalocean `DIGITALOCEAN_END_POINT`
(with /v2/), terraform `api_endpoint`, godo `SetBaseURL`.")]
    Serve {
        /// Port on the listen address (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Address to listen on. Loopback by default; node containers need the bridge.
        #[arg(long, default_value = "127.0.0.1")]
        listen: std::net::IpAddr,
        /// The bearer token the fake accepts.
        #[arg(long, default_value = "dop_v1_fake")]
        token: String,
        /// How long new droplets stay `new`.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        boot_latency: Duration,
        /// Faults to inject, as TOML (the keys of a scenario's `[faults]` table), e.g.
        /// 'burst_429 = 3' or 'lose_create_responses = 1'.
        #[arg(long)]
        faults: Option<String>,
        /// The token holds only these scopes (comma-separated, e.g.
        /// `account:read,droplet:read`), as a custom-scoped token does: other requests
        /// get DigitalOcean's 403. Default: full access.
        #[arg(long, value_delimiter = ',', value_name = "SCOPE,...")]
        scopes: Option<Vec<String>>,
        /// DigitalOcean-like timings (`digitalocean`: boots of 46 s, 5 s list lag, 10 s
        /// delete lag, firewalls `waiting` for 5 s); overrides --boot-latency.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(swarm_e2e_model::FAKE_PROFILES))]
        profile: Option<String>,
        /// Multiplies the profile's times (0 < F <= 1): 0.1 boots in 4.6 s.
        #[arg(long, value_name = "F")]
        time_scale: Option<f64>,
        /// Give every droplet a real engine, as `--target do-fake` does: a node
        /// container on this machine's engine runs the droplet's own user_data. What
        /// backs droplets still up is removed when the fake stops. Needs the node images
        /// (`swarm-e2e node-image build`).
        #[arg(long)]
        backed: bool,
    },
}

pub fn main(rt: &Runtime, command: FakeDoCommand) -> Result<i32, Failure> {
    let FakeDoCommand::Serve {
        port,
        listen,
        token,
        boot_latency,
        faults,
        scopes,
        profile,
        time_scale,
        backed,
    } = command;
    let mut faults: Faults = faults
        .as_deref()
        .map(toml::from_str)
        .transpose()
        .map_err(|e| Failure::invalid_input(format!("--faults: {e}")))?
        .unwrap_or_default();
    if let Some(scopes) = scopes {
        faults.scopes = Some(scopes.into_iter().map(|s| s.trim().to_string()).collect());
    }
    faults.profile = profile.or(faults.profile);
    faults.time_scale = time_scale.or(faults.time_scale);
    if let Some((message, hint)) = faults.timing_problems().into_iter().next() {
        return Err(Failure::invalid_input(message).with_hint(hint));
    }
    let listener = std::net::TcpListener::bind((listen, port)).map_err(|e| {
        Failure::infrastructure(format!("cannot listen on {listen}:{port}: {e}"))
            .with_hint("pick another --port, or 0 for a free one")
    })?;
    rt.block_on(async {
        let host = match backed {
            true => {
                let host = host_engine()?;
                ping_host_engine(&host).await?;
                Some(host)
            }
            false => None,
        };
        let config = FakeConfig {
            token,
            boot_latency,
            faults,
            backed,
            ..Default::default()
        }
        .with_profile();
        let fake = FakeDigitalOcean::start(config, Some(listener)).await;
        let backer = host
            .as_ref()
            .map(|host| Backer::spawn(host.clone(), fake.control(), fake.events()));
        // A reader that takes only the URL line and closes the pipe must not kill the
        // fake (println! panics on EPIPE), so write errors are ignored here.
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "fake DigitalOcean API: {}\ntoken: {}",
                fake.base_url(),
                fake.token()
            );
            let _ = out.flush();
        }
        eprintln!("serving until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        if let (Some(host), Some(backer)) = (&host, backer) {
            let runs = backer.runs().await;
            let mut handles = backer.shutdown().await;
            let mut removed = 0;
            for run in &runs {
                let (gone, errors) = teardown(host, run, std::mem::take(&mut handles)).await;
                removed += gone.len();
                for e in errors {
                    eprintln!("swarm-e2e: {e}");
                }
            }
            eprintln!("removed {removed} resource(s) behind {} run(s)' droplets", runs.len());
        }
        let stats = fake.stats();
        eprintln!(
            "served {} request(s), peak {}/min, {} rate-limited",
            stats.total, stats.peak_per_minute, stats.rate_limited
        );
        Ok(exit::OK)
    })
}
