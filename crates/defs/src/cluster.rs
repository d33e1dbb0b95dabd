//! `clusters/<name>/cluster.toml`: a virtual network and the hosts on it.
//!
//! The raw form mirrors the file (every field optional, with its position) so that every
//! problem can be reported with its line; the checked form ([`Cluster`]) is plain data the
//! hypervisor can act on: every host has its address, MAC, boot method and sizes resolved.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::DefError;
use crate::links::{check_links, Link, RawLink};
use crate::roles::check_role_name;
use crate::source::{Checker, SourceFile};

/// Domain given to hosts when the network names none, as in XrdTest.
pub const DEFAULT_DOMAIN: &str = "xrd.test";
/// Why `cache_boot_image` (XrdTest's) is refused, and what to do instead.
const CACHE_BOOT_IMAGE_GONE: &str =
    "is not part of xrdtest's format: remove it. A boot_image is a volume that stays in \
     the hypervisor's storage pool, and each host boots a copy-on-write overlay backed by it, so it is never copied or \
     read whole at a start (there is nothing to cache). For a faster start, boot a kernel and initrd \
     (docs/vm-image.md)";

/// Guest memory when neither the host nor `[defaults]` gives `ram`.
pub const DEFAULT_RAM_BYTES: u64 = 1 << 30;
/// Below this a Linux guest does not boot usefully; catches XrdTest's KiB numbers.
pub const MIN_RAM_BYTES: u64 = 64 << 20;
/// Architectures libvirt/QEMU emulate that a slave image could target.
pub const KNOWN_ARCHES: [&str; 7] = ["x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64"];
/// Linux limits interface names (and so bridge names) to 15 bytes.
const MAX_BRIDGE_NAME: usize = 15;

/// A checked cluster definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub network: Network,
    pub hosts: Vec<Host>,
    /// `[[links]]`: network conditions between hosts, applied for each session.
    pub links: Vec<Link>,
}

impl Cluster {
    /// The cluster with only the hosts named in `names` (full names), as a session of a
    /// suite that uses some of them makes it: the others get no VM. Load balancing keeps
    /// the hosts that remain; a link with no host left on one side shapes nothing
    /// (`link_plans` in the master).
    pub fn with_hosts(&self, names: &[String]) -> Cluster {
        let keep = |name: &String| names.iter().any(|n| n == name);
        let mut cluster = self.clone();
        cluster.hosts.retain(|host| keep(&host.name));
        cluster.network.lb_hosts.retain(keep);
        cluster
    }
}

/// The cluster's virtual network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub bridge: String,
    /// The bridge's own address: the guests' gateway and DNS server.
    pub ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub dhcp_start: Ipv4Addr,
    pub dhcp_end: Ipv4Addr,
    pub domain: String,
    /// DNS name resolving round-robin to `lb_hosts`.
    pub lb_alias: Option<String>,
    /// Fully qualified names of the load-balanced hosts.
    pub lb_hosts: Vec<String>,
}

impl Network {
    /// Whether `ip` lies in this network's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.netmask) == u32::from(self.ip) & u32::from(self.netmask)
    }

    /// Prefix length of the netmask (24 for 255.255.255.0).
    pub fn prefix_len(&self) -> u32 {
        u32::from(self.netmask).count_ones()
    }
}

/// One virtual machine of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Fully qualified name; also the name its slave connects with.
    pub name: String,
    pub ip: Ipv4Addr,
    /// Lower-case `52:54:00:..`-style address, given or generated.
    pub mac: String,
    pub boot: Boot,
    pub arch: String,
    pub ram_bytes: u64,
    pub vcpus: u32,
    pub disks: Vec<Disk>,
    /// Roles of this machine (`server`, `data`), as written, each once; a suite's `[roles]`
    /// may add more (see [`crate::roles::roles_of`]).
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Host {
    /// The first label of the name (`ds1` for `ds1.xrd.test`).
    pub fn short_name(&self) -> &str {
        self.name.split('.').next().unwrap_or(&self.name)
    }
}

/// How a host boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Boot {
    /// From a volume of the hypervisor's storage pool, through a copy-on-write overlay (the
    /// volume stays in the pool and is never copied, so there is nothing to cache).
    Image { volume: String },
    /// Direct kernel boot from files on the hypervisor host.
    Kernel { kernel: String, initrd: Option<String>, cmdline: Option<String> },
}

/// An extra disk attached to a host, formatted and mounted by `@diskmounts@`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    /// Guest device name such as `vdb`.
    pub device: String,
    pub mount_point: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Option<Spanned<String>>,
    network: Option<Spanned<RawNetwork>>,
    defaults: Option<Spanned<RawHost>>,
    #[serde(default)]
    hosts: Vec<Spanned<RawHost>>,
    #[serde(default)]
    links: Vec<Spanned<RawLink>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    name: Option<Spanned<String>>,
    bridge: Option<Spanned<String>>,
    ip: Option<Spanned<String>>,
    netmask: Option<Spanned<String>>,
    dhcp_range: Option<Spanned<Vec<Spanned<String>>>>,
    domain: Option<Spanned<String>>,
    lb_alias: Option<Spanned<String>>,
    lb_hosts: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A `[[hosts]]` entry, and also `[defaults]` (where name, ip and mac are refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Option<Spanned<String>>,
    ip: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    boot_image: Option<Spanned<String>>,
    /// Refused: XrdTest's option to copy the image once; see [`check_boot`].
    cache_boot_image: Option<Spanned<toml::Value>>,
    arch: Option<Spanned<String>>,
    ram: Option<Spanned<toml::Value>>,
    vcpus: Option<Spanned<i64>>,
    kernel: Option<Spanned<String>>,
    initrd: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    disks: Option<Vec<Spanned<RawDisk>>>,
    roles: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    name: Option<Spanned<String>>,
    size: Option<Spanned<toml::Value>>,
    device: Option<Spanned<String>>,
    mount_point: Option<Spanned<String>>,
}

/// Loads and checks `cluster.toml` in `dir`, whose folder name must equal the cluster name.
/// Every problem found is returned; the cluster only when there are none.
pub fn load_cluster(dir: &Path) -> Result<Cluster, Vec<DefError>> {
    let path = dir.join("cluster.toml");
    let src = SourceFile::read(&path).map_err(|e| vec![e])?;
    let raw: RawCluster = src.parse().map_err(|e| vec![e])?;
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut check = Checker { src: &src, errors: Vec::new() };
    let cluster = check_cluster(&mut check, &raw, &folder);
    match cluster {
        Some(cluster) if check.errors.is_empty() => Ok(cluster),
        _ => Err(check.errors),
    }
}

fn check_cluster(check: &mut Checker, raw: &RawCluster, folder: &str) -> Option<Cluster> {
    let name = check.required(&raw.name, "name").and_then(|name| {
        if name.get_ref() != folder {
            check.at(name, "name", format!("cluster name `{}` must equal its folder name `{folder}`", name.get_ref()));
            None
        } else if !is_word(name.get_ref(), 64) {
            // No dots: the hypervisor names volumes `xrdtest.<cluster>.<host>.<disk>.qcow2`,
            // and a dot would let cluster `a` claim the volumes of cluster `a.b`.
            check.at(name, "name", "use letters, digits, `_` and `-` only (at most 64)");
            None
        } else {
            Some(name.get_ref().clone())
        }
    });
    // A network with errors still gives its subnet and domain, when they are valid, so
    // that the hosts are checked too and all their problems reported at once.
    let (network, host_network) = match &raw.network {
        Some(network) => check_network(check, network.get_ref(), name.as_deref().unwrap_or(folder)),
        None => {
            check.missing("network", "the [network] table is required");
            (None, None)
        }
    };
    if let Some(defaults) = &raw.defaults {
        for (value, field) in [
            (&defaults.get_ref().name, "defaults.name"),
            (&defaults.get_ref().ip, "defaults.ip"),
            (&defaults.get_ref().mac, "defaults.mac"),
        ] {
            if let Some(value) = value {
                check.at(value, field, "belongs to a [[hosts]] entry, not to [defaults]");
            }
        }
        if let Some(roles) = &defaults.get_ref().roles {
            check.at(roles, "defaults.roles", "belongs to a [[hosts]] entry, not to [defaults]");
        }
        if let Some(value) = &defaults.get_ref().cache_boot_image {
            check.at(value, "defaults.cache_boot_image", CACHE_BOOT_IMAGE_GONE);
        }
    }
    if raw.hosts.is_empty() {
        check.missing("hosts", "a cluster needs at least one [[hosts]] entry");
    }
    let host_network = host_network?;
    // A name that does not match its folder still names the cluster for the hosts' checks.
    let cluster_name = name.as_deref().unwrap_or(folder);
    let defaults = raw.defaults.as_ref().map(|d| d.get_ref());
    let mut hosts = Vec::new();
    for (index, host) in raw.hosts.iter().enumerate() {
        if let Some(host) = check_host(check, cluster_name, &host_network, defaults, host, index) {
            hosts.push((index, host));
        }
    }
    check_unique_hosts(check, raw, &hosts);
    let lb_hosts = check_lb_hosts(check, raw, &host_network, &hosts);
    let hosts: Vec<Host> = hosts.into_iter().map(|(_, h)| h).collect();
    let links = check_links(check, &raw.links, &hosts, &host_network.domain);
    let mut network = network?;
    network.lb_hosts = lb_hosts;
    Some(Cluster { name: name?, network, hosts, links: links? })
}

/// The checked network (`None` when it has errors), and the network to check the hosts
/// against: the same, or, when it has errors, its subnet and domain if those are valid.
fn check_network(check: &mut Checker, raw: &RawNetwork, cluster_name: &str) -> (Option<Network>, Option<Network>) {
    let name = match &raw.name {
        Some(name) if is_simple_name(name.get_ref()) => Some(name.get_ref().clone()),
        Some(name) => {
            check.at(name, "network.name", "use letters, digits, `_`, `-` and `.` only");
            None
        }
        None => Some(format!("{cluster_name}_net")),
    };
    let bridge = check.required(&raw.bridge, "network.bridge").and_then(|bridge| {
        let text = bridge.get_ref();
        if text.is_empty() || text.len() > MAX_BRIDGE_NAME || !is_simple_name(text) {
            check.at(
                bridge,
                "network.bridge",
                format!("`{text}` is not a usable bridge name (1 to {MAX_BRIDGE_NAME} letters, digits, `_`, `-`, `.`)"),
            );
            None
        } else {
            Some(text.clone())
        }
    });
    let ip = check.required(&raw.ip, "network.ip").and_then(|v| check.ipv4(v, "network.ip"));
    let netmask = check.required(&raw.netmask, "network.netmask").and_then(|v| {
        let mask = check.ipv4(v, "network.netmask")?;
        let bits = u32::from(mask);
        // A netmask is a run of ones followed by zeros, and leaves room for hosts.
        if bits.leading_ones() != bits.count_ones() || bits.count_ones() > 30 || bits.count_ones() < 8 {
            check.at(v, "network.netmask", format!("`{mask}` is not a usable netmask (/8 to /30)"));
            return None;
        }
        Some(mask)
    });
    let domain = match &raw.domain {
        Some(domain) => check.dns_name(domain, "network.domain").then(|| domain.get_ref().to_ascii_lowercase()),
        None => Some(DEFAULT_DOMAIN.to_string()),
    };
    let lb_alias = match &raw.lb_alias {
        Some(alias) => check.dns_name(alias, "network.lb_alias").then(|| alias.get_ref().to_ascii_lowercase()),
        None => None,
    };
    let (Some(ip), Some(netmask)) = (ip, netmask) else {
        // The range cannot be checked without the subnet, but its absence is still an error.
        check.required(&raw.dhcp_range, "network.dhcp_range");
        return (None, None);
    };
    let partial = Network {
        name: name.clone().unwrap_or_default(),
        bridge: bridge.clone().unwrap_or_default(),
        ip,
        netmask,
        dhcp_start: ip,
        dhcp_end: ip,
        domain: domain.clone().unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
        lb_alias: lb_alias.clone(),
        lb_hosts: Vec::new(),
    };
    let network_address = u32::from(ip) & u32::from(netmask);
    let broadcast = network_address | !u32::from(netmask);
    if u32::from(ip) == network_address || u32::from(ip) == broadcast {
        if let Some(v) = &raw.ip {
            check.at(v, "network.ip", format!("`{ip}` is the network or broadcast address of its subnet"));
        }
    }
    let dhcp = check.required(&raw.dhcp_range, "network.dhcp_range").and_then(|range| {
        let ends = range.get_ref();
        if ends.len() != 2 {
            check.at(range, "network.dhcp_range", "give two addresses: [first, last]");
            return None;
        }
        let start = check.ipv4(&ends[0], "network.dhcp_range")?;
        let end = check.ipv4(&ends[1], "network.dhcp_range")?;
        let mut ok = true;
        for (addr, at) in [(start, &ends[0]), (end, &ends[1])] {
            if !partial.contains(addr) || u32::from(addr) == network_address || u32::from(addr) == broadcast {
                check.at(
                    at,
                    "network.dhcp_range",
                    format!("`{addr}` is not a host address of {ip}/{}", partial.prefix_len()),
                );
                ok = false;
            }
        }
        if u32::from(start) > u32::from(end) {
            check.at(range, "network.dhcp_range", format!("first address {start} is after last address {end}"));
            ok = false;
        }
        ok.then_some((start, end))
    });
    match (name, bridge, domain, dhcp) {
        (Some(name), Some(bridge), Some(domain), Some((dhcp_start, dhcp_end))) => {
            let network = Network { name, bridge, dhcp_start, dhcp_end, domain, ..partial };
            (Some(network.clone()), Some(network))
        }
        _ => (None, Some(partial)),
    }
}

fn check_host(
    check: &mut Checker,
    cluster_name: &str,
    network: &Network,
    defaults: Option<&RawHost>,
    spanned: &Spanned<RawHost>,
    index: usize,
) -> Option<Host> {
    let raw = spanned.get_ref();
    let field = |name: &str| format!("hosts[{index}].{name}");
    if let Some(value) = &raw.cache_boot_image {
        check.at(value, &field("cache_boot_image"), CACHE_BOOT_IMAGE_GONE);
    }
    let name = match &raw.name {
        Some(name) => check.dns_name(name, &field("name")).then(|| qualify(name.get_ref(), &network.domain)),
        None => {
            check.at(spanned, &field("name"), "is required");
            None
        }
    };
    let ip = match &raw.ip {
        Some(v) => check.ipv4(v, &field("ip")).and_then(|ip| {
            let network_address = u32::from(network.ip) & u32::from(network.netmask);
            let broadcast = network_address | !u32::from(network.netmask);
            if !network.contains(ip) {
                check.at(
                    v,
                    &field("ip"),
                    format!("`{ip}` is outside the network {}/{}", network.ip, network.prefix_len()),
                );
                None
            } else if u32::from(ip) == network_address || u32::from(ip) == broadcast {
                check.at(v, &field("ip"), format!("`{ip}` is the network or broadcast address"));
                None
            } else if ip == network.ip {
                check.at(v, &field("ip"), format!("`{ip}` is the bridge's own address"));
                None
            } else {
                Some(ip)
            }
        }),
        None => {
            check.at(spanned, &field("ip"), "is required");
            None
        }
    };
    let mac = match &raw.mac {
        Some(v) => match normalize_mac(v.get_ref()) {
            Ok(mac) => Some(mac),
            Err(message) => {
                check.at(v, &field("mac"), message);
                None
            }
        },
        None => name.as_ref().map(|name| generated_mac(cluster_name, name)),
    };
    // A host that names its own boot method takes it whole; otherwise [defaults] gives it.
    let boot_source = if raw.boot_image.is_some() || raw.kernel.is_some() { Some(raw) } else { defaults };
    let boot = match boot_source {
        Some(src) => check_boot(check, src, &field("boot_image")),
        None => {
            check.at(
                spanned,
                &field("boot_image"),
                "no boot method: give boot_image, or kernel (and initrd, cmdline), here or in [defaults]",
            );
            None
        }
    };
    let arch_value = raw.arch.as_ref().or(defaults.and_then(|d| d.arch.as_ref()));
    let arch = match arch_value {
        Some(arch) if KNOWN_ARCHES.contains(&arch.get_ref().as_str()) => Some(arch.get_ref().clone()),
        Some(arch) => {
            check.at(
                arch,
                &field("arch"),
                format!("unknown architecture `{}`: expected one of {}", arch.get_ref(), KNOWN_ARCHES.join(", ")),
            );
            None
        }
        None => Some("x86_64".to_string()),
    };
    let ram_bytes = match raw.ram.as_ref().or(defaults.and_then(|d| d.ram.as_ref())) {
        Some(ram) => check.size(ram, &field("ram")).and_then(|bytes| {
            if bytes < MIN_RAM_BYTES {
                check.at(
                    ram,
                    &field("ram"),
                    format!("{bytes} bytes is below the 64M minimum; write sizes with a unit, like \"1G\""),
                );
                None
            } else {
                Some(bytes)
            }
        }),
        None => Some(DEFAULT_RAM_BYTES),
    };
    let vcpus = match raw.vcpus.as_ref().or(defaults.and_then(|d| d.vcpus.as_ref())) {
        Some(v) if (1..=256).contains(v.get_ref()) => Some(*v.get_ref() as u32),
        Some(v) => {
            check.at(v, &field("vcpus"), format!("{} is not between 1 and 256", v.get_ref()));
            None
        }
        None => Some(1),
    };
    let raw_disks = raw.disks.as_ref().or(defaults.and_then(|d| d.disks.as_ref()));
    let boots_from_image = matches!(boot, Some(Boot::Image { .. }));
    let disks = check_disks(check, raw_disks.map(Vec::as_slice).unwrap_or(&[]), index, boots_from_image);
    let roles = check_host_roles(check, raw.roles.as_ref(), index);
    Some(Host {
        name: name?,
        ip: ip?,
        mac: mac?,
        boot: boot?,
        arch: arch?,
        ram_bytes: ram_bytes?,
        vcpus: vcpus?,
        disks: disks?,
        roles: roles?,
    })
}

/// A host's `roles`: role names, none twice.
fn check_host_roles(
    check: &mut Checker,
    raw: Option<&Spanned<Vec<Spanned<String>>>>,
    host_index: usize,
) -> Option<Vec<String>> {
    let mut roles = Vec::new();
    let mut ok = true;
    for (i, role) in raw.map(|list| list.get_ref().as_slice()).unwrap_or(&[]).iter().enumerate() {
        let field = format!("hosts[{host_index}].roles[{i}]");
        let name = role.get_ref();
        if let Err(message) = check_role_name(name) {
            check.at(role, &field, message);
            ok = false;
        } else if roles.contains(name) {
            check.at(role, &field, format!("`{name}` is listed twice"));
            ok = false;
        } else {
            roles.push(name.clone());
        }
    }
    ok.then_some(roles)
}

fn check_boot(check: &mut Checker, src: &RawHost, field: &str) -> Option<Boot> {
    let field_prefix = field.trim_end_matches("boot_image");
    match (&src.boot_image, &src.kernel) {
        (Some(image), Some(_)) => {
            check.at(image, field, "give boot_image or kernel, not both");
            None
        }
        (Some(image), None) => {
            if image.get_ref().trim().is_empty() || image.get_ref().contains('/') {
                check.at(image, field, "is the name of a volume in the hypervisor's storage pool (no `/`)");
                return None;
            }
            Some(Boot::Image { volume: image.get_ref().clone() })
        }
        (None, Some(kernel)) => {
            let mut ok = true;
            for (value, name) in [(Some(kernel), "kernel"), (src.initrd.as_ref(), "initrd")] {
                if let Some(value) = value {
                    if !value.get_ref().starts_with('/') {
                        check.at(
                            value,
                            &format!("{field_prefix}{name}"),
                            "must be an absolute path on the hypervisor host",
                        );
                        ok = false;
                    }
                }
            }
            ok.then(|| Boot::Kernel {
                kernel: kernel.get_ref().clone(),
                initrd: src.initrd.as_ref().map(|v| v.get_ref().clone()),
                cmdline: src.cmdline.as_ref().map(|v| v.get_ref().clone()),
            })
        }
        (None, None) => None,
    }
}

fn check_disks(
    check: &mut Checker,
    raw: &[Spanned<RawDisk>],
    host_index: usize,
    boots_from_image: bool,
) -> Option<Vec<Disk>> {
    let mut disks = Vec::new();
    let mut ok = true;
    let mut seen: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for (index, spanned) in raw.iter().enumerate() {
        let disk = spanned.get_ref();
        let field = |name: &str| format!("hosts[{host_index}].disks[{index}].{name}");
        let mut fields_ok = true;
        let mut required = |value: Option<&Spanned<String>>, name: &str, check: &mut Checker| {
            if value.is_none() {
                check.at(spanned, &field(name), "is required");
                fields_ok = false;
            }
        };
        required(disk.name.as_ref(), "name", check);
        required(disk.device.as_ref(), "device", check);
        required(disk.mount_point.as_ref(), "mount_point", check);
        let size = match &disk.size {
            Some(size) => check.size(size, &field("size")),
            None => {
                check.at(spanned, &field("size"), "is required");
                None
            }
        };
        if let Some(device) = &disk.device {
            let text = device.get_ref();
            let valid = text.len() >= 3
                && matches!(text.get(..2), Some("vd" | "sd" | "hd" | "xv"))
                && text[2..].bytes().all(|b| b.is_ascii_lowercase());
            if !valid {
                check.at(device, &field("device"), format!("`{text}` is not a disk device name like vdb"));
                fields_ok = false;
            } else if boots_from_image && text == "vda" {
                check.at(device, &field("device"), "vda is the boot disk; use vdb, vdc, ...");
                fields_ok = false;
            }
        }
        if let Some(name) = &disk.name {
            // The name becomes the disk's serial (at most 20 bytes in QEMU), a volume name
            // and a word in the `@diskmounts@` shell commands.
            if !is_word(name.get_ref(), 20) {
                check.at(name, &field("name"), "use letters, digits, `_` and `-` only (at most 20)");
                fields_ok = false;
            }
        }
        if let Some(mount) = &disk.mount_point {
            let text = mount.get_ref();
            if !text.starts_with('/') {
                check.at(mount, &field("mount_point"), "must be an absolute path");
                fields_ok = false;
            } else if !text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.')) {
                // It goes into shell commands (`@diskmounts@`): no quotes, spaces or `$`.
                check.at(mount, &field("mount_point"), "use letters, digits, `/`, `_`, `-` and `.` only");
                fields_ok = false;
            }
        }
        for (value, kind) in [(&disk.name, "name"), (&disk.device, "device"), (&disk.mount_point, "mount_point")] {
            if let Some(value) = value {
                if let Some(first) = seen.insert((kind, value.get_ref().clone()), index) {
                    check.at(value, &field(kind), format!("`{}` is also used by disks[{first}]", value.get_ref()));
                    fields_ok = false;
                }
            }
        }
        match (fields_ok, size, &disk.name, &disk.device, &disk.mount_point) {
            (true, Some(size_bytes), Some(name), Some(device), Some(mount)) => disks.push(Disk {
                name: name.get_ref().clone(),
                size_bytes,
                device: device.get_ref().clone(),
                mount_point: mount.get_ref().clone(),
            }),
            _ => ok = false,
        }
    }
    ok.then_some(disks)
}

/// Names, addresses and MACs must differ between the hosts of a cluster.
fn check_unique_hosts(check: &mut Checker, raw: &RawCluster, hosts: &[(usize, Host)]) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ips: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    let mut macs: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, host) in hosts {
        let entry = &raw.hosts[*index];
        // The line of the field when the entry gives it, else of the `[[hosts]]` entry.
        let span = |value: &Option<Spanned<String>>| value.as_ref().map_or(entry.span(), |v| v.span());
        let raw_host = entry.get_ref();
        if let Some(first) = names.insert(&host.name, *index) {
            let message = format!("`{}` is also the name of hosts[{first}]", host.name);
            check.errors.push(check.src.error_at(&span(&raw_host.name), &format!("hosts[{index}].name"), message));
        }
        if let Some(first) = ips.insert(host.ip, *index) {
            let message = format!("`{}` is also the address of hosts[{first}]", host.ip);
            check.errors.push(check.src.error_at(&span(&raw_host.ip), &format!("hosts[{index}].ip"), message));
        }
        if let Some(first) = macs.insert(&host.mac, *index) {
            let message = format!("`{}` is also the MAC of hosts[{first}]", host.mac);
            check.errors.push(check.src.error_at(&span(&raw_host.mac), &format!("hosts[{index}].mac"), message));
        }
    }
}

/// The load-balanced hosts, fully qualified; each must be a host of the cluster.
fn check_lb_hosts(check: &mut Checker, raw: &RawCluster, network: &Network, hosts: &[(usize, Host)]) -> Vec<String> {
    let Some(raw_network) = raw.network.as_ref().map(|n| n.get_ref()) else { return Vec::new() };
    match (&raw_network.lb_alias, &raw_network.lb_hosts) {
        (None, Some(list)) => {
            check.at(list, "network.lb_hosts", "lb_hosts needs lb_alias, the name they are balanced under")
        }
        (Some(alias), None) => check.at(alias, "network.lb_alias", "lb_alias needs lb_hosts, the hosts it balances"),
        (Some(_), Some(list)) => {
            let mut resolved = Vec::new();
            for entry in list.get_ref() {
                let wanted = qualify(entry.get_ref(), &network.domain);
                if hosts.iter().any(|(_, h)| h.name == wanted) {
                    resolved.push(wanted);
                } else {
                    check.at(entry, "network.lb_hosts", format!("`{}` is not a host of this cluster", entry.get_ref()));
                }
            }
            return resolved;
        }
        (None, None) => {}
    }
    Vec::new()
}

/// `ds1` becomes `ds1.xrd.test`; a name with a dot is taken as already qualified.
pub fn qualify(name: &str, domain: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    if lower.contains('.') {
        lower
    } else {
        format!("{lower}.{domain}")
    }
}

/// Letters, digits, `_` and `-`; at most `max` bytes.
fn is_word(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn is_simple_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`) into lower case; refuses multicast addresses,
/// which a NIC cannot have.
pub fn normalize_mac(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.trim().split([':', '-']).collect();
    let bytes: Option<Vec<u8>> = if parts.len() == 6 {
        parts.iter().map(|p| if p.len() == 2 { u8::from_str_radix(p, 16).ok() } else { None }).collect()
    } else {
        None
    };
    let bytes = bytes.ok_or_else(|| format!("`{text}` is not a MAC address like 52:54:00:12:34:56"))?;
    if bytes[0] & 1 == 1 {
        return Err(format!("`{text}` is a multicast address; a host needs a unicast MAC"));
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// A stable MAC in QEMU's 52:54:00 range, derived from the cluster and host names so the
/// master and the hypervisor compute the same one on every load.
pub fn generated_mac(cluster: &str, host: &str) -> String {
    let hash = fnv1a64(format!("{cluster}/{host}").as_bytes());
    let [a, b, c, ..] = hash.to_be_bytes();
    format!("52:54:00:{a:02x}:{b:02x}:{c:02x}")
}

/// FNV-1a: tiny, and unlike std's hasher, fixed across Rust versions.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(normalize_mac("52:54:00:65:44:6A"), Ok("52:54:00:65:44:6a".into()));
        assert_eq!(normalize_mac("52-54-00-65-44-6a"), Ok("52:54:00:65:44:6a".into()));
        assert!(normalize_mac("52:54:00:65:44").is_err());
        assert!(normalize_mac("01:00:5e:00:00:01").unwrap_err().contains("multicast"));
        let mac = generated_mac("c", "h.xrd.test");
        assert!(mac.starts_with("52:54:00:"));
        assert_eq!(mac, generated_mac("c", "h.xrd.test"));
        assert_ne!(mac, generated_mac("c", "g.xrd.test"));
    }

    #[test]
    fn names() {
        assert!(is_dns_name("ds1.xrd.test"));
        assert!(!is_dns_name("ds_1.xrd.test"));
        assert!(!is_dns_name("-a.b"));
        assert!(!is_dns_name("a..b"));
        assert_eq!(qualify("DS1", "xrd.test"), "ds1.xrd.test");
        assert_eq!(qualify("ds1.other", "xrd.test"), "ds1.other");
    }
}
