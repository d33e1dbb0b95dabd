//! Faults the master has this host apply to itself: network partitions (nft, or iptables
//! where there is no nft), traffic shaping (tc netem, or tbf for a rate limit alone), paused
//! processes (SIGSTOP/SIGCONT) and signals. Each applied fault is held under its id until it
//! is healed, so that a heal, the dead-man timer or a shutdown can undo exactly what was done.
//!
//! Everything here runs external commands and blocks: call it off the async threads.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use xrdtest_proto::FaultAction;

/// What was done for one fault, to undo at its heal.
#[derive(Debug, Clone)]
enum Held {
    /// An nft table of its own.
    NftTable(String),
    /// An iptables (and ip6tables) chain of its own, jumped to from INPUT and OUTPUT.
    IptablesChain { chain: String, v4: bool, v6: bool },
    /// A root qdisc on this device.
    Qdisc(String),
    /// A class of xrdtest's htb root qdisc on this device, its shaping qdisc, and the
    /// filters that send the traffic to some peers into it.
    PeerClass { device: String, minor: u32, v4: bool, v6: bool },
    /// Stopped processes: pid and start time (to never SIGCONT a reused pid).
    Paused(Vec<(i32, u64)>),
}

/// The faults applied on this host.
pub struct Faults {
    /// This program: its own processes are never paused or killed.
    own_exe: PathBuf,
    /// The master's `host:port`: the device its route leaves by is the one shaped.
    master: String,
    held: Mutex<BTreeMap<u64, Held>>,
    /// Held through each apply and heal, so that a heal of everything (the dead-man timer,
    /// a shutdown) waits for an apply still running instead of missing what it makes.
    operation: Mutex<()>,
}

/// Longest a command (nft, tc, pgrep...) may take before it is killed and counted as failed.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Faults {
    pub fn new(own_exe: PathBuf, master: String) -> Faults {
        Faults { own_exe, master, held: Mutex::new(BTreeMap::new()), operation: Mutex::new(()) }
    }

    fn operation(&self) -> std::sync::MutexGuard<'_, ()> {
        self.operation.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The ids of the faults applied and not yet healed.
    pub fn held(&self) -> Vec<u64> {
        self.lock().keys().copied().collect()
    }

    /// Applies one fault. `Ok` says what was done; `Err` why nothing was (a fault half
    /// applied is undone before the error is returned).
    pub fn apply(&self, id: u64, action: &FaultAction) -> Result<String, String> {
        let _operation = self.operation();
        if self.lock().contains_key(&id) {
            return Ok(format!("fault {id} is already applied"));
        }
        let (held, detail) = match action {
            FaultAction::Partition { peers } => partition(id, peers)?,
            FaultAction::Netem { delay_us, jitter_us, loss_ppm, rate_bps, peers } => {
                let figures = (*delay_us, *jitter_us, *loss_ppm, *rate_bps);
                if peers.is_empty() {
                    let device = self.master_device()?;
                    let held = self.lock();
                    if held.values().any(|h| h.device() == Some(device.as_str())) {
                        return Err(format!("{device} is already shaped by another fault: heal it first"));
                    }
                    drop(held);
                    shape(&device, figures)?
                } else {
                    let device = device_towards(peers)?;
                    let held = self.lock();
                    if held.values().any(|h| matches!(h, Held::Qdisc(d) if *d == device)) {
                        return Err(format!("{device} is already shaped as a whole by another fault: heal it first"));
                    }
                    let used: Vec<u32> = held
                        .values()
                        .filter_map(|h| match h {
                            Held::PeerClass { device: d, minor, .. } if *d == device => Some(*minor),
                            _ => None,
                        })
                        .collect();
                    drop(held);
                    shape_towards(&device, &used, peers, figures)?
                }
            }
            FaultAction::Pause { pattern } => {
                let pids = self.matching(pattern)?;
                // Stopped already (by another fault, or by the test itself): not ours to
                // continue at the heal.
                let running: Vec<i32> = pids.iter().copied().filter(|&pid| !is_stopped(pid)).collect();
                if running.is_empty() {
                    return Err(format!("every process matching `{pattern}` is stopped already"));
                }
                pause(&running)?
            }
            FaultAction::Kill { pattern, signal } => {
                let pids = self.matching(pattern)?;
                return send_signal(&pids, *signal);
            }
        };
        self.lock().insert(id, held);
        Ok(detail)
    }

    /// Heals one fault; a fault not held (healed already, or never applied) is a success.
    /// A heal that fails keeps the fault held, to be tried again (by the next heal, the
    /// dead-man timer or the shutdown).
    pub fn heal(&self, id: u64) -> Result<String, String> {
        let _operation = self.operation();
        let held = self.lock().remove(&id);
        match held {
            Some(held) => self.undo_or_keep(id, held),
            None => Ok(format!("fault {id} is not applied here")),
        }
    }

    /// Heals every fault held, each on its own.
    pub fn heal_all(&self) -> Vec<(u64, Result<String, String>)> {
        let _operation = self.operation();
        let all = std::mem::take(&mut *self.lock());
        all.into_iter().map(|(id, held)| (id, self.undo_or_keep(id, held))).collect()
    }

    fn undo_or_keep(&self, id: u64, held: Held) -> Result<String, String> {
        let remaining = {
            let others = self.lock();
            Remaining {
                stopped: others
                    .values()
                    .filter_map(|h| match h {
                        Held::Paused(pids) => Some(pids.iter().map(|(pid, _)| *pid)),
                        _ => None,
                    })
                    .flatten()
                    .collect(),
                root_still_used: others.values().any(|h| {
                    matches!((h, &held), (Held::PeerClass { device: a, .. }, Held::PeerClass { device: b, .. }) if a == b)
                }),
            }
        };
        let retry = held.clone();
        let result = undo(held, &remaining);
        if result.is_err() {
            self.lock().insert(id, retry);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Held>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The network device the route to the master leaves by.
    fn master_device(&self) -> Result<String, String> {
        let address = self
            .master
            .to_socket_addrs()
            .map_err(|err| format!("cannot resolve the master address {}: {err}", self.master))?
            .next()
            .ok_or_else(|| format!("the master address {} resolves to nothing", self.master))?;
        let out = run("ip", &["-o", "route", "get", &address.ip().to_string()])?;
        device_of_route(&out).ok_or_else(|| format!("no device in `ip route get {}`: {out}", address.ip()))
    }

    /// The processes whose command line matches `pattern` (pgrep -f), this program's own
    /// (the slave, the `fault` command that asked) left out.
    fn matching(&self, pattern: &str) -> Result<Vec<i32>, String> {
        let child = Command::new("pgrep")
            .args(["-f", "--", pattern])
            .env("PATH", search_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run pgrep (procps): {err}"))?;
        let output = wait_bounded(child, COMMAND_TIMEOUT).map_err(|err| format!("pgrep -f {pattern:?}: {err}"))?;
        match output.status.code() {
            Some(0) | Some(1) => {}
            _ => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(format!("pgrep -f {pattern:?} failed: {}", stderr.trim()));
            }
        }
        let own_pid = std::process::id() as i32;
        let pids: Vec<i32> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .filter(|&pid| pid != own_pid && !is_program(pid, &self.own_exe))
            .collect();
        if pids.is_empty() {
            return Err(format!("no process matches `{pattern}`"));
        }
        Ok(pids)
    }
}

/// Drops every packet to and from `peers`, in both directions.
fn partition(id: u64, peers: &[IpAddr]) -> Result<(Held, String), String> {
    if peers.is_empty() {
        return Err("a partition needs at least one peer address".into());
    }
    let list = peers.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
    let detail = format!("dropping all traffic to and from {list}");
    if has_program("nft") {
        let table = format!("xrdtest_f{id}");
        run_with_input("nft", &["-f", "-"], &nft_ruleset(&table, peers))?;
        let detail = format!("{detail} (nft table inet {table})");
        return Ok((Held::NftTable(table), detail));
    }
    if has_program("iptables") {
        let chain = format!("XRDTEST-F{id}");
        let v4 = peers.iter().any(IpAddr::is_ipv4);
        let v6 = peers.iter().any(IpAddr::is_ipv6);
        let held = Held::IptablesChain { chain: chain.clone(), v4, v6 };
        if let Err(err) = iptables_partition(&chain, peers, v4, v6) {
            // Whatever was made before the failure goes.
            let _ = undo(held, &Remaining::default());
            return Err(err);
        }
        return Ok((held, format!("{detail} (iptables chain {chain})")));
    }
    Err("a partition needs nft (nftables) or iptables on this host, and CAP_NET_ADMIN".into())
}

/// An nft table that drops traffic to and from `peers`, before other filters (priority -10).
fn nft_ruleset(table: &str, peers: &[IpAddr]) -> String {
    let set = |v6: bool| {
        let list: Vec<String> = peers.iter().filter(|p| p.is_ipv6() == v6).map(IpAddr::to_string).collect();
        (!list.is_empty()).then(|| format!("{{ {} }}", list.join(", ")))
    };
    let mut input = String::new();
    let mut output = String::new();
    for (family, v6) in [("ip", false), ("ip6", true)] {
        if let Some(set) = set(v6) {
            input.push_str(&format!("    {family} saddr {set} drop\n"));
            output.push_str(&format!("    {family} daddr {set} drop\n"));
        }
    }
    format!(
        "table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n{input}  }}\n  \
         chain output {{\n    type filter hook output priority -10; policy accept;\n{output}  }}\n}}\n"
    )
}

fn iptables_partition(chain: &str, peers: &[IpAddr], v4: bool, v6: bool) -> Result<(), String> {
    for (tool, wanted, is_v6) in [("iptables", v4, false), ("ip6tables", v6, true)] {
        if !wanted {
            continue;
        }
        run(tool, &["-w", "-N", chain])?;
        for peer in peers.iter().filter(|p| p.is_ipv6() == is_v6) {
            let peer = peer.to_string();
            run(tool, &["-w", "-A", chain, "-s", &peer, "-j", "DROP"])?;
            run(tool, &["-w", "-A", chain, "-d", &peer, "-j", "DROP"])?;
        }
        run(tool, &["-w", "-I", "INPUT", "-j", chain])?;
        run(tool, &["-w", "-I", "OUTPUT", "-j", chain])?;
    }
    Ok(())
}

/// Delay, jitter, loss (ppm) and rate (bit/s).
type Figures = (u64, u64, u32, u64);

/// Fails unless `device`'s root qdisc is the kernel's default (handle 0:): any other was
/// set up by someone, and is not replaced.
fn check_default_root(device: &str) -> Result<(), String> {
    let current = run("tc", &["qdisc", "show", "dev", device])?;
    if let Some(line) = current.lines().find(|l| l.contains(" root ")) {
        if line.split_whitespace().nth(2).is_none_or(|handle| handle != "0:") {
            return Err(format!("{device} already has a root qdisc of its own ({}); not replacing it", line.trim()));
        }
    }
    Ok(())
}

/// The qdisc words for these figures: netem for delay, jitter and loss (with its rate limit
/// when one is asked too), tbf for a rate limit alone.
fn qdisc_words((delay_us, jitter_us, loss_ppm, rate_bps): Figures) -> Result<Vec<String>, String> {
    if delay_us == 0 && jitter_us == 0 && loss_ppm == 0 {
        if rate_bps == 0 {
            return Err("a netem fault needs a delay, a loss or a rate".into());
        }
        // A burst of 10 ms at the rate (at least 2 KiB) and a queue of 400 ms.
        let burst = (rate_bps / 8 / 100).max(2048);
        return Ok(["tbf", "rate", &format!("{rate_bps}bit"), "burst", &burst.to_string(), "latency", "400ms"]
            .map(String::from)
            .to_vec());
    }
    let mut words = vec!["netem".to_string()];
    words.extend(netem_words(delay_us, jitter_us, loss_ppm, rate_bps).split_whitespace().map(String::from));
    Ok(words)
}

/// Runs tc, saying so when the kernel lacks the qdisc asked for.
fn tc(args: &[String]) -> Result<String, String> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("tc", &refs).map_err(|err| {
        if err.contains("qdisc kind is unknown") {
            format!("{err} (this kernel lacks the qdisc: netem is CONFIG_NET_SCH_NETEM / module sch_netem)")
        } else {
            err
        }
    })
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

/// Shapes all the traffic leaving by `device`.
fn shape(device: &str, figures: Figures) -> Result<(Held, String), String> {
    check_default_root(device)?;
    let mut args = words(&["qdisc", "add", "dev", device, "root", "handle", "1:"]);
    args.extend(qdisc_words(figures)?);
    tc(&args)?;
    let (d, j, l, r) = figures;
    Ok((Held::Qdisc(device.to_string()), format!("{} on {device}", netem_words(d, j, l, r))))
}

/// The first class minor of xrdtest's htb root for per-peer shaping; 1:1 is the default
/// class, which carries the rest of the traffic.
const FIRST_PEER_CLASS: u32 = 4;
const LAST_PEER_CLASS: u32 = 255;
/// The rate of the htb classes: far above any link here, so they shape nothing themselves.
const UNLIMITED: &str = "10gbit";

/// Shapes the traffic leaving by `device` to `peers` only: a class of xrdtest's htb root
/// qdisc (made by the first such fault on the device) with its own qdisc, and u32 filters
/// by destination into it. `used`: the classes other faults hold on the device.
fn shape_towards(device: &str, used: &[u32], peers: &[IpAddr], figures: Figures) -> Result<(Held, String), String> {
    let minor = (FIRST_PEER_CLASS..=LAST_PEER_CLASS)
        .find(|m| !used.contains(m))
        .ok_or_else(|| format!("{device} has {} per-peer conditions already, the most it takes", used.len()))?;
    let made_root = used.is_empty();
    if made_root {
        check_default_root(device)?;
        tc(&words(&["qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "1"]))?;
        let rest =
            tc(&words(&["class", "add", "dev", device, "parent", "1:", "classid", "1:1", "htb", "rate", UNLIMITED]));
        if let Err(err) = rest {
            let _ = run("tc", &["qdisc", "del", "dev", device, "root"]);
            return Err(err);
        }
    }
    let held = Held::PeerClass {
        device: device.to_string(),
        minor,
        v4: peers.iter().any(IpAddr::is_ipv4),
        v6: peers.iter().any(IpAddr::is_ipv6),
    };
    let class = format!("1:{minor:x}");
    let made = (|| {
        tc(&words(&["class", "add", "dev", device, "parent", "1:", "classid", &class, "htb", "rate", UNLIMITED]))?;
        let mut args = words(&["qdisc", "add", "dev", device, "parent", &class, "handle", &format!("{minor:x}0:")]);
        args.extend(qdisc_words(figures)?);
        tc(&args)?;
        for peer in peers {
            let (protocol, matcher, prefix) = if peer.is_ipv4() { ("ip", "ip", 32) } else { ("ipv6", "ip6", 128) };
            tc(&words(&[
                "filter",
                "add",
                "dev",
                device,
                "parent",
                "1:",
                "protocol",
                protocol,
                "prio",
                &minor.to_string(),
                "u32",
                "match",
                matcher,
                "dst",
                &format!("{peer}/{prefix}"),
                "flowid",
                &class,
            ]))?;
        }
        Ok::<(), String>(())
    })();
    if let Err(err) = made {
        let _ = undo(held, &Remaining { root_still_used: !made_root, ..Remaining::default() });
        return Err(err);
    }
    let list = peers.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
    let (d, j, l, r) = figures;
    Ok((held, format!("{} on {device} towards {list} (class {class})", netem_words(d, j, l, r))))
}

/// The device the route to the first of `peers` leaves by (all of them must leave by it).
fn device_towards(peers: &[IpAddr]) -> Result<String, String> {
    let mut device = None;
    for peer in peers {
        let out = run("ip", &["-o", "route", "get", &peer.to_string()])?;
        let found = device_of_route(&out).ok_or_else(|| format!("no device in `ip route get {peer}`: {out}"))?;
        match &device {
            None => device = Some(found),
            Some(first) if *first != found => {
                return Err(format!("the peers are reached by different devices ({first}, {found})"));
            }
            Some(_) => {}
        }
    }
    device.ok_or_else(|| "no peer given".to_string())
}

/// netem's words for these figures: `delay 100000us 10000us loss 1.5000% rate 1000000bit`.
fn netem_words(delay_us: u64, jitter_us: u64, loss_ppm: u32, rate_bps: u64) -> String {
    let mut words = Vec::new();
    if delay_us > 0 || jitter_us > 0 {
        words.push(format!("delay {delay_us}us"));
        if jitter_us > 0 {
            words.push(format!("{jitter_us}us"));
        }
    }
    if loss_ppm > 0 {
        words.push(format!("loss {}.{:04}%", loss_ppm / 10_000, loss_ppm % 10_000));
    }
    if rate_bps > 0 {
        words.push(format!("rate {rate_bps}bit"));
    }
    words.join(" ")
}

/// Sends `signal` to each pid; returns those it reached and why the others were not.
fn signal_each(pids: impl IntoIterator<Item = i32>, signal: i32) -> (Vec<i32>, Vec<String>) {
    let mut sent = Vec::new();
    let mut failures = Vec::new();
    for pid in pids {
        // SAFETY: kill(2) with a pid and a signal number has no memory effects.
        if unsafe { libc::kill(pid, signal) } == 0 {
            sent.push(pid);
        } else {
            failures.push(format!("{pid}: {}", std::io::Error::last_os_error()));
        }
    }
    (sent, failures)
}

fn pid_list(pids: &[i32]) -> String {
    pids.iter().map(i32::to_string).collect::<Vec<_>>().join(" ")
}

fn pause(pids: &[i32]) -> Result<(Held, String), String> {
    // The start time first, so that the heal can tell a reused pid.
    let started: Vec<(i32, u64)> = pids.iter().filter_map(|&pid| start_time(pid).map(|start| (pid, start))).collect();
    let (sent, failures) = signal_each(started.iter().map(|(pid, _)| *pid), libc::SIGSTOP);
    if sent.is_empty() {
        return Err(format!("no process could be stopped ({})", failures.join(", ")));
    }
    let stopped: Vec<(i32, u64)> = started.into_iter().filter(|(pid, _)| sent.contains(pid)).collect();
    Ok((Held::Paused(stopped), format!("stopped pids {}", pid_list(&sent))))
}

fn send_signal(pids: &[i32], signal: i32) -> Result<String, String> {
    let (sent, failures) = signal_each(pids.iter().copied(), signal);
    if sent.is_empty() {
        return Err(format!("signal {signal} reached no process ({})", failures.join(", ")));
    }
    Ok(format!("sent signal {signal} to pids {}", pid_list(&sent)))
}

/// What the other faults still held need left in place when one is undone.
#[derive(Debug, Default)]
struct Remaining {
    /// Pids another pause holds.
    stopped: Vec<i32>,
    /// Another per-peer class is on the same device: keep the htb root.
    root_still_used: bool,
}

fn undo(held: Held, remaining: &Remaining) -> Result<String, String> {
    match held {
        Held::NftTable(table) => {
            run("nft", &["delete", "table", "inet", &table])?;
            Ok(format!("deleted nft table inet {table}"))
        }
        Held::IptablesChain { chain, v4, v6 } => {
            let mut errors = Vec::new();
            for (tool, wanted) in [("iptables", v4), ("ip6tables", v6)] {
                if !wanted {
                    continue;
                }
                for args in [
                    &["-w", "-D", "INPUT", "-j", &chain][..],
                    &["-w", "-D", "OUTPUT", "-j", &chain],
                    &["-w", "-F", &chain],
                    &["-w", "-X", &chain],
                ] {
                    if let Err(err) = run(tool, args) {
                        errors.push(err);
                    }
                }
            }
            if errors.is_empty() {
                Ok(format!("deleted iptables chain {chain}"))
            } else {
                Err(errors.join("; "))
            }
        }
        Held::Qdisc(device) => {
            run("tc", &["qdisc", "del", "dev", &device, "root"])?;
            Ok(format!("removed the root qdisc of {device}"))
        }
        Held::PeerClass { device, minor, v4, v6 } => {
            let prio = minor.to_string();
            for (protocol, wanted) in [("ip", v4), ("ipv6", v6)] {
                if wanted {
                    // Gone already when the fault was only half made.
                    let _ = run(
                        "tc",
                        &["filter", "del", "dev", &device, "parent", "1:", "protocol", protocol, "prio", &prio],
                    );
                }
            }
            if remaining.root_still_used {
                // The class goes with its qdisc; its filters went first (they hold it).
                run("tc", &["class", "del", "dev", &device, "classid", &format!("1:{minor:x}")])?;
                Ok(format!("removed class 1:{minor:x} of {device}"))
            } else {
                run("tc", &["qdisc", "del", "dev", &device, "root"])?;
                Ok(format!("removed class 1:{minor:x} and the root qdisc of {device}"))
            }
        }
        Held::Paused(pids) => {
            // A pid whose process has ended (or been reused) is left alone.
            let still_ours = pids
                .into_iter()
                .filter(|(pid, start)| start_time(*pid) == Some(*start) && !remaining.stopped.contains(pid))
                .map(|(pid, _)| pid);
            let (resumed, _) = signal_each(still_ours, libc::SIGCONT);
            Ok(format!("resumed pids {}", if resumed.is_empty() { "(none left)".into() } else { pid_list(&resumed) }))
        }
    }
}

impl Held {
    /// The device it shapes, if it does.
    fn device(&self) -> Option<&str> {
        match self {
            Held::Qdisc(device) | Held::PeerClass { device, .. } => Some(device),
            _ => None,
        }
    }
}

/// The `dev` of an `ip -o route get` line.
fn device_of_route(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "dev" {
            return words.next().map(String::from);
        }
    }
    None
}

/// A process's start time (field 22 of /proc/PID/stat, in clock ticks since boot).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` is stopped (state T).
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').map(|end| stat[end + 1..].trim_start().starts_with('T')))
        .unwrap_or(false)
}

/// Whether process `pid` runs `program`.
fn is_program(pid: i32, program: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == program)
}

fn has_program(name: &str) -> bool {
    std::env::split_paths(&search_path()).any(|dir| dir.join(name).is_file())
}

/// Runs a command and returns its stdout; an error names the command and gives its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    run_with_input(program, args, "")
}

fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .env("PATH", search_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that reads no input may have closed it already.
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = wait_bounded(child, COMMAND_TIMEOUT).map_err(|err| format!("{shown}: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("`{shown}` failed ({}): {}", output.status, stderr.trim()))
    }
}

/// Waits for a child's output; kills it past `timeout` (its pipes are read meanwhile, so
/// a chatty child cannot block on a full pipe).
fn wait_bounded(mut child: std::process::Child, timeout: std::time::Duration) -> Result<std::process::Output, String> {
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buffer);
            }
            buffer
        })
    };
    let read_out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let read_err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s: killed", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(err) => return Err(err.to_string()),
        }
    };
    let stdout = read_out.join().unwrap_or_default();
    let stderr = read_err.join().unwrap_or_default();
    Ok(std::process::Output { status, stdout, stderr })
}

/// PATH with the sbin folders, where nft, iptables, tc and ip live, appended: every command
/// here is looked up and run with it.
fn search_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !dirs.iter().any(|d| d == Path::new(extra)) {
            dirs.push(extra.into());
        }
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_words_for_figures() {
        assert_eq!(netem_words(100_000, 0, 0, 0), "delay 100000us");
        assert_eq!(
            netem_words(100_000, 10_000, 15_000, 1_000_000),
            "delay 100000us 10000us loss 1.5000% rate 1000000bit"
        );
        assert_eq!(netem_words(0, 0, 1, 0), "loss 0.0001%");
        assert_eq!(netem_words(0, 0, 1_000_000, 0), "loss 100.0000%");
    }

    #[test]
    fn route_device() {
        let line = "10.0.0.1 via 192.168.1.1 dev eth0 src 192.168.1.5 uid 0 \\    cache";
        assert_eq!(device_of_route(line).as_deref(), Some("eth0"));
        assert_eq!(device_of_route("local 127.0.0.1 dev lo table local src 127.0.0.1").as_deref(), Some("lo"));
        assert_eq!(device_of_route("unreachable"), None);
    }

    #[test]
    fn nft_tables_drop_both_directions_per_family() {
        let peers: Vec<IpAddr> =
            vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap(), "10.0.0.3".parse().unwrap()];
        let text = nft_ruleset("xrdtest_f7", &peers);
        assert!(text.starts_with("table inet xrdtest_f7 {"), "{text}");
        assert!(text.contains("ip saddr { 10.0.0.2, 10.0.0.3 } drop"), "{text}");
        assert!(text.contains("ip daddr { 10.0.0.2, 10.0.0.3 } drop"), "{text}");
        assert!(text.contains("ip6 saddr { fd00::2 } drop"), "{text}");
        assert!(text.contains("ip6 daddr { fd00::2 } drop"), "{text}");
        let v4_only = nft_ruleset("t", &peers[..1]);
        assert!(!v4_only.contains("ip6"), "{v4_only}");
    }

    #[test]
    fn own_start_time_is_read() {
        let pid = std::process::id() as i32;
        assert!(start_time(pid).is_some());
        assert_eq!(start_time(pid), start_time(pid));
        assert_eq!(start_time(i32::MAX), None);
    }

    #[test]
    fn pause_and_resume_a_real_process() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
        };
        let faults = Faults::new(PathBuf::from("/nonexistent/own-exe"), "127.0.0.1:1".into());
        // A pattern only this child matches.
        let detail = faults.apply(3, &FaultAction::Pause { pattern: "^sleep 30$".into() }).unwrap();
        assert!(detail.contains(&pid.to_string()), "{detail}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(state(), 'T');
        assert_eq!(faults.held(), vec![3]);
        let healed = faults.heal(3).unwrap();
        assert!(healed.contains(&pid.to_string()), "{healed}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_ne!(state(), 'T');
        assert!(faults.held().is_empty());
        assert!(faults.heal(3).unwrap().contains("not applied"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn overlapping_pauses_and_processes_stopped_already_stay_stopped() {
        let ours = Command::new("sleep").arg("31").spawn().unwrap();
        let theirs = Command::new("sleep").arg("32").spawn().unwrap();
        let (ours_pid, theirs_pid) = (ours.id() as i32, theirs.id() as i32);
        // SAFETY: signalling our own children.
        unsafe { libc::kill(theirs_pid, libc::SIGSTOP) };
        std::thread::sleep(std::time::Duration::from_millis(50));
        let faults = Faults::new(PathBuf::from("/nonexistent/own-exe"), "127.0.0.1:1".into());
        let pause = |pattern: &str| FaultAction::Pause { pattern: pattern.into() };
        let detail = faults.apply(1, &pause("^sleep 3[12]$")).unwrap();
        assert!(detail.contains(&ours_pid.to_string()) && !detail.contains(&theirs_pid.to_string()), "{detail}");
        assert!(faults.apply(2, &pause("^sleep 32$")).unwrap_err().contains("stopped already"));
        // A second pause of a process the first one stopped is refused, not stacked.
        assert!(faults.apply(3, &pause("^sleep 31$")).unwrap_err().contains("stopped already"));
        faults.heal(1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!is_stopped(ours_pid), "fault 1 continued what it stopped");
        assert!(is_stopped(theirs_pid), "stopped before any fault: left stopped");
        for mut child in [ours, theirs] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Real tc in a network namespace of the test's own (root only): per-peer classes
    /// share xrdtest's htb root, which goes with the last of them. tbf (a rate alone) is
    /// used because not every kernel has netem.
    #[test]
    fn per_peer_shaping_shares_one_root_and_removes_it_last() {
        if unsafe { libc::geteuid() } != 0 || !has_program("tc") {
            eprintln!("SKIPPED per_peer_shaping_shares_one_root_and_removes_it_last: needs root and tc");
            return;
        }
        let outcome = std::thread::spawn(|| {
            // SAFETY: this thread alone moves to a new network namespace; it ends after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            run("ip", &["link", "set", "lo", "up"])?;
            let faults = Faults::new(PathBuf::from("/nonexistent"), "127.0.0.1:1".into());
            let rate = |peer: &str| FaultAction::Netem {
                delay_us: 0,
                jitter_us: 0,
                loss_ppm: 0,
                rate_bps: 1_000_000,
                peers: vec![peer.parse().unwrap()],
            };
            let show = || run("tc", &["qdisc", "show", "dev", "lo"]).unwrap_or_default();
            let first = faults.apply(1, &rate("127.0.0.2"))?;
            assert!(first.contains("towards 127.0.0.2 (class 1:4)"), "{first}");
            let second = faults.apply(2, &rate("127.0.0.3"))?;
            assert!(second.contains("(class 1:5)"), "{second}");
            let qdiscs = show();
            assert!(qdiscs.contains("qdisc htb 1: root"), "{qdiscs}");
            assert!(
                qdiscs.contains("qdisc tbf 40: parent 1:4") && qdiscs.contains("qdisc tbf 50: parent 1:5"),
                "{qdiscs}"
            );
            let filters = run("tc", &["filter", "show", "dev", "lo"])?;
            assert!(filters.contains("flowid 1:4") && filters.contains("flowid 1:5"), "{filters}");
            let whole =
                FaultAction::Netem { delay_us: 0, jitter_us: 0, loss_ppm: 0, rate_bps: 1_000_000, peers: vec![] };
            assert!(faults.apply(3, &whole).unwrap_err().contains("already shaped"));
            faults.heal(1)?;
            let qdiscs = show();
            assert!(qdiscs.contains("qdisc htb 1: root") && !qdiscs.contains("tbf 40:"), "{qdiscs}");
            let classes = run("tc", &["class", "show", "dev", "lo"])?;
            assert!(!classes.contains("1:4 ") && classes.contains("1:5 "), "{classes}");
            faults.heal(2)?;
            let qdiscs = show();
            assert!(!qdiscs.contains("htb") && !qdiscs.contains("tbf"), "{qdiscs}");
            assert!(faults.held().is_empty());
            Ok(())
        })
        .join()
        .expect("the namespace thread");
        outcome.unwrap();
    }

    #[test]
    fn a_pattern_matching_nothing_is_an_error() {
        let faults = Faults::new(PathBuf::from("/nonexistent"), "127.0.0.1:1".into());
        let err =
            faults.apply(1, &FaultAction::Kill { pattern: "no-such-process-xrdtest-[0-9]{40}".into(), signal: 15 });
        assert!(err.unwrap_err().contains("no process matches"));
        assert!(faults.held().is_empty());
    }
}
