//! Sessions: the plan and failure rules ([`rules`]), and the task that drives one session
//! through its stages across its slaves ([`runner`]).

pub mod rules;
pub mod runner;

use xrdtest_defs::{ScriptSource, Suite};

use rules::{plan, ScriptRef};

/// The text of a stage's script, read when the session starts so that edits made while it
/// runs do not mix two versions of a suite.
pub fn load_script(script: &ScriptRef) -> Result<String, String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read script {}: {e}", path.display()))
    };
    match script {
        ScriptRef::CaseFile(path) | ScriptRef::Suite(ScriptSource::File(path)) => read(path),
        ScriptRef::Suite(ScriptSource::Inline(text)) => Ok(text.clone()),
        ScriptRef::Suite(ScriptSource::Url(url)) => {
            Err(format!("script {url}: this master does not fetch http(s) script sources yet"))
        }
    }
}

/// SHA-256 over the suite definition and the text of every script it runs: two sessions
/// with the same hash ran the same thing.
pub fn definition_hash(suite: &Suite) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(serde_json::to_string(suite).unwrap_or_default().as_bytes());
    for planned in plan(suite) {
        context.update(planned.stage.to_string().as_bytes());
        context.update(load_script(&planned.script).unwrap_or_default().as_bytes());
    }
    context.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
