//! `@tag@` expansion in scripts and paths.

use std::collections::BTreeMap;

use crate::cluster::Disk;

/// Tag names the framework defines itself; a suite's `[tags]` may not redefine them.
pub const BUILTIN_TAGS: [&str; 4] = ["slavename", "port", "proto", "diskmounts"];

/// Whether `name` can be a tag: ASCII letters, digits and `_`, not empty.
pub fn is_tag_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Replaces every `@name@` whose name is in `tags` with its value. An unknown `@word@`, or
/// an `@` that opens no tag, is left exactly as it is. Values are not expanded again.
pub fn expand_tags(text: &str, tags: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('@') {
        out.push_str(&rest[..open]);
        let after_open = &rest[open + 1..];
        match after_open.find('@') {
            Some(close) if is_tag_name(&after_open[..close]) => {
                let name = &after_open[..close];
                match tags.get(name) {
                    Some(value) => {
                        out.push_str(value);
                        rest = &after_open[close + 1..];
                    }
                    None => {
                        // Keep the `@name` and look again from the closing `@`: it may open a tag.
                        out.push('@');
                        out.push_str(name);
                        rest = &after_open[close..];
                    }
                }
            }
            // No closing `@`, or not a tag name between them (spaces, dots...): this `@` is
            // plain text, and the next one may still open a tag.
            _ => {
                out.push('@');
                rest = after_open;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The shell commands `@diskmounts@` expands to on a host: format each extra disk as ext4
/// and mount it with `user_xattr`, as XrdTest did. Idempotent: a disk that is already
/// mounted is left alone, so a rerun of suite init does not wipe data mid-suite.
pub fn diskmount_commands(disks: &[Disk]) -> String {
    let mut out = String::new();
    for disk in disks {
        let device = format!("/dev/{}", disk.device);
        let mount_point = &disk.mount_point;
        out.push_str(&format!(
            "if ! mountpoint -q '{mount_point}'; then mkfs.ext4 -q -F '{device}' && mkdir -p '{mount_point}' && mount -t ext4 -o user_xattr '{device}' '{mount_point}'; fi\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> BTreeMap<String, String> {
        [("slavename", "ds1.xrd.test"), ("port", "20000"), ("datadir", "/data")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_known_and_keeps_unknown() {
        let t = tags();
        assert_eq!(expand_tags("log @slavename@:@port@", &t), "log ds1.xrd.test:20000");
        assert_eq!(expand_tags("@unknown@ stays", &t), "@unknown@ stays");
        assert_eq!(expand_tags("mail a@b.org", &t), "mail a@b.org");
        assert_eq!(expand_tags("x@unknown@datadir@", &t), "x@unknown/data");
        assert_eq!(expand_tags("@ @datadir@ @", &t), "@ /data @");
        assert_eq!(expand_tags("trailing @", &t), "trailing @");
        assert_eq!(expand_tags("@@datadir@", &t), "@/data");
        assert_eq!(expand_tags("no tags", &t), "no tags");
    }

    #[test]
    fn values_are_not_expanded_again() {
        let mut t = tags();
        t.insert("loop".into(), "@loop@".into());
        assert_eq!(expand_tags("@loop@", &t), "@loop@");
    }

    #[test]
    fn diskmounts() {
        let disks =
            vec![Disk { name: "disk1".into(), size_bytes: 1 << 30, device: "vdb".into(), mount_point: "/data".into() }];
        let cmds = diskmount_commands(&disks);
        assert!(cmds.contains("mkfs.ext4 -q -F '/dev/vdb'"));
        assert!(cmds.contains("-o user_xattr '/dev/vdb' '/data'"));
        assert_eq!(diskmount_commands(&[]), "");
    }
}
