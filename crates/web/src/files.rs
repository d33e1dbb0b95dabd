//! What slaves (and people) fetch from the master, as XrdTest's `downloadScript`,
//! `showScript` and `getTrustedCACertificate`:
//!
//! - `GET /files/{repo}/{*path}`: a file of a definitions repository, from the repository's
//!   root (for git: the master's checkout), e.g. `/files/default/suites/ts_demo/suite_init.sh`.
//!   Text comes as `text/plain; charset=utf-8`, anything else as `application/octet-stream`.
//! - `GET /files/{repo}/{*path}?show`: the same file in an HTML page (escaped).
//! - `GET /ca.crt`: the master's CA certificate (`state_dir/ca.crt`), PEM.
//!
//! These stay open when `[web] require_login` is set: slaves fetch them without a login, and
//! neither definitions nor the CA certificate are secrets.
//!
//! Nothing outside a repository's root is ever served: a path with `..`, `.`, empty or
//! absolute parts, NUL or backslash is refused (400) before the disk is looked at; the path
//! is then resolved with every symbolic link and must still lie inside the resolved root, and
//! the opened file is checked once more through `/proc/self/fd`. Anything under a `.git`
//! folder, missing files, folders, devices and links leading out are all 404.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::warn;

use crate::escape;
use crate::security::{mark, Kind};
use crate::WebState;

/// The show page displays at most this much of a file.
pub const SHOW_LIMIT: u64 = 2 << 20;
/// How much of a file decides whether it is text.
const SNIFF_BYTES: usize = 8192;

pub fn routes() -> Router<Arc<WebState>> {
    Router::new().route("/files/{repo}/{*path}", get(repo_file)).route("/ca.crt", get(ca_certificate))
}

/// Why a file is not served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The path itself is not acceptable (400).
    BadPath(&'static str),
    /// Missing, not a regular file, `.git`, or outside the root (404).
    NotFound,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Refusal::BadPath(why) => (StatusCode::BAD_REQUEST, format!("refused: {why}\n")),
            Refusal::NotFound => (StatusCode::NOT_FOUND, "not found\n".to_string()),
        };
        let mut response = (status, text).into_response();
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

/// Checks a repository-relative path (already percent-decoded) without touching the disk.
pub fn check_relative(path: &str) -> Result<PathBuf, Refusal> {
    if path.is_empty() {
        return Err(Refusal::NotFound);
    }
    if path.contains('\0') {
        return Err(Refusal::BadPath("NUL in the path"));
    }
    if path.contains('\\') {
        return Err(Refusal::BadPath("backslash in the path"));
    }
    if path.starts_with('/') {
        return Err(Refusal::BadPath("absolute path"));
    }
    let mut relative = PathBuf::new();
    for part in path.split('/') {
        match part {
            "" | "." => return Err(Refusal::BadPath("empty or `.` path part")),
            ".." => return Err(Refusal::BadPath("`..` in the path")),
            _ if part.eq_ignore_ascii_case(".git") => return Err(Refusal::NotFound),
            _ => relative.push(part),
        }
    }
    Ok(relative)
}

/// The resolved path of `relative` under `root`, if it is a regular file inside it (after
/// following every link) and not in a `.git` folder.
pub fn locate(root: &FsPath, relative: &str) -> Result<PathBuf, Refusal> {
    let relative = check_relative(relative)?;
    let root = root.canonicalize().map_err(|_| Refusal::NotFound)?;
    let resolved = root.join(&relative).canonicalize().map_err(|_| Refusal::NotFound)?;
    inside(&root, &resolved)?;
    if !std::fs::metadata(&resolved).map(|m| m.is_file()).unwrap_or(false) {
        return Err(Refusal::NotFound);
    }
    Ok(resolved)
}

/// `Ok` if `resolved` lies under `root` and not in a `.git` folder.
fn inside(root: &FsPath, resolved: &FsPath) -> Result<(), Refusal> {
    let Ok(rest) = resolved.strip_prefix(root) else {
        return Err(Refusal::NotFound);
    };
    let git = rest.components().any(|c| matches!(c, Component::Normal(name) if name.eq_ignore_ascii_case(".git")));
    if git || rest.as_os_str().is_empty() {
        return Err(Refusal::NotFound);
    }
    Ok(())
}

/// Opens the located file and checks, on the open descriptor, that it is still a regular
/// file inside the root (a link swapped in meanwhile is caught here).
fn open_checked(root: &FsPath, relative: &str) -> Result<(File, u64), Refusal> {
    let resolved = locate(root, relative)?;
    let file = File::open(&resolved).map_err(|_| Refusal::NotFound)?;
    let metadata = file.metadata().map_err(|_| Refusal::NotFound)?;
    if !metadata.is_file() {
        return Err(Refusal::NotFound);
    }
    {
        use std::os::fd::AsRawFd;
        if let Ok(opened) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            let root = root.canonicalize().map_err(|_| Refusal::NotFound)?;
            inside(&root, &opened)?;
        }
    }
    Ok((file, metadata.len()))
}

/// Whether these first bytes of a file look like text.
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // A character cut at the end of the sniffed part is fine.
        Err(err) => err.error_len().is_none() && head.len() - err.valid_up_to() < 4,
    }
}

async fn repo_file(
    State(state): State<Arc<WebState>>,
    Path((repo, path)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(root) = state.core.repos().iter().find(|r| r.name == repo).map(|r| r.root().to_path_buf()) else {
        return Refusal::NotFound.into_response();
    };
    let show = query.as_deref().is_some_and(|q| q.split('&').any(|p| p == "show" || p.starts_with("show=")));
    let relative = path.clone();
    let opened = tokio::task::spawn_blocking(move || -> Result<(File, u64, Vec<u8>), Refusal> {
        let (mut file, size) = open_checked(&root, &relative)?;
        let limit = if show { SHOW_LIMIT } else { SNIFF_BYTES as u64 };
        let mut head = Vec::new();
        (&mut file).take(limit).read_to_end(&mut head).map_err(|_| Refusal::NotFound)?;
        file.rewind().map_err(|_| Refusal::NotFound)?;
        Ok((file, size, head))
    })
    .await;
    let (file, size, head) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(refusal)) => {
            if let Refusal::BadPath(why) = &refusal {
                warn!(repo = %repo, path = ?path, why, "refused a file request");
            }
            return refusal.into_response();
        }
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let text = looks_like_text(&head[..head.len().min(SNIFF_BYTES)]);
    if show {
        return show_page(&repo, &path, size, text, &head);
    }
    let content_type = if text { "text/plain; charset=utf-8" } else { "application/octet-stream" };
    // Never more than the announced length, should the file grow meanwhile.
    let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), size);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    mark(response, Kind::Download)
}

fn show_page(repo: &str, path: &str, size: u64, text: bool, head: &[u8]) -> Response {
    let name = format!("{repo}/{path}");
    let download = format!(
        "/files/{}/{}",
        escape::url_component(repo),
        path.split('/').map(escape::url_component).collect::<Vec<_>>().join("/")
    );
    let content = if !text {
        format!("<p>A binary file of {size} bytes.</p>")
    } else {
        let shown = String::from_utf8_lossy(head);
        let cut = if size > head.len() as u64 {
            format!("<p class=\"cut\">Only the first {} of {size} bytes are shown.</p>", head.len())
        } else {
            String::new()
        };
        format!("<pre>{}</pre>{cut}", escape::html(&shown))
    };
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — xrdtest</title><style>body{{font-family:sans-serif;margin:2em}}\
         pre{{background:#f4f4f4;padding:1em;overflow:auto}}.cut{{color:#a60}}</style></head>\
         <body><h1>{title}</h1><p><a href=\"{download}\">Download</a> ({size} bytes)</p>{content}\
         <p><a href=\"/\">xrdtest dashboard</a></p></body></html>\n",
        title = escape::html(&name),
        download = escape::html(&download),
    );
    let mut response = page.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    mark(response, Kind::FilePage)
}

async fn ca_certificate(State(state): State<Arc<WebState>>) -> Response {
    let path = state.core.ca_cert_path();
    match tokio::fs::read(&path).await {
        Ok(pem) => {
            let mut response = pem.into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            mark(response, Kind::Certificate)
        }
        Err(err) => {
            warn!(path = %path.display(), error = %err, "cannot read the CA certificate");
            Refusal::NotFound.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked_before_the_disk() {
        assert_eq!(check_relative("suites/ts/a.sh"), Ok(PathBuf::from("suites/ts/a.sh")));
        for (path, refusal) in [
            ("../x", Refusal::BadPath("`..` in the path")),
            ("a/../../x", Refusal::BadPath("`..` in the path")),
            ("/etc/passwd", Refusal::BadPath("absolute path")),
            ("a//b", Refusal::BadPath("empty or `.` path part")),
            ("a/./b", Refusal::BadPath("empty or `.` path part")),
            ("a/", Refusal::BadPath("empty or `.` path part")),
            ("a\0b", Refusal::BadPath("NUL in the path")),
            ("..\\x", Refusal::BadPath("backslash in the path")),
            (".git/config", Refusal::NotFound),
            ("sub/.GIT/HEAD", Refusal::NotFound),
            ("", Refusal::NotFound),
        ] {
            assert_eq!(check_relative(path), Err(refusal), "{path:?}");
        }
    }

    #[test]
    fn links_must_stay_inside_the_root() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("suites/ts")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("suites/ts/run.sh"), "echo hi\n").unwrap();
        std::fs::write(root.join(".git/config"), "[core]\n").unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        symlink("run.sh", root.join("suites/ts/alias.sh")).unwrap();
        symlink(dir.path().join("secret"), root.join("out")).unwrap();
        symlink("../secret", root.join("out2")).unwrap();
        symlink(".git/config", root.join("gitconfig")).unwrap();
        symlink("/", root.join("slash")).unwrap();
        let real = root.canonicalize().unwrap().join("suites/ts/run.sh");
        assert_eq!(locate(&root, "suites/ts/run.sh"), Ok(real.clone()));
        assert_eq!(locate(&root, "suites/ts/alias.sh"), Ok(real));
        for path in ["out", "out2", "gitconfig", "slash/etc/passwd", "suites/ts", "missing", "suites"] {
            assert_eq!(locate(&root, path), Err(Refusal::NotFound), "{path}");
        }
        // A root that is itself reached through a link works.
        symlink(&root, dir.path().join("link-to-repo")).unwrap();
        assert!(locate(&dir.path().join("link-to-repo"), "suites/ts/run.sh").is_ok());
        assert!(open_checked(&root, "suites/ts/run.sh").is_ok());
    }

    #[test]
    fn text_sniffing() {
        assert!(looks_like_text(b"#!/bin/bash\necho hi\n"));
        assert!(looks_like_text("é".as_bytes()));
        assert!(looks_like_text(&"é".as_bytes()[..1]), "a character cut by the sniff limit");
        assert!(!looks_like_text(b"\x7fELF\x02\x01\x01\0"));
        assert!(!looks_like_text(b"\xff\xfe\xfd abc"));
    }
}
