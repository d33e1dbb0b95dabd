//! A small blocking client of the master's JSON API.

use anyhow::{anyhow, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub struct ApiClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> ApiClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        ApiClient { base: base.trim_end_matches('/').to_string(), token, agent }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut response = response.map_err(|e| anyhow!("cannot reach the master at {}: {e}", self.base))?;
        let status = response.status();
        let body: Value = response.body_mut().read_json().with_context(|| format!("{path}: answer is not JSON"))?;
        if !status.is_success() {
            let message = body.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            return Err(anyhow!("{path}: {} {message}", status.as_u16()));
        }
        serde_json::from_value(body).with_context(|| format!("{path}: unexpected answer"))
    }

    /// A GET; the token goes along when there is one, for masters whose reading needs a
    /// login (`[web] require_login`).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let mut request = self.agent.get(&self.url(path));
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.answer(path, request.call())
    }

    /// A GET whose answer is a file, not JSON (a report, an export): its body as a reader.
    /// No overall time limit, as a big export takes a while, but a minute of silence is an
    /// error. An error status gives the API's message.
    pub fn download(&self, path: &str) -> Result<Box<dyn std::io::Read + Send>> {
        let mut request = self.agent.get(&self.url(path));
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request
            .config()
            .timeout_global(None)
            .timeout_per_read(Some(std::time::Duration::from_secs(60)))
            .build()
            .call()
            .map_err(|e| anyhow!("cannot reach the master at {}: {e}", self.base))?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let answer: Value = body.read_json().unwrap_or(Value::Null);
            let message = answer.get("error").and_then(Value::as_str).unwrap_or("no reason given");
            return Err(anyhow!("{path}: {} {message}", status.as_u16()));
        }
        Ok(Box::new(body.into_reader()))
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let mut request = self.agent.post(&self.url(path));
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.answer(path, request.send_json(body))
    }
}
