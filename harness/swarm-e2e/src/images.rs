//! Images without a registry.
//!
//! * Node images: a Debian root filesystem made by debootstrap with the distribution's
//!   `docker.io`, imported into the host engine and tagged by engine version. The Debian
//!   suite decides the engine version.
//! * The busybox test image: Debian's `busybox-static` binary and its applet links,
//!   imported once into the host engine, then saved and loaded into every node so the
//!   image ID is the same everywhere.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::query_parameters::{CreateImageOptionsBuilder, ImportImageOptionsBuilder};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

/// Bumped whenever the node image recipe changes, so cached images are rebuilt.
pub const NODE_IMAGE_RECIPE: &str = "2";
pub const NODE_IMAGE_REPO: &str = "swarm-e2e/node";
pub const BUSYBOX_IMAGE: &str = "swarm-e2e/busybox:local";
const NODE_INIT: &str = include_str!("../../../fixtures/node-image/swarm-e2e-node-init");
const NODE_PACKAGES: &str = "docker.io,iproute2,iptables,procps,ca-certificates";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// An engine release we can build a node image for, and the Debian suite that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineRelease {
    pub engine: &'static str,
    pub suite: &'static str,
    pub debian: &'static str,
}

pub const ENGINE_RELEASES: &[EngineRelease] = &[
    EngineRelease {
        engine: "20.10",
        suite: "bookworm",
        debian: "Debian 12",
    },
    EngineRelease {
        engine: "26.1",
        suite: "trixie",
        debian: "Debian 13",
    },
    EngineRelease {
        engine: "28.5",
        suite: "sid",
        debian: "Debian unstable",
    },
];

pub fn release_for(engine: &str) -> anyhow::Result<EngineRelease> {
    let wanted: String = engine.split('.').take(2).collect::<Vec<_>>().join(".");
    ENGINE_RELEASES
        .iter()
        .copied()
        .find(|r| r.engine == wanted)
        .with_context(|| {
            let known: Vec<String> = ENGINE_RELEASES
                .iter()
                .map(|r| format!("{} ({})", r.engine, r.debian))
                .collect();
            format!(
                "no local node image recipe for engine {engine}\nhint: locally available engines are {}",
                known.join(", ")
            )
        })
}

pub fn node_image_tag(engine: &str) -> String {
    format!("{NODE_IMAGE_REPO}:{engine}")
}

/// What a node image records about itself (from image labels).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeImageInfo {
    pub tag: String,
    pub id: String,
    pub engine_package: String,
    pub containerd_package: String,
    pub runc_package: String,
    pub suite: String,
    pub size_bytes: i64,
}

/// The cached node image for `engine`, if one of the current recipe exists.
pub async fn find_node_image(host: &Docker, engine: &str) -> anyhow::Result<Option<NodeImageInfo>> {
    let tag = node_image_tag(engine);
    let image = match host.inspect_image(&tag).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(None),
        Err(e) => return Err(e).context("inspecting the node image"),
    };
    let labels: HashMap<String, String> = image.config.and_then(|c| c.labels).unwrap_or_default();
    if labels.get("swarm-e2e.recipe").map(String::as_str) != Some(NODE_IMAGE_RECIPE) {
        return Ok(None);
    }
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    Ok(Some(NodeImageInfo {
        tag,
        id: image.id.unwrap_or_default(),
        engine_package: get("swarm-e2e.engine-package"),
        containerd_package: get("swarm-e2e.containerd-package"),
        runc_package: get("swarm-e2e.runc-package"),
        suite: get("swarm-e2e.suite"),
        size_bytes: image.size.unwrap_or_default(),
    }))
}

/// Builds the node image for `engine` unless a current one is cached (then a no-op).
/// `progress` receives one line per step.
pub async fn build_node_image(
    host: &Docker,
    engine: &str,
    force: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<NodeImageInfo> {
    let release = release_for(engine)?;
    if !force && let Some(info) = find_node_image(host, release.engine).await? {
        progress(&format!(
            "{} is cached ({}), nothing to do",
            info.tag, info.engine_package
        ));
        return Ok(info);
    }
    for tool in ["debootstrap", "tar"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not installed\nhint: apt-get install -y debootstrap tar");
        }
    }
    let mirror = std::env::var("SWARM_E2E_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    let work = tempfile::Builder::new()
        .prefix("swarm-e2e-node-image-")
        .tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))
        .context("creating a build directory")?;
    let rootfs = work.path().join("rootfs");
    let started = Instant::now();
    progress(&format!(
        "debootstrap {} ({}) with {} from {mirror}",
        release.suite, release.debian, NODE_PACKAGES
    ));
    let out = tokio::process::Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={NODE_PACKAGES}"),
            release.suite,
        ])
        .arg(&rootfs)
        .arg(&mirror)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running debootstrap")?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "debootstrap failed ({}):\n{}\n{}\nhint: debootstrap needs root and a reachable Debian mirror (set SWARM_E2E_DEBIAN_MIRROR)",
            out.status,
            tail.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    progress(&format!("debootstrap done in {:.1}s", started.elapsed().as_secs_f64()));

    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).context("reading dpkg status")?;
    let versions = package_versions(&status, &["docker.io", "containerd", "runc"]);
    let engine_package = versions
        .get("docker.io")
        .cloned()
        .context("docker.io is not installed in the rootfs")?;
    install_init(&rootfs)?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let _ = clean_dir(&rootfs.join(dir));
    }

    let tag = node_image_tag(release.engine);
    progress(&format!(
        "importing {tag} (engine {engine_package}) into the host engine"
    ));
    let import_started = Instant::now();
    let changes = vec![
        r#"ENTRYPOINT ["/usr/local/sbin/swarm-e2e-node-init"]"#.to_string(),
        format!("LABEL swarm-e2e.recipe={NODE_IMAGE_RECIPE}"),
        format!("LABEL swarm-e2e.suite={}", release.suite),
        format!("LABEL swarm-e2e.engine-package={engine_package}"),
        format!(
            "LABEL swarm-e2e.containerd-package={}",
            versions.get("containerd").cloned().unwrap_or_default()
        ),
        format!(
            "LABEL swarm-e2e.runc-package={}",
            versions.get("runc").cloned().unwrap_or_default()
        ),
    ];
    let mut tar = tokio::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("running tar")?;
    let stdout = tar.stdout.take().expect("piped stdout");
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(stdout));
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(NODE_IMAGE_REPO)
        .tag(release.engine)
        .changes(changes)
        .build();
    host.create_image(Some(options), Some(body), None)
        .try_collect::<Vec<_>>()
        .await
        .context("importing the node image")?;
    let tar_status = tar.wait().await?;
    if !tar_status.success() {
        bail!("tar of the node root filesystem failed: {tar_status}");
    }
    progress(&format!("imported in {:.1}s", import_started.elapsed().as_secs_f64()));
    find_node_image(host, release.engine)
        .await?
        .context("the node image is missing right after import")
}

fn install_init(rootfs: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = rootfs.join("usr/local/sbin/swarm-e2e-node-init");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, NODE_INIT)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir_all(rootfs.join("etc/swarm-e2e"))?;
    Ok(())
}

fn clean_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Versions of the named packages from a dpkg status file.
pub fn package_versions(status: &str, wanted: &[&str]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
                .map(str::trim)
        };
        if let (Some(pkg), Some(version)) = (field("Package"), field("Version"))
            && wanted.contains(&pkg)
            && field("Status").is_some_and(|s| s.ends_with("installed"))
        {
            out.insert(pkg.to_string(), version.to_string());
        }
    }
    out
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Where Debian's busybox-static puts its binary.
const BUSYBOX_BINARY: &str = "/bin/busybox";

/// Makes sure the host engine has the busybox test image and returns it in `docker save`
/// form, ready to be loaded into nodes.
pub async fn busybox_image_tarball(host: &Docker) -> anyhow::Result<Bytes> {
    match host.inspect_image(BUSYBOX_IMAGE).await {
        Ok(_) => {}
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            let rootfs = busybox_rootfs()?;
            let (repo, tag) = BUSYBOX_IMAGE.split_once(':').unwrap();
            let options = CreateImageOptionsBuilder::new()
                .from_src("-")
                .repo(repo)
                .tag(tag)
                .changes(vec![r#"CMD ["sh"]"#.to_string()])
                .build();
            host.create_image(Some(options), Some(bollard::body_full(rootfs.into())), None)
                .try_collect::<Vec<_>>()
                .await
                .context("importing the busybox image into the host engine")?;
        }
        Err(e) => return Err(e).context("inspecting the busybox image"),
    }
    let chunks: Vec<Bytes> = host
        .export_image(BUSYBOX_IMAGE)
        .try_collect()
        .await
        .context("saving the busybox image")?;
    Ok(chunks.concat().into())
}

/// A root filesystem tar: the static busybox binary and a link per applet.
fn busybox_rootfs() -> anyhow::Result<Vec<u8>> {
    let binary = std::fs::read(BUSYBOX_BINARY)
        .with_context(|| format!("reading {BUSYBOX_BINARY}\nhint: apt-get install -y busybox-static"))?;
    let list = std::process::Command::new(BUSYBOX_BINARY)
        .arg("--list-full")
        .output()
        .context("listing busybox applets")?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        builder.append_data(&mut h, path, std::io::empty())
    };
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys", "dev", "var",
    ] {
        dir(d, 0o755)?;
    }
    dir("tmp", 0o1777)?;
    let mut file = |path: &str, mode: u32, body: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        builder.append_data(&mut h, path, body)
    };
    file("bin/busybox", 0o755, &binary)?;
    file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        builder.append_link(&mut h, applet, "/bin/busybox")?;
    }
    Ok(builder.into_inner()?)
}

/// Loads a `docker save` tarball into an engine (`docker load`).
pub async fn load_image(engine: &Docker, tarball: Bytes) -> anyhow::Result<()> {
    let results: Vec<_> = engine
        .import_image(
            ImportImageOptionsBuilder::new().quiet(true).build(),
            bollard::body_full(tarball),
            None,
        )
        .collect()
        .await;
    for r in results {
        let info = r.context("loading the image")?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            bail!("loading the image: {err}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_versions_map_to_suites() {
        assert_eq!(release_for("20.10").unwrap().suite, "bookworm");
        assert_eq!(release_for("26.1.5").unwrap().suite, "trixie");
        let err = release_for("19.03").unwrap_err().to_string();
        assert!(err.contains("20.10") && err.contains("hint"), "{err}");
    }

    #[test]
    fn reads_installed_versions_from_dpkg_status() {
        let status = "Package: docker.io\nStatus: install ok installed\nVersion: 20.10.24+dfsg1-1\n\n\
                      Package: runc\nStatus: deinstall ok config-files\nVersion: 1.1\n\n\
                      Package: containerd\nStatus: install ok installed\nVersion: 1.6.20\n";
        let v = package_versions(status, &["docker.io", "runc", "containerd"]);
        assert_eq!(v.get("docker.io").unwrap(), "20.10.24+dfsg1-1");
        assert_eq!(v.get("containerd").unwrap(), "1.6.20");
        assert!(!v.contains_key("runc"));
    }
}
