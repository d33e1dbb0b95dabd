//! The hypervisor's libvirt side against libvirt's built-in test driver (`test:///default`),
//! which runs inside this process: it checks the XML the way libvirt parses it, and keeps
//! domains, networks, pools and volumes in memory (no guests run).
//!
//! All connections of one process to `test:///default` share one state for as long as any
//! of them is open (checked: a second connection sees the first one's domain; after all
//! close, the state is fresh). Tests run in parallel in one process, so each test uses its
//! own names (hypervisor, cluster, network, bridge, hosts, pool) and never looks at more
//! than its own; the ownership rules are what keeps them apart, which is itself tested.

use std::path::PathBuf;
use std::time::Duration;

mod common;

use xrdtest_defs::{Boot, Cluster, Disk};
use xrdtest_hypervisor::domain_type::DomainType;
use xrdtest_hypervisor::guest_config::GuestConfig;
use xrdtest_hypervisor::libvirt::Libvirt;
use xrdtest_hypervisor::lifecycle::{cleanup_orphans, start_cluster, stop_cluster, Settings};
use xrdtest_hypervisor::marker::{self, Marker};
use xrdtest_hypervisor::xml;
use xrdtest_proto::{ClusterState, GuestCredentials, StartCluster};

const URI: &str = "test:///default";

/// One test's names and files.
struct Fixture {
    tag: String,
    libvirt: Libvirt,
    settings: Settings,
    /// Holds the kernel, initrd and console files.
    dir: tempfile::TempDir,
}

impl Fixture {
    /// `subnet` keeps the tests' networks apart (libvirt's test driver does not check
    /// overlaps, but a reader should not have to wonder).
    fn new(tag: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            hypervisor: format!("hv-{tag}"),
            domain_type: DomainType::Qemu,
            pool: format!("pool-{tag}"),
            pool_dir: PathBuf::from(format!("/pool-{tag}")),
            console_dir: dir.path().join("consoles"),
            guest_dir: dir.path().join("guests"),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            shutdown_wait: Duration::from_secs(1),
            kernel_dirs: vec![dir.path().to_path_buf()],
            // The test driver has no real guests to save.
            warm_dir: None,
        };
        Fixture { tag: tag.to_string(), libvirt: Libvirt::open(URI).unwrap(), settings, dir }
    }

    fn base_image(&self) -> String {
        common::base_image(&self.tag)
    }

    /// Two hosts: `server` boots a kernel and has one disk, `client` boots the pool image.
    fn cluster(&self, subnet: u8) -> Cluster {
        common::cluster(&self.tag, subnet, self.dir.path())
    }

    fn request(&self, cluster: Cluster) -> StartCluster {
        let credentials =
            GuestCredentials(cluster.hosts.iter().map(|h| (h.name.clone(), format!("vm-{}", h.name))).collect());
        StartCluster { cluster, master_ip: None, master_port: 20000, requested_by: "test".into(), credentials }
    }

    /// Creates the pool and the boot image volume the `client` host boots from.
    fn add_base_image(&self) {
        let pool = self.libvirt.ensure_pool(&self.settings.pool, &self.settings.pool_dir).unwrap();
        pool.create_volume(&self.base_image(), &xml::disk_volume_xml(&self.base_image(), 4 << 30)).unwrap();
    }

    fn start(&self, request: &StartCluster) -> (Result<(), String>, Vec<(ClusterState, String)>) {
        let mut states = Vec::new();
        let result =
            start_cluster(&self.libvirt, &self.settings, request, |state, detail| states.push((state, detail)));
        (result.map(|_| ()).map_err(|e| e.to_string()), states)
    }

    fn stop(&self, cluster: &str) -> (Result<(), String>, Vec<(ClusterState, String)>) {
        let mut states = Vec::new();
        let result = stop_cluster(&self.libvirt, &self.settings, cluster, |state, detail| states.push((state, detail)));
        (result.map_err(|e| e.to_string()), states)
    }

    fn volumes(&self) -> Vec<String> {
        match self.libvirt.pool(&self.settings.pool).unwrap() {
            Some(pool) => {
                let mut names = pool.volume_names().unwrap();
                names.sort();
                names
            }
            None => Vec::new(),
        }
    }

    /// Asserts that nothing of the cluster is left: no domain, no network, only the image.
    fn assert_nothing_left(&self, cluster: &Cluster) {
        for host in &cluster.hosts {
            assert!(self.libvirt.domain(&host.name).unwrap().is_none(), "domain {} is left", host.name);
        }
        assert!(self.libvirt.network(&cluster.network.name).unwrap().is_none(), "the network is left");
        let volumes: Vec<String> = self.volumes().into_iter().filter(|v| v != &self.base_image()).collect();
        assert!(volumes.is_empty(), "volumes left: {volumes:?}");
    }
}

fn states(reports: &[(ClusterState, String)]) -> Vec<ClusterState> {
    reports.iter().map(|(state, _)| *state).collect()
}

fn define_plain_domain(libvirt: &Libvirt, name: &str, metadata: &str) {
    let xml = format!(
        "<domain type='qemu'><name>{name}</name><metadata>{metadata}</metadata><memory unit='KiB'>65536</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    );
    let domain = libvirt.define_domain(name, &xml).unwrap();
    domain.start().unwrap();
}

#[test]
fn network_xml_is_accepted_and_its_marker_survives() {
    let f = Fixture::new("netxml");
    let cluster = f.cluster(1);
    let text = xml::network_xml(&cluster, &f.settings.hypervisor, xml::master_address(&cluster.network, None));
    let network = f.libvirt.define_network(&cluster.network.name, &text).unwrap();
    network.start().unwrap();
    assert!(network.is_active().unwrap());
    let back = f.libvirt.network(&cluster.network.name).unwrap().unwrap();
    let marker = back.marker().unwrap().expect("the TXT marker comes back from libvirt");
    assert_eq!(marker.hypervisor, "hv-netxml");
    assert_eq!(marker.cluster, "c-netxml");
    let xml_back = back.xml().unwrap();
    for expected in [
        "<domain name='netxml.test' localOnly='yes'/>",
        "<hostname>master.netxml.test</hostname>",
        "<hostname>lb.netxml.test</hostname>",
        "<host mac='52:54:00:77:01:0a' name='server.netxml.test' ip='10.77.1.10'/>",
        "<range start='10.77.1.100' end='10.77.1.200'/>",
        "<forward mode='nat'/>",
    ] {
        assert!(xml_back.contains(expected), "{expected} missing from libvirt's XML:\n{xml_back}");
    }
    network.destroy().unwrap();
    network.undefine().unwrap();
}

#[test]
fn domain_xml_is_accepted_and_its_marker_and_fw_cfg_survive() {
    let f = Fixture::new("domxml");
    let cluster = f.cluster(2);
    let host = &cluster.hosts[0];
    let volumes = vec![marker::disk_volume_name(&cluster.name, "server", "data")];
    let spec = xml::DomainSpec {
        host,
        network: &cluster.network.name,
        domain_type: DomainType::Qemu,
        boot_disk: None,
        disks: vec![(&host.disks[0], "/pool-domxml/xrdtest.c-domxml.server.data.qcow2".into())],
        console_path: "/tmp/console.log".into(),
        slave_toml: GuestConfig::Inline(xml::guest_slave_toml(&cluster.network, 20000, host, "se<cr>et")),
        ca_pem: &f.settings.ca_pem,
        marker: Marker { hypervisor: "hv-domxml".into(), cluster: cluster.name.clone(), volumes: volumes.clone() },
    };
    let domain = f.libvirt.define_domain(&host.name, &xml::domain_xml(&spec)).unwrap();
    domain.start().unwrap();
    let back = f.libvirt.domain(&host.name).unwrap().unwrap();
    assert_eq!(
        back.marker().unwrap(),
        Some(Marker { hypervisor: "hv-domxml".into(), cluster: cluster.name.clone(), volumes })
    );
    let text = back.xml().unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    let entries: Vec<(String, String)> = document
        .descendants()
        .filter(|n| n.has_tag_name("entry"))
        .map(|n| (n.attribute("name").unwrap_or("").to_string(), n.text().unwrap_or("").to_string()))
        .collect();
    assert_eq!(entries.len(), 2, "{text}");
    let GuestConfig::Inline(slave_toml) = &spec.slave_toml else { unreachable!("made inline above") };
    assert_eq!(entries[0], (xml::FWCFG_SLAVE_TOML.to_string(), slave_toml.clone()));
    assert_eq!(entries[1], (xml::FWCFG_CA_CRT.to_string(), f.settings.ca_pem.clone()));
    for expected in [
        "<kernel>",
        "<initrd>",
        "<cmdline>console=ttyS0</cmdline>",
        "<target dev='vdb' bus='virtio'/>",
        "<serial>data</serial>",
        "<memballoon model='none'/>",
        "<console type='file'>",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    back.destroy().unwrap();
    back.undefine().unwrap();
}

#[test]
fn start_then_stop_leaves_nothing() {
    let f = Fixture::new("cycle");
    f.add_base_image();
    let cluster = f.cluster(3);
    let (result, reports) = f.start(&f.request(cluster.clone()));
    assert_eq!(result, Ok(()));
    assert_eq!(
        states(&reports),
        vec![
            ClusterState::CreatingNetwork,
            ClusterState::CopyingImages,
            ClusterState::AttachingDisks,
            ClusterState::CreatingSlaves,
            ClusterState::Active
        ]
    );
    for host in &cluster.hosts {
        let domain = f.libvirt.domain(&host.name).unwrap().expect("the domain exists");
        assert!(domain.is_active().unwrap(), "{} runs", host.name);
    }
    let network = f.libvirt.network(&cluster.network.name).unwrap().unwrap();
    assert!(network.is_active().unwrap());
    let overlay = marker::boot_volume_name(&cluster.name, "client");
    let disk = marker::disk_volume_name(&cluster.name, "server", "data");
    let mut expected = vec![f.base_image(), disk.clone(), overlay.clone()];
    expected.sort();
    assert_eq!(f.volumes(), expected);
    // The client boots from an overlay backed by the pool image, on vda.
    let client = f.libvirt.domain(&cluster.hosts[1].name).unwrap().unwrap();
    assert_eq!(client.marker().unwrap().unwrap().volumes, vec![overlay.clone()]);
    let client_xml = client.xml().unwrap();
    assert!(client_xml.contains(&format!("/pool-cycle/{overlay}")), "{client_xml}");
    assert!(client_xml.contains("<target dev='vda' bus='virtio'/>"), "{client_xml}");
    let server = f.libvirt.domain(&cluster.hosts[0].name).unwrap().unwrap();
    assert_eq!(server.marker().unwrap().unwrap().volumes, vec![disk]);

    let (result, reports) = f.stop(&cluster.name);
    assert_eq!(result, Ok(()));
    assert_eq!(states(&reports), vec![ClusterState::Destroying, ClusterState::Stopped]);
    f.assert_nothing_left(&cluster);
    assert_eq!(f.volumes(), vec![f.base_image()], "the boot image itself stays");
}

#[test]
fn a_missing_boot_image_is_named_and_nothing_is_made() {
    let f = Fixture::new("noimage");
    let cluster = f.cluster(4);
    let (result, reports) = f.start(&f.request(cluster.clone()));
    let message = result.unwrap_err();
    assert!(message.contains("boot image volume `base-noimage.qcow2`"), "{message}");
    assert!(message.contains("pool-noimage"), "{message}");
    assert_eq!(states(&reports), vec![ClusterState::ErrorStart]);
    assert_eq!(reports[0].1, message);
    f.assert_nothing_left(&cluster);
}

#[test]
fn a_missing_kernel_is_named_and_nothing_is_made() {
    let f = Fixture::new("nokernel");
    f.add_base_image();
    let mut cluster = f.cluster(5);
    cluster.hosts[0].boot = Boot::Kernel { kernel: "/nonexistent/vmlinuz".into(), initrd: None, cmdline: None };
    let (result, reports) = f.start(&f.request(cluster.clone()));
    let message = result.unwrap_err();
    assert!(message.contains("kernel `/nonexistent/vmlinuz` of host server.nokernel.test"), "{message}");
    assert_eq!(states(&reports), vec![ClusterState::ErrorStart]);
    f.assert_nothing_left(&cluster);
}

/// The second domain cannot be defined (an extra disk on `vda`, where its boot overlay is)
/// after the network, the volumes and the first domain were made: all must go again.
#[test]
fn a_failure_midway_removes_everything_made() {
    let f = Fixture::new("midway");
    f.add_base_image();
    let mut cluster = f.cluster(6);
    cluster.hosts[1].disks =
        vec![Disk { name: "clash".into(), size_bytes: 1 << 20, device: "vda".into(), mount_point: "/clash".into() }];
    let (result, reports) = f.start(&f.request(cluster.clone()));
    let message = result.unwrap_err();
    assert!(message.contains("define domain client.midway.test"), "{message}");
    assert!(message.contains("vda"), "libvirt's own text is in the message: {message}");
    assert_eq!(
        states(&reports),
        vec![
            ClusterState::CreatingNetwork,
            ClusterState::CopyingImages,
            ClusterState::AttachingDisks,
            ClusterState::CreatingSlaves,
            ClusterState::ErrorStart
        ]
    );
    assert_eq!(reports.last().unwrap().1, message);
    f.assert_nothing_left(&cluster);
}

/// Leftovers of ours from an earlier run (domains, network, a stray volume) are removed
/// before the start, which then succeeds.
#[test]
fn dangling_objects_of_ours_are_removed_before_a_start() {
    let f = Fixture::new("dangling");
    f.add_base_image();
    let cluster = f.cluster(7);
    let request = f.request(cluster.clone());
    assert_eq!(f.start(&request).0, Ok(()));
    let pool = f.libvirt.pool(&f.settings.pool).unwrap().unwrap();
    let stray = format!("{}old.qcow2", marker::cluster_volume_prefix(&cluster.name));
    pool.create_volume(&stray, &xml::disk_volume_xml(&stray, 1 << 20)).unwrap();
    let (result, reports) = f.start(&request);
    assert_eq!(result, Ok(()), "{reports:?}");
    assert!(!f.volumes().contains(&stray), "the stray volume of ours is gone");
    assert_eq!(f.volumes().len(), 3);
    assert_eq!(f.stop(&cluster.name).0, Ok(()));
    f.assert_nothing_left(&cluster);
}

/// A domain of one of the cluster's names that xrdtest did not make: the start fails
/// naming it, and it is left exactly as it was.
#[test]
fn an_unmarked_domain_of_the_same_name_is_refused_and_untouched() {
    let f = Fixture::new("foreign");
    f.add_base_image();
    let cluster = f.cluster(8);
    define_plain_domain(&f.libvirt, &cluster.hosts[0].name, "");
    let (result, reports) = f.start(&f.request(cluster.clone()));
    let message = result.unwrap_err();
    assert!(message.contains("domain server.foreign.test already exists and is not made by xrdtest"), "{message}");
    assert_eq!(states(&reports), vec![ClusterState::ErrorStart]);
    let domain = f.libvirt.domain(&cluster.hosts[0].name).unwrap().expect("still defined");
    assert!(domain.is_active().unwrap(), "still running");
    assert!(f.libvirt.network(&cluster.network.name).unwrap().is_none(), "nothing was made");
    // Neither a stop nor the start-up cleanup touch it.
    assert_eq!(f.stop(&cluster.name).0, Ok(()));
    cleanup_orphans(&f.libvirt, &f.settings, &[]).unwrap();
    assert!(f.libvirt.domain(&cluster.hosts[0].name).unwrap().unwrap().is_active().unwrap());
    domain.destroy().unwrap();
    domain.undefine().unwrap();
}

/// The same for a domain another xrdtest hypervisor made (two sharing one libvirt).
#[test]
fn another_hypervisors_domain_is_refused_and_untouched() {
    let f = Fixture::new("otherhv");
    f.add_base_image();
    let cluster = f.cluster(9);
    let theirs = Marker { hypervisor: "someone-else".into(), cluster: cluster.name.clone(), volumes: vec![] };
    define_plain_domain(&f.libvirt, &cluster.hosts[1].name, &marker::domain_marker_element(&theirs));
    let message = f.start(&f.request(cluster.clone())).0.unwrap_err();
    assert!(
        message.contains("domain client.otherhv.test already exists and is made by xrdtest hypervisor `someone-else`"),
        "{message}"
    );
    assert_eq!(f.stop(&cluster.name).0, Ok(()));
    cleanup_orphans(&f.libvirt, &f.settings, &[]).unwrap();
    let domain = f.libvirt.domain(&cluster.hosts[1].name).unwrap().expect("still defined");
    assert!(domain.is_active().unwrap());
    assert_eq!(domain.marker().unwrap(), Some(theirs));
    domain.destroy().unwrap();
    domain.undefine().unwrap();
}

/// A network of the cluster's name without our marker is refused too.
#[test]
fn an_unmarked_network_of_the_same_name_is_refused_and_untouched() {
    let f = Fixture::new("foreignnet");
    f.add_base_image();
    let cluster = f.cluster(10);
    let text = format!(
        "<network><name>{}</name><bridge name='brx-foreignnet'/><ip address='10.88.0.1' netmask='255.255.255.0'/></network>",
        cluster.network.name
    );
    let network = f.libvirt.define_network(&cluster.network.name, &text).unwrap();
    network.start().unwrap();
    let message = f.start(&f.request(cluster.clone())).0.unwrap_err();
    assert!(message.contains("network foreignnet_net already exists and is not made by xrdtest"), "{message}");
    assert!(network.is_active().unwrap());
    assert!(f.libvirt.domain(&cluster.hosts[0].name).unwrap().is_none());
    network.destroy().unwrap();
    network.undefine().unwrap();
}

/// At start-up, clusters of ours that the daemon does not run are removed, with stray
/// volumes of our prefix; clusters it keeps and objects not ours stay.
#[test]
fn cleanup_orphans_removes_ours_only() {
    let f = Fixture::new("orphans");
    f.add_base_image();
    let gone = f.cluster(11);
    let mut kept = f.cluster(12);
    kept.name = "c-orphans-kept".into();
    kept.network.name = "orphans_kept_net".into();
    kept.network.bridge = "br-orph-kept".into();
    kept.network.domain = "kept.orphans.test".into();
    for host in &mut kept.hosts {
        host.name = host.name.replace("orphans.test", "kept.orphans.test");
    }
    kept.network.lb_hosts = vec![kept.hosts[0].name.clone()];
    assert_eq!(f.start(&f.request(gone.clone())).0, Ok(()));
    assert_eq!(f.start(&f.request(kept.clone())).0, Ok(()));
    let foreign = "bystander.orphans.test";
    define_plain_domain(&f.libvirt, foreign, "");
    let pool = f.libvirt.pool(&f.settings.pool).unwrap().unwrap();
    pool.create_volume("xrdtest.nobody.x.boot.qcow2", &xml::disk_volume_xml("xrdtest.nobody.x.boot.qcow2", 1 << 20))
        .unwrap();
    pool.create_volume("someone-elses.qcow2", &xml::disk_volume_xml("someone-elses.qcow2", 1 << 20)).unwrap();

    let cleaned = cleanup_orphans(&f.libvirt, &f.settings, &[kept.name.clone()]).unwrap();
    assert_eq!(cleaned, vec![gone.name.clone()]);
    for host in &gone.hosts {
        assert!(f.libvirt.domain(&host.name).unwrap().is_none());
    }
    assert!(f.libvirt.network(&gone.network.name).unwrap().is_none());
    for host in &kept.hosts {
        assert!(f.libvirt.domain(&host.name).unwrap().unwrap().is_active().unwrap(), "kept cluster runs");
    }
    assert!(f.libvirt.domain(foreign).unwrap().is_some(), "the bystander stays");
    let volumes = f.volumes();
    assert!(!volumes.contains(&"xrdtest.nobody.x.boot.qcow2".to_string()), "{volumes:?}");
    assert!(volumes.contains(&"someone-elses.qcow2".to_string()), "{volumes:?}");
    assert!(volumes.contains(&marker::boot_volume_name(&kept.name, "client")), "{volumes:?}");

    assert_eq!(cleanup_orphans(&f.libvirt, &f.settings, &[]).unwrap(), vec![kept.name.clone()]);
    pool.volume("someone-elses.qcow2").unwrap().unwrap().delete().unwrap();
    f.assert_nothing_left(&kept);
    let bystander = f.libvirt.domain(foreign).unwrap().unwrap();
    bystander.destroy().unwrap();
    bystander.undefine().unwrap();
}

#[test]
fn stopping_a_cluster_that_is_not_here_reports_stopped() {
    let f = Fixture::new("absent");
    let (result, reports) = f.stop("c-absent");
    assert_eq!(result, Ok(()));
    assert_eq!(states(&reports), vec![ClusterState::Destroying, ClusterState::Stopped]);
}

/// The master's address in DNS is the one it sent, when it sent one.
#[test]
fn the_master_address_sent_is_the_one_in_dns() {
    let f = Fixture::new("masterip");
    f.add_base_image();
    let cluster = f.cluster(13);
    let mut request = f.request(cluster.clone());
    request.master_ip = Some("10.1.2.3".parse().unwrap());
    assert_eq!(f.start(&request).0, Ok(()));
    let text = f.libvirt.network(&cluster.network.name).unwrap().unwrap().xml().unwrap();
    assert!(text.contains("<host ip='10.1.2.3'>\n      <hostname>master.masterip.test</hostname>"), "{text}");
    assert_eq!(f.stop(&cluster.name).0, Ok(()));
    f.assert_nothing_left(&cluster);
}

#[test]
fn a_kernel_outside_kernel_dirs_is_refused_before_anything_is_made() {
    let mut f = Fixture::new("kdirs");
    f.add_base_image();
    let elsewhere = tempfile::tempdir().unwrap();
    f.settings.kernel_dirs = vec![elsewhere.path().to_path_buf()];
    let cluster = f.cluster(9);
    let (result, reports) = f.start(&f.request(cluster.clone()));
    let error = result.expect_err("the kernel is outside kernel_dirs");
    assert!(error.contains("kernel_dirs") && error.contains("vmlinuz"), "{error}");
    assert_eq!(states(&reports), vec![ClusterState::ErrorStart]);
    assert!(f.libvirt.network(&cluster.network.name).unwrap().is_none(), "nothing was made");
    // Written with `..` it is refused too, even if it would resolve inside.
    let mut climbing = cluster.clone();
    if let xrdtest_defs::Boot::Kernel { kernel, .. } = &mut climbing.hosts[0].boot {
        *kernel = format!("{}/../{}/vmlinuz", elsewhere.path().display(), f.dir.path().display());
    }
    f.settings.kernel_dirs = vec![f.dir.path().to_path_buf()];
    let refused = xrdtest_hypervisor::lifecycle::check_kernel_folders(&climbing, &f.settings.kernel_dirs, false);
    assert!(refused.is_err());
    assert!(xrdtest_hypervisor::lifecycle::check_kernel_folders(&cluster, &f.settings.kernel_dirs, true).is_ok());
}
