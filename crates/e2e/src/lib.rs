//! Helpers for the end-to-end tests in `tests/`: they start the real `xrdtest-master`,
//! `xrdtest-slave` and `xrdtest` binaries (built by `cargo build --workspace --bins`) on
//! loopback and talk to them over real sockets.
//!
//! - [`binary`]: where the binaries are (next to the test executable).
//! - [`Proc`]: a child process whose stdout and stderr go to a log file; killed on drop,
//!   its log's tail printed when the test panics.
//! - [`Env`]: one test's world: a temporary directory with definitions, a [`Master`] and
//!   its [`Slave`]s. The directory is kept (and its path printed) when the test fails.
//! - [`Api`]: a blocking client of the master's JSON API.
//! - [`Suite`], [`Case`]: suite definitions written to the definitions folder.
//! - [`netns::Hosts`]: test hosts in network namespaces of their own, joined by a bridge.
//! - [`wait_until`]: polling with a deadline; nothing here sleeps a fixed time to wait for
//!   something that can be observed.

pub mod netns;
pub mod vm;

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
pub use serde_json::{json, Value};

/// How long a daemon may take to start listening or connecting.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// A string no other test (or earlier run) uses.
pub fn unique_token(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{}-{nanos:x}", std::process::id(), unique())
}

/// The path of a workspace binary: next to the test executable's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .map(|deps| if deps.ends_with("deps") { deps.parent().unwrap_or(deps) } else { deps })
        .expect("the test executable has a folder");
    let path = dir.join(name);
    if !path.is_file() {
        panic!("{} is missing: run `cargo build --workspace --bins` first", path.display());
    }
    path
}

/// Polls `check` every 50 ms until it returns `Ok`, for at most `timeout`. Panics with the
/// last `Err` (a description of what was seen) when the time is up.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes terminal colour sequences (`ESC [ ... m`) from a log.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may hold spaces.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// SIGKILL to a process that is not a child of this one (cleanup of leftovers).
pub fn kill_pid(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
}

/// SIGKILL to a process group (a stage's script and everything it started).
pub fn kill_group(pgid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
}

/// When dropped, kills the scripts whose pids a test's stages listed in a file (`echo $$ >>
/// FILE`) with everything they started: each stage runs in a process group led by its bash.
/// For the scripts a killed slave or master leaves behind, even when the test fails.
pub struct ScriptReaper(pub PathBuf);

impl Drop for ScriptReaper {
    fn drop(&mut self) {
        for pid in read_pids(&self.0) {
            kill_group(pid);
            kill_pid(pid);
        }
    }
}

/// Sends a signal (`TERM`, `INT`, `KILL`...) to a process.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
}

/// The numbers in a file, one per line (pid files written by scripts).
pub fn read_pids(path: &Path) -> Vec<u32> {
    fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A child process with its stdout and stderr in a log file. Killed (SIGKILL) when dropped;
/// when the test is panicking, the end of its log is printed.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Proc {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let stderr = file.try_clone().expect("a second handle on the log file");
        command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("XRDTEST_MASTER")
            .env_remove("XRDTEST_TOKEN");
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name: name.to_string(), child: Some(child), log: log.to_path_buf(), status: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far, colours removed.
    pub fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()))
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.status = Some(status);
                    self.child = None;
                }
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        wait_until(timeout, &format!("{name} to exit"), || self.try_wait().ok_or_else(|| "still running".to_string()))
    }

    /// Waits until the log holds `needle`; returns the first line that does. Panics early
    /// if the process exits without writing it.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let what = format!("`{needle}` in the log of {}", self.name);
        wait_until(timeout, &what, || {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.try_wait() {
                panic!("{} exited ({status}) before writing `{needle}`:\n{}", self.name, tail(&log, 40));
            }
            Err(tail(&log, 5))
        })
    }

    /// SIGKILL, then reap. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- {} ({}), last lines -----\n{}", self.name, self.log.display(), tail(&self.log(), 30));
        }
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The master's settings the tests vary.
#[derive(Debug, Clone)]
pub struct MasterOptions {
    pub slave_wait: String,
    pub reconnect_grace: String,
    pub heartbeat_interval: Option<String>,
    /// More top-level settings, as TOML lines.
    pub extra: String,
    /// `[[repos]]` and other tables, as TOML; when set, the test's definitions folder is not
    /// given as `definitions`.
    pub tables: Option<String>,
    /// Run the master inside this network namespace (`ip netns exec`), listening for peers
    /// on all its addresses and serving the API on `web_ip`, an address the test reaches.
    pub netns: Option<(String, String)>,
    /// Run the master in a mount namespace of its own with its store on a tmpfs of this
    /// size (`16m`): a small disk that fills up for real. Each start gets an empty one;
    /// the test reaches it through `/proc/<pid>/root`.
    pub store_tmpfs: Option<String>,
}

impl Default for MasterOptions {
    fn default() -> Self {
        MasterOptions {
            slave_wait: "15s".into(),
            reconnect_grace: "10s".into(),
            heartbeat_interval: None,
            extra: String::new(),
            tables: None,
            netns: None,
            store_tmpfs: None,
        }
    }
}

/// `command` in a new mount namespace with a tmpfs of `size` on `store`; `unshare` and
/// `sh` exec, so the process is the master's own.
fn in_store_tmpfs(command: Command, store: &Path, size: &str) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mkdir -p "$1" && mount -t tmpfs -o "size=$2" xrdtest-store "$1" && shift 2 && exec "$@""#)
        .arg("sh")
        .arg(store)
        .arg(size)
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

/// A running `xrdtest-master`. Its first start takes any free ports; a restart reuses them
/// and the same state directory.
pub struct Master {
    dir: PathBuf,
    definitions: PathBuf,
    options: MasterOptions,
    pub secret: String,
    pub token: String,
    peer: SocketAddr,
    web: SocketAddr,
    /// Every start so far; the last one is the current process.
    procs: Vec<Proc>,
}

impl Master {
    pub fn start(dir: &Path, definitions: &Path, options: MasterOptions) -> Master {
        fs::create_dir_all(dir).expect("master directory");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let mut master = Master {
            dir: dir.to_path_buf(),
            definitions: definitions.to_path_buf(),
            options,
            secret: unique_token("secret"),
            token: unique_token("token"),
            peer: any,
            web: any,
            procs: Vec::new(),
        };
        master.launch();
        master
    }

    fn launch(&mut self) {
        let n = self.procs.len() + 1;
        let config = self.dir.join("master.toml");
        if let (Some((_, web_ip)), true) = (&self.options.netns, self.procs.is_empty()) {
            self.peer = SocketAddr::new("0.0.0.0".parse().expect("an address"), 0);
            self.web = SocketAddr::new(web_ip.parse().expect("web_ip is an IP address"), 0);
        }
        let mut text = format!(
            "listen = \"{}\"\nweb_listen = \"{}\"\nstate_dir = {}\nsecret = {}\napi_token = {}\n\
             slave_wait = {}\nreconnect_grace = {}\n",
            self.peer,
            self.web,
            toml_string(&self.state_dir().display().to_string()),
            toml_string(&self.secret),
            toml_string(&self.token),
            toml_string(&self.options.slave_wait),
            toml_string(&self.options.reconnect_grace),
        );
        if self.options.tables.is_none() {
            text.push_str(&format!("definitions = {}\n", toml_string(&self.definitions.display().to_string())));
        }
        if let Some(interval) = &self.options.heartbeat_interval {
            text.push_str(&format!("heartbeat_interval = {}\n", toml_string(interval)));
        }
        text.push_str(&self.options.extra);
        text.push('\n');
        if let Some(tables) = &self.options.tables {
            text.push_str(tables);
        }
        fs::write(&config, text).expect("master.toml");
        let mut command = match &self.options.netns {
            Some((netns, _)) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(binary("xrdtest-master"));
                command
            }
            None => Command::new(binary("xrdtest-master")),
        };
        if let Some(size) = &self.options.store_tmpfs {
            command = in_store_tmpfs(command, &self.state_dir().join("store"), size);
        }
        command.arg("--config").arg(&config);
        let mut proc = Proc::spawn(&format!("master (start {n})"), command, &self.dir.join(format!("master-{n}.log")));
        let line = proc.wait_log("master listening", START_TIMEOUT);
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .map(|value| value.trim_start_matches("http://").trim_start_matches("https://"))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no `{name}` address in `{line}`"))
        };
        self.peer = field("peers=");
        self.web = field("web=");
        self.procs.push(proc);
    }

    /// A path of the master's own view of the file system (with `store_tmpfs`, its store is
    /// a mount only it sees).
    pub fn seen_by_master(&self, path: &Path) -> PathBuf {
        let pid = self.procs.last().map(Proc::pid).expect("the master was started");
        PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path))
    }

    /// SIGKILL: no clean shutdown, as a crash or power cut.
    pub fn kill(&mut self) {
        if let Some(proc) = self.procs.last_mut() {
            proc.kill();
        }
    }

    /// Kills the master if it runs and starts it again on the same ports and state.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn proc(&mut self) -> &mut Proc {
        self.procs.last_mut().expect("the master was started")
    }

    /// The current process's log.
    pub fn log(&self) -> String {
        self.procs.last().map(Proc::log).unwrap_or_default()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.state_dir().join("ca.crt")
    }

    /// Where peers connect (TLS).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn web_addr(&self) -> SocketAddr {
        self.web
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.web)
    }

    pub fn api(&self) -> Api {
        Api::new(self.web, self.token.clone())
    }

    /// `xrdtest --master URL --token TOKEN ARGS...`, ready to run.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("xrdtest"));
        command
            .args(["--master", &self.url(), "--token", &self.token])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("XRDTEST_MASTER")
            .env_remove("XRDTEST_TOKEN")
            .env_remove("RUST_LOG");
        command
    }
}

/// How a slave is configured; [`SlaveConfig::new`] gives the right secret and CA of a master.
#[derive(Debug, Clone)]
pub struct SlaveConfig {
    pub name: String,
    /// `host:port` it connects to.
    pub master: String,
    pub secret: String,
    pub ca_file: PathBuf,
    /// Run it inside this network namespace (`ip netns exec`), as a host of its own.
    pub netns: Option<String>,
    /// More lines of `slave.toml`.
    pub extra: String,
    /// Where it keeps its key and certificate. `None`: `identity-<name>` in the test's
    /// folder, the same for every start of that name (a daemon restarted on its machine);
    /// another folder makes it another machine claiming the name.
    pub identity_dir: Option<PathBuf>,
}

impl SlaveConfig {
    pub fn new(name: &str, master: &Master) -> SlaveConfig {
        SlaveConfig {
            name: name.to_string(),
            master: master.peer_addr().to_string(),
            secret: master.secret.clone(),
            ca_file: master.ca_file(),
            netns: None,
            extra: String::new(),
            identity_dir: None,
        }
    }
}

/// A running `xrdtest-slave`.
pub struct Slave {
    pub name: String,
    pub work_dir: PathBuf,
    pub proc: Proc,
    /// Its `slave.toml`, for [`Slave::restart`].
    config_path: PathBuf,
    netns: Option<String>,
    /// Starts so far, for the process's name in messages.
    starts: usize,
}

impl Slave {
    /// Starts a slave with its own folder under `dir`; does not wait for it to connect.
    pub fn start(dir: &Path, config: &SlaveConfig) -> Slave {
        let home = dir.join(format!("slave-{}-{}", config.name, unique()));
        let work_dir = home.join("work");
        fs::create_dir_all(&work_dir).expect("slave directory");
        let path = home.join("slave.toml");
        let identity = config.identity_dir.clone().unwrap_or_else(|| dir.join(format!("identity-{}", config.name)));
        fs::write(
            &path,
            format!(
                "master = {}\nname = {}\nsecret = {}\nca_file = {}\nwork_dir = {}\nidentity_dir = {}\n\
                 max_backoff = \"1s\"\n{}\n",
                toml_string(&config.master),
                toml_string(&config.name),
                toml_string(&config.secret),
                toml_string(&config.ca_file.display().to_string()),
                toml_string(&work_dir.display().to_string()),
                toml_string(&identity.display().to_string()),
                config.extra,
            ),
        )
        .expect("slave.toml");
        let proc = Slave::spawn(&config.name, &path, config.netns.as_deref(), 1);
        Slave { name: config.name.clone(), work_dir, proc, config_path: path, netns: config.netns.clone(), starts: 1 }
    }

    fn spawn(name: &str, config_path: &Path, netns: Option<&str>, start: usize) -> Proc {
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(binary("xrdtest-slave"));
                command
            }
            None => Command::new(binary("xrdtest-slave")),
        };
        command.arg("--config").arg(config_path);
        let label = if start == 1 { format!("slave {name}") } else { format!("slave {name} (start {start})") };
        // Every start appends to one log, as a daemon restarted on its machine would.
        let log = config_path.with_file_name("slave.log");
        Proc::spawn(&label, command, &log)
    }

    /// Kills the slave if it runs and starts it again with the same configuration and work
    /// folder: the same daemon restarted on its machine (it ends what its earlier run left).
    pub fn restart(&mut self) {
        self.proc.kill();
        self.starts += 1;
        self.proc = Slave::spawn(&self.name, &self.config_path, self.netns.as_deref(), self.starts);
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        self.proc.wait_log(needle, timeout)
    }

    /// SIGKILL: the slave vanishes mid-whatever (its scripts are orphaned, not killed).
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// One test's world: a temporary directory with a definitions repository, a master, and
/// slaves. Dropping it kills every process; a failing test keeps the directory.
pub struct Env {
    // Dropped in this order: slaves, master, then the directory.
    pub slaves: Vec<Slave>,
    pub master: Master,
    dir: tempfile::TempDir,
}

impl Env {
    /// Writes `suites` and starts a master that serves them.
    pub fn new(suites: &[Suite], options: MasterOptions) -> Env {
        Env::build(options, |_| suites.to_vec())
    }

    /// Makes the test's folder, writes the suites `suites` returns (given the folder, so
    /// that scripts can name files in it) and starts a master that serves them.
    pub fn build(options: MasterOptions, suites: impl FnOnce(&Path) -> Vec<Suite>) -> Env {
        let dir = tempfile::Builder::new().prefix("xrdtest-e2e-").tempdir().expect("a temporary directory");
        let definitions = dir.path().join("definitions");
        fs::create_dir_all(definitions.join("suites")).expect("suites folder");
        fs::create_dir_all(definitions.join("clusters")).expect("clusters folder");
        fs::create_dir_all(dir.path().join("marks")).expect("marks folder");
        for suite in suites(dir.path()) {
            suite.write(&definitions.join("suites"));
        }
        let master = Master::start(&dir.path().join("master"), &definitions, options);
        Env { slaves: Vec::new(), master, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A folder scripts write marker files into (see [`mark`]).
    pub fn marks(&self) -> PathBuf {
        self.dir.path().join("marks")
    }

    pub fn api(&self) -> Api {
        self.master.api()
    }

    /// Starts one slave with the master's secret; does not wait for it to connect.
    pub fn start_slave(&mut self, name: &str) -> &mut Slave {
        let config = SlaveConfig::new(name, &self.master);
        self.start_slave_with(&config)
    }

    pub fn start_slave_with(&mut self, config: &SlaveConfig) -> &mut Slave {
        let slave = Slave::start(self.dir.path(), config);
        self.slaves.push(slave);
        self.slaves.last_mut().expect("just pushed")
    }

    /// Starts slaves and waits until the master lists all of them connected.
    pub fn start_slaves(&mut self, names: &[&str]) {
        for name in names {
            self.start_slave(name);
        }
        self.api().wait_connected(names, START_TIMEOUT);
    }

    /// The (last started) slave of that name.
    pub fn slave(&mut self, name: &str) -> &mut Slave {
        self.slaves.iter_mut().rev().find(|s| s.name == name).unwrap_or_else(|| panic!("no slave {name}"))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("----- test files kept in {} -----", self.dir.path().display());
        }
    }
}

/// The exit code of a finished command.
pub fn code(output: &std::process::Output) -> Option<i32> {
    output.status.code()
}

/// A finished command's status, stdout and stderr, for assertion messages.
pub fn describe(output: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A shell line that records `label` for the slave running it: creates `<dir>/<label>.<slave>`.
pub fn mark(dir: &Path, label: &str) -> String {
    format!("echo \"$XRDTEST_STAGE $XRDTEST_CASE\" >> '{}/{label}.'\"$XRDTEST_SLAVE\"\n", dir.display())
}

/// Whether [`mark`] ran for `label` on `slave`.
pub fn marked(dir: &Path, label: &str, slave: &str) -> bool {
    dir.join(format!("{label}.{slave}")).exists()
}

/// A test case: `tc/<name>/` with its scripts and optional `case.toml`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub init: String,
    pub run: String,
    pub finalize: Option<String>,
    pub stage_timeout: Option<String>,
    /// More `case.toml` lines (`retries`, `[tags]`, `[matrix]`...).
    pub extra: String,
}

impl Case {
    /// A case whose init and run do nothing and succeed, without finalize.
    pub fn new(name: &str) -> Case {
        Case {
            name: name.into(),
            init: "true\n".into(),
            run: "true\n".into(),
            finalize: None,
            stage_timeout: None,
            extra: String::new(),
        }
    }
    pub fn extra(mut self, lines: &str) -> Case {
        self.extra.push_str(lines);
        self.extra.push('\n');
        self
    }
    pub fn init(mut self, script: impl Into<String>) -> Case {
        self.init = script.into();
        self
    }
    pub fn run(mut self, script: impl Into<String>) -> Case {
        self.run = script.into();
        self
    }
    pub fn finalize(mut self, script: impl Into<String>) -> Case {
        self.finalize = Some(script.into());
        self
    }
    pub fn stage_timeout(mut self, timeout: &str) -> Case {
        self.stage_timeout = Some(timeout.into());
        self
    }
}

/// A suite: `suites/<name>/suite.toml`, its scripts and its cases.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub machines: Vec<String>,
    pub init: String,
    pub finalize: Option<String>,
    pub cases: Vec<Case>,
    pub stage_timeout: Option<String>,
    /// A cron expression, written as `schedule = "..."`.
    pub schedule: Option<String>,
    /// More `suite.toml` lines (alert settings, tags...).
    pub extra: String,
}

impl Suite {
    /// A suite on `machines` whose init does nothing, without finalize or cases.
    pub fn new(name: &str, machines: &[&str]) -> Suite {
        Suite {
            name: name.into(),
            machines: machines.iter().map(|m| m.to_string()).collect(),
            init: "true\n".into(),
            finalize: None,
            cases: Vec::new(),
            stage_timeout: None,
            schedule: None,
            extra: String::new(),
        }
    }
    pub fn schedule(mut self, cron: &str) -> Suite {
        self.schedule = Some(cron.into());
        self
    }
    pub fn extra(mut self, lines: &str) -> Suite {
        self.extra.push_str(lines);
        self.extra.push('\n');
        self
    }
    pub fn init(mut self, script: impl Into<String>) -> Suite {
        self.init = script.into();
        self
    }
    pub fn finalize(mut self, script: impl Into<String>) -> Suite {
        self.finalize = Some(script.into());
        self
    }
    pub fn case(mut self, case: Case) -> Suite {
        self.cases.push(case);
        self
    }
    pub fn stage_timeout(mut self, timeout: &str) -> Suite {
        self.stage_timeout = Some(timeout.into());
        self
    }

    pub fn write(&self, suites_dir: &Path) {
        let dir = suites_dir.join(&self.name);
        fs::create_dir_all(&dir).expect("suite folder");
        let list = |items: &[String]| items.iter().map(|i| toml_string(i)).collect::<Vec<_>>().join(", ");
        let tests: Vec<String> = self.cases.iter().map(|c| c.name.clone()).collect();
        let mut toml = format!(
            "name = {}\nmachines = [{}]\ntests = [{}]\ninitialize = \"file://suite_init.sh\"\n",
            toml_string(&self.name),
            list(&self.machines),
            list(&tests)
        );
        fs::write(dir.join("suite_init.sh"), &self.init).expect("suite_init.sh");
        if let Some(finalize) = &self.finalize {
            toml.push_str("finalize = \"file://suite_finalize.sh\"\n");
            fs::write(dir.join("suite_finalize.sh"), finalize).expect("suite_finalize.sh");
        }
        if let Some(timeout) = &self.stage_timeout {
            toml.push_str(&format!("stage_timeout = {}\n", toml_string(timeout)));
        }
        if let Some(schedule) = &self.schedule {
            toml.push_str(&format!("schedule = {}\n", toml_string(schedule)));
        }
        toml.push_str(&self.extra);
        fs::write(dir.join("suite.toml"), toml).expect("suite.toml");
        for case in &self.cases {
            let case_dir = dir.join("tc").join(&case.name);
            fs::create_dir_all(&case_dir).expect("case folder");
            fs::write(case_dir.join("init.sh"), &case.init).expect("init.sh");
            fs::write(case_dir.join("run.sh"), &case.run).expect("run.sh");
            if let Some(finalize) = &case.finalize {
                fs::write(case_dir.join("finalize.sh"), finalize).expect("finalize.sh");
            }
            let mut case_toml = String::new();
            if let Some(timeout) = &case.stage_timeout {
                case_toml.push_str(&format!("stage_timeout = {}\n", toml_string(timeout)));
            }
            case_toml.push_str(&case.extra);
            if !case_toml.is_empty() {
                fs::write(case_dir.join("case.toml"), case_toml).expect("case.toml");
            }
        }
    }
}

/// A blocking client of the master's JSON API (ureq), and of chromedriver's, which is JSON
/// over HTTP too.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: String,
    agent: ureq::Agent,
}

impl Api {
    /// A client of `http://addr`, sending `token` as its bearer token.
    pub fn new(addr: SocketAddr, token: impl Into<String>) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_per_write(Some(Duration::from_secs(5)))
            .timeout_per_read(Some(Duration::from_secs(15)))
            .build()
            .into();
        Api { addr, token: token.into(), agent }
    }

    /// One request; the body, when there is one, is JSON. Errors only for transport problems.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> io::Result<(u16, Value)> {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("Accept", "application/json")
            .header("Authorization", format!("Bearer {}", self.token));
        let sent = match body {
            Some(body) => {
                request.header("Content-Type", "application/json").body(body.to_string()).map(|r| self.agent.run(r))
            }
            None => request.body(()).map(|r| self.agent.run(r)),
        };
        let mut response = sent.map_err(io::Error::other)?.map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let body = response.body_mut().with_config().limit(1 << 30).read_to_vec().map_err(io::Error::other)?;
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        Ok((status, value))
    }

    /// GET that must answer 200 with JSON.
    pub fn get(&self, path: &str) -> Value {
        match self.request("GET", path, None) {
            Ok((200, value)) => value,
            Ok((status, value)) => panic!("GET {path}: {status} {value}"),
            Err(err) => panic!("GET {path}: {err}"),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, Some(body)).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Starts a session of `suite`; returns its id.
    pub fn run(&self, suite: &str) -> u64 {
        match self.post(&format!("/api/suites/{suite}/run"), &json!({ "trigger": "api" })) {
            (201, answer) => answer["session"].as_u64().unwrap_or_else(|| panic!("no session id in {answer}")),
            (status, answer) => panic!("run {suite}: {status} {answer}"),
        }
    }

    pub fn cancel(&self, id: u64) -> (u16, Value) {
        self.post(&format!("/api/sessions/{id}/cancel"), &json!({ "reason": "cancelled by the test" }))
    }

    pub fn session(&self, id: u64) -> Value {
        self.get(&format!("/api/sessions/{id}"))
    }

    /// Polls a session until `ready` holds for it.
    pub fn wait_session(&self, id: u64, timeout: Duration, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        wait_until(timeout, &format!("session {id}: {what}"), || {
            let session = self.session(id);
            if ready(&session) {
                Ok(session)
            } else {
                Err(summarize(&session))
            }
        })
    }

    /// Waits until a session has ended; returns its record.
    pub fn wait_final(&self, id: u64, timeout: Duration) -> Value {
        self.wait_session(id, timeout, "to end", |s| {
            matches!(state(s).as_str(), "passed" | "failed" | "cancelled" | "interrupted")
        })
    }

    /// Waits until a stage of a session runs on a slave (reported started by it).
    pub fn wait_stage_started(&self, id: u64, stage: &str, slave: &str, timeout: Duration) -> Value {
        self.wait_session(id, timeout, &format!("{stage} started on {slave}"), |s| {
            find_stage(s, stage)
                .and_then(|st| st["runs"].as_array()?.iter().find(|r| r["slave"] == slave).cloned())
                .is_some_and(|run| run["state"] == "running" && !run["started_ms"].is_null())
        })
    }

    /// The peers the master knows (connected or not).
    pub fn slaves(&self) -> Vec<Value> {
        self.get("/api/slaves")["slaves"].as_array().cloned().unwrap_or_default()
    }

    pub fn connected(&self, name: &str) -> bool {
        self.slaves().iter().any(|s| s["name"] == name && s["connected"] == true)
    }

    pub fn wait_connected(&self, names: &[&str], timeout: Duration) {
        wait_until(timeout, &format!("slaves {names:?} connected"), || {
            let slaves = self.slaves();
            let missing: Vec<&&str> =
                names.iter().filter(|n| !slaves.iter().any(|s| s["name"] == **n && s["connected"] == true)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        })
    }

    /// Every output line of a stage run, in order.
    pub fn output(&self, stage_id: u64) -> Vec<String> {
        let mut lines = Vec::new();
        let mut from = 0;
        loop {
            let page = self.get(&format!("/api/stages/{stage_id}/output?from={from}&max_chunks=256"));
            let texts: Vec<String> = page["lines"]
                .as_array()
                .map(|l| l.iter().filter_map(|line| line["text"].as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let next = page["next"].as_u64().unwrap_or(from);
            if texts.is_empty() || next == from {
                return lines;
            }
            lines.extend(texts);
            from = next;
        }
    }

    /// The output of `slave`'s run of the first stage whose kind contains `stage_kind`
    /// (`SuiteInit`, `CaseRun`...) in a session record, as one text.
    pub fn run_output(&self, session: &Value, stage_kind: &str, slave: &str) -> String {
        let run = session["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["stage"].to_string().contains(stage_kind))
            .flat_map(|s| s["runs"].as_array().into_iter().flatten())
            .find(|r| r["slave"] == slave)
            .unwrap_or_else(|| panic!("no {stage_kind} run on {slave}: {}", summarize(session)));
        self.output(run["stage_id"].as_u64().expect("a stage id")).join("\n")
    }
}

/// The state of a session record (`Passed`, `Running`...).
pub fn state(session: &Value) -> String {
    session["state"].as_str().unwrap_or("?").to_string()
}

/// A stage as the API writes it (`"SuiteInit"`, `{"CaseRun":{"case":"x"}}`), as the
/// daemons name it (`suite_init`, `case_run:x`).
pub fn stage_name(stage: &Value) -> String {
    fn snake(camel: &str) -> String {
        let mut out = String::new();
        for (i, c) in camel.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
    match stage {
        Value::String(kind) => snake(kind),
        Value::Object(map) => match map.iter().next() {
            Some((kind, fields)) => format!("{}:{}", snake(kind), fields["case"].as_str().unwrap_or("?")),
            None => "?".into(),
        },
        other => other.to_string(),
    }
}

/// The names of a session's stages, in order.
pub fn stage_names(session: &Value) -> Vec<String> {
    session["stages"].as_array().into_iter().flatten().map(|s| stage_name(&s["stage"])).collect()
}

pub fn find_stage<'a>(session: &'a Value, name: &str) -> Option<&'a Value> {
    session["stages"].as_array()?.iter().find(|s| stage_name(&s["stage"]) == name)
}

/// A stage record of a session, by name (`case_run:x`).
pub fn stage<'a>(session: &'a Value, name: &str) -> &'a Value {
    find_stage(session, name).unwrap_or_else(|| panic!("no stage {name} in {:?}", stage_names(session)))
}

/// One slave's run of a stage.
pub fn stage_run<'a>(session: &'a Value, stage_name: &str, slave: &str) -> &'a Value {
    stage(session, stage_name)["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["slave"] == slave))
        .unwrap_or_else(|| panic!("no run of {stage_name} on {slave}"))
}

/// The state of one slave's run of a stage (`Passed`, `Skipped`...).
pub fn run_state(session: &Value, stage_name: &str, slave: &str) -> String {
    stage_run(session, stage_name, slave)["state"].as_str().unwrap_or("?").to_string()
}

/// The state of a case (`Passed`, `Failed`, `NotRun`...).
pub fn case_state(session: &Value, case: &str) -> String {
    session["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["name"] == case))
        .and_then(|c| c["state"].as_str())
        .unwrap_or_else(|| panic!("no case {case}"))
        .to_string()
}

/// A one-line view of a session for failure messages: its state and every run's state.
pub fn summarize(session: &Value) -> String {
    let mut out = format!("session {} {}", session["id"], state(session));
    if let Some(reason) = session["reason"].as_str() {
        out.push_str(&format!(" ({reason})"));
    }
    for stage in session["stages"].as_array().into_iter().flatten() {
        let runs: Vec<String> = stage["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{}={}", r["slave"].as_str().unwrap_or("?"), r["state"].as_str().unwrap_or("?")))
            .collect();
        out.push_str(&format!("; {} [{}]", stage_name(&stage["stage"]), runs.join(" ")));
    }
    out
}

/// Runs a command to its end, for at most `timeout` (then kills it and panics).
pub fn run_command(mut command: Command, timeout: Duration) -> std::process::Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    // Read the pipes in threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// A headless Chromium driven through chromedriver's WebDriver protocol (HTTP + JSON), for
/// tests that look at pages the way a person does. Killed (with its browser) on drop.
pub struct Browser {
    driver: Proc,
    api: Api,
    session: String,
    _profile: tempfile::TempDir,
}

/// WebDriver's key for element references in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Whether chromium and chromedriver are installed (scripts/test installs them).
    pub fn available() -> bool {
        Path::new("/usr/bin/chromedriver").exists() && Path::new("/usr/bin/chromium").exists()
    }

    /// Starts chromedriver and a headless Chromium window of `width`×`height`.
    pub fn start(dir: &Path, width: u32, height: u32) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port();
        let mut command = Command::new("/usr/bin/chromedriver");
        command.arg(format!("--port={port}"));
        let driver = Proc::spawn("chromedriver", command, &dir.join("chromedriver.log"));
        let api = Api::new(SocketAddr::from(([127, 0, 0, 1], port)), "");
        wait_until(Duration::from_secs(20), "chromedriver to listen", || {
            api.request("GET", "/status", None).map_err(|e| e.to_string())
        });
        let profile = tempfile::Builder::new().prefix("xrdtest-chromium-").tempdir().expect("a profile folder");
        let args = serde_json::json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}")
        ]);
        let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        }}});
        let (status, answer) = api.request("POST", "/session", Some(&capabilities)).expect("chromedriver answers");
        assert_eq!(status, 200, "new WebDriver session: {answer}");
        let session = answer["value"]["sessionId"].as_str().expect("a session id").to_string();
        Browser { driver, api, session, _profile: profile }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| serde_json::json!({})));
        let (status, answer) = self.api.request(method, &path, body.as_ref()).expect("chromedriver answers");
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let path = format!("/session/{}{path}", self.session);
        let body = body.or_else(|| (method == "POST").then(|| serde_json::json!({})));
        match self.api.request(method, &path, body.as_ref()) {
            Ok((200, answer)) => Some(answer["value"].clone()),
            _ => None,
        }
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.call("POST", "/window/rect", Some(serde_json::json!({ "width": width, "height": height })));
    }

    /// The elements matching a CSS selector (their WebDriver ids).
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .try_call("POST", "/elements", Some(serde_json::json!({ "using": "css selector", "value": css })))
            .unwrap_or_default();
        found.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT_KEY].as_str().map(String::from)).collect()
    }

    /// The first element matching `css`, waiting for it up to `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        wait_until(timeout, &format!("an element `{css}`"), || {
            self.find_all(css).into_iter().next().ok_or_else(|| self.url())
        })
    }

    pub fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    pub fn type_into(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/value"), Some(serde_json::json!({ "text": text })));
    }

    pub fn text(&self, element: &str) -> String {
        self.try_call("GET", &format!("/element/{element}/text"), None)
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }

    pub fn attribute(&self, element: &str, name: &str) -> Option<String> {
        self.try_call("GET", &format!("/element/{element}/attribute/{name}"), None)
            .and_then(|v| v.as_str().map(String::from))
    }

    /// Runs JavaScript in the page and returns its result.
    pub fn script(&self, source: &str) -> Value {
        self.call("POST", "/execute/sync", Some(serde_json::json!({ "script": source, "args": [] })))
    }

    /// Saves a PNG screenshot of the window.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.call("GET", "/screenshot", None);
        let bytes = BASE64.decode(encoded.as_str().unwrap_or_default()).expect("a screenshot in base64");
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("screenshot folder");
        }
        fs::write(path, bytes).expect("screenshot written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.api.request("DELETE", &format!("/session/{}", self.session), None);
        self.driver.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stages_as_the_daemons_do() {
        assert_eq!(stage_name(&json!("SuiteInit")), "suite_init");
        assert_eq!(stage_name(&json!({"CaseFinalize": {"case": "c1"}})), "case_finalize:c1");
        assert_eq!(strip_ansi("\u{1b}[3mpeers\u{1b}[0m=1"), "peers=1");
    }
}
