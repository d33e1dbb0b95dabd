//! Keeps each session's processes together on this slave, so that nothing a session started
//! outlives it, however it detached (`setsid`, `nohup`, a double fork).
//!
//! Two ways to find a session's processes, both always used at its end:
//!
//! - **cgroup** (where a writable cgroup v2 is found): every stage script starts inside the
//!   session's own cgroup, `xrdtest-<scope>-<session>` under the slave's own cgroup (under
//!   systemd, `Delegate=yes` in the unit makes it the slave's to divide). Nothing a process
//!   does takes it out of its cgroup, so at the end everything in it is killed at once
//!   (`cgroup.kill`; on kernels before 5.14, frozen and killed one by one).
//! - **environ** (always; the only one where no cgroup v2 can be written): every stage
//!   script has `XRDTEST_SCOPE=<scope>/<session>` in its environment, which its children
//!   inherit; at the end every process with it is killed. A process that clears its
//!   environment (`env -i`) escapes this one.
//!
//! `<scope>` is the slave's name and a hash of its work folder, so that slaves sharing a host
//! (even under one name, for different masters) never end each other's processes.
//!
//! Daemons started in suite init live on until the session ends (after suite finalize): a
//! session is ended only by the master's word, by a master away past `session_grace`, or, for
//! sessions of an earlier run of this slave, at its start.

use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use xrdtest_proto::SessionCleanup;

/// The environment variable that marks a session's processes.
pub const SCOPE_VAR: &str = "XRDTEST_SCOPE";
/// How long the end of a session waits for its killed processes to be gone.
const END_WAIT: Duration = Duration::from_secs(5);
/// Rounds of the environment sweep: a process may fork between a scan and its kill.
const SWEEP_ROUNDS: usize = 20;

/// Which way to use, from `session_cleanup` in `slave.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupMethod {
    /// cgroup where one can be written, else environ.
    Auto,
    Cgroup,
    Environ,
}

impl CleanupMethod {
    pub fn parse(text: &str) -> Result<CleanupMethod, String> {
        match text {
            "auto" => Ok(CleanupMethod::Auto),
            "cgroup" => Ok(CleanupMethod::Cgroup),
            "environ" => Ok(CleanupMethod::Environ),
            other => Err(format!("`{other}` is not one of auto, cgroup, environ")),
        }
    }
}

/// The sessions of this slave and how their processes are found.
pub struct SessionScopes {
    /// This slave's part of cgroup names and markers: `<name>-<work folder hash>`.
    scope: String,
    /// The folder under which session cgroups are made; `None`: environ only.
    cgroup_base: Option<PathBuf>,
    /// Sessions with a stage started here and not ended yet.
    active: Mutex<BTreeSet<String>>,
}

impl SessionScopes {
    /// Finds a writable cgroup v2 (unless told not to); `Err` only when `cgroup` was asked
    /// for and none can be used. The second value says which method is in use and why.
    pub fn detect(slave: &str, work_dir: &Path, want: CleanupMethod) -> Result<(SessionScopes, String), String> {
        let scope = format!("{}-{:08x}", sanitize(slave), fnv1a(work_dir.as_os_str().as_bytes()) as u32);
        let (cgroup_base, how) = match want {
            CleanupMethod::Environ => (None, "environment marker (as configured)".to_string()),
            CleanupMethod::Auto | CleanupMethod::Cgroup => match writable_cgroup(&scope) {
                Ok(base) => {
                    let how = format!("cgroup v2 under {} (and the environment marker)", base.display());
                    (Some(base), how)
                }
                Err(reason) if want == CleanupMethod::Cgroup => {
                    return Err(format!("session_cleanup = \"cgroup\", but no cgroup v2 can be used: {reason}"))
                }
                Err(reason) => (None, format!("environment marker (no cgroup v2 to use: {reason})")),
            },
        };
        let scopes = SessionScopes { scope, cgroup_base, active: Mutex::new(BTreeSet::new()) };
        Ok((scopes, how))
    }

    pub fn method(&self) -> &'static str {
        if self.cgroup_base.is_some() {
            "cgroup"
        } else {
            "environ"
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sessions whose processes this slave keeps (for the reattach message).
    pub fn sessions(&self) -> Vec<String> {
        self.active().iter().cloned().collect()
    }

    /// Where a stage of `session` goes: its marker variable, and the `cgroup.procs` file the
    /// stage's first process writes itself into (made now; `None` without a cgroup, or if it
    /// cannot be made: the marker still finds the stage's processes).
    pub fn place(&self, session: &str) -> Placement {
        self.active().insert(session.to_string());
        let cgroup_procs = self.cgroup_base.as_ref().and_then(|base| {
            let dir = base.join(self.cgroup_name(session));
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => {
                    tracing::warn!(session, cgroup = %dir.display(), error = %err, "cannot make the session's cgroup; its processes are found by their environment only");
                    return None;
                }
            }
            CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).ok()
        });
        Placement { marker: (SCOPE_VAR.to_string(), self.marker(session)), cgroup_procs }
    }

    /// Ends every process of `session` still alive and forgets the session. Blocking (it
    /// waits for the processes to be gone): run it off the async threads.
    pub fn end(&self, session: &str) -> SessionCleanup {
        self.active().remove(session);
        let marker = self.marker(session);
        let cgroup = self.cgroup_base.as_ref().map(|base| base.join(self.cgroup_name(session)));
        self.end_where(cgroup.into_iter().collect(), |value| value == marker)
    }

    /// Ends the processes of every session this slave holds.
    pub fn end_all(&self) -> Vec<(String, SessionCleanup)> {
        let sessions = self.sessions();
        sessions.into_iter().map(|session| (session.clone(), self.end(&session))).collect()
    }

    /// Ends what sessions of an earlier run of this slave (a crash, a restart) left: every
    /// cgroup and marked process of this slave's name.
    pub fn end_stale(&self) -> SessionCleanup {
        let prefix = format!("xrdtest-{}-", self.scope);
        let cgroups = match &self.cgroup_base {
            Some(base) => std::fs::read_dir(base)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let marker_prefix = format!("{}/", self.scope);
        self.end_where(cgroups, |value| value.starts_with(&marker_prefix))
    }

    fn end_where(&self, cgroups: Vec<PathBuf>, marked: impl Fn(&str) -> bool) -> SessionCleanup {
        let mut ended: HashSet<u32> = HashSet::new();
        let mut problems = Vec::new();
        for dir in &cgroups {
            if dir.exists() {
                if let Err(err) = end_cgroup(dir, &mut ended) {
                    problems.push(format!("cgroup {}: {err}", dir.display()));
                }
            }
        }
        let survivors = end_marked(&marked, &mut ended);
        if survivors > 0 {
            problems.push(format!("{survivors} marked processes still alive after {SWEEP_ROUNDS} rounds of SIGKILL"));
        }
        SessionCleanup {
            method: self.method().to_string(),
            processes_ended: ended.len() as u32,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }

    fn marker(&self, session: &str) -> String {
        format!("{}/{session}", self.scope)
    }

    fn cgroup_name(&self, session: &str) -> String {
        format!("xrdtest-{}-{}", self.scope, sanitize(session))
    }
}

/// What a stage needs to be found at its session's end.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `XRDTEST_SCOPE` and its value.
    pub marker: (String, String),
    /// The session cgroup's `cgroup.procs`, for the stage's first process to write itself into.
    pub cgroup_procs: Option<CString>,
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs`. Runs between
/// fork and exec, so only async-signal-safe calls (open, write, close).
pub fn join_cgroup(procs: &CString) -> io::Result<()> {
    // SAFETY: `procs` is a valid NUL-terminated path; the buffer outlives the write.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let error = io::Error::last_os_error();
        libc::close(fd);
        if written != 1 {
            return Err(error);
        }
    }
    Ok(())
}

/// A cgroup name part: what is not a letter, digit, `.`, `_` or `-` becomes `_`.
fn sanitize(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

/// 64-bit FNV-1a: a stable short name for a path (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The slave's own cgroup v2 folder, if it can make session cgroups under it.
fn writable_cgroup(scope: &str) -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mount = cgroup2_mount(&mountinfo).ok_or("no cgroup2 file system is mounted")?;
    let own =
        std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let path = own_cgroup(&own).ok_or("this process has no cgroup v2 path")?;
    let base = mount.join(path.trim_start_matches('/'));
    // A process may stay in a cgroup whose children get processes only while no controller
    // is enabled for them (the "no internal processes" rule; the root is exempt).
    let controllers = std::fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    if path != "/" && !controllers.trim().is_empty() {
        return Err(format!(
            "{} enables controllers for its children ({}), so this slave cannot stay in it beside them",
            base.display(),
            controllers.trim()
        ));
    }
    let probe = base.join(format!("xrdtest-{scope}.probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("cannot make a cgroup under {}: {e}", base.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(base)
}

/// The mount point of the cgroup2 file system, from `/proc/self/mountinfo`.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        before.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's cgroup v2 path (`0::/path` in `/proc/self/cgroup`).
fn own_cgroup(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|line| line.strip_prefix("0::")).map(str::trim)
}

/// Kills everything in cgroup `dir` (and the cgroups under it), waits for it to empty, and
/// removes the folders; the pids it held go into `ended`.
fn end_cgroup(dir: &Path, ended: &mut HashSet<u32>) -> Result<(), String> {
    let pids = cgroup_pids(dir);
    if !pids.is_empty() {
        if dir.join("cgroup.kill").exists() {
            std::fs::write(dir.join("cgroup.kill"), "1").map_err(|e| format!("cannot write cgroup.kill: {e}"))?;
        } else {
            // Before cgroup.kill (Linux 5.14): frozen, a process cannot fork between the
            // listing and its kill.
            let _ = std::fs::write(dir.join("cgroup.freeze"), "1");
            for pid in cgroup_pids(dir) {
                kill(pid);
            }
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        }
    }
    ended.extend(&pids);
    let deadline = Instant::now() + END_WAIT;
    loop {
        let left = cgroup_pids(dir);
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("{} processes still in it after {END_WAIT:?}", left.len()));
        }
        ended.extend(&left);
        for pid in &left {
            kill(*pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    remove_cgroup_tree(dir).map_err(|e| format!("cannot remove it: {e}"))
}

/// Every pid in cgroup `dir` and below.
fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    for child in child_cgroups(dir) {
        pids.extend(cgroup_pids(&child));
    }
    pids
}

fn child_cgroups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Removes an empty cgroup and the ones under it, deepest first.
fn remove_cgroup_tree(dir: &Path) -> io::Result<()> {
    for child in child_cgroups(dir) {
        remove_cgroup_tree(&child)?;
    }
    match std::fs::remove_dir(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Kills every process whose `XRDTEST_SCOPE` satisfies `marked`, round after round until
/// none is left; returns how many were still found in the last round.
fn end_marked(marked: &impl Fn(&str) -> bool, ended: &mut HashSet<u32>) -> usize {
    let mut found = Vec::new();
    for _ in 0..SWEEP_ROUNDS {
        found = marked_pids(marked);
        if found.is_empty() {
            return 0;
        }
        for pid in &found {
            kill(*pid);
            ended.insert(*pid);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    found.len()
}

/// Live processes (not this one) with a marker that satisfies `marked`.
fn marked_pids(marked: &impl Fn(&str) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            // A zombie's environment reads empty: it is dead already.
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|environ| marker_of(&environ).is_some_and(marked))
                .unwrap_or(false)
        })
        .collect()
}

/// The value of `XRDTEST_SCOPE` in a NUL-separated environment block.
fn marker_of(environ: &[u8]) -> Option<&str> {
    let prefix = format!("{SCOPE_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .and_then(|value| std::str::from_utf8(value).ok())
}

fn kill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; a pid gone already gives ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// How long credentials just written are spared by a sweep that found their session not
/// running.
pub const CREDENTIALS_GRACE: Duration = Duration::from_secs(30);

/// Removes the session folders under `sessions_dir` last changed more than `keep` ago,
/// except those of `active` sessions; returns how many went. The credentials of every
/// session that is not active go at once, whatever its folder's age (a session whose end
/// this slave never heard of: it was restarted, or the master went away).
///
/// `is_active` is asked for each folder as it is reached, so a session that starts during
/// a long sweep is seen; credentials written in the last [`CREDENTIALS_GRACE`] stay (a
/// session whose first stage arrived between that question and the removal).
pub fn sweep_work_dirs(sessions_dir: &Path, keep: Duration, is_active: &dyn Fn(&str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(sessions_dir) else { return 0 };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_active(&name) {
            continue;
        }
        let credentials = crate::session_files::folder(&entry.path());
        let fresh = std::fs::metadata(&credentials)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age < CREDENTIALS_GRACE);
        if !fresh {
            if let Err(err) = crate::session_files::remove(&entry.path()) {
                tracing::warn!(folder = %entry.path().display(), error = %err, "cannot remove a session's credentials");
            }
        }
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
        if age.is_some_and(|age| age >= keep) {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(err) => {
                    tracing::warn!(folder = %entry.path().display(), error = %err, "cannot remove a session's work folder")
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup2_mount_and_own_path_are_read_from_proc() {
        let mountinfo = "24 30 0:22 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                         35 30 0:31 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(mountinfo), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_mount("24 30 0:22 / /x rw - cgroup cgroup rw\n"), None);
        assert_eq!(
            own_cgroup("1:cpu:/\n0::/system.slice/xrdtest-slave.service\n"),
            Some("/system.slice/xrdtest-slave.service")
        );
        assert_eq!(own_cgroup("1:cpu:/\n"), None);
    }

    #[test]
    fn the_marker_is_found_in_an_environment_block() {
        assert_eq!(marker_of(b"A=1\0XRDTEST_SCOPE=s1/42\0B=2\0"), Some("s1/42"));
        assert_eq!(marker_of(b"A=1\0XRDTEST_SCOPEX=s1/42\0"), None);
        assert_eq!(marker_of(b""), None);
    }

    #[test]
    fn cgroup_names_keep_only_safe_characters() {
        assert_eq!(sanitize("slave1.xrd.test"), "slave1.xrd.test");
        assert_eq!(sanitize("a/b c"), "a_b_c");
    }

    #[test]
    fn old_work_folders_go_and_active_or_young_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["1", "2", "3"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        assert_eq!(sweep_work_dirs(dir.path(), Duration::from_secs(3600), &|_| false), 0, "young folders stay");
        assert_eq!(sweep_work_dirs(dir.path(), Duration::ZERO, &|name| name == "2"), 2);
        assert!(dir.path().join("2").exists(), "an active session's folder stays");
    }
}
