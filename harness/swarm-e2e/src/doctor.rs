//! `swarm-e2e doctor`: checks that a target can be used before anything is created,
//! and says what to do about each problem.

use swarm_e2e_digitalocean::client::DoClient;

use crate::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, with a limitation worth knowing.
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub status: Status,
    pub what: String,
    pub detail: String,
    /// What to do, for warnings and failures.
    pub hint: Option<String>,
}

impl Finding {
    fn ok(what: &str, detail: impl Into<String>) -> Finding {
        Finding {
            status: Status::Ok,
            what: what.into(),
            detail: detail.into(),
            hint: None,
        }
    }

    fn bad(status: Status, what: &str, detail: impl Into<String>, hint: impl Into<String>) -> Finding {
        Finding {
            status,
            what: what.into(),
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Renders findings, one line each (hints indented below), and the exit code they mean.
pub fn render(findings: &[Finding], failed_code: i32) -> (String, i32) {
    let mut out = String::new();
    for f in findings {
        let mark = match f.status {
            Status::Ok => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
        };
        out.push_str(&format!("{mark} {:<22} {}\n", f.what, f.detail));
        if let Some(h) = &f.hint {
            out.push_str(&format!("  hint: {h}\n"));
        }
    }
    let code = if findings.iter().any(|f| f.status == Status::Fail) {
        failed_code
    } else {
        exit::OK
    };
    (out, code)
}

/// The local target: the host engine, node images, busybox, kernel features.
pub async fn local(nodes: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    // A size without a scenario: the scale benchmark's shape (one manager, three from five
    // nodes on), which only the disk a manager's raft log takes depends on.
    let managers = if nodes >= 5 { 3 } else { 1 };
    let short = crate::hostlimits::shortfalls(&crate::hostlimits::HostFacts::read(), nodes, managers);
    if short.is_empty() {
        out.push(Finding::ok(
            "host limits",
            format!("room for {nodes} nodes (neighbour table, inotify, memory, open files, process IDs, disk)"),
        ));
    }
    for s in short {
        out.push(Finding::bad(
            Status::Fail,
            s.what,
            format!("{} needed, {} here: {}", s.need, s.have, s.why),
            s.hint,
        ));
    }
    let host = match crate::engine::host_engine() {
        Ok(h) => h,
        Err(e) => {
            out.push(Finding::bad(
                Status::Fail,
                "host engine",
                format!("{e:#}"),
                "set DOCKER_HOST or start dockerd",
            ));
            return out;
        }
    };
    if let Err(e) = crate::engine::ping_host_engine(&host).await {
        let text = format!("{e:#}");
        let (detail, hint) = text.split_once("\nhint: ").unwrap_or((&text, "start a Docker engine"));
        out.push(Finding::bad(Status::Fail, "host engine", detail, hint));
        return out;
    }
    match host.version().await {
        Ok(v) => out.push(Finding::ok(
            "host engine",
            format!("Docker {} answers", v.version.unwrap_or_default()),
        )),
        Err(e) => out.push(Finding::bad(
            Status::Fail,
            "host engine",
            e.to_string(),
            "check `docker info`",
        )),
    }
    for release in crate::images::ENGINE_RELEASES {
        let what = format!("node image {}", release.engine);
        match crate::images::find_node_image(&host, release.engine).await {
            Ok(Some(_)) => out.push(Finding::ok(&what, "built")),
            Ok(None) if release.engine == swarm_e2e_model::DEFAULT_ENGINE => out.push(Finding::bad(
                Status::Fail,
                &what,
                "not built (the default engine)",
                format!("swarm-e2e node-image build --engine {}", release.engine),
            )),
            Ok(None) => out.push(Finding::bad(
                Status::Warn,
                &what,
                "not built (needed only by scenarios that ask for it)",
                format!("swarm-e2e node-image build --engine {}", release.engine),
            )),
            Err(e) => out.push(Finding::bad(
                Status::Fail,
                &what,
                format!("{e:#}"),
                "check `docker images`",
            )),
        }
    }
    let busybox_image = host.inspect_image(crate::images::BUSYBOX_IMAGE).await.is_ok();
    if busybox_image || std::path::Path::new("/bin/busybox").exists() {
        out.push(Finding::ok("busybox", "test image available without a registry"));
    } else {
        out.push(Finding::bad(
            Status::Fail,
            "busybox",
            "no /bin/busybox to build the test image from",
            "apt-get install busybox-static",
        ));
    }
    if which("debootstrap") {
        out.push(Finding::ok("debootstrap", "can build node images"));
    } else {
        out.push(Finding::bad(
            Status::Warn,
            "debootstrap",
            "missing: node images cannot be built here",
            "apt-get install debootstrap",
        ));
    }
    if crate::targets::node_containers::host_kernel().ipvs {
        out.push(Finding::ok("IPVS", "VIP endpoint mode can be checked"));
    } else {
        out.push(Finding::bad(
            Status::Warn,
            "IPVS",
            "no ip_vs in this kernel: VIP checks are reported unsupported",
            "use endpoint_mode = \"dnsrr\" (the default), or `modprobe ip_vs` where the kernel has it",
        ));
    }
    if crate::targets::node_containers::host_kernel().esp {
        out.push(Finding::ok("IPsec ESP", "encrypted overlays can carry traffic"));
    } else {
        out.push(Finding::bad(
            Status::Warn,
            "IPsec ESP",
            "CONFIG_INET_ESP is not set: encrypted-overlay checks are reported unsupported",
            "run on a kernel with ESP (most distribution kernels) to check encrypted overlays",
        ));
    }
    out
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(program).is_file())
}

/// A DigitalOcean account: the token works, the account is active, there is room for
/// `nodes` droplets, and what earlier runs left.
pub async fn digitalocean(client: &DoClient, nodes: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    let account = client.account().await;
    // 403 is a token that works but lacks account:read: the scope probe below names it
    // with everything else that is missing.
    let lacks_account_read = matches!(&account, Err(e) if e.status() == Some(403));
    if let Err(e) = &account
        && !lacks_account_read
    {
        let hint = if e.status() == Some(401) {
            format!(
                "the token was refused: create one (full access, or custom scopes {}) and export it as \
                 DIGITALOCEAN_ACCESS_TOKEN",
                crate::targets::digitalocean::RUN_SCOPES.join(", ")
            )
        } else {
            "check DIGITALOCEAN_API_URL (if set) and the network".to_string()
        };
        out.push(Finding::bad(
            Status::Fail,
            "token",
            format!("GET /v2/account: {e}"),
            hint,
        ));
        return out;
    }
    out.push(Finding::ok("token", "accepted"));
    let overrides = crate::targets::digitalocean::settings::DropletOverrides::from_env();
    let image = overrides
        .image
        .unwrap_or_else(|| crate::targets::digitalocean::settings::DEFAULT_IMAGE.to_string());
    match client.probe_scopes(&image).await {
        Ok(r) if r.missing.is_empty() => out.push(Finding::ok(
            "scopes",
            format!("all {} a run needs (probed without changing anything)", r.held.len()),
        )),
        Ok(r) => {
            let f = crate::targets::digitalocean::missing_scopes_failure(&r);
            out.push(Finding::bad(
                Status::Fail,
                "scopes",
                f.message.replace("; nothing was created", ""),
                f.hint.unwrap_or_default(),
            ));
        }
        Err(e) => out.push(Finding::bad(
            Status::Fail,
            "scopes",
            format!("could not be checked: {e}"),
            e.hint(),
        )),
    }
    let Ok(account) = account else {
        return out;
    };
    if account.status == "active" {
        out.push(Finding::ok("account", "active"));
    } else {
        out.push(Finding::bad(
            Status::Fail,
            "account",
            format!("status `{}`", account.status),
            "droplets cannot be created until the account is active (see the DigitalOcean control panel)",
        ));
    }
    match client.count_droplets().await {
        Ok(n) => {
            let limit = u64::from(account.droplet_limit);
            let room = limit.saturating_sub(n);
            let detail = format!("{n} of {limit} droplets in use; room for {room}");
            if room >= nodes {
                out.push(Finding::ok("droplet limit", detail));
            } else {
                out.push(Finding::bad(
                    Status::Fail,
                    "droplet limit",
                    format!("{detail}; a scenario of {nodes} node(s) does not fit"),
                    "remove droplets, or ask DigitalOcean to raise the limit",
                ));
            }
        }
        Err(e) => out.push(Finding::bad(Status::Fail, "droplet limit", e.to_string(), e.hint())),
    }
    match crate::targets::digitalocean::sweep::find(client).await {
        Ok(found) if found.is_empty() => out.push(Finding::ok("leftovers", "none from earlier runs")),
        Ok(found) => out.push(Finding::bad(
            Status::Warn,
            "leftovers",
            format!("{} resource(s) from earlier runs", found.len()),
            "swarm-e2e sweep --target digitalocean (dry run), then add --yes",
        )),
        Err(e) => out.push(Finding::bad(Status::Warn, "leftovers", format!("{e:#}"), api_hint(&e))),
    }
    out
}

/// The hint for an API call's failure: the client's, where the error is the API's.
fn api_hint(e: &anyhow::Error) -> &'static str {
    e.downcast_ref::<swarm_e2e_digitalocean::client::DoError>()
        .map_or("retry later", swarm_e2e_digitalocean::client::DoError::hint)
}
