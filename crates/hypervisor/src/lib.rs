//! The xrdtest hypervisor: creates the libvirt networks, volumes and VMs of a suite's
//! cluster when the master asks, and removes them again. The only crate of the workspace
//! that links libvirt. Design: `docs/hypervisor.md`.
//!
//! Layout:
//! - [`config`] — `hypervisor.toml`, with defaults and errors that name the field.
//! - [`domain_type`] — `auto` → `kvm` only when a small guest really runs under `/dev/kvm`.
//! - [`xml`] — network, domain, volume and pool XML as pure functions of the definition.
//! - [`marker`] — the ownership markers and the names of what it creates.
//! - [`libvirt`] — thin wrappers over `virt`, errors with libvirt's message.
//! - [`lifecycle`] — start and stop of one cluster, step by step; orphan cleanup.
//! - [`daemon`] — the connection to the master, capacity, dispatch of cluster operations.
//!
//! The lifecycle blocks on libvirt and knows nothing of the protocol beyond the states it
//! reports; the daemon knows nothing of libvirt beyond calling the lifecycle.

pub mod config;
pub mod daemon;
pub mod domain_type;
pub mod guest_config;
pub mod libvirt;
pub mod lifecycle;
pub mod marker;
pub mod warm;
pub mod xml;
