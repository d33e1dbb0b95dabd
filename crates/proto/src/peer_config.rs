//! What slaves and hypervisors configure alike, checked alike: where the master is, the
//! enrollment secret they present, the name they connect under and where they keep their
//! identity.

use std::path::{Path, PathBuf};

/// The master's port when `master` names none (XrdTest used 20000).
pub const DEFAULT_MASTER_PORT: u16 = 20000;

/// `master` as configured, with `:20000` added when it has no port.
pub fn master_address(master: Option<String>) -> Result<String, String> {
    let master = master.ok_or("`master` is required: host:port of the master (port 20000 by default)")?;
    Ok(if master.contains(':') { master } else { format!("{master}:{DEFAULT_MASTER_PORT}") })
}

/// The enrollment secret, given inline (`secret`) or in a file (`secret_file`, trimmed;
/// relative to `base`), never both; empty when neither is given (the peer then enrolls by an
/// operator's approval, or already holds a certificate).
pub fn secret(inline: Option<String>, file: Option<PathBuf>, base: &Path) -> Result<String, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("give `secret` or `secret_file`, not both".into()),
        (Some(secret), None) => Ok(secret),
        (None, Some(file)) => {
            let file = if file.is_absolute() { file } else { base.join(file) };
            std::fs::read_to_string(&file)
                .map(|text| text.trim().to_string())
                .map_err(|e| format!("`secret_file` {}: {e}", file.display()))
        }
        (None, None) => Ok(String::new()),
    }
}

/// `identity_dir` as configured (relative to `base`), else `default`.
pub fn identity_dir(configured: Option<PathBuf>, default: PathBuf, base: &Path) -> crate::identity::IdentityDir {
    let dir = configured.unwrap_or(default);
    crate::identity::IdentityDir::new(if dir.is_absolute() { dir } else { base.join(dir) })
}

/// The name to connect under: `name` as configured, else the machine's fully qualified
/// name; checked as the master checks it. `what` names the peer in errors (`slave`).
pub fn peer_name(name: Option<String>, what: &str) -> Result<String, String> {
    let name = match name {
        Some(name) => name,
        None => host_name().ok_or("`name` is not set and the host name cannot be read")?,
    };
    if !crate::handshake::is_valid_peer_name(&name) {
        return Err(format!("`name`: `{name}` is not a valid {what} name (letters, digits, `.`, `-`, `_`)"));
    }
    Ok(name)
}

/// The machine's fully qualified name, as XrdTest named slaves: the kernel's host name,
/// qualified through the resolver when it has no dot and the resolver knows a canonical
/// name for it; the plain host name otherwise.
fn host_name() -> Option<String> {
    let short = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?.trim().to_string();
    if short.is_empty() {
        return None;
    }
    if short.contains('.') {
        return Some(short);
    }
    Some(canonical_name(&short).filter(|name| name.contains('.')).unwrap_or(short))
}

/// The resolver's canonical name for `host` (getaddrinfo with AI_CANONNAME).
fn canonical_name(host: &str) -> Option<String> {
    let host = std::ffi::CString::new(host).ok()?;
    // SAFETY: plain libc calls with a valid C string and zeroed hints; the result list is
    // freed with freeaddrinfo on every path after a successful call.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_family = libc::AF_UNSPEC;
        let mut result: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(host.as_ptr(), std::ptr::null(), &hints, &mut result) != 0 || result.is_null() {
            return None;
        }
        let name = if (*result).ai_canonname.is_null() {
            None
        } else {
            std::ffi::CStr::from_ptr((*result).ai_canonname).to_str().ok().map(str::to_string)
        };
        libc::freeaddrinfo(result);
        name
    }
}
