pub mod config;
pub mod daemon;
pub mod domain_type;
pub mod libvirt;
pub mod lifecycle;
pub mod marker;
pub mod xml;
