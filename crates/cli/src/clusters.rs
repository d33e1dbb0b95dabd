//! `xrdtest clusters`, `xrdtest cluster start|stop`, `xrdtest hypervisors`.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};

use crate::client::ApiClient;

/// Defined clusters and, for those a hypervisor runs, where and in what state.
pub fn list(api: &ApiClient, json_output: bool) -> Result<ExitCode> {
    let answer: Value = api.get("/api/clusters")?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<24} {:<6} {:<18} {:<20} {:<12} DETAIL", "CLUSTER", "HOSTS", "STATE", "HYPERVISOR", "USED BY");
    for cluster in answer["clusters"].as_array().into_iter().flatten() {
        let running = &cluster["running"];
        let used_by = match (&running["in_use_by"], &running["owner"]) {
            (Value::Number(id), _) => format!("session {id}"),
            (_, Value::String(owner)) if owner == "manual" => "by hand".into(),
            _ => "-".into(),
        };
        println!(
            "{:<24} {:<6} {:<18} {:<20} {:<12} {}",
            cluster["name"].as_str().unwrap_or(""),
            cluster["hosts"].as_array().map_or(0, Vec::len),
            running["state"].as_str().unwrap_or("not running"),
            running["hypervisor"].as_str().unwrap_or("-"),
            used_by,
            running["detail"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Connected hypervisors and their capacity.
pub fn hypervisors(api: &ApiClient, json_output: bool) -> Result<ExitCode> {
    let answer: Value = api.get("/api/hypervisors")?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<28} {:<10} {:<6} {:<10} {:<18} CLUSTERS", "HYPERVISOR", "STATE", "TYPE", "VMS", "MEMORY (MiB)");
    for hv in answer["hypervisors"].as_array().into_iter().flatten() {
        let status = &hv["status"];
        let mib = |v: &Value| v.as_u64().map_or("-".to_string(), |b| (b >> 20).to_string());
        let clusters: Vec<String> = status["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["cluster"].as_str().unwrap_or("?").to_string())
            .collect();
        println!(
            "{:<28} {:<10} {:<6} {:<10} {:<18} {}",
            hv["name"].as_str().unwrap_or(""),
            if hv["connected"].as_bool() == Some(true) { "connected" } else { "away" },
            status["domain_type"].as_str().unwrap_or("-"),
            format!("{}/{}", status["vms_running"].as_u64().unwrap_or(0), status["vm_limit"].as_u64().unwrap_or(0)),
            format!("{}/{}", mib(&status["memory_used_bytes"]), mib(&status["memory_limit_bytes"])),
            if clusters.is_empty() { "-".to_string() } else { clusters.join(", ") }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts (`start = true`) or stops a cluster by hand; with `wait`, follows its states
/// until it is active (or stopped) and exits 1 if it ends in an error state instead.
pub fn command(api: &ApiClient, name: &str, start: bool, wait: bool) -> Result<ExitCode> {
    let verb = if start { "start" } else { "stop" };
    let answer: Value = api.post(&format!("/api/clusters/{name}/{verb}"), &json!({}))?;
    let hypervisor = answer["hypervisor"].as_str().unwrap_or("?");
    println!("cluster {name}: {verb} sent to {hypervisor}");
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let wanted = if start { "active" } else { "stopped" };
    let mut printed = 0;
    loop {
        let answer: Value = api.get("/api/clusters")?;
        let Some(cluster) = answer["clusters"].as_array().into_iter().flatten().find(|c| c["name"] == name) else {
            anyhow::bail!("cluster {name} is no longer listed by the master");
        };
        let running = &cluster["running"];
        let steps = running["steps"].as_array().cloned().unwrap_or_default();
        // Steps are a bounded window; print only the ones not printed yet.
        for step in steps.iter().skip(printed.min(steps.len())) {
            println!("  {:<18} {}", step["state"].as_str().unwrap_or(""), step["detail"].as_str().unwrap_or(""));
        }
        printed = steps.len();
        let state = running["state"].as_str().unwrap_or("");
        if state == wanted {
            return Ok(ExitCode::SUCCESS);
        }
        if state.starts_with("error") {
            eprintln!("cluster {name}: {state}: {}", running["detail"].as_str().unwrap_or(""));
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
