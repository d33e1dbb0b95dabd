//! Starting the real binaries for a benchmark, and talking to the master's API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

pub const SECRET: &str = "bench-secret";
pub const TOKEN: &str = "bench-token";

/// The directory of this executable, where cargo puts the other binaries too.
pub fn binary(name: &str) -> Result<PathBuf> {
    let dir = std::env::current_exe()?.parent().map(Path::to_path_buf).ok_or_else(|| anyhow!("no exe dir"))?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{} not found: run `cargo build --release --workspace --bins` first", path.display());
    }
    Ok(path)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// A master and some slave processes in a temporary folder; killed when dropped.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub state: PathBuf,
    pub peer_port: u16,
    pub api: String,
    master: Child,
    slaves: Vec<Child>,
    agent: ureq::Agent,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.slaves.iter_mut().chain(std::iter::once(&mut self.master)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// Writes the definitions with `setup`, then starts a master (with `extra_config`
    /// lines) and `slaves` slave processes named slave1, slave2, ...
    pub fn start(slaves: usize, extra_config: &str, setup: impl FnOnce(&Path) -> Result<()>) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state");
        let definitions = dir.path().join("defs");
        std::fs::create_dir_all(definitions.join("suites"))?;
        std::fs::create_dir_all(definitions.join("clusters"))?;
        setup(&definitions)?;
        let peer_port = free_port()?;
        let web_port = free_port()?;
        let config = dir.path().join("master.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{peer_port}\"\nweb_listen = \"127.0.0.1:{web_port}\"\nstate_dir = \"{}\"\n\
                 secret = \"{SECRET}\"\napi_token = \"{TOKEN}\"\ndefinitions = \"{}\"\nslave_wait = \"30s\"\n{extra_config}",
                state.display(),
                definitions.display()
            ),
        )?;
        let master = Command::new(binary("xrdtest-master")?)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()
            .context("starting xrdtest-master")?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut cluster = Cluster {
            _dir: dir,
            state,
            peer_port,
            api: format!("http://127.0.0.1:{web_port}"),
            master,
            slaves: Vec::new(),
            agent,
        };
        cluster.wait_for(|c| c.get("/api/health").is_ok(), "the master's API")?;
        for n in 1..=slaves {
            cluster.start_slave(&format!("slave{n}"))?;
        }
        Ok(cluster)
    }

    fn start_slave(&mut self, name: &str) -> Result<()> {
        let base = self.state.parent().unwrap_or(Path::new("/tmp")).join(name);
        std::fs::create_dir_all(&base)?;
        let config = base.join("slave.toml");
        std::fs::write(
            &config,
            format!(
                "master = \"127.0.0.1:{}\"\nname = \"{name}\"\nsecret = \"{SECRET}\"\nca_file = \"{}\"\nwork_dir = \"{}\"\n",
                self.peer_port,
                self.state.join("ca.crt").display(),
                base.join("work").display()
            ),
        )?;
        let child = Command::new(binary("xrdtest-slave")?)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()?;
        self.slaves.push(child);
        Ok(())
    }

    fn wait_for(&self, mut ready: impl FnMut(&Cluster) -> bool, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(self) {
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let mut response = self.agent.get(&format!("{}{path}", self.api)).call()?;
        // A session of 10,000 slaves is a JSON record of tens of megabytes.
        let body: Value = response.body_mut().with_config().limit(1 << 30).read_json()?;
        if !response.status().is_success() {
            bail!("{path}: {body}");
        }
        Ok(body)
    }

    pub fn post(&self, path: &str, body: Value) -> Result<Value> {
        let mut response = self
            .agent
            .post(&format!("{}{path}", self.api))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(body)?;
        let answer: Value = response.body_mut().read_json()?;
        if !response.status().is_success() {
            bail!("{path}: {answer}");
        }
        Ok(answer)
    }

    /// Waits until every named slave is connected.
    pub fn wait_slaves(&self, slaves: &[String]) -> Result<()> {
        self.wait_for(
            |c| {
                c.get("/api/slaves").is_ok_and(|v| {
                    slaves.iter().all(|name| {
                        v["slaves"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|s| s["name"] == name.as_str() && s["connected"] == true)
                    })
                })
            },
            "the slaves to connect",
        )
    }

    /// Runs a suite and returns the finished session record.
    pub fn run(&self, suite: &str) -> Result<Value> {
        let created = self.post(&format!("/api/suites/{suite}/run"), json!({}))?;
        let id = created["session"].as_u64().ok_or_else(|| anyhow!("no session id"))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            // The summary, not the record: polling a record of thousands of slaves would
            // load the master more than the session does.
            let page = self.get(&format!("/api/sessions?suite={suite}&limit=5"))?;
            let summary = page["sessions"].as_array().and_then(|list| list.iter().find(|s| s["id"] == id)).cloned();
            let state = summary.as_ref().and_then(|s| s["state"].as_str()).unwrap_or("").to_string();
            if matches!(state.as_str(), "passed" | "failed" | "cancelled" | "interrupted") {
                let record = self.get(&format!("/api/sessions/{id}"))?;
                if state != "passed" {
                    bail!("session {id} ended {state}: {}", record["reason"]);
                }
                return Ok(record);
            }
            if Instant::now() > deadline {
                bail!("session {id} did not end");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn master_memory(&self) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.master.id()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Memory { rss_kib: field("VmRSS:"), peak_kib: field("VmHWM:") })
    }

    /// Bytes of output stored for a stage, read back through the API.
    pub fn stored_output_bytes(&self, stage_id: u64) -> Result<u64> {
        let mut from = 0;
        let mut total = 0u64;
        loop {
            let page = self.get(&format!("/api/stages/{stage_id}/output?from={from}&max_chunks=8"))?;
            let lines = page["lines"].as_array().cloned().unwrap_or_default();
            if lines.is_empty() {
                return Ok(total);
            }
            total += lines.iter().map(|l| l["text"].as_str().map_or(0, str::len) as u64 + 1).sum::<u64>();
            from = page["next"].as_u64().unwrap_or(from + 1);
        }
    }
}

/// Writes `suites/<name>` with `cases` whose scripts are all `script`.
pub fn write_suite(
    definitions: &Path,
    name: &str,
    machines: &[String],
    cases: &[String],
    script: &str,
    finalize: bool,
) -> Result<()> {
    let dir = definitions.join("suites").join(name);
    std::fs::create_dir_all(&dir)?;
    let quoted: Vec<String> = machines.iter().map(|m| format!("\"{m}\"")).collect();
    let tests: Vec<String> = cases.iter().map(|c| format!("\"{c}\"")).collect();
    std::fs::write(
        dir.join("suite.toml"),
        format!(
            "name = \"{name}\"\nmachines = [{}]\ntests = [{}]\ninitialize = \"true\"\nstage_timeout = \"10m\"\n",
            quoted.join(", "),
            tests.join(", ")
        ),
    )?;
    for case in cases {
        let case_dir = dir.join("tc").join(case);
        std::fs::create_dir_all(&case_dir)?;
        std::fs::write(case_dir.join("init.sh"), if script == "true\n" { script } else { "true\n" })?;
        std::fs::write(case_dir.join("run.sh"), script)?;
        if finalize {
            std::fs::write(case_dir.join("finalize.sh"), "true\n")?;
        }
    }
    Ok(())
}
