//! Nothing of a session survives it: processes a stage detached (`setsid`, `setsid -f`,
//! `nohup`, a double fork) and a daemon suite init started are ended when the session ends,
//! found by the session's cgroup (where one can be written) or by their environment marker.

use std::path::Path;
use std::time::Duration;

use xrdtest_e2e::{
    pid_alive, read_pids, state, summarize, wait_until, Case, Env, MasterOptions, ScriptReaper, SlaveConfig, Suite,
};

fn suites(dir: &Path) -> Vec<Suite> {
    let pids = dir.join("pids").display().to_string();
    let daemon = dir.join("daemon").display().to_string();
    let daemon_start = format!("setsid sh -c 'echo $$ > \"{daemon}-$XRDTEST_SLAVE\"; exec sleep 1000' >/dev/null 2>&1 </dev/null &\nsleep 0.3\n");
    let leave = format!(
        "setsid sleep 1000 >/dev/null 2>&1 </dev/null &\n\
         echo $! >> '{pids}'\n\
         setsid -f sh -c 'echo $$ >> \"{pids}\"; exec sleep 1000' >/dev/null 2>&1 </dev/null\n\
         nohup sleep 1000 >/dev/null 2>&1 &\n\
         echo $! >> '{pids}'\n\
         ( sleep 1000 >/dev/null 2>&1 & echo $! >> '{pids}' ) &\n\
         wait_for=0; while [ $(wc -l < '{pids}') -lt 4 ] && [ $wait_for -lt 50 ]; do sleep 0.1; wait_for=$((wait_for+1)); done\n"
    );
    let daemon_alive = format!("kill -0 \"$(cat \"{daemon}-$XRDTEST_SLAVE\")\"\n");
    vec![Suite::new("ts_clean_slate", &["c1"])
        .init(daemon_start)
        .case(Case::new("leave").run(leave))
        .case(Case::new("daemon_lives_on").run(daemon_alive))]
}

fn cgroup_v2_writable() -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let Some(mount) = mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2").then(|| before.split_whitespace().nth(4).map(str::to_string))?
    }) else {
        return false;
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else { return false };
    let probe = Path::new(&mount)
        .join(path.trim().trim_start_matches('/'))
        .join(format!("xrdtest-e2e-probe-{}", std::process::id()));
    let made = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    made
}

fn leftovers_end_with_the_session(method: &str) {
    let mut env = Env::build(MasterOptions::default(), suites);
    let mut config = SlaveConfig::new("c1", &env.master);
    config.extra = format!("session_cleanup = \"{method}\"");
    env.start_slave_with(&config);
    let api = env.api();
    api.wait_connected(&["c1"], Duration::from_secs(30));
    let pids_file = env.path().join("pids");
    let _reaper = ScriptReaper(pids_file.clone());
    let id = api.run("ts_clean_slate");
    let session = api.wait_final(id, Duration::from_secs(60));
    assert_eq!(
        state(&session),
        "passed",
        "the daemon of suite init lived until the session's end: {}",
        summarize(&session)
    );

    let mut pids = read_pids(&pids_file);
    pids.extend(read_pids(&env.path().join("daemon-c1")));
    assert_eq!(pids.len(), 5, "four detached processes and the daemon recorded their pids: {pids:?}");
    let cleanup = api.get(&format!("/api/sessions/{id}/cleanup"));
    let slave = &cleanup[0];
    assert_eq!(slave["slave"], "c1", "{cleanup}");
    assert_eq!(slave["method"], method, "{cleanup}");
    assert_eq!(slave["processes_ended"], 5, "the session's record counts what was ended: {cleanup}");
    assert!(slave["problem"].is_null(), "{cleanup}");
    // Ended before the session was stored as ended: none is left, at once.
    let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(alive.is_empty(), "left alive after the session: {alive:?}");
    let log = env.slave("c1").log();
    let said = if method == "cgroup" { "by cgroup v2" } else { "by environment marker" };
    assert!(log.contains(said), "the slave's log says which method is in use: {log}");
}

#[test]
fn detached_processes_end_with_the_session_by_cgroup() {
    if !cgroup_v2_writable() {
        eprintln!("skipped: no writable cgroup v2 here (the environ test covers the fallback)");
        return;
    }
    leftovers_end_with_the_session("cgroup");
}

#[test]
fn detached_processes_end_with_the_session_by_environment_marker() {
    leftovers_end_with_the_session("environ");
}

/// A session's work folder goes once it is older than `keep_work_dirs` (here at once).
#[test]
fn work_folders_go_after_keep_work_dirs() {
    let mut env = Env::build(MasterOptions::default(), suites);
    let mut config = SlaveConfig::new("c1", &env.master);
    config.extra = "keep_work_dirs = \"0s\"".into();
    let work_dir = env.start_slave_with(&config).work_dir.clone();
    let api = env.api();
    api.wait_connected(&["c1"], Duration::from_secs(30));
    let _reaper = ScriptReaper(env.path().join("pids"));
    let id = api.run("ts_clean_slate");
    api.wait_final(id, Duration::from_secs(60));
    wait_until(Duration::from_secs(10), "the session's work folder to be removed", || {
        let folder = work_dir.join("sessions").join(id.to_string());
        if folder.exists() {
            Err(format!("{} still there", folder.display()))
        } else {
            Ok(())
        }
    });
}
