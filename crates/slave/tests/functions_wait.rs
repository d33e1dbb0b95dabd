//! The wait helpers of the shell library (`wait_until`, `wait_for_port`, `monitor_log` and
//! the duration parser they share) against real bash, files and sockets; no mocks.
//!
//! Every script sources the library installed in a temporary directory (`$XRDTEST_FUNCTIONS`;
//! the directory is `$D` and the working directory) and runs in its own process group, killed
//! when it runs for more than 20 s: a hanging helper fails its test instead of the whole run.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use xrdtest_slave::functions::install;

mod common;
use common::stamped;

/// A temporary directory with the library installed in it.
struct Lib {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Lib {
    fn new() -> Lib {
        let dir = tempfile::tempdir().unwrap();
        let path = install(&dir.path().join("lib")).unwrap();
        Lib { dir, path }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the directory, as a string for the environment of a script.
    fn file(&self, name: &str) -> String {
        self.dir().join(name).display().to_string()
    }
}

/// What one script did.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `script` with bash after `source "$XRDTEST_FUNCTIONS"`, with `env` added. A script
/// that starts background jobs waits for them, so that nothing outlives it.
fn run(lib: &Lib, script: &str, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("source \"$XRDTEST_FUNCTIONS\"\n{script}"))
        .env("XRDTEST_FUNCTIONS", &lib.path)
        .env("D", lib.dir())
        .current_dir(lib.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("bash runs");
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            pipe.read_to_end(&mut buf).unwrap();
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if t0.elapsed() > DEADLINE {
            // The group leader is still running, so its group id is its pid.
            unsafe { libc::killpg(child.id() as libc::pid_t, libc::SIGKILL) };
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = t0.elapsed();
    let out = Out { code: None, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap(), elapsed };
    match status {
        Some(status) => Out { code: status.code(), ..out },
        None => panic!("script still running after {DEADLINE:?}, killed: {out:?}\n{script}"),
    }
}

/// The number between `before` and `after` in `text`.
fn number_between<T: std::str::FromStr>(text: &str, before: &str, after: &str) -> T {
    let start = text.find(before).unwrap_or_else(|| panic!("no {before:?} in {text:?}")) + before.len();
    let len = text[start..].find(after).unwrap_or_else(|| panic!("no {after:?} after {before:?} in {text:?}"));
    text[start..start + len].parse().unwrap_or_else(|_| panic!("not a number: {:?}", &text[start..start + len]))
}

/// A shell function `count` that counts its calls in `$D/count`, prints `try N` and succeeds
/// from the call `$SUCCEED_AT` on (never without it); `$FAIL_STATUS` (default 1) otherwise.
const COUNT_FN: &str = r#"
count() {
    local n
    n=$(( $(cat "$D/count" 2>/dev/null || echo 0) + 1 ))
    echo "$n" >"$D/count"
    echo "try $n"
    [[ -n ${SUCCEED_AT:-} && $n -ge $SUCCEED_AT ]] || return "${FAIL_STATUS:-1}"
}
"#;

fn count_file(lib: &Lib) -> Option<u32> {
    std::fs::read_to_string(lib.dir().join("count")).ok().map(|s| s.trim().parse().unwrap())
}

// ---- _xrdtest_duration_ms ---------------------------------------------------------------

fn duration(lib: &Lib, d: &str) -> Out {
    run(lib, "set -euo pipefail\n_xrdtest_duration_ms what \"$DUR\"", &[("DUR", d)])
}

#[test]
fn durations_in_milliseconds() {
    let lib = Lib::new();
    for (d, ms) in [
        ("500ms", 500u64),
        ("10s", 10_000),
        ("2m", 120_000),
        ("1h", 3_600_000),
        ("5", 5_000),
        ("0.5", 500),
        (".25s", 250),
        ("1.5m", 90_000),
        ("0.001s", 1),
        ("0.25h", 900_000),
        // Leading zeros are decimal, not octal (08 is no octal number at all).
        ("08", 8_000),
        ("010ms", 10),
        ("0.09s", 90),
        ("0", 0),
    ] {
        let out = duration(&lib, d);
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(0), format!("{ms}\n").as_str(), ""),
            "{d}"
        );
    }
}

#[test]
fn bad_durations_are_usage_errors() {
    let lib = Lib::new();
    for d in ["abc", "5x", "", "1.2.3", ".", "s", "ms", "-1", "+1", "5 s", " 5", "1e3", "5S", "5sec", "10min"] {
        let out = duration(&lib, d);
        assert_eq!(out.code, Some(2), "{d:?}: {out:?}");
        assert_eq!(out.stdout, "", "{d:?}");
        assert!(out.stderr.starts_with(&format!("what: bad duration '{d}'")), "{d:?}: {out:?}");
    }
}

// ---- wait_until -------------------------------------------------------------------------

#[test]
fn wait_until_returns_once_the_command_succeeds() {
    let lib = Lib::new();
    let script = format!(
        "set -euo pipefail\n{COUNT_FN}
wait_until --every 50ms --timeout 5s count
echo \"done after $(cat \"$D/count\")\"
"
    );
    let out = run(&lib, &script, &[("SUCCEED_AT", "3")]);
    assert_eq!(out.code, Some(0), "{out:?}");
    // The command's output passes through; the script goes on after the failed tries and
    // after the success, under `set -euo pipefail`.
    assert_eq!(out.stdout, "try 1\ntry 2\ntry 3\ndone after 3\n");
    assert_eq!(out.stderr, "");
    // Two pauses of 50ms between the three tries, no full second.
    assert!(out.elapsed >= Duration::from_millis(100), "{out:?}");
    assert!(out.elapsed < Duration::from_millis(900), "{out:?}");

    // A command that succeeds at once is run once, without waiting.
    std::fs::remove_file(lib.dir().join("count")).unwrap();
    let out = run(&lib, &format!("set -euo pipefail\n{COUNT_FN}\nwait_until count\necho ok"), &[("SUCCEED_AT", "1")]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "try 1\nok\n", ""));
    assert!(out.elapsed < Duration::from_millis(900), "{out:?}");
}

#[test]
fn wait_until_times_out_with_a_message() {
    let lib = Lib::new();
    let script = format!(
        "set -euo pipefail\n{COUNT_FN}
if ! wait_until --timeout 300ms --every=100ms count 'two words' last >/dev/null; then
    echo \"timed out after $(cat \"$D/count\") tries\"
fi
echo still running
wait_until --timeout=100ms --every 50ms false
echo never
"
    );
    let out = run(&lib, &script, &[("FAIL_STATUS", "7")]);
    // A timeout inside `if !` does not end the script; one outside it does, under `set -e`.
    assert_eq!(out.code, Some(1), "{out:?}");
    let tries = count_file(&lib).unwrap();
    assert_eq!(out.stdout, format!("timed out after {tries} tries\nstill running\n"));
    // Every 100ms over 300ms, the last try at the timeout: 4 tries, 3 on a slow machine.
    assert!((3..=4).contains(&tries), "{tries} tries");
    assert!(out.elapsed >= Duration::from_millis(400), "{out:?}");

    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 2, "{out:?}");
    let first = stamped(lines[0]).unwrap_or_else(|| panic!("not timestamped: {:?}", lines[0]));
    assert!(first.starts_with("wait_until: timed out after "), "{first}");
    let waited: f64 = number_between(first, "timed out after ", "s (");
    assert!((0.3..2.0).contains(&waited), "{first}");
    assert!(first.ends_with(&format!(" ({tries} tries, last exit status 7): count two words last")), "{first}");
    let second = stamped(lines[1]).unwrap_or_else(|| panic!("not timestamped: {:?}", lines[1]));
    let tries: u32 = number_between(second, "(", " tries, last exit status 1): false");
    assert!((2..=3).contains(&tries), "{second}");
    assert!(second.ends_with(" tries, last exit status 1): false"), "{second}");
}

#[test]
fn wait_until_tries_at_the_timeout() {
    let lib = Lib::new();
    // A try at the start and one at the timeout, not a full --every later.
    let out = run(
        &lib,
        &format!(
            "set -euo pipefail\n{COUNT_FN}\nrc=0; wait_until --timeout 250ms --every 1s count || rc=$?\necho rc=$rc"
        ),
        &[],
    );
    assert_eq!(out.stdout, "try 1\ntry 2\nrc=1\n", "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(250), "{out:?}");
    assert!(out.elapsed < Duration::from_millis(900), "{out:?}");
    assert!(out.stderr.contains("(2 tries, last exit status 1): count"), "{out:?}");

    // A timeout of 0: one try.
    std::fs::remove_file(lib.dir().join("count")).unwrap();
    let out = run(
        &lib,
        &format!("set -euo pipefail\n{COUNT_FN}\nrc=0; wait_until --timeout 0 count || rc=$?\necho rc=$rc"),
        &[],
    );
    assert_eq!(out.stdout, "try 1\nrc=1\n", "{out:?}");
    assert!(out.stderr.contains("(1 tries, last exit status 1): count"), "{out:?}");
}

#[test]
fn wait_until_usage_errors() {
    let lib = Lib::new();
    for (args, message) in [
        ("--every 0 count", "wait_until: --every must be more than 0"),
        ("--every 0ms count", "wait_until: --every must be more than 0"),
        ("--every=0.0s count", "wait_until: --every must be more than 0"),
        ("--timeout abc count", "wait_until --timeout: bad duration 'abc'"),
        ("--every=5x count", "wait_until --every: bad duration '5x'"),
        ("--timeout= count", "wait_until --timeout: bad duration ''"),
        ("--timeout 1.2.3 count", "wait_until --timeout: bad duration '1.2.3'"),
        ("--timeout", "wait_until: --timeout needs a duration"),
        ("--every", "wait_until: --every needs a duration"),
        ("--timeout 1s", "wait_until: usage: wait_until"),
        ("--timeout 1s --", "wait_until: usage: wait_until"),
        ("--bogus count", "wait_until: unknown option --bogus"),
        ("", "wait_until: usage: wait_until"),
    ] {
        let _ = std::fs::remove_file(lib.dir().join("count"));
        let script = format!("set -euo pipefail\n{COUNT_FN}\nrc=0; wait_until {args} || rc=$?\necho rc=$rc");
        let out = run(&lib, &script, &[("SUCCEED_AT", "1")]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "rc=2\n"), "{args}: {out:?}");
        assert!(out.stderr.starts_with(message), "{args}: {out:?}");
        assert_eq!(count_file(&lib), None, "{args}: the command ran");
    }
}

#[test]
fn wait_until_double_dash_ends_the_options() {
    let lib = Lib::new();
    // After `--`, `--every 1s` is the command (not found: 127), not an option.
    let out =
        run(&lib, "set -euo pipefail\nrc=0; wait_until --timeout 0 -- --every 1s 2>&1 || rc=$?\necho rc=$rc", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.ends_with("rc=1\n"), "{out:?}");
    assert!(out.stdout.contains("(1 tries, last exit status 127): --every 1s\n"), "{out:?}");
    let out = run(&lib, "set -euo pipefail\nwait_until --every 1s -- true\necho ok", &[]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "ok\n", ""));
}

/// A command that counts its calls in a global variable named like one of wait_until's own
/// locals (`tries`, `start`, `rc`...) changes wait_until's state instead of its own.
#[test]

fn wait_until_leaves_the_commands_globals_alone() {
    let lib = Lib::new();
    let script = "set -euo pipefail
tries=0
ready() { tries=$(( tries + 1 )); [[ $tries -ge 3 ]]; }
wait_until --every 50ms --timeout 5s ready
echo tries=$tries
";
    let out = run(&lib, script, &[]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "tries=3\n", ""));
}

// ---- wait_for_port ----------------------------------------------------------------------

fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    (l, port)
}

/// A port with nothing listening on it (there was a moment ago).
fn closed_port() -> String {
    listener().1
}

/// A listening socket whose accept queue is full, so that the kernel drops the SYN of a new
/// connect: like an address that drops packets, a connect to it hangs. Keep the streams.
fn unanswering_listener() -> (TcpListener, Vec<TcpStream>, String) {
    let (l, port) = listener();
    // listen() again on a listening socket sets its backlog: none (one queued connection).
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr: SocketAddr = l.local_addr().unwrap();
    let mut streams = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                return (l, streams, port);
            }
        }
    }
    panic!("the accept queue of a listener with backlog 0 never filled");
}

#[test]
fn wait_for_port_open() {
    let lib = Lib::new();
    let (_l, port) = listener();
    let script = "set -euo pipefail
wait_for_port 127.0.0.1 \"$PORT\" --timeout 5s
echo one
wait_for_port --timeout=5s 127.0.0.1 \"$PORT\"
echo two
wait_for_port -- 127.0.0.1 \"$PORT\"
echo three
";
    let out = run(&lib, script, &[("PORT", &port)]);
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "one\ntwo\nthree\n", ""));
    assert!(out.elapsed < Duration::from_secs(2), "{out:?}");
}

#[test]
fn wait_for_port_closed_times_out() {
    let lib = Lib::new();
    let port = closed_port();
    let out = run(
        &lib,
        "set -euo pipefail\nrc=0; wait_for_port 127.0.0.1 \"$PORT\" --timeout 600ms || rc=$?\necho rc=$rc",
        &[("PORT", &port)],
    );
    assert_eq!(out.stdout, "rc=1\n", "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(550) && out.elapsed < Duration::from_secs(3), "{out:?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out:?}");
    let msg = stamped(lines[0]).unwrap_or_else(|| panic!("not timestamped: {out:?}"));
    assert!(msg.starts_with(&format!("wait_for_port: 127.0.0.1:{port} not reachable after ")), "{msg}");
    // Refused at once, so tried every 0.2s: 4 tries, fewer on a slow machine.
    let tries: u32 = number_between(msg, "s (", " tries)");
    assert!((2..=4).contains(&tries), "{msg}");
}

/// Each try is bounded to 1s and to what is left of the timeout, so that a connect that gets
/// no answer does not hang the wait.
#[test]
fn wait_for_port_bounds_each_try() {
    let lib = Lib::new();
    let (_l, _streams, port) = unanswering_listener();
    let script = "rc=0; wait_for_port 127.0.0.1 \"$PORT\" --timeout \"$T\" || rc=$?\necho rc=$rc";

    let out = run(&lib, script, &[("PORT", &port), ("T", "400ms")]);
    assert_eq!(out.stdout, "rc=1\n", "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(400) && out.elapsed < Duration::from_millis(900), "{out:?}");
    assert!(out.stderr.contains(&format!("127.0.0.1:{port} not reachable after 0.")), "{out:?}");
    assert!(out.stderr.ends_with(" (1 tries)\n"), "{out:?}");

    // One try of 1s, 0.2s pause, one of the 0.3s left.
    let out = run(&lib, script, &[("PORT", &port), ("T", "1500ms")]);
    assert_eq!(out.stdout, "rc=1\n", "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(1500) && out.elapsed < Duration::from_secs(3), "{out:?}");
    assert!(out.stderr.contains(" (2 tries)"), "{out:?}");
}

/// Without timeout(1) a try runs in the background and is killed at its bound; it is always
/// waited for, so no job is left.
#[test]
fn wait_for_port_without_timeout_command() {
    let lib = Lib::new();
    let (_open, open_port) = listener();
    let (_l, _streams, dead_port) = unanswering_listener();
    let script = "set -euo pipefail
mkdir \"$D/bin\"
for t in sleep ls wc tail head tr grep date cat mkdir; do ln -s \"$(command -v \"$t\")\" \"$D/bin/$t\"; done
PATH=$D/bin
if command -v timeout >/dev/null; then echo 'timeout still found'; exit 99; fi
wait_for_port 127.0.0.1 \"$OPEN\" --timeout 5s
echo open
rc=0; wait_for_port 127.0.0.1 \"$DEAD\" --timeout 400ms || rc=$?
echo rc=$rc
jobs -p
";
    let out = run(&lib, script, &[("OPEN", &open_port), ("DEAD", &dead_port)]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "open\nrc=1\n"), "{out:?}");
    assert!(out.stderr.contains(&format!("127.0.0.1:{dead_port} not reachable after 0.")), "{out:?}");
    assert!(out.stderr.ends_with(" (1 tries)\n"), "{out:?}");
    assert_eq!(out.stderr_lines().len(), 1, "{out:?}");
    assert!(out.elapsed < Duration::from_millis(1500), "{out:?}");
}

#[test]
fn wait_for_port_waits_for_a_late_listener() {
    let lib = Lib::new();
    let port = closed_port();
    let (bound_tx, bound_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let p: u16 = port.parse().unwrap();
    let t0 = Instant::now();
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        let l = TcpListener::bind(("127.0.0.1", p));
        bound_tx.send(l.as_ref().map(|_| t0.elapsed()).map_err(|e| e.to_string())).unwrap();
        // Listening until the script is done.
        let _ = done_rx.recv();
        drop(l);
    });
    let out =
        run(&lib, "set -euo pipefail\nwait_for_port 127.0.0.1 \"$PORT\" --timeout 5s\necho up", &[("PORT", &port)]);
    done_tx.send(()).unwrap();
    server.join().unwrap();
    let bound_at = bound_rx.recv().unwrap().expect("the port was free again");
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "up\n", ""), "{out:?}");
    assert!(out.elapsed >= bound_at - Duration::from_millis(20), "returned before the listener was there: {out:?}");
    assert!(out.elapsed < bound_at + Duration::from_millis(1500), "{out:?}");
}

#[test]
fn wait_for_port_bad_arguments() {
    let lib = Lib::new();
    for (args, message) in [
        ("127.0.0.1 0", "wait_for_port: bad port '0'"),
        ("127.0.0.1 00000", "wait_for_port: bad port '00000'"),
        ("127.0.0.1 70000", "wait_for_port: bad port '70000'"),
        ("127.0.0.1 65536", "wait_for_port: bad port '65536'"),
        ("127.0.0.1 123456", "wait_for_port: bad port '123456'"),
        ("127.0.0.1 x", "wait_for_port: bad port 'x'"),
        ("127.0.0.1 -1", "wait_for_port: bad port '-1'"),
        ("127.0.0.1 ''", "wait_for_port: bad port ''"),
        ("127.0.0.1 ' 80'", "wait_for_port: bad port ' 80'"),
        ("127.0.0.1", "wait_for_port: usage: wait_for_port HOST PORT"),
        ("127.0.0.1 80 81", "wait_for_port: usage: wait_for_port HOST PORT"),
        ("'' 80", "wait_for_port: usage: wait_for_port HOST PORT"),
        ("", "wait_for_port: usage: wait_for_port HOST PORT"),
        ("127.0.0.1 80 --timeout x", "wait_for_port --timeout: bad duration 'x'"),
        ("127.0.0.1 80 --timeout=", "wait_for_port --timeout: bad duration ''"),
        ("127.0.0.1 80 --timeout", "wait_for_port: --timeout needs a duration"),
        ("127.0.0.1 80 --every 1s", "wait_for_port: unknown option --every"),
    ] {
        let out = run(&lib, &format!("set -euo pipefail\nrc=0; wait_for_port {args} || rc=$?\necho rc=$rc"), &[]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "rc=2\n"), "{args}: {out:?}");
        assert!(out.stderr.starts_with(message), "{args}: {out:?}");
    }
    // The bounds themselves are ports: a timeout (1), not a usage error (2).
    for port in ["1", "65535"] {
        let out =
            run(&lib, "rc=0; wait_for_port 127.0.0.1 \"$PORT\" --timeout 0 || rc=$?\necho rc=$rc", &[("PORT", port)]);
        assert_ne!(out.stdout, "rc=2\n", "{port}: {out:?}");
        if out.stdout == "rc=1\n" {
            assert!(out.stderr.contains(&format!("wait_for_port: 127.0.0.1:{port} not reachable")), "{out:?}");
        }
    }
}

#[test]
fn wait_for_port_leading_zeros_are_decimal() {
    let lib = Lib::new();
    // 0089 is port 89 (not an octal error); the message names the port as a number.
    let out = run(&lib, "rc=0; wait_for_port 127.0.0.1 0089 --timeout 0 || rc=$?\necho rc=$rc", &[]);
    assert_ne!(out.stdout, "rc=2\n", "{out:?}");
    if out.stdout == "rc=1\n" {
        assert!(out.stderr.contains("wait_for_port: 127.0.0.1:89 not reachable"), "{out:?}");
    }
}

// ---- monitor_log ------------------------------------------------------------------------

/// Runs `monitor_log "$F" "$P" ARGS` under `set -euo pipefail` after starting `writer` in
/// the background (output to /dev/null), then waits for it and prints `rc=N`.
fn monitor(lib: &Lib, writer: &str, pattern: &str, args: &str) -> Out {
    let script = format!(
        "set -euo pipefail
( {writer} ) >/dev/null 2>&1 &
rc=0; monitor_log \"$F\" \"$P\" {args} || rc=$?
wait
echo rc=$rc
"
    );
    run(lib, &script, &[("F", &lib.file("app.log")), ("P", pattern)])
}

fn write(lib: &Lib, text: &str) {
    std::fs::write(lib.dir().join("app.log"), text).unwrap();
}

#[test]
fn monitor_log_ignores_lines_already_there() {
    let lib = Lib::new();
    write(&lib, "ready old\nready older\n");
    let script = "set -euo pipefail
rc=0; monitor_log \"$F\" ready --timeout 500ms || rc=$?
echo rc=$rc
jobs -p
";
    let f = lib.file("app.log");
    let out = run(&lib, script, &[("F", &f)]);
    // No background process left either.
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "rc=1\n"), "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(500) && out.elapsed < Duration::from_secs(3), "{out:?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out:?}");
    let msg = stamped(lines[0]).unwrap_or_else(|| panic!("not timestamped: {out:?}"));
    assert!(msg.starts_with(&format!("monitor_log: no line matching ready written to {f} within 0.")), "{msg}");

    // A file that never appears: the same.
    let out = run(&lib, script, &[("F", &lib.file("missing.log"))]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "rc=1\n"), "{out:?}");
    assert!(out.stderr.contains("monitor_log: no line matching ready written to "), "{out:?}");
}

#[test]
fn monitor_log_sees_an_appended_line() {
    let lib = Lib::new();
    write(&lib, "ready old\nother\n");
    let out = monitor(
        &lib,
        "sleep 0.3; printf 'not yet\\n' >>\"$F\"; sleep 0.3; printf 'a\\nready now\\nready later\\n' >>\"$F\"",
        "^ready",
        "--timeout 5s",
    );
    // The first matching line written after the call, alone.
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "ready now\nrc=0\n", ""), "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(600) && out.elapsed < Duration::from_secs(3), "{out:?}");
}

#[test]
fn monitor_log_waits_for_the_file_to_appear() {
    let lib = Lib::new();
    // The options before the arguments, too.
    let out = monitor(&lib, "sleep 0.3; printf 'x\\nready created\\n' >\"$F\"", "ready [a-z]+", "--timeout=5s");
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "ready created\nrc=0\n", ""), "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(300) && out.elapsed < Duration::from_secs(3), "{out:?}");
}

#[test]
fn monitor_log_rereads_a_truncated_file() {
    let lib = Lib::new();
    write(&lib, "a long line of old content\nand some more of it\n");
    // Same file (inode), shorter: read from its start.
    let out = monitor(&lib, "sleep 0.3; printf 'ready\\n' >\"$F\"", "^ready$", "--timeout 5s");
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "ready\nrc=0\n", ""), "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(300) && out.elapsed < Duration::from_secs(3), "{out:?}");
}

#[test]
fn monitor_log_rereads_a_replaced_file() {
    let lib = Lib::new();
    write(&lib, "short\n");
    // A new file, longer than the old one: only its inode tells it is new.
    let out = monitor(
        &lib,
        "sleep 0.3; mv \"$F\" \"$F.1\"; printf 'ready rotated, a line longer than the old file\\n' >\"$F\"",
        "^ready rotated",
        "--timeout 5s",
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "ready rotated, a line longer than the old file\nrc=0\n", ""),
        "{out:?}"
    );
    assert!(out.elapsed >= Duration::from_millis(300) && out.elapsed < Duration::from_secs(3), "{out:?}");
}

/// FILE a symbolic link to the log, the log rotated: the link names a new file, but
/// `ls -di` gives the inode of the link itself, so only a shorter new file is noticed.
#[test]

fn monitor_log_rereads_a_replaced_file_behind_a_symlink() {
    let lib = Lib::new();
    std::fs::write(lib.dir().join("real.log"), "short\n").unwrap();
    std::os::unix::fs::symlink(lib.dir().join("real.log"), lib.dir().join("app.log")).unwrap();
    let out = monitor(
        &lib,
        "sleep 0.3; mv \"$D/real.log\" \"$D/real.log.1\"; printf 'ready rotated, a line longer than the old file\\n' >\"$D/real.log\"",
        "^ready rotated",
        "--timeout 2s",
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "ready rotated, a line longer than the old file\nrc=0\n", ""),
        "{out:?}"
    );
}

#[test]
fn monitor_log_waits_for_the_end_of_a_line() {
    let lib = Lib::new();
    write(&lib, "");
    let out = monitor(
        &lib,
        "sleep 0.3; printf 'ready' >>\"$F\"; sleep 0.6; printf ' now\\n' >>\"$F\"",
        "ready",
        "--timeout 5s",
    );
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (Some(0), "ready now\nrc=0\n", ""), "{out:?}");
    assert!(out.elapsed >= Duration::from_millis(900) && out.elapsed < Duration::from_secs(3), "{out:?}");

    // A last line never finished never matches.
    write(&lib, "");
    let out = monitor(&lib, "sleep 0.2; printf 'ready, no newline' >>\"$F\"", "ready", "--timeout 700ms");
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "rc=1\n"), "{out:?}");
    assert!(out.stderr.contains("monitor_log: no line matching ready written to "), "{out:?}");
}

#[test]
fn monitor_log_bad_arguments() {
    let lib = Lib::new();
    write(&lib, "");
    let f = lib.file("app.log");
    for (args, message) in [
        ("\"$F\" '(' --timeout 10s", "monitor_log: bad pattern: ("),
        ("\"$F\" '[a-' --timeout 10s", "monitor_log: bad pattern: [a-"),
        ("\"$F\"", "monitor_log: usage: monitor_log FILE PATTERN"),
        ("\"$F\" a b", "monitor_log: usage: monitor_log FILE PATTERN"),
        ("'' a", "monitor_log: usage: monitor_log FILE PATTERN"),
        ("", "monitor_log: usage: monitor_log FILE PATTERN"),
        ("\"$F\" a --timeout x", "monitor_log --timeout: bad duration 'x'"),
        ("\"$F\" a --timeout=5x", "monitor_log --timeout: bad duration '5x'"),
        ("\"$F\" a --timeout", "monitor_log: --timeout needs a duration"),
        ("\"$F\" a --what", "monitor_log: unknown option --what"),
    ] {
        let out =
            run(&lib, &format!("set -euo pipefail\nrc=0; monitor_log {args} || rc=$?\necho rc=$rc"), &[("F", &f)]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "rc=2\n"), "{args}: {out:?}");
        assert!(out.stderr.lines().any(|l| l.starts_with(message)), "{args}: {out:?}");
        // At once, not at the timeout.
        assert!(out.elapsed < Duration::from_secs(2), "{args}: {out:?}");
    }
}
