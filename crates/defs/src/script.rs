//! Where a suite-level script comes from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The source of a script named in a suite definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScriptSource {
    /// A file on the master's disk (`file://` relative to the suite folder, or `file:///abs`).
    File(PathBuf),
    /// A script the master fetches when a session starts.
    Url(String),
    /// The script text itself.
    Inline(String),
}

impl ScriptSource {
    /// Reads the text of a field: `file://rel`, `file:///abs`, `http(s)://...`, else inline.
    /// Checks that a URL parses; whether a file exists is the loader's check.
    pub fn parse(text: &str, suite_dir: &Path) -> Result<ScriptSource, String> {
        if let Some(rest) = text.strip_prefix("file://") {
            if rest.is_empty() {
                return Err("`file://` names no file".into());
            }
            // `file:///abs` leaves `/abs`; anything else is relative to the suite folder.
            let path = if rest.starts_with('/') { PathBuf::from(rest) } else { suite_dir.join(rest) };
            return Ok(ScriptSource::File(path));
        }
        let lower = text.trim_start().to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = url::Url::parse(text.trim()).map_err(|err| format!("`{text}` is not a valid URL: {err}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("`{text}` names no host"));
            }
            return Ok(ScriptSource::Url(url.to_string()));
        }
        if text.trim().is_empty() {
            return Err("the script is empty".into());
        }
        Ok(ScriptSource::Inline(text.to_string()))
    }

    /// A short human description: the path, the URL, or `inline`.
    pub fn describe(&self) -> String {
        match self {
            ScriptSource::File(path) => path.display().to_string(),
            ScriptSource::Url(url) => url.clone(),
            ScriptSource::Inline(_) => "inline script".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let dir = Path::new("/repo/suites/ts");
        assert_eq!(
            ScriptSource::parse("file://suite_init.sh", dir),
            Ok(ScriptSource::File("/repo/suites/ts/suite_init.sh".into()))
        );
        assert_eq!(ScriptSource::parse("file:///etc/init.sh", dir), Ok(ScriptSource::File("/etc/init.sh".into())));
        assert_eq!(
            ScriptSource::parse("https://example.org/init.sh", dir),
            Ok(ScriptSource::Url("https://example.org/init.sh".into()))
        );
        assert!(ScriptSource::parse("http://", dir).is_err());
        assert!(ScriptSource::parse("http://exa mple.org/x", dir).is_err());
        assert_eq!(ScriptSource::parse("echo hi", dir), Ok(ScriptSource::Inline("echo hi".into())));
        assert!(ScriptSource::parse("  ", dir).is_err());
    }
}
