//! `node-image build` and `node-image ls`: the Debian root filesystems node containers
//! run (a packaged engine, or static binaries).

use clap::Subcommand;
use tokio::runtime::Runtime;

use super::{host, say};
use crate::exit::{self, Failure};
use crate::images;

#[derive(Subcommand)]
pub enum NodeImageCommand {
    /// Build the node image for an engine version (a no-op when cached).
    #[command(after_help = "Examples:
  swarm-e2e node-image build                 # engine 20.10 from Debian 12
  swarm-e2e node-image build --engine 26.1   # Debian 13
  swarm-e2e node-image build --engine 28.5   # Debian unstable
  swarm-e2e node-image build --force         # rebuild even if cached
  swarm-e2e node-image build --static ./docker-27.0.0-rc.1.tgz          # a release candidate
  swarm-e2e node-image build --static https://example.org/docker.tgz --engine 27.0.0-rc.1

A static archive has Docker's static release layout: docker/dockerd, docker/containerd,
docker/runc (and docker-init, docker-proxy, containerd-shim-runc-v2, ...). Its image is
tagged with --engine, or the version `dockerd --version` reports; scenarios and `matrix`
select it by that name (`engine = \"27.0.0-rc.1\"`) or by the archive's path or URL.

Needs root, debootstrap and a reachable Debian mirror (SWARM_E2E_DEBIAN_MIRROR).")]
    Build {
        /// Engine version: 20.10 (Debian 12), 26.1 (Debian 13), 28.5 (Debian unstable);
        /// with --static, the name to tag the image with.
        #[arg(long)]
        engine: Option<String>,
        /// Build from static engine binaries: a .tgz, a folder holding `docker/`, or an
        /// http(s) URL.
        #[arg(long = "static", value_name = "PATH-OR-URL")]
        static_source: Option<String>,
        /// Rebuild even if a current image is cached.
        #[arg(long)]
        force: bool,
    },
    /// Show which node images are built.
    #[command(
        after_help = "Examples:\n  swarm-e2e node-image ls\n  swarm-e2e node-image ls --format json\n\nSchema: swarm-e2e schema node-image-ls"
    )]
    Ls {
        /// `human` (columns) or `json` (a versioned document).
        #[arg(long, value_enum, default_value_t = super::listing::Format::Human)]
        format: super::listing::Format,
    },
}

pub fn main(rt: &Runtime, command: NodeImageCommand) -> Result<i32, Failure> {
    rt.block_on(async {
        let host = host().await?;
        match command {
            NodeImageCommand::Build {
                engine,
                static_source,
                force,
            } => {
                let progress = |line: &str| eprintln!("node-image: {line}");
                let info = match &static_source {
                    Some(source) => images::build_static_node_image(&host, source, engine.as_deref(), &progress).await,
                    None => {
                        let engine = engine.as_deref().unwrap_or(swarm_e2e_model::DEFAULT_ENGINE);
                        images::build_node_image(&host, engine, force, &progress).await
                    }
                }?;
                say(&format!(
                    "{} {} ({}: engine {}, containerd {}, runc {}, {} MB)",
                    info.tag,
                    &info.id,
                    info.kind,
                    info.engine_package,
                    info.containerd_package,
                    info.runc_package,
                    info.size_bytes / 1_000_000
                ));
            }
            NodeImageCommand::Ls { format } => {
                let built = images::list_node_images(&host).await?;
                if format == super::listing::Format::Json {
                    super::listing::print_json(&super::listing::node_images_listing(&built));
                    return Ok(exit::OK);
                }
                for r in images::ENGINE_RELEASES {
                    if !built.iter().any(|i| i.tag == images::node_image_tag(r.engine)) {
                        say(&format!(
                            "{:<32} missing   (swarm-e2e node-image build --engine {})",
                            images::node_image_tag(r.engine),
                            r.engine
                        ));
                    }
                }
                for info in &built {
                    say(&format!(
                        "{:<32} {:<9} engine {}, containerd {}, runc {} ({})",
                        info.tag,
                        info.kind,
                        info.engine_package,
                        info.containerd_package,
                        info.runc_package,
                        info.suite
                    ));
                }
            }
        }
        Ok(exit::OK)
    })
}
