//! `xrdtest peers list|approve|revoke`: who may connect to the master.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};

use crate::client::ApiClient;

/// Every identity the master knows, waiting ones first.
pub fn list(api: &ApiClient, json_output: bool) -> Result<ExitCode> {
    let answer: Value = api.get("/api/peers")?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut peers: Vec<&Value> = answer["peers"].as_array().into_iter().flatten().collect();
    let order = |p: &Value| match p["state"].as_str() {
        Some("pending") => 0,
        Some("enrolled") => 1,
        _ => 2,
    };
    peers.sort_by_key(|p| (order(p), p["name"].as_str().unwrap_or("").to_string()));
    println!("{:<32} {:<11} {:<9} {:<17} {:<22} HOW", "NAME", "ROLE", "STATE", "KEY", "FROM");
    for peer in peers {
        println!(
            "{:<32} {:<11} {:<9} {:<17} {:<22} {}",
            peer["name"].as_str().unwrap_or(""),
            peer["role"].as_str().unwrap_or(""),
            peer["state"].as_str().unwrap_or(""),
            peer["key"].as_str().unwrap_or(""),
            peer["address"].as_str().unwrap_or(""),
            peer["how"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Approves (`approve = true`) or revokes a peer by name.
pub fn decide(api: &ApiClient, name: &str, approve: bool) -> Result<ExitCode> {
    let action = if approve { "approve" } else { "revoke" };
    let _: Value = api.post(&format!("/api/peers/{name}/{action}"), &json!({}))?;
    match approve {
        true => println!("{name} approved: it receives its certificate at its next connection attempt"),
        false => println!("{name} revoked: its connection dropped and its certificate is refused from now on"),
    }
    Ok(ExitCode::SUCCESS)
}
