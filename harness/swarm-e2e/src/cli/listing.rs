//! `--format json` of the listing commands (`ls`, `node-image ls`): versioned documents
//! whose JSON schemas are derived from these types (schemars). `swarm-e2e schema NAME`
//! prints one; the checked-in copies under `harness/swarm-e2e/schemas/` are compared
//! with the derived ones in the tests.

use schemars::JsonSchema;
use serde::Serialize;

use crate::images::{self, NodeImageInfo};
use crate::target::local::resources::{LocalResource, ResourceKind};

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
}

impl From<ResourceKind> for ListedKind {
    fn from(k: ResourceKind) -> Self {
        match k {
            ResourceKind::Container => ListedKind::Container,
            ResourceKind::Network => ListedKind::Network,
            ResourceKind::Volume => ListedKind::Volume,
            ResourceKind::CgroupDir => ListedKind::CgroupDir,
            ResourceKind::TempDir => ListedKind::TempDir,
        }
    }
}

/// Groups resources by run, in the order their runs first appear.
pub fn runs_listing(found: &[LocalResource]) -> RunsListing {
    let mut runs: Vec<ListedRun> = Vec::new();
    for r in found {
        let resource = ListedResource {
            kind: r.kind.into(),
            name: r.name.clone(),
            created_unix: r.created,
        };
        match runs.iter_mut().find(|run| run.run_id == r.run_id) {
            Some(run) => {
                run.kept |= r.kept;
                run.created_unix = match (run.created_unix, r.created) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                run.resources.push(resource);
            }
            None => runs.push(ListedRun {
                run_id: r.run_id.clone(),
                kept: r.kept,
                created_unix: r.created,
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

/// The listing documents by name, with their derived schemas.
pub fn schema(name: &str) -> Option<serde_json::Value> {
    let schema = match name {
        "ls" => schemars::schema_for!(RunsListing),
        "node-image-ls" => schemars::schema_for!(NodeImagesListing),
        _ => return None,
    };
    serde_json::to_value(schema).ok()
}

/// Every name `schema` knows.
pub const SCHEMAS: &[&str] = &["ls", "node-image-ls"];

/// A document as pretty JSON on stdout.
pub fn print_json(doc: &impl Serialize) {
    let text = serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    super::say(&text);
}
