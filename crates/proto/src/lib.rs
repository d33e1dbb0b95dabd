//! The xrdtest wire protocol, spoken between the master and its slaves and hypervisors.
//!
//! Layout:
//! - [`message`] — what is said: the handshake ([`Hello`], [`HelloReply`]) and the messages
//!   each way ([`FromMaster`], [`ToMaster`]). Plain serde data; no behaviour.
//! - [`codec`] — how it is framed: length-delimited frames (tokio-util) carrying bincode 2
//!   payloads, with a maximum frame size.
//! - [`connection`] — a framed stream with `send` / `recv` of typed messages.
//! - [`client`] — how a slave or hypervisor connects: TCP, TLS, handshake.
//! - [`peer_config`] — the master address, secret and name slaves and hypervisors configure.
//! - [`handshake`] — the first exchange on a connection: version and name check.
//! - [`identity`] — a peer's own key and certificate, kept in its identity folder.
//! - [`tls`] — rustls configurations from PEM files: the master serves with a certificate of
//!   its own CA, peers trust that CA.
//! - [`pki`] (feature `ca`): the master's certificate authority, made with rcgen.
//! - [`systemd`] — readiness, reload and stop notifications to systemd (`sd_notify`).
//!
//! The protocol knows nothing of what the messages mean to the daemons; orchestration lives
//! in the master, script execution in the slave.

mod capped;
pub mod client;
pub mod codec;
pub mod connection;
pub mod error;
pub mod handshake;
pub mod identity;
pub mod message;
pub mod peer_config;
#[cfg(feature = "ca")]
pub mod pki;
pub mod systemd;
pub mod tls;

pub use codec::{decode_message, encode_message, FrameCodec, DEFAULT_MAX_FRAME_LEN, HARD_MAX_FRAME_LEN};
pub use connection::Connection;
pub use error::ProtoError;
pub use handshake::{client_handshake, server_handshake, HandshakeError};
pub use message::*;
