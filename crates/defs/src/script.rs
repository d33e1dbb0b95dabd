//! Where a suite-level script comes from.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where `file://` scripts may come from (docs/definitions.md, "Where scripts may come
/// from"): a relative path stays inside the definitions repository (no `..`, no symlink
/// out of it); an absolute path must lie under one of `script_dirs` (`master.toml`), and
/// with none listed, is refused. Whoever can push definitions must not read the master's
/// own files (its CA key, its secrets) through a stage's output.
///
/// An `http(s)://` source must use `https`, unless its host is listed in `http_hosts`
/// (`http_script_hosts` in `master.toml`); it may pin its content with a fragment
/// `#sha256=<64 hex digits>`, checked when the master fetches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    pub script_dirs: Vec<PathBuf>,
    pub http_hosts: Vec<String>,
}

/// The SHA-256 (lower-case hex) a URL source pins with `#sha256=<hex>`, if it does; an error
/// for a `sha256=` fragment that is not 64 hex digits.
pub fn pinned_sha256(url: &str) -> Result<Option<String>, String> {
    let Some((_, fragment)) = url.split_once('#') else { return Ok(None) };
    let Some(digest) = fragment.strip_prefix("sha256=") else { return Ok(None) };
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`#sha256={digest}` is not a SHA-256: 64 hex digits"));
    }
    Ok(Some(digest.to_ascii_lowercase()))
}

impl SourcePolicy {
    /// Checks an `http(s)://` source: `https`, or plain `http` to a host the master's
    /// configuration lists; a `#sha256=` pin well formed.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        pinned_sha256(url)?;
        let parsed = url::Url::parse(url).map_err(|err| format!("`{url}` is not a valid URL: {err}"))?;
        if parsed.scheme() == "https" {
            return Ok(());
        }
        let host = parsed.host_str().unwrap_or_default();
        if self.http_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host)) {
            return Ok(());
        }
        Err(format!(
            "`{url}` is plain http: use https, or list `{host}` in `http_script_hosts` of master.toml (a pin such as `#sha256=<hex>` then guards the content)"
        ))
    }

    /// Checks a `file://` source of a suite in `suite_dir` (whose repository is the folder
    /// above its `suites/` folder). The file must exist.
    pub fn check_file(&self, text: &str, path: &Path, suite_dir: &Path) -> Result<(), String> {
        let rest = text.strip_prefix("file://").unwrap_or(text);
        if Path::new(rest).components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("`{rest}` climbs out with `..`: a script must lie in the suite's repository"));
        }
        let real = path.canonicalize().map_err(|_| format!("script file {} does not exist", path.display()))?;
        if rest.starts_with('/') {
            let allowed =
                self.script_dirs.iter().filter_map(|dir| dir.canonicalize().ok()).any(|dir| real.starts_with(dir));
            if !allowed {
                return Err(if self.script_dirs.is_empty() {
                    format!("absolute script paths are refused: put `{rest}` in the repository and name it relative to the suite folder, or list its folder in `script_dirs` of master.toml")
                } else {
                    format!("`{rest}` is not under a folder of `script_dirs` in master.toml")
                });
            }
            return Ok(());
        }
        let repository = suite_dir.parent().and_then(Path::parent).unwrap_or(suite_dir);
        let root = repository.canonicalize().unwrap_or_else(|_| repository.to_path_buf());
        if !real.starts_with(&root) {
            return Err(format!("`{rest}` leads out of the repository (to {}) through a symlink", real.display()));
        }
        Ok(())
    }
}

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

    #[test]
    fn file_sources_stay_in_the_repository_or_the_listed_folders() {
        let repo = tempfile::tempdir().unwrap();
        let suite_dir = repo.path().join("suites/ts");
        std::fs::create_dir_all(suite_dir.join("sub")).unwrap();
        std::fs::write(suite_dir.join("sub/ok.sh"), "true").unwrap();
        std::fs::write(repo.path().join("shared.sh"), "true").unwrap();
        std::os::unix::fs::symlink(repo.path().join("shared.sh"), suite_dir.join("inside.sh")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", suite_dir.join("out.sh")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("lab.sh"), "true").unwrap();
        let check = |policy: &SourcePolicy, text: &str| {
            let ScriptSource::File(path) = ScriptSource::parse(text, &suite_dir).unwrap() else { panic!("{text}") };
            policy.check_file(text, &path, &suite_dir)
        };
        let none = SourcePolicy::default();
        assert_eq!(check(&none, "file://sub/ok.sh"), Ok(()));
        assert_eq!(check(&none, "file://inside.sh"), Ok(()), "a symlink within the repository is fine");
        assert!(check(&none, "file://out.sh").unwrap_err().contains("symlink"));
        assert!(check(&none, "file://../../shared.sh").unwrap_err().contains(".."));
        assert!(check(&none, "file:///etc/hostname").unwrap_err().contains("script_dirs"));
        let lab = format!("file://{}/lab.sh", outside.path().display());
        assert!(check(&none, &lab).is_err());
        let listed = SourcePolicy { script_dirs: vec![outside.path().to_path_buf()], ..SourcePolicy::default() };
        assert_eq!(check(&listed, &lab), Ok(()));
        assert!(check(&listed, "file:///etc/hostname").unwrap_err().contains("not under"));
        assert!(check(&none, "file://missing.sh").unwrap_err().contains("does not exist"));
    }

    #[test]
    fn url_sources_need_https_or_a_listed_host_and_pins_are_well_formed() {
        let none = SourcePolicy::default();
        assert_eq!(none.check_url("https://example.org/init.sh"), Ok(()));
        let err = none.check_url("http://example.org/init.sh").unwrap_err();
        assert!(err.contains("http_script_hosts") && err.contains("example.org"), "{err}");
        let lab = SourcePolicy { http_hosts: vec!["Scripts.Lab".into()], ..SourcePolicy::default() };
        assert_eq!(lab.check_url("http://scripts.lab/init.sh"), Ok(()));
        assert!(lab.check_url("http://other.lab/init.sh").is_err());
        let digest = "ab".repeat(32);
        assert_eq!(pinned_sha256(&format!("https://x.org/a.sh#sha256={digest}")), Ok(Some(digest.clone())));
        assert_eq!(pinned_sha256("https://x.org/a.sh#top"), Ok(None));
        assert!(none.check_url("https://x.org/a.sh#sha256=abc").unwrap_err().contains("64 hex digits"));
    }
}
