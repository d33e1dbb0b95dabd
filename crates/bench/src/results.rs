//! Part 6: results and checks: what they cost in the store, reading a results file, and
//! loading the baselines of `regress_pct` from earlier sessions. Against the real store
//! (sled on a temporary folder) and the real parsing and baseline code.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use xrdtest_master::model::results::parse_file;
use xrdtest_master::model::{
    CaseRecord, CaseState, Check, CheckSource, ResultValue, RunState, SessionRecord, SessionState, Stage, StageRecord,
    StageRun, StageValues, Trigger,
};
use xrdtest_master::session::thresholds::Baselines;
use xrdtest_master::store::Store;

/// Results per stage run in the store measurement, and runs.
const PER_RUN: usize = 10;
const RUNS: usize = 10_000;

pub fn run() -> Result<()> {
    println!("\n== 6. results: store size, results file parsing, baselines ==");
    store_size()?;
    parsing();
    baselines()?;
    Ok(())
}

fn values(run: usize) -> StageValues {
    let results = (0..PER_RUN)
        .map(|i| ResultValue {
            name: format!("metric_{i}.latency_ms"),
            value: (run * PER_RUN + i) as f64 * 0.37,
            unit: "ms".into(),
        })
        .collect();
    let checks = vec![Check {
        name: "results.metric_0.latency_ms".into(),
        passed: true,
        message: "metric_0.latency_ms = 12.5 ms: within max 100 ms".into(),
        source: CheckSource::Threshold,
    }];
    StageValues { results, checks }
}

fn folder_bytes(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { folder_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// Bytes on disk per 1,000 results, with a threshold check beside every 10 of them.
fn store_size() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    store.flush_now()?;
    let empty = folder_bytes(dir.path())?;
    let mut encoded = 0usize;
    let started = Instant::now();
    for run in 0..RUNS {
        let values = values(run);
        encoded += xrdtest_master::model::storage::encode(&values).map(|b| b.len()).unwrap_or(0);
        store.put_values(run as u64 + 1, &values)?;
    }
    store.flush_now()?;
    let elapsed = started.elapsed();
    let full = folder_bytes(dir.path())?;
    let results = (RUNS * PER_RUN) as f64;
    println!(
        "{} results ({PER_RUN} per run and a check, {RUNS} runs) stored in {:.0} ms ({:.1} µs per run); \
         encoded {:.1} KB per 1,000 results, on disk {:.1} KB per 1,000 results (sled folder {:.1} MB → {:.1} MB)",
        results as u64,
        elapsed.as_secs_f64() * 1000.0,
        elapsed.as_secs_f64() * 1e6 / RUNS as f64,
        encoded as f64 / results * 1000.0 / 1024.0,
        (full.saturating_sub(empty)) as f64 / results * 1000.0 / 1024.0,
        empty as f64 / 1048576.0,
        full as f64 / 1048576.0,
    );
    Ok(())
}

/// A results file of 1,000 lines, as the slave reads it after a stage.
fn parsing() {
    let text: String = (0..1000).map(|i| format!("result metric_{i} {}.25 ms\n", i * 3)).collect();
    let rounds = 200;
    let started = Instant::now();
    let mut kept = 0;
    for _ in 0..rounds {
        kept += parse_file(&text, false).0.results.len();
    }
    let per_file = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
    println!(
        "a 1,000-line results file ({} KB) parsed in {per_file:.3} ms ({} values kept)",
        text.len() / 1024,
        kept / rounds
    );
}

/// The first `regress_pct` lookup of a session reads the suite's earlier sessions: 100
/// passing sessions of 30 case instances on 3 slaves, each run reporting 10 results.
fn baselines() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("store"))?;
    let defs = dir.path().join("ts_bench");
    let case_dirs = (0..30).map(|c| defs.join("tc").join(format!("c{c:02}"))).collect::<Vec<_>>();
    for case_dir in &case_dirs {
        std::fs::create_dir_all(case_dir)?;
        std::fs::write(case_dir.join("init.sh"), "true\n")?;
        std::fs::write(case_dir.join("run.sh"), "true\n")?;
        std::fs::write(case_dir.join("case.toml"), "[results.\"metric_0.latency_ms\"]\nregress_pct = 10\n")?;
    }
    let tests: Vec<String> = (0..30).map(|c| format!("\"c{c:02}\"")).collect();
    std::fs::write(
        defs.join("suite.toml"),
        format!(
            "name = \"ts_bench\"\nmachines = [\"s1\", \"s2\", \"s3\"]\ntests = [{}]\ninitialize = \"true\"\n",
            tests.join(", ")
        ),
    )?;
    let suite = xrdtest_defs::suite::load_suite(&defs).map_err(|errors| {
        anyhow::anyhow!(
            "the benchmark's suite is invalid: {}",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
        )
    })?;
    let slaves = ["s1", "s2", "s3"];
    let mut stage_id = 1u64;
    let sessions = 100u64;
    for id in 1..=sessions {
        let mut record = SessionRecord::queued(id, "ts_bench", Trigger::Manual, slaves.map(String::from).to_vec(), 0);
        record.state = SessionState::Passed;
        for c in 0..30 {
            let name = format!("c{c:02}");
            let mut case = CaseRecord::pending(&name, &name, Vec::new(), 1);
            case.state = CaseState::Passed;
            record.cases.push(case);
            let mut runs = Vec::new();
            for slave in slaves {
                let mut run = StageRun::pending(slave);
                run.stage_id = stage_id;
                run.state = RunState::Passed;
                store.put_values(stage_id, &values(stage_id as usize))?;
                stage_id += 1;
                runs.push(run);
            }
            record.stages.push(StageRecord {
                stage: Stage::CaseRun { case: name },
                timeout_ms: 1000,
                skipped: None,
                runs,
                repetition: 1,
                attempt: 1,
            });
        }
        store.put_session(&record)?;
    }
    store.flush_now()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build()?;
    let started = Instant::now();
    let baselines = runtime.block_on(async {
        let mut baselines = Baselines::start(&store, &suite, sessions + 1);
        baselines.ready().await;
        baselines
    });
    let load = started.elapsed();
    let started = Instant::now();
    let first = baselines.history("c00", "c00", "s1", "metric_0.latency_ms");
    let again = baselines.history("c29", "c29", "s3", "metric_0.latency_ms");
    let lookup = started.elapsed() / 2;
    println!(
        "baselines of a session: read in {:.1} ms ({sessions} passing sessions × 30 instances × 3 slaves, on a blocking thread), \
         then {:.1} µs a lookup; {} and {} values found",
        load.as_secs_f64() * 1000.0,
        lookup.as_secs_f64() * 1e6,
        first.len(),
        again.len()
    );
    Ok(())
}
