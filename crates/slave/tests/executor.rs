//! The executor, the log collector and the shell library against real bash; no mocks.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use xrdtest_proto::message::{OutputLine, StageOutcome};
use xrdtest_slave::executor::{limit_marker, run_stage, unix_ms, ExecEvent, ExecSummary, StageSpec, MAX_LINE_BYTES};
use xrdtest_slave::functions::{install, FUNCTIONS_SH};
use xrdtest_slave::logs::collect_logs;

mod common;
use common::stamped;

fn spec(dir: &Path, script: &str) -> StageSpec {
    StageSpec {
        stage_id: 7,
        script: script.to_string(),
        env: vec![],
        work_dir: dir.to_path_buf(),
        files: vec![],
        timeout: Duration::from_secs(10),
        output_limit_bytes: 1 << 30,
        cgroup_procs: None,
    }
}

/// Everything one stage sent, after checking the event order invariants.
struct Run {
    summary: ExecSummary,
    pid: Option<u32>,
    lines: Vec<OutputLine>,
    elapsed: Duration,
}

impl Run {
    fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.text.as_str()).collect()
    }
}

/// Collects the events of a stage, checking: at most one Started, first; Output only after
/// it; exactly one Finished, last, equal to the returned summary.
async fn collect(mut rx: mpsc::Receiver<ExecEvent>, handle: tokio::task::JoinHandle<ExecSummary>) -> Run {
    let t0 = Instant::now();
    let mut pid = None;
    let mut lines = Vec::new();
    let mut finished = None;
    let mut index = 0;
    while let Some(ev) = rx.recv().await {
        assert!(finished.is_none(), "event after Finished: {ev:?}");
        match ev {
            ExecEvent::Started { unix_ms: t, pid: p } => {
                assert_eq!(index, 0, "Started is not the first event");
                assert!(t > 0 && p > 0);
                pid = Some(p);
            }
            ExecEvent::Output(batch) => {
                assert!(pid.is_some(), "Output before Started");
                assert!(!batch.is_empty(), "empty Output batch");
                lines.extend(batch);
            }
            ExecEvent::Finished(s) => finished = Some(s),
        }
        index += 1;
    }
    let summary = handle.await.unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(finished.as_ref(), Some(&summary), "Finished missing or different from the returned summary");
    assert!(summary.started_unix_ms <= summary.ended_unix_ms);
    Run { summary, pid, lines, elapsed }
}

async fn run_with(spec: StageSpec, cancel: oneshot::Receiver<String>) -> Run {
    let (tx, rx) = mpsc::channel(16);
    let handle = tokio::spawn(run_stage(spec, tx, cancel));
    collect(rx, handle).await
}

async fn run(spec: StageSpec) -> Run {
    let (_cancel_tx, cancel_rx) = oneshot::channel();
    let r = run_with(spec, cancel_rx).await;
    drop(_cancel_tx);
    r
}

/// Alive and not a zombie (the container's init may not reap orphans).
fn process_alive(pid: u32) -> bool {
    // SAFETY: plain kill(2) probe.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

async fn wait_dead(pid: u32, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if !process_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !process_alive(pid)
}

fn read_pid(dir: &Path, name: &str) -> u32 {
    std::fs::read_to_string(dir.join(name)).unwrap().trim().parse().unwrap()
}

fn kill_group(pgid: u32) {
    // SAFETY: plain killpg(2).
    unsafe { libc::killpg(pgid as libc::pid_t, libc::SIGKILL) };
}

#[tokio::test]
async fn output_streams_in_order_with_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let before = unix_ms();
    let r = run(spec(dir.path(), "for i in 1 2 3 4 5; do echo line$i; done\nsleep 0.2\necho last\n")).await;
    let after = unix_ms();
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    assert_eq!(r.texts(), ["line1", "line2", "line3", "line4", "line5", "last"]);
    let mut prev = 0;
    for l in &r.lines {
        assert!(l.unix_ms >= before && l.unix_ms <= after, "timestamp out of range: {l:?}");
        assert!(l.unix_ms >= prev, "timestamps go backwards");
        prev = l.unix_ms;
    }
    // The line printed after the sleep was read (and stamped) later.
    assert!(r.lines[5].unix_ms >= r.lines[4].unix_ms + 150, "{:?}", r.lines);
    assert!(r.pid.is_some());
    assert_eq!(r.summary.output_bytes, 5 * 6 + 5);
    assert_eq!(r.summary.dropped_bytes, 0);
}

#[tokio::test]
async fn stderr_is_merged_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let r =
        run(spec(dir.path(), "echo out1\necho err1 >&2\necho out2\nls /nonexistent-xrdtest-path\necho out3\n")).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    let t = r.texts();
    assert_eq!(&t[..3], ["out1", "err1", "out2"]);
    assert!(t[3].contains("nonexistent-xrdtest-path"), "{t:?}");
    assert_eq!(t[4], "out3");
}

#[tokio::test]
async fn env_cwd_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("created/by/executor");
    let mut s = spec(&work, "echo \"foo=$XRDTEST_FOO\"\necho \"path_set=${PATH:+yes}\"\npwd\nread x; echo \"read_rc=$?\"\necho \"bash=${BASH_VERSION:+yes}\"\n");
    s.env = vec![("XRDTEST_FOO".into(), "bar baz".into())];
    let r = run(s).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    let t = r.texts();
    assert_eq!(t[0], "foo=bar baz");
    assert_eq!(t[1], "path_set=yes", "the inherited environment is kept");
    assert_eq!(Path::new(t[2]).canonicalize().unwrap(), work.canonicalize().unwrap());
    assert_eq!(t[3], "read_rc=1", "stdin is /dev/null");
    assert_eq!(t[4], "bash=yes", "runs under bash");
    // The script file is cleaned up.
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn exit_code_and_signal() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(spec(dir.path(), "echo bye\nexit 7\n")).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 7 });
    let r = run(spec(dir.path(), "kill -KILL $$\n")).await;
    assert_eq!(r.summary.outcome, StageOutcome::KilledBySignal { signal: 9 });
}

#[tokio::test]
async fn final_line_without_newline_and_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(spec(dir.path(), "printf 'a\\n\\nb\\xffc\\nlast'\n")).await;
    assert_eq!(r.texts(), ["a", "", "b\u{FFFD}c", "last"]);
    assert_eq!(r.summary.output_bytes, 2 + 1 + 4 + 4);
}

#[tokio::test]
async fn long_line_is_emitted_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(spec(dir.path(), "head -c 200000 /dev/zero | tr '\\0' y\necho\necho after\n")).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    let t = r.texts();
    assert_eq!(t.last(), Some(&"after"));
    let pieces = &t[..t.len() - 1];
    assert!(pieces.len() >= 4, "{}", pieces.len());
    assert!(pieces.iter().all(|p| p.len() <= MAX_LINE_BYTES && p.bytes().all(|b| b == b'y')));
    assert_eq!(pieces.iter().map(|p| p.len()).sum::<usize>(), 200_000);
    assert_eq!(r.summary.output_bytes, 200_001 + 6);
}

#[tokio::test]
async fn output_cap_marks_drops_and_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(
        dir.path(),
        "for i in $(seq 1 20); do echo 123456789; done\nhead -c 5000000 /dev/zero\necho tail-line\necho done > finished.txt\n",
    );
    s.output_limit_bytes = 100;
    let r = run(s).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    let t = r.texts();
    assert_eq!(t.len(), 11, "{t:?}");
    assert!(t[..10].iter().all(|l| *l == "123456789"));
    assert_eq!(t[10], limit_marker(100));
    assert_eq!(r.summary.output_bytes, 100);
    assert_eq!(r.summary.dropped_bytes, 10 * 10 + 5_000_000 + 10);
    assert!(dir.path().join("finished.txt").exists(), "the script ran to its end");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "sleep 1000 &\necho $! > child.pid\necho started\nsleep 1000\n");
    s.timeout = Duration::from_millis(500);
    let r = run(s).await;
    match r.summary.outcome {
        StageOutcome::TimedOut { after_ms } => assert!((500..3000).contains(&after_ms), "{after_ms}"),
        ref o => panic!("unexpected outcome {o:?}"),
    }
    // Everything dies of the SIGTERM, so the stage ends without waiting for the 2 s SIGKILL
    // grace period (zombies waiting for a lazy init to reap them do not count).
    println!("timed-out stage finished after {:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
    assert_eq!(r.texts(), ["started"]);
    let child = read_pid(dir.path(), "child.pid");
    assert!(wait_dead(child, Duration::from_secs(3)).await, "background child {child} survived the timeout");
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    // The script ignores SIGTERM, so this also exercises the SIGKILL after the grace period.
    let s = spec(dir.path(), "sleep 1000 &\necho $! > child.pid\ntrap '' TERM\necho started\nsleep 1000\n");
    let (cancel_tx, cancel_rx) = oneshot::channel();
    let (tx, mut rx) = mpsc::channel(16);
    let handle = tokio::spawn(run_stage(s, tx, cancel_rx));
    // Wait for the script to be running, then cancel.
    let mut started = None;
    while let Some(ev) = rx.recv().await {
        match ev {
            ExecEvent::Started { pid, .. } => started = Some(pid),
            ExecEvent::Output(lines) if lines.iter().any(|l| l.text == "started") => break,
            ev => panic!("unexpected {ev:?}"),
        }
    }
    assert!(started.is_some());
    let t0 = Instant::now();
    cancel_tx.send("operator said stop".to_string()).unwrap();
    let mut finished = None;
    while let Some(ev) = rx.recv().await {
        if let ExecEvent::Finished(s) = ev {
            finished = Some(s);
        }
    }
    let summary = handle.await.unwrap();
    assert_eq!(finished, Some(summary.clone()));
    assert_eq!(summary.outcome, StageOutcome::Cancelled { reason: "operator said stop".into() });
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    let child = read_pid(dir.path(), "child.pid");
    assert!(wait_dead(child, Duration::from_secs(3)).await, "background child {child} survived the cancel");
}

#[tokio::test]
async fn dropping_the_stage_future_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), "sleep 1000 &\necho $! > child.pid\necho started\nsleep 1000\n");
    let (tx, mut rx) = mpsc::channel(16);
    let (_cancel_tx, cancel_rx) = oneshot::channel();
    let handle = tokio::spawn(run_stage(s, tx, cancel_rx));
    let mut pid = None;
    while let Some(ev) = rx.recv().await {
        match ev {
            ExecEvent::Started { pid: p, .. } => pid = Some(p),
            ExecEvent::Output(lines) if lines.iter().any(|l| l.text == "started") => break,
            ev => panic!("unexpected {ev:?}"),
        }
    }
    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());
    let child = read_pid(dir.path(), "child.pid");
    assert!(wait_dead(pid.unwrap(), Duration::from_secs(3)).await, "bash survived");
    assert!(wait_dead(child, Duration::from_secs(3)).await, "background child survived");
}

#[tokio::test]
async fn dropped_cancel_sender_is_not_a_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let (cancel_tx, cancel_rx) = oneshot::channel::<String>();
    drop(cancel_tx);
    let r = run_with(spec(dir.path(), "sleep 0.3\necho ok\n"), cancel_rx).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    assert_eq!(r.texts(), ["ok"]);
}

/// Decision: on a normal exit the process group is not killed, so background children
/// (daemons started by suite_init) survive. The stage still finishes promptly although such
/// a child holds the output pipe open, and the child is not killed by SIGPIPE when it writes
/// to its inherited stdout after the stage (the executor keeps draining the pipe).
#[tokio::test]
async fn normal_exit_finishes_promptly_and_background_children_survive() {
    let dir = tempfile::tempdir().unwrap();
    let r =
        run(spec(dir.path(), "( sleep 0.8; echo late; echo late >&2; sleep 1000 ) &\necho $! > child.pid\necho bye\n"))
            .await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    assert_eq!(r.texts(), ["bye"]);
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
    let child = read_pid(dir.path(), "child.pid");
    // Past the child's late writes: it must still be alive (no SIGPIPE, no kill).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let alive = process_alive(child);
    kill_group(r.pid.unwrap());
    assert!(alive, "background child {child} did not survive the normal end of the stage");
    assert!(wait_dead(child, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn output_of_a_quick_background_child_is_still_collected() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(spec(dir.path(), "( sleep 0.05; echo from-child ) &\necho main\n")).await;
    assert_eq!(r.texts(), ["main", "from-child"]);
}

#[tokio::test]
async fn twenty_megabytes_stream_with_exact_byte_count() {
    let dir = tempfile::tempdir().unwrap();
    let line = "x".repeat(99);
    let r = run(spec(dir.path(), &format!("yes {line} | head -n 200000\n"))).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 });
    assert_eq!(r.lines.len(), 200_000);
    assert!(r.lines.iter().all(|l| l.text == line));
    assert_eq!(r.summary.output_bytes, 20_000_000);
    assert_eq!(r.summary.dropped_bytes, 0);
    let mbps = 20.0 / r.elapsed.as_secs_f64();
    println!("20 MB stage output in {:?}: {mbps:.0} MB/s", r.elapsed);
}

#[tokio::test]
async fn gone_receiver_does_not_stop_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let (_cancel_tx, cancel_rx) = oneshot::channel();
    let s =
        spec(dir.path(), "head -c 3000000 /dev/zero | tr '\\0' z | fold -w 999\necho\necho end > end.txt\nexit 3\n");
    let summary = run_stage(s, tx, cancel_rx).await;
    assert_eq!(summary.outcome, StageOutcome::Exited { code: 3 });
    assert_eq!(summary.output_bytes, 3_000_000 + 3004);
    assert!(dir.path().join("end.txt").exists());
}

#[tokio::test]
async fn slow_consumer_still_times_out() {
    // A consumer that never reads must not keep the timeout from killing the script.
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "yes\n");
    s.timeout = Duration::from_millis(300);
    let (tx, mut rx) = mpsc::channel(1);
    let (_cancel_tx, cancel_rx) = oneshot::channel();
    let handle = tokio::spawn(run_stage(s, tx, cancel_rx));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut finished = None;
    while let Some(ev) = rx.recv().await {
        if let ExecEvent::Finished(s) = ev {
            finished = Some(s);
        }
    }
    let summary = handle.await.unwrap();
    assert!(matches!(summary.outcome, StageOutcome::TimedOut { .. }), "{:?}", summary.outcome);
    assert_eq!(finished, Some(summary));
}

#[tokio::test]
async fn spawn_failures_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let r = run(spec(&dir.path().join("file/sub"), "echo hi\n")).await;
    assert!(r.pid.is_none(), "no Started when nothing ran");
    match &r.summary.outcome {
        StageOutcome::Failed { reason } => assert!(reason.contains("Not a directory"), "{reason}"),
        o => panic!("unexpected {o:?}"),
    }

    let mut s = spec(dir.path(), "echo hi\n");
    s.env = vec![("PATH".into(), "/nonexistent-xrdtest".into())];
    let r = run(s).await;
    assert!(r.pid.is_none());
    match &r.summary.outcome {
        StageOutcome::Failed { reason } => assert!(reason.contains("No such file"), "{reason}"),
        o => panic!("unexpected {o:?}"),
    }
}

#[tokio::test]
async fn shell_functions() {
    let dir = tempfile::tempdir().unwrap();
    let lib = install(&dir.path().join("lib")).unwrap();
    assert_eq!(lib, dir.path().join("lib/functions.sh"));
    assert_eq!(std::fs::read_to_string(&lib).unwrap(), FUNCTIONS_SH);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&lib).unwrap().permissions().mode() & 0o777, 0o644);
    // Installing again replaces it.
    assert_eq!(install(&dir.path().join("lib")).unwrap(), lib);

    let env = vec![("XRDTEST_FUNCTIONS".to_string(), lib.display().to_string())];
    let script = r#"source "$XRDTEST_FUNCTIONS"
set -euo pipefail
log hello   world
stamp bash -c 'echo out; echo err >&2; printf partial'
rc=0; stamp bash -c 'echo failing; exit 3' || rc=$?
echo "stamp_rc=$rc"
assert_fail false
assert_fail ls /nonexistent-xrdtest-path
echo after-assert
rc=0; assert_fail true || rc=$?
echo "assert_rc=$rc"
"#;
    let mut s = spec(dir.path(), script);
    s.env = env.clone();
    let r = run(s).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 }, "{:?}", r.texts());
    let t = r.texts();
    assert_eq!(stamped(t[0]), Some("hello world"));
    assert_eq!(stamped(t[1]), Some("out"));
    assert_eq!(stamped(t[2]), Some("err"));
    assert_eq!(stamped(t[3]), Some("partial"));
    assert_eq!(stamped(t[4]), Some("failing"));
    assert_eq!(t[5], "stamp_rc=3");
    assert!(t[6].contains("nonexistent-xrdtest-path"), "{t:?}"); // ls's own error
    assert_eq!(t[7], "after-assert");
    let msg = stamped(t[8]).expect("assert_fail message is timestamped");
    assert!(msg.contains("expected to fail") && msg.contains("true"), "{msg}");
    assert_eq!(t[9], "assert_rc=1");
    assert_eq!(t.len(), 10, "{t:?}");

    // Under `set -e`, an unexpected success ends the script; a failing stamp too.
    let mut s = spec(dir.path(), "source \"$XRDTEST_FUNCTIONS\"\nset -e\nassert_fail true\necho never\n");
    s.env = env.clone();
    let r = run(s).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 1 });
    assert!(!r.texts().contains(&"never"));
    let mut s = spec(dir.path(), "source \"$XRDTEST_FUNCTIONS\"\nset -e\nstamp false\necho never\n");
    s.env = env;
    let r = run(s).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 1 });
    assert!(r.texts().is_empty());
}

#[tokio::test]
async fn collect_logs_tails_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.log");
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let small = dir.path().join("small.log");
    std::fs::write(&small, b"tiny\n").unwrap();
    let paths = vec![
        big.display().to_string(),
        small.display().to_string(),
        dir.path().join("missing.log").display().to_string(),
        dir.path().display().to_string(),
    ];
    let logs = collect_logs(9, &paths, 100).await;
    assert_eq!(logs.len(), 4);
    assert!(logs.iter().zip(&paths).all(|(l, p)| l.stage_id == 9 && &l.path == p));

    assert_eq!(logs[0].content, &data[900..]);
    assert_eq!(logs[0].truncated_bytes, 900);
    assert_eq!(logs[0].error, None);

    assert_eq!(logs[1].content, b"tiny\n");
    assert_eq!(logs[1].truncated_bytes, 0);
    assert_eq!(logs[1].error, None);

    assert!(logs[2].content.is_empty());
    assert!(logs[2].error.as_deref().unwrap().contains("No such file"), "{:?}", logs[2].error);

    assert!(logs[3].error.is_some(), "a directory is not a log file");

    let logs = collect_logs(9, &paths[..1], 0).await;
    assert!(logs[0].content.is_empty());
    assert_eq!(logs[0].truncated_bytes, 1000);
}

/// 200 MB through the executor, for measuring: `cargo test -p xrdtest-slave --release --test
/// executor -- --ignored --nocapture two_hundred`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn two_hundred_megabytes_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let line = "x".repeat(99);
    let (tx, mut rx) = mpsc::channel(16);
    let (_cancel_tx, cancel_rx) = oneshot::channel();
    let t0 = Instant::now();
    let handle = tokio::spawn(run_stage(spec(dir.path(), &format!("yes {line} | head -n 2000000\n")), tx, cancel_rx));
    let mut n = 0usize;
    while let Some(ev) = rx.recv().await {
        if let ExecEvent::Output(lines) = ev {
            n += lines.len();
        }
    }
    let summary = handle.await.unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(n, 2_000_000);
    assert_eq!(summary.output_bytes, 200_000_000);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?");
    println!("200 MB stage output in {elapsed:?}: {:.0} MB/s ({peak})", 200.0 / elapsed.as_secs_f64());
}

/// `result` and `check` of the shell library, a program writing to `$XRDTEST_RESULTS`
/// itself, and bad lines: the values arrive in the summary, the problems in the output, and
/// the file is gone afterwards.
#[tokio::test]
async fn results_and_checks_reach_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let lib = install(&dir.path().join("lib")).unwrap();
    let mut s = spec(
        dir.path(),
        r#"source "$XRDTEST_FUNCTIONS"
set -euo pipefail
result latency_ms 12.5 ms
result ops 300
result ops 310
check sums_equal pass
check size_ok fail "got 3
bytes"
echo "after the failed check"
echo "result direct 1e3 B/s" >> "$XRDTEST_RESULTS"
echo "result broken NaN" >> "$XRDTEST_RESULTS"
rc=0; result only_name || rc=$?
echo "usage_rc=$rc"
rc=0; check x maybe || rc=$?
echo "usage_rc=$rc"
"#,
    );
    s.env = vec![("XRDTEST_FUNCTIONS".to_string(), lib.display().to_string())];
    let r = run(s).await;
    assert_eq!(r.summary.outcome, StageOutcome::Exited { code: 0 }, "{:?}", r.texts());
    let results: Vec<(&str, f64, &str)> =
        r.summary.values.results.iter().map(|v| (v.name.as_str(), v.value, v.unit.as_str())).collect();
    assert_eq!(results, [("latency_ms", 12.5, "ms"), ("ops", 310.0, ""), ("direct", 1000.0, "B/s")]);
    let checks: Vec<(&str, bool, &str)> =
        r.summary.values.checks.iter().map(|c| (c.name.as_str(), c.passed, c.message.as_str())).collect();
    assert_eq!(checks, [("sums_equal", true, ""), ("size_ok", false, "got 3 bytes")]);
    let texts = r.texts();
    assert!(texts.contains(&"after the failed check"), "{texts:?}");
    assert_eq!(texts.iter().filter(|t| **t == "usage_rc=2").count(), 2, "{texts:?}");
    assert!(
        texts.contains(&"[xrdtest: results file: line 7: result `broken`: NaN is not a finite number]"),
        "{texts:?}"
    );
    assert!(!dir.path().join(".xrdtest-results-7").exists());
}
