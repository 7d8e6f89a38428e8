//! `--format json` of the commands that list or report (`ls`, `node-image ls`, `sweep`,
//! `doctor`, `plan`): versioned documents whose JSON schemas are derived from these types
//! (schemars). `swarm-e2e schema NAME` prints one; the checked-in copies under
//! `harness/swarm-e2e/schemas/` are compared with the derived ones in the tests.

use schemars::JsonSchema;
use serde::Serialize;

use crate::doctor::{Finding, Status};
use crate::images::{self, NodeImageInfo};
use crate::marks::now_unix;
use crate::targets::digitalocean::plan::ScenarioPlan;
use crate::targets::{Leftover, LeftoverKind};

/// How a listing command prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Human,
    /// One JSON document (see `swarm-e2e schema`).
    Json,
}

/// The version of every listing document; changes on any incompatible change.
pub const LISTING_SCHEMA_VERSION: u32 = 1;

/// `swarm-e2e ls --format json`: the runs that still have resources on this machine.
#[derive(Serialize, JsonSchema)]
pub struct RunsListing {
    /// Always 1 for this shape.
    pub schema_version: u32,
    pub runs: Vec<ListedRun>,
}

#[derive(Serialize, JsonSchema)]
pub struct ListedRun {
    pub run_id: String,
    /// Left up on purpose (`run --keep`); otherwise leaked by a crash or a kill.
    pub kept: bool,
    /// Unix seconds of its oldest resource, when known.
    pub created_unix: Option<u64>,
    pub resources: Vec<ListedResource>,
}

#[derive(Serialize, JsonSchema)]
pub struct ListedResource {
    pub kind: ListedKind,
    pub name: String,
    pub created_unix: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ListedKind {
    Container,
    Network,
    Volume,
    CgroupDir,
    TempDir,
    Droplet,
    Firewall,
    SshKey,
}

impl From<LeftoverKind> for ListedKind {
    fn from(k: LeftoverKind) -> Self {
        match k {
            LeftoverKind::Container => ListedKind::Container,
            LeftoverKind::Network => ListedKind::Network,
            LeftoverKind::Volume => ListedKind::Volume,
            LeftoverKind::CgroupDir => ListedKind::CgroupDir,
            LeftoverKind::TempDir => ListedKind::TempDir,
            LeftoverKind::Droplet => ListedKind::Droplet,
            LeftoverKind::Firewall => ListedKind::Firewall,
            LeftoverKind::SshKey => ListedKind::SshKey,
        }
    }
}

/// `ls --format json` (on every target): resources grouped by run, in the order their
/// runs first appear.
pub fn runs_listing(found: &[Leftover]) -> RunsListing {
    let rows = found
        .iter()
        .map(|r| (r.run_id.clone(), r.kept, r.kind.into(), r.name.clone(), r.created_unix))
        .collect();
    group_runs(rows)
}

/// Rows of (run, kept, kind, name, created) grouped by run, in first-seen order.
fn group_runs(rows: Vec<(String, bool, ListedKind, String, Option<u64>)>) -> RunsListing {
    let mut runs: Vec<ListedRun> = Vec::new();
    for (run_id, kept, kind, name, created) in rows {
        let resource = ListedResource {
            kind,
            name,
            created_unix: created,
        };
        match runs.iter_mut().find(|run| run.run_id == run_id) {
            Some(run) => {
                run.kept |= kept;
                run.created_unix = match (run.created_unix, created) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                run.resources.push(resource);
            }
            None => runs.push(ListedRun {
                run_id,
                kept,
                created_unix: created,
                resources: vec![resource],
            }),
        }
    }
    RunsListing {
        schema_version: LISTING_SCHEMA_VERSION,
        runs,
    }
}

/// `swarm-e2e node-image ls --format json`: every node image this binary knows, built or
/// not, and the static-binaries images that are built.
#[derive(Serialize, JsonSchema)]
pub struct NodeImagesListing {
    /// Always 1 for this shape.
    pub schema_version: u32,
    /// `swarm.e2e.recipe` of current images: older ones are rebuilt.
    pub recipe: String,
    pub images: Vec<ListedNodeImage>,
}

#[derive(Serialize, JsonSchema)]
pub struct ListedNodeImage {
    pub tag: String,
    /// `built` or `missing`.
    pub state: String,
    /// `packaged` or `static`; for a missing one, what it would be.
    pub kind: String,
    /// The command that builds a missing image.
    pub build: Option<String>,
    pub id: Option<String>,
    pub engine_package: Option<String>,
    pub containerd_package: Option<String>,
    pub runc_package: Option<String>,
    /// The Debian suite (packaged), or where the binaries came from (static).
    pub suite: Option<String>,
    pub size_bytes: Option<i64>,
}

pub fn node_images_listing(built: &[NodeImageInfo]) -> NodeImagesListing {
    let mut out = Vec::new();
    for r in images::ENGINE_RELEASES {
        let tag = images::node_image_tag(r.engine);
        if !built.iter().any(|i| i.tag == tag) {
            out.push(ListedNodeImage {
                tag,
                state: "missing".into(),
                kind: "packaged".into(),
                build: Some(format!("swarm-e2e node-image build --engine {}", r.engine)),
                id: None,
                engine_package: None,
                containerd_package: None,
                runc_package: None,
                suite: Some(r.suite.to_string()),
                size_bytes: None,
            });
        }
    }
    out.extend(built.iter().map(|i| ListedNodeImage {
        tag: i.tag.clone(),
        state: "built".into(),
        kind: i.kind.clone(),
        build: None,
        id: Some(i.id.clone()),
        engine_package: Some(i.engine_package.clone()),
        containerd_package: Some(i.containerd_package.clone()),
        runc_package: Some(i.runc_package.clone()),
        suite: Some(i.suite.clone()),
        size_bytes: Some(i.size_bytes),
    }));
    NodeImagesListing {
        schema_version: LISTING_SCHEMA_VERSION,
        recipe: images::NODE_IMAGE_RECIPE.to_string(),
        images: out,
    }
}

/// `swarm-e2e sweep --format json`: what was found with the project's marks and, with
/// `--yes`, removed.
#[derive(Serialize, JsonSchema)]
pub struct SweepDocument {
    /// Always 1 for this shape.
    pub schema_version: u32,
    /// `local` or `digitalocean`.
    pub target: String,
    /// True without `--yes`: the resources are what would be removed; nothing was.
    pub dry_run: bool,
    pub resources: Vec<SweptResource>,
    /// What could not be removed (the command then exits 3); empty otherwise.
    pub errors: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct SweptResource {
    pub run_id: String,
    /// `container`, `network`, `volume`, `cgroup-dir`, `temp-dir` (local), `droplet`,
    /// `firewall`, `ssh-key` (DigitalOcean).
    pub kind: String,
    pub name: String,
    /// The API's id (DigitalOcean only).
    pub id: Option<String>,
    /// Seconds since it was created, when known.
    pub age_seconds: Option<u64>,
    /// Left up on purpose (`run --keep`; swept only with `--include-kept`).
    pub kept: bool,
}

/// `sweep --format json` of `target` (`local`, `digitalocean`).
pub fn sweep_document(target: &str, found: &[Leftover], dry_run: bool, errors: Vec<String>) -> SweepDocument {
    let now = now_unix();
    SweepDocument {
        schema_version: LISTING_SCHEMA_VERSION,
        target: target.into(),
        dry_run,
        resources: found
            .iter()
            .map(|r| SweptResource {
                run_id: r.run_id.clone(),
                kind: r.kind.as_str().replace(' ', "-"),
                name: r.name.clone(),
                id: r.id.clone(),
                age_seconds: r.created_unix.map(|c| now.saturating_sub(c)),
                kept: r.kept,
            })
            .collect(),
        errors,
    }
}

/// `swarm-e2e doctor --format json`: every finding, and whether the target is usable
/// (the exit code says the same: 0 usable, 3 not).
#[derive(Serialize, JsonSchema)]
pub struct DoctorDocument {
    /// Always 1 for this shape.
    pub schema_version: u32,
    /// `local` or `digitalocean`.
    pub target: String,
    /// The node count the findings were judged for (`--nodes`).
    pub nodes: u64,
    /// No finding failed.
    pub usable: bool,
    pub findings: Vec<DoctorFinding>,
}

#[derive(Serialize, JsonSchema)]
pub struct DoctorFinding {
    pub status: FindingStatus,
    pub what: String,
    pub detail: String,
    /// What to do, for warnings and failures.
    pub hint: Option<String>,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    Ok,
    /// Works, with a limitation worth knowing.
    Warn,
    Fail,
}

pub fn doctor(target: &str, nodes: u64, findings: &[Finding]) -> DoctorDocument {
    DoctorDocument {
        schema_version: LISTING_SCHEMA_VERSION,
        target: target.into(),
        nodes,
        usable: !findings.iter().any(|f| f.status == Status::Fail),
        findings: findings
            .iter()
            .map(|f| DoctorFinding {
                status: match f.status {
                    Status::Ok => FindingStatus::Ok,
                    Status::Warn => FindingStatus::Warn,
                    Status::Fail => FindingStatus::Fail,
                },
                what: f.what.clone(),
                detail: f.detail.clone(),
                hint: f.hint.clone(),
            })
            .collect(),
    }
}

/// `swarm-e2e plan --format json`: what each scenario's run would create on
/// DigitalOcean and cost.
#[derive(Serialize, JsonSchema)]
pub struct PlanDocument {
    /// Always 1 for this shape.
    pub schema_version: u32,
    pub plans: Vec<ScenarioPlan>,
}

pub fn plan(plans: Vec<ScenarioPlan>) -> PlanDocument {
    PlanDocument {
        schema_version: LISTING_SCHEMA_VERSION,
        plans,
    }
}

/// The documents by name, with their derived schemas.
pub fn schema(name: &str) -> Option<serde_json::Value> {
    let schema = match name {
        "ls" => schemars::schema_for!(RunsListing),
        "node-image-ls" => schemars::schema_for!(NodeImagesListing),
        "sweep" => schemars::schema_for!(SweepDocument),
        "doctor" => schemars::schema_for!(DoctorDocument),
        "plan" => schemars::schema_for!(PlanDocument),
        "run-report" => schemars::schema_for!(crate::report::json::JsonReport<'static>),
        "matrix-report" => schemars::schema_for!(crate::matrix::Comparison),
        _ => return None,
    };
    serde_json::to_value(schema).ok()
}

/// Every name `schema` knows.
pub const SCHEMAS: &[&str] = &[
    "ls",
    "node-image-ls",
    "sweep",
    "doctor",
    "plan",
    "run-report",
    "matrix-report",
];

/// A document as pretty JSON on stdout.
pub fn print_json(doc: &impl Serialize) {
    let text = serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    super::say(&text);
}
