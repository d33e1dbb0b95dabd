//! `xrdtest token create|list|revoke`: API tokens with a scope and an end (admin only).

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

use crate::client::ApiClient;

/// Makes a token and prints it: the only time it is shown.
pub fn create(api: &ApiClient, name: &str, scope: &str, expires: Option<&str>, json_output: bool) -> Result<ExitCode> {
    let expires_in_s = match expires {
        Some(text) => Some(xrdtest_defs::units::parse_duration(text).map_err(|e| anyhow!("--expires: {e}"))?.as_secs()),
        None => None,
    };
    let answer: Value =
        api.post("/api/tokens", &json!({ "name": name, "scope": scope, "expires_in_s": expires_in_s }))?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", answer["token"].as_str().unwrap_or_default());
        eprintln!(
            "token `{name}` ({scope}, {}): shown this once; give it to xrdtest in $XRDTEST_TOKEN (not on a command line, where ps shows it) or send `Authorization: Bearer TOKEN`",
            match expires {
                Some(text) => format!("ends in {text}"),
                None => "never ends".to_string(),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(api: &ApiClient, json_output: bool) -> Result<ExitCode> {
    let answer: Value = api.get("/api/tokens")?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<32} {:<6} {:<20} ENDS", "NAME", "SCOPE", "MADE");
    let time = |ms: &Value| {
        ms.as_u64()
            .map(|ms| {
                let (y, m, d) = xrdtest_model::civil_from_days((ms / 86_400_000) as i64);
                let secs = ms / 1000 % 86_400;
                format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", secs / 3600, secs / 60 % 60)
            })
            .unwrap_or_else(|| "never".to_string())
    };
    for token in answer["tokens"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {:<6} {:<20} {}",
            token["name"].as_str().unwrap_or(""),
            token["scope"].as_str().unwrap_or(""),
            time(&token["created_unix_ms"]),
            time(&token["expires_unix_ms"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(api: &ApiClient, name: &str) -> Result<ExitCode> {
    let _: Value = api.post(&format!("/api/tokens/{name}/revoke"), &json!({}))?;
    println!("token `{name}` revoked: it is refused from now on");
    Ok(ExitCode::SUCCESS)
}
