//! Sessions: the plan made from a suite and a run request ([`plan`]), the failure rules
//! ([`rules`]), the engine that runs a session's stages across its slaves as plain data and
//! functions ([`engine`]), the I/O shell that feeds it ([`runner`]), and a cluster
//! session's cluster ([`cluster`]), and the end of a session on its slaves ([`clean_slate`]).

pub mod clean_slate;
pub mod cluster;
pub mod coordination;
pub mod credentials;
pub mod engine;
pub mod faults;
pub mod plan;
pub mod rules;
pub mod runner;
pub mod sync;
pub mod thresholds;

use std::collections::BTreeMap;

use xrdtest_defs::{ScriptSource, Suite};

use crate::cluster_control::ClusterControl;
use crate::clusters::ClusterBoard;
use crate::config::MasterConfig;
use crate::model::SessionRecord;
use crate::peers::Peers;
use crate::store::Store;
use plan::{Plan, ScriptRef};

/// What a session needs of the master while it runs: the master implements it, and the
/// session code knows nothing else of the master (no import cycle between the two).
pub trait SessionHost: Send + Sync {
    fn config(&self) -> &MasterConfig;
    fn store(&self) -> &Store;
    fn peers(&self) -> &Peers;
    fn clusters(&self) -> &ClusterBoard;
    fn cluster_control(&self) -> ClusterControl<'_>;
    /// Tags every stage gets from the master: `@port@`, `@proto@`.
    fn base_tags(&self) -> BTreeMap<String, String>;
    /// Stores a session record and tells live views it changed.
    fn save(&self, record: &SessionRecord);
    /// The same, waiting until it is on disk (a session created, started, ended).
    fn save_durably(&self, record: &SessionRecord);
    /// Called once when a session reaches its final state (alerts go out from here).
    fn session_ended(&self, suite: &Suite, record: &SessionRecord);
}

/// Longest a script download may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest script the master downloads.
const FETCH_LIMIT: u64 = 4 << 20;

/// The text of a stage's script, read (or downloaded, for `http(s)://` sources) when the
/// session starts, so that edits made while it runs do not mix two versions of a suite.
/// Blocking: call it off the async threads.
pub fn load_script(script: &ScriptRef) -> Result<String, String> {
    match script {
        ScriptRef::Suite(ScriptSource::Url(url)) => fetch(url),
        other => local_text(other),
    }
}

/// The script text for files and inline scripts; for a URL, the URL itself.
fn local_text(script: &ScriptRef) -> Result<String, String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read script {}: {e}", path.display()))
    };
    match script {
        ScriptRef::CaseFile(path) | ScriptRef::Suite(ScriptSource::File(path)) => read(path),
        ScriptRef::Suite(ScriptSource::Inline(text)) => Ok(text.clone()),
        ScriptRef::Suite(ScriptSource::Url(url)) => Ok(url.clone()),
    }
}

/// Downloads a script; any failure is a sentence naming the URL.
fn fetch(url: &str) -> Result<String, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(FETCH_TIMEOUT)).http_status_as_error(false).build().into();
    let mut response = agent.get(url).call().map_err(|e| format!("cannot fetch script {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("cannot fetch script {url}: HTTP {status}"));
    }
    let text = response
        .body_mut()
        .with_config()
        .limit(FETCH_LIMIT)
        .read_to_string()
        .map_err(|e| format!("cannot fetch script {url}: {e}"))?;
    // The definition may pin the content (`#sha256=<hex>`): a script that changed on its
    // server does not run.
    if let Some(pinned) = xrdtest_defs::script::pinned_sha256(url)? {
        let got = hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()));
        if got != pinned {
            return Err(format!("script {url}: its SHA-256 is {got}, not the {pinned} the definition pins"));
        }
    }
    Ok(text)
}

/// SHA-256 over the suite definition, the run's options, the plan's stages and the text
/// of every script it runs: two sessions with the same hash ran the same thing.
pub fn definition_hash(suite: &Suite, plan: &Plan) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(serde_json::to_string(suite).unwrap_or_default().as_bytes());
    context.update(serde_json::to_string(&plan.options).unwrap_or_default().as_bytes());
    for template in &plan.templates {
        context.update(template.stage.to_string().as_bytes());
        context.update(local_text(&template.script).unwrap_or_default().as_bytes());
    }
    hex::encode(context.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-request-per-connection HTTP server on loopback answering `status` and `body`.
    fn serve(status: &'static str, body: &'static str, requests: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(requests) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{address}/init.sh")
    }

    #[test]
    fn url_scripts_are_downloaded_and_failures_name_the_url() {
        let url = serve("200 OK", "echo fetched\n", 1);
        assert_eq!(load_script(&ScriptRef::Suite(ScriptSource::Url(url))).unwrap(), "echo fetched\n");
        let missing = serve("404 Not Found", "no", 1);
        let err = load_script(&ScriptRef::Suite(ScriptSource::Url(missing.clone()))).unwrap_err();
        assert!(err.contains(&missing) && err.contains("404"), "{err}");
        // Nothing listens on port 9 of loopback.
        let err = load_script(&ScriptRef::Suite(ScriptSource::Url("http://127.0.0.1:9/x.sh".into()))).unwrap_err();
        assert!(err.contains("http://127.0.0.1:9/x.sh"), "{err}");
    }

    #[test]
    fn a_pinned_script_runs_only_with_its_content() {
        let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, b"echo fetched\n"));
        let good = format!("{}#sha256={digest}", serve("200 OK", "echo fetched\n", 1));
        assert_eq!(load_script(&ScriptRef::Suite(ScriptSource::Url(good))).unwrap(), "echo fetched\n");
        let changed = format!("{}#sha256={digest}", serve("200 OK", "echo changed\n", 1));
        let err = load_script(&ScriptRef::Suite(ScriptSource::Url(changed))).unwrap_err();
        assert!(err.contains("not the") && err.contains(&digest), "{err}");
    }
}
