//! `@tag@` expansion in scripts and paths.

use std::collections::BTreeMap;

use crate::cluster::Disk;

/// Tag names the framework defines itself; a suite's `[tags]` may not redefine them.
pub const BUILTIN_TAGS: [&str; 9] = [
    "slavename",
    "port",
    "proto",
    "diskmounts",
    "roles",
    // The session's credentials for the service under test (paths on the slave).
    "hostcert",
    "hostkey",
    "cacert",
    "session_secret_file",
];

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
///
/// The guest names disks in the order it finds them, which need not be the `device` the
/// definition gives (a kernel-booted host has no boot disk, so its first extra disk is
/// `vda`). The hypervisor gives each disk its name as serial number, so the commands look
/// the disk up by serial in `/sys/block/*/serial` and fall back to `device`.
pub fn diskmount_commands(disks: &[Disk]) -> String {
    let mut out = String::new();
    for disk in disks {
        let device = format!("/dev/{}", disk.device);
        let mount_point = &disk.mount_point;
        let serial = &disk.name;
        out.push_str(&format!(
            "if ! mountpoint -q '{mount_point}'; then xrdtest_dev='{device}'; \
             for xrdtest_s in /sys/block/*/serial; do if [ \"$(cat \"$xrdtest_s\" 2>/dev/null)\" = '{serial}' ]; then \
             xrdtest_dev=\"/dev/$(basename \"$(dirname \"$xrdtest_s\")\")\"; fi; done; \
             mkfs.ext4 -q -F \"$xrdtest_dev\" && mkdir -p '{mount_point}' && \
             mount -t ext4 -o user_xattr \"$xrdtest_dev\" '{mount_point}'; fi\n"
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
        assert!(cmds.contains("xrdtest_dev='/dev/vdb'"), "{cmds}");
        assert!(cmds.contains("= 'disk1' ]"), "{cmds}");
        assert!(cmds.contains("mkfs.ext4 -q -F \"$xrdtest_dev\""), "{cmds}");
        assert!(cmds.contains("-o user_xattr \"$xrdtest_dev\" '/data'"), "{cmds}");
        assert_eq!(diskmount_commands(&[]), "");
    }

    /// The commands run under `bash -e` and find a disk by its serial: with a fake
    /// `/sys/block` they pick the device whose serial is the disk's name.
    #[test]
    fn diskmounts_shell_is_valid_and_survives_set_e() {
        let disks =
            vec![Disk { name: "data".into(), size_bytes: 1 << 20, device: "vdb".into(), mount_point: "/x".into() }];
        let script = diskmount_commands(&disks)
            .replace("/sys/block", "$FAKE_SYS")
            .replace("mountpoint -q", "false")
            .replace("mkfs.ext4 -q -F", "echo mkfs")
            .replace("mkdir -p", "echo mkdir")
            .replace("mount -t ext4", "echo mount");
        let dir = tempfile::tempdir().expect("temp dir");
        for (device, serial) in [("vda", "data"), ("vdc", "other")] {
            std::fs::create_dir_all(dir.path().join(device)).expect("fake device");
            std::fs::write(dir.path().join(device).join("serial"), serial).expect("fake serial");
        }
        let output = std::process::Command::new("bash")
            .args(["-e", "-c", &script])
            .env("FAKE_SYS", dir.path())
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("mkfs /dev/vda"), "{stdout}");
        assert!(stdout.contains("mount -o user_xattr /dev/vda /x"), "{stdout}");
    }
}
