//! Shared by the test files: a cluster definition with one host of each boot kind.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::Path;

use xrdtest_defs::{Boot, Cluster, Disk, Host, Network};

/// The pool volume the `client` host of [`cluster`] boots from.
pub fn base_image(tag: &str) -> String {
    format!("base-{tag}.qcow2")
}

/// A cluster whose names all derive from `tag` (tests run in parallel against one shared
/// test-driver state), on subnet 10.77.<subnet>.0/24. Two hosts: `server` boots a kernel
/// (empty files written into `files`) and has one disk; `client` boots [`base_image`].
pub fn cluster(tag: &str, subnet: u8, files: &Path) -> Cluster {
    let kernel = files.join("vmlinuz");
    let initrd = files.join("initrd.img");
    std::fs::write(&kernel, b"kernel").unwrap();
    std::fs::write(&initrd, b"initrd").unwrap();
    let domain = format!("{tag}.test");
    let ip = |last| Ipv4Addr::new(10, 77, subnet, last);
    Cluster {
        name: format!("c-{tag}"),
        network: Network {
            name: format!("{tag}_net"),
            bridge: format!("br-{tag}").chars().take(15).collect(),
            ip: ip(1),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            dhcp_start: ip(100),
            dhcp_end: ip(200),
            domain: domain.clone(),
            lb_alias: Some("lb".into()),
            lb_hosts: vec![format!("server.{domain}")],
        },
        hosts: vec![
            Host {
                name: format!("server.{domain}"),
                ip: ip(10),
                mac: format!("52:54:00:77:{subnet:02x}:0a"),
                boot: Boot::Kernel {
                    kernel: kernel.display().to_string(),
                    initrd: Some(initrd.display().to_string()),
                    cmdline: None,
                },
                arch: "x86_64".into(),
                ram_bytes: 256 << 20,
                vcpus: 1,
                roles: Vec::new(),
                disks: vec![Disk {
                    name: "data".into(),
                    size_bytes: 1 << 30,
                    device: "vdb".into(),
                    mount_point: "/data".into(),
                }],
            },
            Host {
                name: format!("client.{domain}"),
                ip: ip(11),
                mac: format!("52:54:00:77:{subnet:02x}:0b"),
                boot: Boot::Image { volume: base_image(tag) },
                arch: "x86_64".into(),
                ram_bytes: 128 << 20,
                vcpus: 1,
                roles: Vec::new(),
                disks: vec![],
            },
        ],
        links: Vec::new(),
    }
}
