//! systemd's service notification protocol (`sd_notify`), for units of `Type=notify`.
//!
//! systemd passes a unix datagram socket in `$NOTIFY_SOCKET`: a path, or an abstract name
//! written with a leading `@`. The service sends it newline-separated `KEY=value`
//! assignments: `READY=1` when it really serves (systemd holds back the units ordered after
//! it until then, and `systemctl start` waits for it), `RELOADING=1` and then `READY=1`
//! again around a reload, `STOPPING=1` when it begins to stop, and `STATUS=...`, a line that
//! `systemctl status` shows.
//!
//! Without `$NOTIFY_SOCKET` (started by hand, in a test, under another init) every call is
//! a no-op. These few lines replace libsystemd (a C library) or a crate for it: the
//! protocol is one datagram per notification.
//!
//! Child processes inherit `$NOTIFY_SOCKET`. A daemon that runs other programs (the slave
//! runs test scripts) should remove it from its environment once it has made its
//! [`Notifier`], before it starts threads: see [`Notifier::from_env_removing`].

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd puts the socket's address in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where notifications go: systemd's socket, or nowhere.
#[derive(Debug)]
pub struct Notifier {
    /// An unbound datagram socket and systemd's address; `None` when not run by systemd.
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// The notifier for `$NOTIFY_SOCKET`; disabled when the variable is unset or empty.
    pub fn from_env() -> io::Result<Notifier> {
        match std::env::var_os(NOTIFY_SOCKET) {
            Some(address) if !address.is_empty() => Notifier::to_address(&address.to_string_lossy()),
            _ => Ok(Notifier::disabled()),
        }
    }

    /// [`Notifier::from_env`], then removes `$NOTIFY_SOCKET` from this process's
    /// environment so that the programs it starts do not inherit it.
    ///
    /// Call it before any other thread exists (before the async runtime is built):
    /// changing the environment while another thread may read it is undefined behaviour in
    /// the C library.
    pub fn from_env_removing() -> io::Result<Notifier> {
        let notifier = Notifier::from_env();
        std::env::remove_var(NOTIFY_SOCKET);
        notifier
    }

    /// A notifier for a socket address as `$NOTIFY_SOCKET` gives it: a file system path,
    /// or `@name` for a name in the abstract namespace.
    pub fn to_address(address: &str) -> io::Result<Notifier> {
        let target = match address.strip_prefix('@') {
            Some(name) => abstract_address(name.as_bytes())?,
            None if address.starts_with('/') => SocketAddr::from_pathname(address)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("${NOTIFY_SOCKET} `{address}` is neither an absolute path nor @abstract"),
                ))
            }
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier { target: Some((socket, target)) })
    }

    /// Whether notifications go anywhere (the process runs under systemd as `Type=notify`).
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends assignments (`KEY=value`, one per element) in one datagram. Newlines inside a
    /// value would start a new assignment, so they become spaces.
    pub fn notify(&self, assignments: &[&str]) -> io::Result<()> {
        let Some((socket, target)) = &self.target else { return Ok(()) };
        let message: Vec<String> = assignments.iter().map(|a| a.replace('\n', " ")).collect();
        socket.send_to_addr(message.join("\n").as_bytes(), target).map(|_| ())
    }

    /// `READY=1` with a status line: the service is serving.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&["READY=1", &format!("STATUS={status}")])
    }

    /// `RELOADING=1`: a reload began; send [`Notifier::ready`] when it is done.
    pub fn reloading(&self, status: &str) -> io::Result<()> {
        self.notify(&["RELOADING=1", &format!("STATUS={status}")])
    }

    /// `STOPPING=1`: the service began to stop.
    pub fn stopping(&self, status: &str) -> io::Result<()> {
        self.notify(&["STOPPING=1", &format!("STATUS={status}")])
    }

    /// `STATUS=...` alone: what `systemctl status` shows on its "Status:" line.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.notify(&[&format!("STATUS={status}")])
    }
}

/// An address in Linux's abstract socket namespace (no file; the name starts with a NUL).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "abstract unix sockets exist only on Linux"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buffer = [0u8; 4096];
        let length = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::to_address(path.to_str().unwrap()).unwrap();
        assert!(notifier.is_enabled());
        notifier.ready("serving on 127.0.0.1:20000").unwrap();
        assert_eq!(receive(&systemd), "READY=1\nSTATUS=serving on 127.0.0.1:20000");
        notifier.reloading("reloading definitions").unwrap();
        assert_eq!(receive(&systemd), "RELOADING=1\nSTATUS=reloading definitions");
        notifier.stopping("stopping").unwrap();
        assert_eq!(receive(&systemd), "STOPPING=1\nSTATUS=stopping");
        notifier.status("two\nlines").unwrap();
        assert_eq!(receive(&systemd), "STATUS=two lines", "a newline would start a new assignment");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("xrdtest-notify-test-{}", std::process::id());
        let systemd = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        let notifier = Notifier::to_address(&format!("@{name}")).unwrap();
        notifier.notify(&["READY=1"]).unwrap();
        assert_eq!(receive(&systemd), "READY=1");
    }

    #[test]
    fn disabled_sends_nothing_and_bad_addresses_are_refused() {
        let notifier = Notifier::disabled();
        assert!(!notifier.is_enabled());
        notifier.ready("nobody listens").unwrap();
        assert!(Notifier::to_address("relative/path").is_err());
        // A socket that went away is an error for the caller to log, not a panic.
        let dir = tempfile::tempdir().unwrap();
        let gone = Notifier::to_address(dir.path().join("missing.sock").to_str().unwrap()).unwrap();
        assert!(gone.ready("x").is_err());
    }

    /// The one test that touches the process environment (tests run on threads; no other
    /// test reads `NOTIFY_SOCKET`).
    #[test]
    fn reads_and_removes_the_environment_variable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        std::env::set_var(NOTIFY_SOCKET, &path);
        let notifier = Notifier::from_env_removing().unwrap();
        assert!(std::env::var_os(NOTIFY_SOCKET).is_none(), "children must not inherit it");
        notifier.notify(&["READY=1"]).unwrap();
        assert_eq!(receive(&systemd), "READY=1");
        assert!(!Notifier::from_env().unwrap().is_enabled(), "unset: a no-op notifier");
    }
}
