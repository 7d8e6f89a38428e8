//! The droplet settings of a run: region, sizes and image from the command line (or its
//! environment variables), the scenario's `[digitalocean]` table and the defaults, in
//! that order; which engines an image can install; and the check of those settings
//! against the API before anything is created.

use std::time::Duration;
use swarm_e2e_digitalocean::client::DoClient;

use swarm_e2e_model::Scenario;

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
}
