//! Ownership markers: how the hypervisor tells its own libvirt objects from everybody
//! else's, and the names it gives them.
//!
//! - A domain carries `<metadata><xrdtest:owner xmlns:xrdtest="NAMESPACE" hypervisor=".."
//!   cluster=".." volumes="a b"/></metadata>`.
//! - A network carries a DNS TXT record `xrdtest-owner` = `hypervisor=<name> cluster=<name>`
//!   (libvirt 9.0 has no network metadata; it came in 9.7).
//! - A volume is named `xrdtest.<cluster>.<host short name>.<boot|disk name>.qcow2` and is
//!   listed in its domain's marker.
//!
//! Only objects whose marker names this hypervisor are ever changed or removed: two
//! hypervisors may share one libvirt, and people keep their own VMs beside xrdtest's.

use crate::xml::escape;

/// XML namespace of the domain marker. Versioned, so that a later marker can differ.
pub const NAMESPACE: &str = "https://xrdtest.dev/xmlns/owner/1";
/// Name of the network's DNS TXT record that marks it.
pub const TXT_NAME: &str = "xrdtest-owner";
/// Start of the name of every volume xrdtest makes.
pub const VOLUME_PREFIX: &str = "xrdtest.";

/// What a marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The name of the hypervisor that made the object.
    pub hypervisor: String,
    pub cluster: String,
    /// Volumes of the pool the object uses (domains only).
    pub volumes: Vec<String>,
}

/// Whose an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Marked by this hypervisor: it may be changed and removed.
    Ours(Marker),
    /// Marked by another xrdtest hypervisor (sharing this libvirt): never touched.
    OtherHypervisor(Marker),
    /// Not made by xrdtest at all: never touched.
    Foreign,
}

impl Ownership {
    /// Classifies a marker read back from libvirt (`None`: the object has none).
    pub fn of(marker: Option<Marker>, hypervisor: &str) -> Ownership {
        match marker {
            Some(marker) if marker.hypervisor == hypervisor => Ownership::Ours(marker),
            Some(marker) => Ownership::OtherHypervisor(marker),
            None => Ownership::Foreign,
        }
    }

    /// Our marker, when the object is ours.
    pub fn ours(&self) -> Option<&Marker> {
        match self {
            Ownership::Ours(marker) => Some(marker),
            _ => None,
        }
    }

    /// Says whose it is, for error messages about objects that are not ours.
    pub fn describe(&self) -> String {
        match self {
            Ownership::Ours(m) => format!("made by this hypervisor for cluster `{}`", m.cluster),
            Ownership::OtherHypervisor(m) => {
                format!("made by xrdtest hypervisor `{}` for cluster `{}`", m.hypervisor, m.cluster)
            }
            Ownership::Foreign => "not made by xrdtest".into(),
        }
    }
}

/// A marker could not be read because the XML libvirt gave is not XML.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the XML libvirt returned: {0}")]
pub struct MarkerError(String);

/// The `<xrdtest:owner .../>` element that goes inside a domain's `<metadata>`.
pub fn domain_marker_element(marker: &Marker) -> String {
    format!(
        "<xrdtest:owner xmlns:xrdtest=\"{NAMESPACE}\" hypervisor=\"{}\" cluster=\"{}\" volumes=\"{}\"/>",
        escape(&marker.hypervisor),
        escape(&marker.cluster),
        escape(&marker.volumes.join(" "))
    )
}

/// The value of a network's `xrdtest-owner` TXT record. Hypervisor and cluster names
/// cannot hold spaces (both are checked names), so the value splits back unambiguously.
pub fn network_txt_value(hypervisor: &str, cluster: &str) -> String {
    format!("hypervisor={hypervisor} cluster={cluster}")
}

/// The marker in a domain's XML (from `virDomainGetXMLDesc`), found by its namespace
/// whatever prefix libvirt writes it with.
pub fn read_domain_marker(domain_xml: &str) -> Result<Option<Marker>, MarkerError> {
    let document = roxmltree::Document::parse(domain_xml).map_err(|e| MarkerError(e.to_string()))?;
    let Some(metadata) = document.root_element().children().find(|n| n.has_tag_name("metadata")) else {
        return Ok(None);
    };
    let Some(owner) = metadata.children().find(|n| n.has_tag_name((NAMESPACE, "owner"))) else {
        return Ok(None);
    };
    let (Some(hypervisor), Some(cluster)) = (owner.attribute("hypervisor"), owner.attribute("cluster")) else {
        return Ok(None);
    };
    let volumes = owner.attribute("volumes").unwrap_or("").split_whitespace().map(str::to_string).collect();
    Ok(Some(Marker { hypervisor: hypervisor.to_string(), cluster: cluster.to_string(), volumes }))
}

/// The marker in a network's XML: its `xrdtest-owner` TXT record.
pub fn read_network_marker(network_xml: &str) -> Result<Option<Marker>, MarkerError> {
    let document = roxmltree::Document::parse(network_xml).map_err(|e| MarkerError(e.to_string()))?;
    let Some(dns) = document.root_element().children().find(|n| n.has_tag_name("dns")) else {
        return Ok(None);
    };
    let Some(value) = dns
        .children()
        .filter(|n| n.has_tag_name("txt") && n.attribute("name") == Some(TXT_NAME))
        .find_map(|n| n.attribute("value"))
    else {
        return Ok(None);
    };
    let mut hypervisor = None;
    let mut cluster = None;
    for pair in value.split_whitespace() {
        match pair.split_once('=') {
            Some(("hypervisor", name)) => hypervisor = Some(name),
            Some(("cluster", name)) => cluster = Some(name),
            _ => {}
        }
    }
    Ok(match (hypervisor, cluster) {
        (Some(hypervisor), Some(cluster)) => {
            Some(Marker { hypervisor: hypervisor.to_string(), cluster: cluster.to_string(), volumes: Vec::new() })
        }
        _ => None,
    })
}

/// Start of the names of one cluster's volumes.
pub fn cluster_volume_prefix(cluster: &str) -> String {
    format!("{VOLUME_PREFIX}{cluster}.")
}

/// The copy-on-write overlay a host boots from.
pub fn boot_volume_name(cluster: &str, host_short_name: &str) -> String {
    format!("{VOLUME_PREFIX}{cluster}.{host_short_name}.boot.qcow2")
}

/// An extra disk of a host.
pub fn disk_volume_name(cluster: &str, host_short_name: &str, disk: &str) -> String {
    format!("{VOLUME_PREFIX}{cluster}.{host_short_name}.{disk}.qcow2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> Marker {
        Marker { hypervisor: "hv1".into(), cluster: "pair".into(), volumes: vec!["a.qcow2".into(), "b.qcow2".into()] }
    }

    #[test]
    fn domain_marker_round_trip_with_any_prefix() {
        let xml = format!("<domain><name>x</name><metadata>{}</metadata></domain>", domain_marker_element(&marker()));
        assert_eq!(read_domain_marker(&xml).unwrap(), Some(marker()));
        // Another prefix for the same namespace is the same marker ...
        let other_prefix = xml.replace("xrdtest:", "o:").replace("xmlns:xrdtest", "xmlns:o");
        assert_eq!(read_domain_marker(&other_prefix).unwrap(), Some(marker()));
        // ... and the same local name in another namespace is not.
        let other_ns = xml.replace(NAMESPACE, "https://example.org/owner");
        assert_eq!(read_domain_marker(&other_ns).unwrap(), None);
        assert_eq!(read_domain_marker("<domain><name>x</name></domain>").unwrap(), None);
        assert!(read_domain_marker("<domain>").is_err());
    }

    #[test]
    fn marker_values_are_escaped() {
        let odd = Marker { hypervisor: "a\"<b>&'".into(), cluster: "c".into(), volumes: vec![] };
        let xml = format!("<domain><metadata>{}</metadata></domain>", domain_marker_element(&odd));
        assert_eq!(read_domain_marker(&xml).unwrap(), Some(odd));
    }

    #[test]
    fn network_marker_round_trip() {
        let value = network_txt_value("hv1", "pair");
        assert_eq!(value, "hypervisor=hv1 cluster=pair");
        let xml = format!(
            "<network><name>n</name><dns><txt name='other' value='x'/><txt name='{TXT_NAME}' value='{value}'/></dns></network>"
        );
        let read = read_network_marker(&xml).unwrap().unwrap();
        assert_eq!((read.hypervisor.as_str(), read.cluster.as_str()), ("hv1", "pair"));
        assert_eq!(read_network_marker("<network><name>n</name><dns/></network>").unwrap(), None);
        let partial = format!("<network><dns><txt name='{TXT_NAME}' value='hypervisor=hv1'/></dns></network>");
        assert_eq!(read_network_marker(&partial).unwrap(), None);
    }

    #[test]
    fn ownership() {
        assert!(matches!(Ownership::of(Some(marker()), "hv1"), Ownership::Ours(_)));
        assert!(matches!(Ownership::of(Some(marker()), "hv2"), Ownership::OtherHypervisor(_)));
        assert_eq!(Ownership::of(None, "hv1"), Ownership::Foreign);
        assert!(Ownership::of(Some(marker()), "hv2").describe().contains("`hv1`"));
    }

    #[test]
    fn volume_names() {
        assert_eq!(boot_volume_name("pair", "server"), "xrdtest.pair.server.boot.qcow2");
        assert_eq!(disk_volume_name("pair", "server", "data"), "xrdtest.pair.server.data.qcow2");
        assert!(boot_volume_name("pair", "server").starts_with(&cluster_volume_prefix("pair")));
    }
}
