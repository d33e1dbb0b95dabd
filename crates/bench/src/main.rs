//! `xrdtest-bench`: prints the figures the orchestration targets are stated in.
//!
//! 1. Per-case overhead: a suite of 100 cases whose init, run and finalize scripts are
//!    `true`, on 1 and on 3 real slave processes, beside the floor (the same 300 scripts run
//!    directly by bash). Target: within 0.5 ms per stage of the floor.
//! 2. Fan-out: 100, 1000 and 10,000 simulated slaves (real TLS connections on loopback,
//!    each answering a stage at once without starting a process): time of one stage round,
//!    and the master's resident memory. Targets: 1000 slaves, a round under 200 ms and the
//!    master under 300 MB resident; 10,000 slaves, under 1 s and 1 GB. The bench raises
//!    its open-file limit to the hard limit first (the master it starts inherits it).
//! 3. Output: one run script writes 200 MB: throughput into the store and the master's
//!    memory growth. Targets: at least 100 MB/s; growth under 64 MB.
//! 4. Dashboard: with 10,000 stored sessions, the dashboard, history and suites pages under
//!    20 concurrent clients (`wrk`, from Debian): p99 under 50 ms.
//! 5. VMs (root, libvirt and the slave image; `vms`): start-cluster to all slaves connected
//!    for 2 and 4 VMs, and a host's boot disk from a 1 GiB and a 4 GiB image (overlay
//!    versus full copy).
//! 6. Results (`results`): the store's cost of script-reported values.
//! 7. Sync (`sync`): signal -> wait round trips between scripts on two real slaves (through
//!    the helpers, each call a short-lived process), and a barrier of 100 simulated slaves
//!    (`--barrier N`): from the last arrival to the last release.
//!
//! It starts the real `xrdtest-master` and `xrdtest-slave` binaries found next to itself;
//! build them in the same profile first: `cargo build --release --workspace --bins`.

mod fanout;
mod harness;
mod results;
mod sync;
mod vms;
mod web;

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;

use harness::{write_suite, Cluster};

#[derive(Parser, Debug)]
#[command(name = "xrdtest-bench", version)]
struct Args {
    /// Run only these parts: overhead, fanout, output, web, vms, results, sync (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Simulated slave counts for the fan-out part.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    fanout: Vec<usize>,
    /// Megabytes the output part writes.
    #[arg(long, default_value_t = 200)]
    output_mb: u64,
    /// Simulated slaves at the sync part's barrier.
    #[arg(long, default_value_t = 100)]
    barrier: usize,
    /// Cases in the overhead suite.
    #[arg(long, default_value_t = 100)]
    cases: usize,
}

/// Ten thousand connections need as many descriptors in this process and in the master
/// (which inherits the limit): the soft limit goes up to the hard one.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                eprintln!("cannot raise the open-file limit; large fan-outs may fail");
            }
        }
    }
}

fn wants(args: &Args, part: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|p| p == part)
}

fn main() -> Result<()> {
    let args = Args::parse();
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "xrdtest benchmarks ({} build, {} cores)",
        if cfg!(debug_assertions) { "DEBUG" } else { "release" },
        num_cpus()
    );
    if wants(&args, "overhead") {
        overhead(&args)?;
    }
    if wants(&args, "fanout") {
        for &n in &args.fanout {
            runtime.block_on(fanout::run(n))?;
        }
    }
    if wants(&args, "output") {
        output(&args)?;
    }
    if wants(&args, "web") {
        web::run()?;
    }
    if wants(&args, "vms") {
        vms::run()?;
    }
    if wants(&args, "results") {
        results::run()?;
    }
    if wants(&args, "sync") {
        sync::round_trips()?;
        runtime.block_on(sync::barrier(args.barrier))?;
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Part 1: per-case overhead against bash alone.
fn overhead(args: &Args) -> Result<()> {
    let cases = args.cases;
    println!("\n== 1. per-case overhead: {cases} cases × (init, run, finalize) = `true` ==");
    for slaves in [1usize, 3] {
        // The floor: the same scripts run by bash directly, `slaves` at a time in parallel
        // (as the slaves run them), one round after another.
        let floor = bash_floor(cases * 3, slaves)?;
        let floor_per_stage = floor / (cases as u32 * 3);
        println!(
            "floor for {slaves} slave(s): {} rounds of {slaves} parallel `bash true.sh`: {:.1} ms, {:.2} ms per round, {:.2} ms per case",
            cases * 3,
            ms(floor),
            ms(floor_per_stage),
            ms(floor) / cases as f64
        );
        let names: Vec<String> = (1..=slaves).map(|n| format!("slave{n}")).collect();
        let case_names: Vec<String> = (0..cases).map(|n| format!("c{n:03}")).collect();
        let cluster =
            Cluster::start(slaves, "", |defs| write_suite(defs, "ts_overhead", &names, &case_names, "true\n", true))?;
        cluster.wait_slaves(&names)?;
        let record = cluster.run("ts_overhead")?;
        let session_ms =
            record["ended_ms"].as_u64().unwrap_or(0).saturating_sub(record["started_ms"].as_u64().unwrap_or(0));
        let stages = record["stages"].as_array().map(Vec::len).unwrap_or(0);
        let per_case = session_ms as f64 / cases as f64;
        let per_stage = session_ms as f64 / stages as f64;
        let overhead = per_stage - ms(floor_per_stage);
        println!(
            "{slaves} slave(s): session {session_ms} ms, {stages} stages: {per_case:.2} ms per case, {per_stage:.2} ms per stage, \
             overhead {overhead:.2} ms per stage over the floor (target ≤ 0.5 ms) [{}]",
            if overhead <= 0.5 { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `rounds` rounds of `parallel` one-line `true` scripts with bash, each round
/// waiting for all of its scripts.
fn bash_floor(rounds: usize, parallel: usize) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("true.sh");
    std::fs::write(&script, "true\n")?;
    let start = Instant::now();
    for _ in 0..rounds {
        let children: Vec<_> = (0..parallel)
            .map(|_| std::process::Command::new("bash").arg(&script).spawn())
            .collect::<std::io::Result<_>>()?;
        for mut child in children {
            child.wait()?;
        }
    }
    Ok(start.elapsed())
}

/// Part 3: a script writing `output_mb` MB.
fn output(args: &Args) -> Result<()> {
    let mb = args.output_mb;
    println!("\n== 3. output: one run script writes {mb} MB ==");
    let names = vec!["slave1".to_string()];
    // 100-byte lines (99 characters and a newline).
    let script = format!("yes \"$(printf '%099d' 0)\" | head -c {}\n", mb * 1024 * 1024);
    let cluster = Cluster::start(1, &format!("output_limit = \"{}M\"\n", mb * 2), |defs| {
        write_suite(defs, "ts_output", &names, &["big".to_string()], &script, false)
    })?;
    cluster.wait_slaves(&names)?;
    let before = cluster.master_memory()?;
    let record = cluster.run("ts_output")?;
    let after = cluster.master_memory()?;
    let run = record["stages"]
        .as_array()
        .and_then(|stages| stages.iter().find(|s| s["stage"].get("CaseRun").is_some()))
        .and_then(|s| s["runs"].get(0))
        .cloned()
        .unwrap_or_default();
    let bytes = run["output_bytes"].as_u64().unwrap_or(0);
    let stage_ms = run["ended_ms"].as_u64().unwrap_or(0).saturating_sub(run["started_ms"].as_u64().unwrap_or(0));
    let stored = cluster.stored_output_bytes(run["stage_id"].as_u64().unwrap_or(0))?;
    let throughput = bytes as f64 / 1048576.0 / (stage_ms.max(1) as f64 / 1000.0);
    let growth = after.peak_kib.saturating_sub(before.rss_kib) / 1024;
    println!(
        "{:.1} MB in {stage_ms} ms: {throughput:.0} MB/s into the store (target ≥ 100 MB/s) [{}]; {:.1} MB read back from the store",
        bytes as f64 / 1048576.0,
        if throughput >= 100.0 { "met" } else { "NOT met" },
        stored as f64 / 1048576.0
    );
    println!(
        "master memory: {} MB resident before, peak {} MB: growth {growth} MB (target < 64 MB) [{}]",
        before.rss_kib / 1024,
        after.peak_kib / 1024,
        if growth < 64 { "met" } else { "NOT met" }
    );
    Ok(())
}
