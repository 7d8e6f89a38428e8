//! The docker CLI that ships with an engine, copied out of its node image, so stacks
//! can be deployed by the CLI of the release under test (`--docker-cli engine`) and a
//! matrix compares CLI and engine releases together. Kept in a cache folder by image id:
//! copied once per image.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::TryStreamExt as _;

use super::NodeImageInfo;

/// Where node images keep the CLI: Debian's package, and static engine binaries.
const CLI_PATHS: [&str; 2] = ["/usr/bin/docker", "/usr/local/bin/docker"];

/// `$XDG_CACHE_HOME/swarm-e2e` (else `~/.cache/swarm-e2e`, else the temp folder's).
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("swarm-e2e")
}

/// The CLI of `image` as an executable file on this machine, copied out of the image
/// through a never-started container (labelled with the run, removed at once).
pub async fn docker_cli_of(host: &Docker, image: &NodeImageInfo, run_id: &str) -> anyhow::Result<PathBuf> {
    let id: String = image.id.trim_start_matches("sha256:").chars().take(16).collect();
    let path = cache_dir().join("docker-cli").join(id).join("docker");
    if path.is_file() {
        return Ok(path);
    }
    let body = ContainerCreateBody {
        image: Some(image.tag.clone()),
        entrypoint: Some(vec!["/bin/true".into()]),
        cmd: Some(Vec::new()),
        labels: Some(crate::marks::workload_labels(run_id)),
        ..Default::default()
    };
    let name = format!("swarm-e2e-{run_id}-docker-cli-{}", std::process::id());
    let created = host
        .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
        .await
        .with_context(|| format!("creating a helper container from {}", image.tag))?;
    let mut archive = None;
    for from in CLI_PATHS {
        let options = DownloadFromContainerOptionsBuilder::new().path(from).build();
        let copied = host
            .download_from_container(&created.id, Some(options))
            .map_ok(|chunk| chunk.to_vec())
            .try_concat()
            .await;
        if let Ok(bytes) = copied {
            archive = Some(bytes);
            break;
        }
    }
    let removed = host
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await;
    removed.with_context(|| format!("removing the helper container {name}"))?;
    let archive = archive.with_context(|| {
        format!(
            "the node image {} has no docker CLI (looked at {})\nhint: rebuild it with this swarm-e2e (`swarm-e2e \
             node-image build --engine ENGINE`: its recipe installs the CLI), or deploy with the host's CLI \
             (`--docker-cli host`)",
            image.tag,
            CLI_PATHS.join(", ")
        )
    })?;
    let cli = first_file(&archive).with_context(|| format!("unpacking the docker CLI of {}", image.tag))?;
    let dir = path.parent().context("cache path has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written aside and renamed: runs at once never see half a binary.
    let partial = dir.join(format!("docker.{}.partial", std::process::id()));
    std::fs::write(&partial, &cli).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::set_permissions(&partial, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The first regular file of a tar archive (what the Engine API's archive of a path is).
pub fn first_file(archive: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    anyhow::bail!("the archive holds no file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_file_reads_the_archived_file() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "cloud-init-output.log", &b"hello"[..])
            .unwrap();
        let archive = builder.into_inner().unwrap();
        assert_eq!(first_file(&archive).unwrap(), b"hello");
    }
}
