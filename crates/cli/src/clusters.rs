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
        let used_by = match (&running["in_use_by"], &running["held_for"], &running["owner"]) {
            (Value::Number(id), _, _) => format!("session {id}"),
            (_, Value::Number(id), _) => format!("held ({id})"),
            (_, _, Value::String(owner)) if owner == "manual" => "by hand".into(),
            _ => "-".into(),
        };
        println!(
            "{:<24} {:<6} {:<18} {:<20} {:<12} {}",
            cluster["name"].as_str().unwrap_or(""),
            cluster["hosts"].as_array().map_or(0, Vec::len),
            state_text(running),
            running["hypervisor"].as_str().unwrap_or("-"),
            used_by,
            running["detail"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A cluster's state for the table: with the time a hold has left (`held 4m05s left`).
fn state_text(running: &Value) -> String {
    let state = running["state"].as_str().unwrap_or("not running");
    match running["held_left_ms"].as_u64() {
        Some(left) if state == "held" => format!("held {} left", time_left(left)),
        _ => state.to_string(),
    }
}

/// `45s`, `4m05s`, `1h02m`, `3d04h` (rounded up to the second: a hold never shows `0s`
/// before it ends).
fn time_left(ms: u64) -> String {
    let secs = ms.div_ceil(1000);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_cluster_shows_its_time_left() {
        assert_eq!(time_left(0), "0s");
        assert_eq!(time_left(1), "1s");
        assert_eq!(time_left(59_000), "59s");
        assert_eq!(time_left(245_000), "4m05s");
        assert_eq!(time_left(3_720_000), "1h02m");
        assert_eq!(time_left(2 * 86_400_000 + 3_600_000), "2d01h");
        let held = json!({"state": "held", "held_left_ms": 1_799_500});
        assert_eq!(state_text(&held), "held 30m00s left");
        assert_eq!(state_text(&json!({"state": "active", "held_left_ms": null})), "active");
        assert_eq!(state_text(&Value::Null), "not running");
    }
}
