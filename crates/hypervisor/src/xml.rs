//! The libvirt XML the hypervisor writes: network, domain, volume and pool. Pure functions
//! of the cluster definition and the names and paths decided elsewhere, so that they can be
//! checked as text; libvirt itself checks them in the test-driver tests.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use xrdtest_defs::{Boot, Cluster, Disk, Host, Network};

use crate::domain_type::DomainType;
use crate::guest_config::GuestConfig;
use crate::marker::{domain_marker_element, network_txt_value, Marker, TXT_NAME};

/// fw_cfg entry holding the guest's complete slave configuration.
pub const FWCFG_SLAVE_TOML: &str = "opt/org.xrdtest/slave.toml";
/// fw_cfg entry holding the master's CA certificate (PEM).
pub const FWCFG_CA_CRT: &str = "opt/org.xrdtest/ca.crt";
/// Where the guest's boot script puts the CA certificate; named in its slave.toml.
pub const GUEST_CA_FILE: &str = "/etc/xrdtest/ca.crt";
/// Kernel command line of a kernel-booted host whose definition gives none: the serial
/// console is what lands in the console log, so without it a boot failure leaves no trace.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0";

/// Escapes text for XML element content and for attribute values in either quote style,
/// with XML's five predefined entities (`'` as `&apos;`): the form libvirt itself writes,
/// and so the one the guest's boot script undoes in the fw_cfg entries (see
/// [`guest_slave_toml`]). The web's HTML and SVG use askama's escaper instead; this crate
/// links no template engine.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The address `master.<domain>` resolves to in the cluster's network: the one the master
/// sent, or else the bridge's (the master then runs on the hypervisor host, listening on
/// all addresses).
pub fn master_address(network: &Network, master_ip: Option<IpAddr>) -> IpAddr {
    master_ip.unwrap_or(IpAddr::V4(network.ip))
}

/// The name guests reach the master by.
pub fn master_host_name(network: &Network) -> String {
    format!("master.{}", network.domain)
}

/// The cluster's network: NAT, its bridge and address, DHCP with a fixed address per host,
/// local DNS for the hosts, the master and the load-balancing alias, and the ownership
/// TXT record.
pub fn network_xml(cluster: &Cluster, hypervisor: &str, master_ip: IpAddr) -> String {
    let network = &cluster.network;
    let mut xml = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(xml, "<network>");
    let _ = writeln!(xml, "  <name>{}</name>", escape(&network.name));
    let _ = writeln!(xml, "  <forward mode='nat'/>");
    // No spanning tree: the bridge has no other bridges to loop with, and STP would hold
    // new guest ports back before forwarding.
    let _ = writeln!(xml, "  <bridge name='{}' stp='off' delay='0'/>", escape(&network.bridge));
    // localOnly: names in the cluster's domain are answered here and never forwarded.
    let _ = writeln!(xml, "  <domain name='{}' localOnly='yes'/>", escape(&network.domain));
    let _ = writeln!(xml, "  <dns>");
    let _ =
        writeln!(xml, "    <txt name='{TXT_NAME}' value='{}'/>", escape(&network_txt_value(hypervisor, &cluster.name)));
    let _ = writeln!(xml, "    <host ip='{master_ip}'>");
    let _ = writeln!(xml, "      <hostname>{}</hostname>", escape(&master_host_name(network)));
    let _ = writeln!(xml, "    </host>");
    for host in &cluster.hosts {
        let _ = writeln!(xml, "    <host ip='{}'>", host.ip);
        let _ = writeln!(xml, "      <hostname>{}</hostname>", escape(&host.name));
        if host.short_name() != host.name {
            let _ = writeln!(xml, "      <hostname>{}</hostname>", escape(host.short_name()));
        }
        // The alias is one more name of every balanced host, so dnsmasq answers it with all
        // their addresses and clients take them in turn.
        if let Some(alias) = &network.lb_alias {
            if network.lb_hosts.iter().any(|h| h == &host.name) {
                let _ = writeln!(xml, "      <hostname>{}</hostname>", escape(&qualified(alias, &network.domain)));
            }
        }
        let _ = writeln!(xml, "    </host>");
    }
    let _ = writeln!(xml, "  </dns>");
    let _ = writeln!(xml, "  <ip address='{}' netmask='{}'>", network.ip, network.netmask);
    let _ = writeln!(xml, "    <dhcp>");
    let _ = writeln!(xml, "      <range start='{}' end='{}'/>", network.dhcp_start, network.dhcp_end);
    // The FQDN (in the network's domain, as dnsmasq requires): the form checked end to end
    // with the slave image (docs/vm-image.md).
    for host in &cluster.hosts {
        let _ =
            writeln!(xml, "      <host mac='{}' name='{}' ip='{}'/>", escape(&host.mac), escape(&host.name), host.ip);
    }
    let _ = writeln!(xml, "    </dhcp>");
    let _ = writeln!(xml, "  </ip>");
    let _ = writeln!(xml, "</network>");
    xml
}

fn qualified(name: &str, domain: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.{domain}")
    }
}

/// The `<interface>` of a running guest with its link `state` (`up` or `down`), to change
/// it live (matched by MAC).
pub fn interface_link_xml(network: &str, mac: &str, state: &str) -> String {
    format!(
        "<interface type='network'><source network='{}'/><mac address='{}'/><model type='virtio'/>\
         <link state='{}'/></interface>",
        escape(network),
        escape(mac),
        escape(state)
    )
}

/// A guest's `slave.toml`: it connects to `master.<domain>:<port>` under its FQDN, and
/// enrolls with `token`, the one the master granted this VM.
///
/// Written so that it passes unchanged through libvirt 9.0 (Debian 12) on its way to QEMU:
/// libvirt hands an inline fw_cfg `<entry>` to QEMU's `-fw_cfg string=` XML-escaped (the
/// guest's boot script undoes that, see `packaging/vm-image`) and without doubling commas,
/// so a comma would end QEMU's option. Every value is therefore a TOML basic string in
/// which commas, `&`, `<`, `>` and `'` are written as `\uXXXX` escapes: the only
/// characters libvirt may change are the strings' own double quotes.
pub fn guest_slave_toml(network: &Network, master_port: u16, host: &Host, token: &str) -> String {
    let master = format!("{}:{master_port}", master_host_name(network));
    format!(
        "master = {}\nname = {}\nsecret = {}\nca_file = {}\n",
        toml_string(&master),
        toml_string(&host.name),
        toml_string(token),
        toml_string(GUEST_CA_FILE)
    )
}

/// A TOML basic string holding `text` exactly (see [`guest_slave_toml`] for the escapes).
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ',' | '&' | '<' | '>' | '\'' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The certificate blocks of a PEM file, without any text around them (`openssl x509
/// -text` output, comments): that text is of no use to the guest and could hold commas
/// (see [`guest_slave_toml`]). `None` when there is no certificate.
pub fn guest_ca_pem(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with("-----BEGIN ") {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with("-----END ") {
            inside = false;
        }
    }
    out.contains("-----END ").then_some(out)
}

/// Everything a domain's XML is made from, beyond the host's definition.
#[derive(Debug, Clone)]
pub struct DomainSpec<'a> {
    pub host: &'a Host,
    /// The libvirt network the interface joins.
    pub network: &'a str,
    pub domain_type: DomainType,
    /// Path of the copy-on-write overlay to boot from (image boot only).
    pub boot_disk: Option<String>,
    /// Each extra disk with the path of its volume.
    pub disks: Vec<(&'a Disk, String)>,
    /// File the serial console is written to.
    pub console_path: String,
    /// The guest's `slave.toml` ([`guest_slave_toml`]), inline or as a file.
    pub slave_toml: GuestConfig,
    /// The master's CA certificate (PEM).
    pub ca_pem: &'a str,
    pub marker: Marker,
}

/// The domain of one host.
pub fn domain_xml(spec: &DomainSpec) -> String {
    let host = spec.host;
    let mut xml = String::new();
    let _ = writeln!(xml, "<domain type='{}'>", spec.domain_type.as_str());
    let _ = writeln!(xml, "  <name>{}</name>", escape(&host.name));
    let _ = writeln!(xml, "  <metadata>");
    let _ = writeln!(xml, "    {}", domain_marker_element(&spec.marker));
    let _ = writeln!(xml, "  </metadata>");
    let _ = writeln!(xml, "  <memory unit='KiB'>{}</memory>", host.ram_bytes / 1024);
    let _ = writeln!(xml, "  <vcpu>{}</vcpu>", host.vcpus);
    // The guest reads these from /sys/firmware/qemu_fw_cfg/by_name/<name>/raw.
    let _ = writeln!(xml, "  <sysinfo type='fwcfg'>");
    match &spec.slave_toml {
        GuestConfig::Inline(text) => {
            let _ = writeln!(xml, "    <entry name='{FWCFG_SLAVE_TOML}'>{}</entry>", escape(text));
        }
        GuestConfig::File(path) => {
            let _ =
                writeln!(xml, "    <entry name='{FWCFG_SLAVE_TOML}' file='{}'/>", escape(&path.display().to_string()));
        }
    }
    let _ = writeln!(xml, "    <entry name='{FWCFG_CA_CRT}'>{}</entry>", escape(spec.ca_pem));
    let _ = writeln!(xml, "  </sysinfo>");
    let _ = writeln!(xml, "  <os>");
    let _ = writeln!(xml, "    <type arch='{}'>hvm</type>", escape(&host.arch));
    match &host.boot {
        Boot::Kernel { kernel, initrd, cmdline } => {
            let _ = writeln!(xml, "    <kernel>{}</kernel>", escape(kernel));
            if let Some(initrd) = initrd {
                let _ = writeln!(xml, "    <initrd>{}</initrd>", escape(initrd));
            }
            let cmdline = cmdline.as_deref().unwrap_or(DEFAULT_CMDLINE);
            let _ = writeln!(xml, "    <cmdline>{}</cmdline>", escape(cmdline));
        }
        Boot::Image { .. } => {
            let _ = writeln!(xml, "    <boot dev='hd'/>");
        }
    }
    let _ = writeln!(xml, "  </os>");
    // ACPI, so that a shutdown request reaches guests that listen for it.
    let _ = writeln!(xml, "  <features>\n    <acpi/>\n    <apic/>\n  </features>");
    let _ = writeln!(xml, "  <clock offset='utc'/>");
    let _ = writeln!(xml, "  <on_poweroff>destroy</on_poweroff>");
    let _ = writeln!(xml, "  <on_reboot>restart</on_reboot>");
    let _ = writeln!(xml, "  <on_crash>destroy</on_crash>");
    let _ = writeln!(xml, "  <devices>");
    if let Some(path) = &spec.boot_disk {
        disk_element(&mut xml, path, "vda", None);
    }
    for (disk, path) in &spec.disks {
        disk_element(&mut xml, path, &disk.device, Some(&disk.name));
    }
    let _ = writeln!(xml, "    <interface type='network'>");
    let _ = writeln!(xml, "      <source network='{}'/>", escape(spec.network));
    let _ = writeln!(xml, "      <mac address='{}'/>", escape(&host.mac));
    let _ = writeln!(xml, "      <model type='virtio'/>");
    let _ = writeln!(xml, "    </interface>");
    // append='off': each start overwrites the log, so it shows the latest boot only.
    let console = escape(&spec.console_path);
    let _ = writeln!(xml, "    <serial type='file'>");
    let _ = writeln!(xml, "      <source path='{console}' append='off'/>");
    let _ = writeln!(xml, "      <target port='0'/>");
    let _ = writeln!(xml, "    </serial>");
    let _ = writeln!(xml, "    <console type='file'>");
    let _ = writeln!(xml, "      <source path='{console}' append='off'/>");
    let _ = writeln!(xml, "      <target type='serial' port='0'/>");
    let _ = writeln!(xml, "    </console>");
    // The slave image has no balloon driver, and the cluster's memory is fixed anyway.
    let _ = writeln!(xml, "    <memballoon model='none'/>");
    let _ = writeln!(xml, "  </devices>");
    let _ = writeln!(xml, "</domain>");
    xml
}

/// Longest serial number a virtio disk carries.
const MAX_DISK_SERIAL: usize = 20;

fn disk_element(xml: &mut String, path: &str, device: &str, serial: Option<&str>) {
    let _ = writeln!(xml, "    <disk type='file' device='disk'>");
    let _ = writeln!(xml, "      <driver name='qemu' type='qcow2'/>");
    let _ = writeln!(xml, "      <source file='{}'/>", escape(path));
    let _ = writeln!(xml, "      <target dev='{}' bus='virtio'/>", escape(device));
    // The guest names virtio disks in the order it finds them, not by `target dev` (with a
    // kernel boot the first extra disk is /dev/vda whatever its target); the disk's name as
    // serial (/sys/block/vdX/serial) tells them apart for sure.
    if let Some(serial) = serial.filter(|s| s.len() <= MAX_DISK_SERIAL) {
        let _ = writeln!(xml, "      <serial>{}</serial>", escape(serial));
    }
    let _ = writeln!(xml, "    </disk>");
}

/// A copy-on-write qcow2 overlay over a boot image, the same size as the image.
pub fn overlay_volume_xml(name: &str, capacity_bytes: u64, backing_path: &str, backing_format: &str) -> String {
    format!(
        "<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{capacity_bytes}</capacity>\n  <target>\n    \
         <format type='qcow2'/>\n  </target>\n  <backingStore>\n    <path>{}</path>\n    <format type='{}'/>\n  \
         </backingStore>\n</volume>\n",
        escape(name),
        escape(backing_path),
        escape(backing_format)
    )
}

/// A new, empty, sparse qcow2 disk.
pub fn disk_volume_xml(name: &str, capacity_bytes: u64) -> String {
    format!(
        "<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{capacity_bytes}</capacity>\n  \
         <allocation unit='bytes'>0</allocation>\n  <target>\n    <format type='qcow2'/>\n  </target>\n</volume>\n",
        escape(name)
    )
}

/// A directory storage pool.
pub fn pool_xml(name: &str, dir: &Path) -> String {
    format!(
        "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
        escape(name),
        escape(&dir.display().to_string())
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    pub(crate) fn cluster() -> Cluster {
        let network = Network {
            name: "pair_net".into(),
            bridge: "virbr-pair".into(),
            ip: Ipv4Addr::new(192, 168, 100, 1),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            dhcp_start: Ipv4Addr::new(192, 168, 100, 100),
            dhcp_end: Ipv4Addr::new(192, 168, 100, 200),
            domain: "pair.test".into(),
            lb_alias: Some("lb".into()),
            lb_hosts: vec!["server.pair.test".into()],
        };
        let server = Host {
            name: "server.pair.test".into(),
            ip: Ipv4Addr::new(192, 168, 100, 10),
            mac: "52:54:00:00:00:0a".into(),
            boot: Boot::Kernel {
                kernel: "/srv/vm/vmlinuz".into(),
                initrd: Some("/srv/vm/initrd.img".into()),
                cmdline: Some("console=ttyS0 quiet".into()),
            },
            arch: "x86_64".into(),
            ram_bytes: 512 << 20,
            vcpus: 2,
            roles: Vec::new(),
            disks: vec![Disk {
                name: "data".into(),
                size_bytes: 2 << 30,
                device: "vdb".into(),
                mount_point: "/data".into(),
            }],
        };
        let client = Host {
            name: "client.pair.test".into(),
            ip: Ipv4Addr::new(192, 168, 100, 11),
            mac: "52:54:00:00:00:0b".into(),
            boot: Boot::Image { volume: "slave.qcow2".into() },
            arch: "x86_64".into(),
            ram_bytes: 1 << 30,
            vcpus: 1,
            roles: Vec::new(),
            disks: vec![],
        };
        Cluster { name: "pair".into(), network, hosts: vec![server, client], links: Vec::new() }
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("plain text"), "plain text");
    }

    #[test]
    fn network() {
        let cluster = cluster();
        let xml = network_xml(&cluster, "hv1", master_address(&cluster.network, None));
        let expected = "<network>
  <name>pair_net</name>
  <forward mode='nat'/>
  <bridge name='virbr-pair' stp='off' delay='0'/>
  <domain name='pair.test' localOnly='yes'/>
  <dns>
    <txt name='xrdtest-owner' value='hypervisor=hv1 cluster=pair'/>
    <host ip='192.168.100.1'>
      <hostname>master.pair.test</hostname>
    </host>
    <host ip='192.168.100.10'>
      <hostname>server.pair.test</hostname>
      <hostname>server</hostname>
      <hostname>lb.pair.test</hostname>
    </host>
    <host ip='192.168.100.11'>
      <hostname>client.pair.test</hostname>
      <hostname>client</hostname>
    </host>
  </dns>
  <ip address='192.168.100.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.100.100' end='192.168.100.200'/>
      <host mac='52:54:00:00:00:0a' name='server.pair.test' ip='192.168.100.10'/>
      <host mac='52:54:00:00:00:0b' name='client.pair.test' ip='192.168.100.11'/>
    </dhcp>
  </ip>
</network>
";
        assert_eq!(xml, expected);
        let marker = crate::marker::read_network_marker(&xml).unwrap().unwrap();
        assert_eq!((marker.hypervisor.as_str(), marker.cluster.as_str()), ("hv1", "pair"));
    }

    #[test]
    fn network_with_a_master_elsewhere() {
        let cluster = cluster();
        let elsewhere = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let xml = network_xml(&cluster, "hv1", master_address(&cluster.network, Some(elsewhere)));
        assert!(xml.contains("<host ip='10.1.2.3'>\n      <hostname>master.pair.test</hostname>"), "{xml}");
    }

    fn kernel_spec(cluster: &Cluster) -> DomainSpec<'_> {
        let host = &cluster.hosts[0];
        DomainSpec {
            host,
            network: &cluster.network.name,
            domain_type: DomainType::Qemu,
            boot_disk: None,
            disks: vec![(&host.disks[0], "/var/lib/xrdtest/pool/xrdtest.pair.server.data.qcow2".into())],
            console_path: "/var/log/xrdtest/consoles/server.pair.test.log".into(),
            slave_toml: GuestConfig::Inline(guest_slave_toml(&cluster.network, 20000, host, "s3\"cret")),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            marker: Marker {
                hypervisor: "hv1".into(),
                cluster: "pair".into(),
                volumes: vec!["xrdtest.pair.server.data.qcow2".into()],
            },
        }
    }

    /// On a local libvirt the configuration (and its token) is a file the entry names.
    #[test]
    fn a_file_configuration_is_named_not_inlined() {
        let cluster = cluster();
        let spec = DomainSpec {
            slave_toml: GuestConfig::File("/var/lib/xrdtest-hypervisor/guests/pair/server.pair.test.toml".into()),
            ..kernel_spec(&cluster)
        };
        let xml = domain_xml(&spec);
        assert!(
            xml.contains(
                "<entry name='opt/org.xrdtest/slave.toml' file='/var/lib/xrdtest-hypervisor/guests/pair/server.pair.test.toml'/>"
            ),
            "{xml}"
        );
        assert!(!xml.contains("secret"), "{xml}");
    }

    /// The whole domain of a kernel-booted host with one disk, as text.
    #[test]
    fn kernel_boot_domain() {
        let cluster = cluster();
        let xml = domain_xml(&kernel_spec(&cluster));
        let expected = r#"<domain type='qemu'>
  <name>server.pair.test</name>
  <metadata>
    <xrdtest:owner xmlns:xrdtest="https://xrdtest.dev/xmlns/owner/1" hypervisor="hv1" cluster="pair" volumes="xrdtest.pair.server.data.qcow2"/>
  </metadata>
  <memory unit='KiB'>524288</memory>
  <vcpu>2</vcpu>
  <sysinfo type='fwcfg'>
    <entry name='opt/org.xrdtest/slave.toml'>master = &quot;master.pair.test:20000&quot;
name = &quot;server.pair.test&quot;
secret = &quot;s3\&quot;cret&quot;
ca_file = &quot;/etc/xrdtest/ca.crt&quot;
</entry>
    <entry name='opt/org.xrdtest/ca.crt'>-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
</entry>
  </sysinfo>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>/srv/vm/vmlinuz</kernel>
    <initrd>/srv/vm/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/xrdtest/pool/xrdtest.pair.server.data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
      <serial>data</serial>
    </disk>
    <interface type='network'>
      <source network='pair_net'/>
      <mac address='52:54:00:00:00:0a'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='/var/log/xrdtest/consoles/server.pair.test.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='/var/log/xrdtest/consoles/server.pair.test.log' append='off'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
"#;
        assert_eq!(xml, expected);
    }

    /// The fw_cfg slave.toml is real TOML that says what the slave needs, whatever the
    /// secret holds, and holds no character that libvirt 9.0 or QEMU's option parser would
    /// change apart from the strings' quotes.
    #[test]
    fn guest_slave_toml_parses_back_and_survives_libvirt() {
        let cluster = cluster();
        for secret in ["plain", "a\"b\\c\nd'e", "with,comma", "x&amp;y<z>", "tab\there", "ünï"] {
            let text = guest_slave_toml(&cluster.network, 20001, &cluster.hosts[1], secret);
            let value: toml::Table = toml::from_str(&text).unwrap();
            assert_eq!(value["master"].as_str(), Some("master.pair.test:20001"));
            assert_eq!(value["name"].as_str(), Some("client.pair.test"));
            assert_eq!(value["secret"].as_str(), Some(secret), "{text}");
            assert_eq!(value["ca_file"].as_str(), Some(GUEST_CA_FILE));
            assert_eq!(value.len(), 4);
            for special in [',', '&', '<', '>', '\''] {
                assert!(!text.contains(special), "`{special}` in {text}");
            }
            // What the guest gets from libvirt 9.0, unescaped as the image's boot script does.
            let through_libvirt = escape(&text).replace("&quot;", "\"");
            assert_eq!(through_libvirt, text);
        }
    }

    #[test]
    fn only_the_certificates_of_the_ca_file_go_to_the_guest() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(guest_ca_pem(pem).as_deref(), Some(pem));
        let noisy = format!("Certificate:\n    Issuer: O=xrdtest, CN=ca\r\n{}", pem.replace('\n', "\r\n"));
        assert_eq!(guest_ca_pem(&noisy).as_deref(), Some(pem));
        assert_eq!(guest_ca_pem("no certificate here"), None);
    }

    #[test]
    fn image_boot_domain_boots_from_the_overlay_on_vda() {
        let cluster = cluster();
        let host = &cluster.hosts[1];
        let spec = DomainSpec {
            host,
            boot_disk: Some("/pool/xrdtest.pair.client.boot.qcow2".into()),
            disks: vec![],
            domain_type: DomainType::Kvm,
            ..kernel_spec(&cluster)
        };
        let xml = domain_xml(&spec);
        assert!(xml.starts_with("<domain type='kvm'>\n  <name>client.pair.test</name>"), "{xml}");
        assert!(xml.contains("<os>\n    <type arch='x86_64'>hvm</type>\n    <boot dev='hd'/>\n  </os>"), "{xml}");
        assert!(xml
            .contains("<source file='/pool/xrdtest.pair.client.boot.qcow2'/>\n      <target dev='vda' bus='virtio'/>"));
        assert!(!xml.contains("<kernel>"));
        assert!(xml.contains("<memory unit='KiB'>1048576</memory>"));
    }

    #[test]
    fn kernel_boot_without_cmdline_gets_the_serial_console() {
        let mut cluster = cluster();
        cluster.hosts[0].boot = Boot::Kernel { kernel: "/k".into(), initrd: None, cmdline: None };
        let xml = domain_xml(&kernel_spec(&cluster));
        assert!(xml.contains("<kernel>/k</kernel>\n    <cmdline>console=ttyS0</cmdline>"), "{xml}");
        assert!(!xml.contains("<initrd>"));
    }

    #[test]
    fn names_and_paths_are_escaped() {
        let mut cluster = cluster();
        cluster.hosts[0].boot = Boot::Kernel { kernel: "/a&b/<k>".into(), initrd: None, cmdline: Some("x='1'".into()) };
        let mut spec = kernel_spec(&cluster);
        spec.console_path = "/log/it's.log".into();
        let xml = domain_xml(&spec);
        assert!(xml.contains("<kernel>/a&amp;b/&lt;k&gt;</kernel>"));
        assert!(xml.contains("<cmdline>x=&apos;1&apos;</cmdline>"));
        assert!(xml.contains("<source path='/log/it&apos;s.log' append='off'/>"));
        assert!(roxmltree::Document::parse(&xml).is_ok());
    }

    #[test]
    fn volumes_and_pool() {
        assert_eq!(
            overlay_volume_xml("xrdtest.pair.client.boot.qcow2", 10 << 30, "/pool/slave.qcow2", "qcow2"),
            "<volume>
  <name>xrdtest.pair.client.boot.qcow2</name>
  <capacity unit='bytes'>10737418240</capacity>
  <target>
    <format type='qcow2'/>
  </target>
  <backingStore>
    <path>/pool/slave.qcow2</path>
    <format type='qcow2'/>
  </backingStore>
</volume>
"
        );
        assert_eq!(
            disk_volume_xml("xrdtest.pair.server.data.qcow2", 2 << 30),
            "<volume>
  <name>xrdtest.pair.server.data.qcow2</name>
  <capacity unit='bytes'>2147483648</capacity>
  <allocation unit='bytes'>0</allocation>
  <target>
    <format type='qcow2'/>
  </target>
</volume>
"
        );
        assert_eq!(
            pool_xml("xrdtest", Path::new("/var/lib/xrdtest/pool")),
            "<pool type='dir'>\n  <name>xrdtest</name>\n  <target>\n    <path>/var/lib/xrdtest/pool</path>\n  \
             </target>\n</pool>\n"
        );
    }
}
