//! What N node containers need from the one host (one kernel) they share, checked before
//! anything is created: a limit hit mid-run shows up as engines that stop answering, far
//! from its cause (measured: at 60 nodes the kernel's neighbour table overflowed and 48
//! live engines went silent). Also read when a run fails, to name a limit that bit.

/// About what one 20.10 engine in a node container uses (measured: 130 MiB resident).
const MEMORY_PER_NODE: u64 = 150 * 1024 * 1024;
/// inotify instances per node: measured 0 for a 20.10 dockerd and containerd in a node
/// container; 1 leaves room for what its containers open.
const INOTIFY_PER_NODE: u64 = 1;
/// Open files the harness holds per node (engine connections, helpers' streams).
const FILES_PER_NODE: u64 = 8;
/// Process IDs per node: every thread takes one from `kernel.pid_max`. Measured over a
/// CI run (270 samples of a node container's and its tasks' `pids.current`): median 52,
/// 90th percentile 230, largest 371 (a manager with tasks on an overlay).
const PIDS_PER_NODE: u64 = 256;
/// Disk per manager: its `/var/lib/docker` volume holds the raft log, whose segments are
/// allocated 64 MiB at a time (measured: 125-127 MiB on managers).
const DISK_PER_MANAGER: u64 = 128 * 1024 * 1024;
/// Disk per worker (measured: 1-5 MiB, the test image and task state).
const DISK_PER_WORKER: u64 = 8 * 1024 * 1024;
/// Where the host engine keeps the nodes' volumes (the local target's engine is on this
/// host, as its cgroup clean-up already assumes).
const ENGINE_ROOT: &str = "/var/lib/docker";

/// The host's figures that bound how many nodes it can hold; `None` where unreadable.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// `net.ipv4.neigh.default.gc_thresh3`: the neighbour table's hard limit (global).
    pub neigh_max: Option<u64>,
    /// Neighbour entries the kernel holds now (all namespaces).
    pub neigh_entries: Option<u64>,
    /// Times the neighbour table was full so far (all CPUs).
    pub neigh_table_fulls: Option<u64>,
    /// `fs.inotify.max_user_instances` (per user: every node container's root counts).
    pub inotify_max: Option<u64>,
    /// `MemAvailable`, bytes.
    pub memory_available: Option<u64>,
    /// The harness's soft limit of open files.
    pub open_files_max: Option<u64>,
    /// `kernel.pid_max`: process IDs for all threads of all namespaces.
    pub pid_max: Option<u64>,
    /// Threads that exist now (each holds a process ID).
    pub pids_in_use: Option<u64>,
    /// Bytes free to unprivileged users where the host engine keeps volumes.
    pub disk_available: Option<u64>,
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl HostFacts {
    /// Reads this host's figures (Linux /proc).
    pub fn read() -> HostFacts {
        let arp = std::fs::read_to_string("/proc/net/stat/arp_cache").ok();
        let (entries, fulls) = arp.as_deref().map(parse_arp_cache).unwrap_or((None, None));
        HostFacts {
            neigh_max: read_number("/proc/sys/net/ipv4/neigh/default/gc_thresh3"),
            neigh_entries: entries,
            neigh_table_fulls: fulls,
            inotify_max: read_number("/proc/sys/fs/inotify/max_user_instances"),
            memory_available: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| parse_meminfo_available(&m)),
            open_files_max: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|l| parse_open_files(&l)),
            pid_max: read_number("/proc/sys/kernel/pid_max"),
            pids_in_use: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| parse_loadavg_threads(&l)),
            disk_available: disk_available(ENGINE_ROOT),
        }
    }
}

/// `/proc/loadavg`'s fourth field is `running/total` scheduling entities (threads).
fn parse_loadavg_threads(text: &str) -> Option<u64> {
    text.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// Free bytes (for unprivileged users, as the engine's files are not reserved-block
/// writers) on the filesystem holding `path`; `None` where it does not exist.
fn disk_available(path: &str) -> Option<u64> {
    let c_path = std::ffi::CString::new(path).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct passed to it; the path is a
    // NUL-terminated string that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `/proc/net/stat/arp_cache`: one line per CPU, hex; `entries` is the table's (the same
/// on every line), `table_fulls` counts per CPU.
fn parse_arp_cache(text: &str) -> (Option<u64>, Option<u64>) {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return (None, None);
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let at = |name: &str| columns.iter().position(|c| *c == name);
    let (entries_at, fulls_at) = (at("entries"), at("table_fulls"));
    let mut entries = None;
    let mut fulls: Option<u64> = None;
    for line in lines {
        let values: Vec<u64> = (line.split_whitespace())
            .filter_map(|v| u64::from_str_radix(v, 16).ok())
            .collect();
        if let Some(e) = entries_at.and_then(|i| values.get(i)) {
            entries = Some(*e);
        }
        if let Some(f) = fulls_at.and_then(|i| values.get(i)) {
            fulls = Some(fulls.unwrap_or(0) + f);
        }
    }
    (entries, fulls)
}

fn parse_meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn parse_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A host limit too small for the run, with what raises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub what: &'static str,
    pub have: u64,
    pub need: u64,
    pub why: String,
    pub hint: String,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} needed, {} here ({})",
            self.what, self.need, self.have, self.why
        )
    }
}

/// Neighbour entries `nodes` node containers need: each node's kernel namespace learns
/// every other node it gossips with (all of them), and the host's bridge learns each.
/// The overlay's own entries are permanent and not counted against the limit.
pub fn neighbour_entries_needed(nodes: u64) -> u64 {
    nodes * nodes.saturating_sub(1) + nodes
}

/// What is too small on this host for `nodes` node containers, `managers` of them swarm
/// managers (see [`raft_managers_of`]).
pub fn shortfalls(facts: &HostFacts, nodes: u64, managers: u64) -> Vec<Shortfall> {
    let managers = managers.min(nodes);
    let disk = managers * DISK_PER_MANAGER + (nodes - managers) * DISK_PER_WORKER;
    let mib = |b: u64| b / (1024 * 1024);
    let host_entries = facts.neigh_entries.unwrap_or(0);
    let neighbours = neighbour_entries_needed(nodes) + host_entries;
    // Room to spare: the kernel collects entries above gc_thresh2 aggressively.
    let thresh3 = (neighbours * 2).next_power_of_two();
    let inotify = nodes * INOTIFY_PER_NODE + 16;
    let files = nodes * FILES_PER_NODE + 256;
    let pids_now = facts.pids_in_use.unwrap_or(0);
    let pids = nodes * PIDS_PER_NODE + pids_now;
    let limits = [
        (
            "neighbour table",
            facts.neigh_max,
            neighbours,
            format!(
                "{nodes} nodes resolve each other: {nodes}×{} entries, plus {host_entries} the host holds now; \
                 net.ipv4.neigh.default.gc_thresh3 bounds them for all namespaces, and a full table makes live \
                 engines stop answering",
                nodes.saturating_sub(1)
            ),
            format!(
                "sysctl -w net.ipv4.neigh.default.gc_thresh1={} net.ipv4.neigh.default.gc_thresh2={} \
                 net.ipv4.neigh.default.gc_thresh3={thresh3}",
                thresh3 / 4,
                thresh3 / 2
            ),
        ),
        (
            "inotify instances",
            facts.inotify_max,
            inotify,
            format!("about {INOTIFY_PER_NODE} per node, and all node containers run as the same user"),
            format!(
                "sysctl -w fs.inotify.max_user_instances={}",
                (inotify * 2).next_power_of_two()
            ),
        ),
        (
            "memory (MiB)",
            facts.memory_available.map(mib),
            mib(nodes * MEMORY_PER_NODE),
            format!("about {} MiB per node's engine", mib(MEMORY_PER_NODE)),
            format!(
                "run fewer nodes (about {} fit), or free memory on this host",
                facts.memory_available.unwrap_or(0) / MEMORY_PER_NODE
            ),
        ),
        (
            "open files",
            facts.open_files_max,
            files,
            "the harness holds connections to every engine at once".to_string(),
            format!("ulimit -n {}", (files * 2).next_power_of_two()),
        ),
        (
            "process IDs",
            facts.pid_max,
            pids,
            format!(
                "about {PIDS_PER_NODE} threads per node (its engine, containerd, shims, tasks), plus {pids_now} \
                 on this host now; kernel.pid_max bounds them for all namespaces, and an engine that cannot \
                 start a thread dies"
            ),
            format!(
                "sysctl -w kernel.pid_max={}",
                (pids * 2).next_power_of_two().min(4_194_304)
            ),
        ),
        (
            "disk (MiB)",
            facts.disk_available.map(mib),
            mib(disk),
            format!(
                "each node's volume on the filesystem of {ENGINE_ROOT}: about {} MiB per manager (the raft \
                 log), {} MiB per worker",
                mib(DISK_PER_MANAGER),
                mib(DISK_PER_WORKER)
            ),
            format!(
                "free space under {ENGINE_ROOT} (`swarm-e2e sweep` removes what earlier runs left), or run \
                 fewer nodes"
            ),
        ),
    ];
    (limits.into_iter())
        .filter_map(|(what, have, need, why, hint)| {
            let have = have?;
            (need > have).then_some(Shortfall {
                what,
                have,
                need,
                why,
                hint,
            })
        })
        .collect()
}

/// Raises this process's soft limit of open files to its hard limit (at most 65,536), as
/// Go programs do at start: the harness holds connections to every engine at once, and
/// the usual soft limit (1,024) is a default, not a decision.
pub fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = limit.rlim_max.min(65_536);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The containers a scenario puts on this host (its nodes, and the classic topology's
/// key-value store).
pub fn containers_of(scenario: &swarm_e2e_model::Scenario) -> u64 {
    let store = u64::from(scenario.topology == swarm_e2e_model::Topology::Classic);
    scenario.nodes.len() as u64 + store
}

/// The scenario's swarm managers, each of which keeps a raft log on its volume (the
/// classic topology has no swarm, so none).
pub fn raft_managers_of(scenario: &swarm_e2e_model::Scenario) -> u64 {
    match scenario.topology {
        swarm_e2e_model::Topology::Classic => 0,
        swarm_e2e_model::Topology::Swarm => scenario.manager_count() as u64,
    }
}

/// Refuses, before anything is created, a scenario this host cannot hold: every limit
/// that is too small, with the command that raises it.
pub fn preflight(scenario: &swarm_e2e_model::Scenario) -> Result<(), crate::exit::Failure> {
    let nodes = containers_of(scenario);
    let short = shortfalls(&HostFacts::read(), nodes, raft_managers_of(scenario));
    if short.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = short.iter().map(|s| format!("  {s}\n    hint: {}", s.hint)).collect();
    Err(crate::exit::Failure::new(
        crate::exit::INFRASTRUCTURE,
        format!(
            "this host cannot hold {nodes} node containers; nothing was created:\n{}",
            lines.join("\n")
        ),
    )
    .with_hint(format!(
        "raise the limits above (as root), or run fewer nodes; `swarm-e2e doctor --nodes {nodes}` checks a size"
    )))
}

/// When a run fails: whether the kernel's neighbour table filled up since `before`
/// (read when the run started), as a `cause:` line.
pub fn neighbour_table_cause(before: &HostFacts, nodes: u64) -> Option<String> {
    let now = HostFacts::read();
    let (was, is) = (before.neigh_table_fulls?, now.neigh_table_fulls?);
    (is > was).then(|| {
        format!(
            "cause: the host's neighbour table is full (net.ipv4.neigh.default.gc_thresh3 = {} for {nodes} nodes; \
             the kernel refused new entries {} time(s) during the run): engines that cannot resolve each other \
             look dead",
            now.neigh_max.map(|m| m.to_string()).unwrap_or_else(|| "unknown".into()),
            is - was
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str = "entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n\
        00000010 00003dd7 0000399a 00000001   0000e6e4 00002a4d 00000011   00000000         00000000         000006b1         00000000       00000000            00000002\n\
        00000010 00003910 00003d4c 00000004   0000d863 0000267d 0000000c   00000000         00000000         00000000         00000000       00000000            0000000a\n";

    #[test]
    fn the_kernels_figures_are_read() {
        assert_eq!(parse_arp_cache(ARP), (Some(16), Some(12)));
        assert_eq!(
            parse_meminfo_available("MemTotal: 100 kB\nMemAvailable:   2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n";
        assert_eq!(parse_open_files(limits), Some(1024));
    }

    #[test]
    fn threads_in_use_are_read_from_loadavg() {
        assert_eq!(parse_loadavg_threads("0.06 0.02 0.00 1/79 17137\n"), Some(79));
        assert_eq!(parse_loadavg_threads("0.06 0.02"), None);
        assert!(disk_available("/").is_some_and(|b| b > 0));
        assert_eq!(disk_available("/no/such/dir/swarm-e2e"), None);
    }

    #[test]
    fn process_ids_and_disk_bound_the_size_too() {
        let host = HostFacts {
            pid_max: Some(32_768),
            pids_in_use: Some(500),
            disk_available: Some(3 * DISK_PER_MANAGER + 97 * DISK_PER_WORKER),
            ..Default::default()
        };
        assert!(shortfalls(&host, 100, 3).is_empty(), "{:?}", shortfalls(&host, 100, 3));
        let managers: Vec<&str> = shortfalls(&host, 100, 5).iter().map(|s| s.what).collect();
        assert_eq!(managers, ["disk (MiB)"], "two more managers hold two more raft logs");
        let nodes = 32_768 / PIDS_PER_NODE + 1;
        let short = shortfalls(&host, nodes, 3);
        let what: Vec<&str> = short.iter().map(|s| s.what).collect();
        assert_eq!(what, ["process IDs", "disk (MiB)"], "{short:?}");
        assert_eq!(short[0].need, nodes * PIDS_PER_NODE + 500);
        assert!(
            short[0].hint.starts_with("sysctl -w kernel.pid_max="),
            "{}",
            short[0].hint
        );
        assert_eq!(short[1].need, 3 * 128 + (nodes - 3) * 8);
    }

    #[test]
    fn only_swarm_managers_keep_a_raft_log() {
        let managers = |file: &str| {
            let path = format!("{}/../../scenarios/{file}", env!("CARGO_MANIFEST_DIR"));
            let scenario = swarm_e2e_model::parse_scenario_file(std::path::Path::new(&path)).unwrap();
            (raft_managers_of(&scenario), scenario.manager_count())
        };
        assert_eq!(managers("five-nodes-three-managers.toml"), (3, 3));
        assert_eq!(managers("swarm-demo-classic.toml"), (0, 1));
    }

    #[test]
    fn sixty_nodes_do_not_fit_the_default_neighbour_table_and_thirty_do() {
        let host = HostFacts {
            neigh_max: Some(1024),
            neigh_entries: Some(10),
            inotify_max: Some(128),
            memory_available: Some(24 << 30),
            open_files_max: Some(1024),
            ..Default::default()
        };
        assert!(shortfalls(&host, 30, 3).is_empty(), "{:?}", shortfalls(&host, 30, 3));
        let short = shortfalls(&host, 60, 3);
        assert_eq!(short.len(), 1, "{short:?}");
        assert_eq!(short[0].what, "neighbour table");
        assert_eq!(short[0].need, 60 * 59 + 60 + 10);
        assert!(short[0].hint.contains("gc_thresh3=8192"), "{}", short[0].hint);
        let many: Vec<&str> = shortfalls(&host, 128, 3).iter().map(|s| s.what).collect();
        assert_eq!(many, ["neighbour table", "inotify instances", "open files"]);
    }
}
