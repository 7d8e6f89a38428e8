//! The busybox test image: Debian's `busybox-static` binary and a link per applet,
//! imported once into the host engine, then saved and loaded into every node so the
//! image ID is the same everywhere (no registry).

use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bytes::Bytes;
use futures_util::TryStreamExt;

pub const BUSYBOX_IMAGE: &str = "swarm-e2e/busybox:local";

/// Where Debian's busybox-static puts its binary.
const BUSYBOX_BINARY: &str = "/bin/busybox";

/// Makes sure the host engine has the busybox test image and returns it in `docker save`
/// form, ready to be loaded into nodes.
pub async fn busybox_image_tarball(host: &Docker) -> anyhow::Result<Bytes> {
    ensure_busybox_image(host).await?;
    let chunks: Vec<Bytes> = host
        .export_image(BUSYBOX_IMAGE)
        .try_collect()
        .await
        .context("saving the busybox image")?;
    Ok(chunks.concat().into())
}

/// Imports the busybox test image into the host engine unless it is there.
pub async fn ensure_busybox_image(host: &Docker) -> anyhow::Result<()> {
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
    Ok(())
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
