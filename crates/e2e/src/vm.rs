//! Helpers for tests and benchmarks with real VMs: a network namespace with its own
//! `libvirtd` (through `scripts/libvirt-netns`), a veth pair to reach it, a hypervisor
//! process inside it, and what libvirt still holds afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{binary, run_command, wait_until, Api, Master, MasterOptions, Proc};

pub const NETNS: &str = "xrdtest-e2e";
/// The veth pair through which the test reaches the master's API inside the namespace.
pub const VETH_HOST: &str = "xe2e0";
pub const VETH_NS: &str = "xe2e1";
pub const HOST_IP: &str = "10.254.77.1";
pub const NS_IP: &str = "10.254.77.2";
pub const POOL: &str = "xrdtest-e2e";
/// The pool's folder: fixed, because libvirt keeps a pool defined (with its path) across
/// runs, so a per-run temporary folder would be gone the next time.
pub const POOL_DIR: &str = "/var/lib/xrdtest/e2e-pool";
pub const IMAGES: &str = "/var/lib/xrdtest/images";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What this test needs from the machine, or why it cannot run.
pub fn prerequisites() -> Result<(), String> {
    if euid() != 0 {
        return Err("must run as root (network namespaces, libvirtd)".into());
    }
    for tool in ["/usr/sbin/libvirtd", "/usr/bin/virsh", "/usr/bin/qemu-system-x86_64"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing: run scripts/install-libvirt"));
        }
    }
    for image in ["vmlinuz", "xrdtest-slave-initrd.img"] {
        if !Path::new(IMAGES).join(image).is_file() {
            return Err(format!("{IMAGES}/{image} is missing: run packaging/vm-image/build"));
        }
    }
    Ok(())
}

/// Whether a VM test may run: with `missing` (what it lacks) it is skipped with a line
/// saying so, except on CI (`CI` set), where a missing prerequisite fails it.
pub fn may_run(test: &str, missing: Result<(), String>) -> bool {
    match missing {
        Ok(()) => true,
        Err(missing) if std::env::var_os("CI").is_some() => panic!("{test} cannot run on CI: {missing}"),
        Err(missing) => {
            eprintln!("SKIPPED {test}: {missing}");
            false
        }
    }
}

/// The master of a VM test: in the namespace, with cluster waits fit for emulated VMs
/// (`start_timeout`, `slave_wait`, `stop_timeout`).
pub fn vm_master_options(start_timeout: &str, slave_wait: &str, stop_timeout: &str) -> MasterOptions {
    MasterOptions {
        netns: Some((NETNS.to_string(), NS_IP.to_string())),
        tables: None,
        extra: format!(
            "[clusters]\nstart_timeout = \"{start_timeout}\"\nslave_wait = \"{slave_wait}\"\nstop_timeout = \"{stop_timeout}\"\n"
        ),
        ..MasterOptions::default()
    }
}

fn euid() -> u32 {
    // The e2e crate has no libc dependency: ask `id`.
    let output = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(u32::MAX)
}

pub fn sh(command: &str) -> std::process::Output {
    run_command(
        {
            let mut c = Command::new("bash");
            c.args(["-c", command]);
            c
        },
        Duration::from_secs(120),
    )
}

pub fn sh_ok(command: &str) -> String {
    let output = sh(command);
    assert!(
        output.status.success(),
        "`{command}` failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The namespace with its libvirtd and the veth pair; torn down on drop, pass or fail.
pub struct Namespace;

impl Namespace {
    pub fn up() -> Namespace {
        let script = repo_root().join("scripts/libvirt-netns");
        // A previous run killed halfway may have left it.
        let _ = sh(&format!("{} down {NETNS}", script.display()));
        sh_ok(&format!("{} up {NETNS}", script.display()));
        sh_ok(&format!(
            "ip link add {VETH_HOST} type veth peer name {VETH_NS} netns {NETNS} && \
             ip addr add {HOST_IP}/30 dev {VETH_HOST} && ip link set {VETH_HOST} up && \
             ip netns exec {NETNS} ip addr add {NS_IP}/30 dev {VETH_NS} && \
             ip netns exec {NETNS} ip link set {VETH_NS} up"
        ));
        Namespace
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let script = repo_root().join("scripts/libvirt-netns");
        let _ = sh(&format!("ip link del {VETH_HOST} 2>/dev/null; {} down {NETNS}", script.display()));
    }
}

/// Domains, networks and pool volumes that libvirt still has, by name.
pub fn libvirt_leftovers(pattern: &str) -> Vec<String> {
    let list = |command: &str| -> Vec<String> {
        let output = sh(&format!("virsh -c qemu:///system {command}"));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut found: Vec<String> = list("list --all --name").into_iter().map(|d| format!("domain {d}")).collect();
    found.extend(list("net-list --all --name").into_iter().map(|n| format!("network {n}")));
    found.extend(
        list(&format!("vol-list {POOL}"))
            .into_iter()
            .filter_map(|line| line.split_whitespace().next().map(str::to_string))
            .filter(|name| name != "Name" && !name.starts_with('-'))
            .map(|v| format!("volume {v}")),
    );
    found.into_iter().filter(|item| item.contains(pattern)).collect()
}

/// Where the hypervisor runs, as seen from the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypervisorPlace {
    /// In the namespace, beside the master: it connects over loopback, so the VMs are told
    /// the bridge address.
    BesideMaster,
    /// Outside the namespace, as on another host: it connects to the master's veth address
    /// ([`NS_IP`]), which the master then gives the VMs as `master.<domain>`.
    Elsewhere,
}

/// Samples `sample` every `every` in a thread of its own until [`Sampling::stop`], keeping
/// every distinct item seen, in order (the QEMU command lines or domains of a session).
pub struct Sampling {
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Sampling {
    pub fn start(every: Duration, sample: fn() -> Vec<String>) -> Sampling {
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = running.clone();
        let thread = std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            while flag.load(std::sync::atomic::Ordering::Relaxed) {
                for item in sample() {
                    if !seen.contains(&item) {
                        seen.push(item);
                    }
                }
                std::thread::sleep(every);
            }
            seen
        });
        Sampling { running, thread }
    }

    /// Stops sampling; everything seen.
    pub fn stop(self) -> Vec<String> {
        self.running.store(false, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the sampling thread")
    }
}

/// The command lines of the QEMU processes running now (arguments joined by spaces).
pub fn qemu_command_lines() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|line| line.contains("qemu-system"))
        .collect()
}

/// Starts `xrdtest-hypervisor` named `hv-e2e`, connected to `master`, with its consoles,
/// state (identity, the VMs' configurations) and config under `dir` and its pool in [`POOL_DIR`]. It reaches libvirtd through its socket
/// wherever it runs.
pub fn start_hypervisor(master: &Master, dir: &Path, n: usize, place: HypervisorPlace) -> Proc {
    let config = dir.join(format!("hypervisor-{n}.toml"));
    let port = master.peer_addr().port();
    let host = match place {
        HypervisorPlace::BesideMaster => "127.0.0.1",
        HypervisorPlace::Elsewhere => NS_IP,
    };
    std::fs::create_dir_all(POOL_DIR).expect("pool folder");
    std::fs::write(
        &config,
        format!(
            "master = \"{host}:{port}\"\nname = \"hv-e2e\"\nsecret = \"{}\"\nca_file = \"{}\"\n\
             libvirt_uri = \"qemu:///system\"\npool = \"{POOL}\"\npool_dir = \"{}\"\n\
             domain_type = \"auto\"\nconsole_dir = \"{}\"\nstate_dir = \"{}\"\nshutdown_wait = \"3s\"\n\
             max_backoff = \"1s\"\n",
            master.secret,
            master.ca_file().display(),
            POOL_DIR,
            dir.join("consoles").display(),
            dir.join("state").display(),
        ),
    )
    .expect("hypervisor.toml");
    let mut command = match place {
        HypervisorPlace::BesideMaster => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", NETNS]).arg(binary("xrdtest-hypervisor"));
            command
        }
        HypervisorPlace::Elsewhere => Command::new(binary("xrdtest-hypervisor")),
    };
    command.arg("--config").arg(&config);
    Proc::spawn(&format!("hypervisor (start {n})"), command, &dir.join(format!("hypervisor-{n}.log")))
}

/// Waits until the hypervisor is connected and has reported its capacity.
pub fn wait_hypervisor(api: &Api) {
    wait_until(Duration::from_secs(60), "the hypervisor connected and reported its capacity", || {
        let answer = api.get("/api/hypervisors");
        let ready = answer["hypervisors"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["name"] == "hv-e2e" && h["connected"] == true && !h["status"].is_null());
        if ready {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    });
}

/// The tail of every VM console log under `dir/consoles`.
pub fn consoles(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir.join("consoles")).into_iter().flatten().flatten() {
        let content = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let tail: Vec<&str> = content.lines().rev().take(40).collect();
        text.push_str(&format!("--- {}\n", entry.path().display()));
        for line in tail.into_iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}
