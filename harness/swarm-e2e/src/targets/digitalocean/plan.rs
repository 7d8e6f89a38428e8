//! `plan`: what a run would create on DigitalOcean and what it would cost, from the
//! scenario alone (no request, no token).

use std::time::Duration;

use swarm_e2e_model::{PhaseTimeouts, Scenario, Topology};

use super::settings::DoSettings;
use crate::marks::{PROJECT_TAG, run_resource_name, run_tag};
use crate::targets::classic::KV_STORE_NODE;

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
