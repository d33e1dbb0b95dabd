//! The files the master gives a slave for one session (its credentials for the service
//! under test): written into the session's work folder, under `credentials/`, before the
//! stage that brought them runs, and removed when the session ends. The tags `@hostcert@`,
//! `@hostkey@`, `@cacert@` and `@session_secret_file@` are their paths.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use xrdtest_proto::SessionFile;

/// The folder under a session's work folder.
pub const FOLDER: &str = "credentials";

/// Tag name → file name, as the master names the files.
const TAGS: [(&str, &str); 4] = [
    ("hostcert", "hostcert.pem"),
    ("hostkey", "hostkey.pem"),
    ("cacert", "cacert.pem"),
    ("session_secret_file", "session_secret"),
];

pub fn folder(session_work_dir: &Path) -> PathBuf {
    session_work_dir.join(FOLDER)
}

/// Adds the credential tags (paths in `session_work_dir`) to `tags`.
pub fn add_tags(tags: &mut BTreeMap<String, String>, session_work_dir: &Path) {
    let folder = folder(session_work_dir);
    for (tag, file) in TAGS {
        tags.insert(tag.to_string(), folder.join(file).display().to_string());
    }
}

/// Writes `files` into the session's credentials folder (each replaced whole, with its
/// mode from the start, so a key is never readable by others even for a moment).
pub fn write(session_work_dir: &Path, files: &[SessionFile]) -> Result<(), String> {
    if files.is_empty() {
        return Ok(());
    }
    let folder = folder(session_work_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&folder)
        .map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    for file in files {
        if file.name.is_empty() || file.name.contains(['/', '\0']) || file.name == "." || file.name == ".." {
            return Err(format!("the master sent a session file with an unusable name {:?}", file.name));
        }
        let path = folder.join(&file.name);
        let temporary = folder.join(format!(".{}.tmp", file.name));
        let _ = std::fs::remove_file(&temporary);
        let mode = file.mode & 0o777;
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .and_then(|mut f| {
                f.write_all(&file.contents)?;
                // The umask may have taken bits the master asked for (a certificate's 0644).
                f.set_permissions(std::fs::Permissions::from_mode(mode))
            })
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(format!("cannot write {}: {e}", path.display()));
        }
    }
    Ok(())
}

/// Removes the session's credentials (nothing of them outlives the session, even when the
/// work folder is kept for inspection).
pub fn remove(session_work_dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_dir_all(folder(session_work_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn file(name: &str, mode: u32, text: &str) -> SessionFile {
        SessionFile { name: name.into(), mode, contents: text.as_bytes().to_vec() }
    }

    #[test]
    fn files_land_with_their_modes_under_the_tags_paths_and_go_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = dir.path().join("sessions/7");
        write(&session, &[file("hostkey.pem", 0o600, "key\n"), file("cacert.pem", 0o644, "ca\n")]).expect("write");
        let mut tags = BTreeMap::new();
        add_tags(&mut tags, &session);
        assert_eq!(std::fs::read_to_string(&tags["hostkey"]).expect("key"), "key\n");
        assert_eq!(std::fs::metadata(&tags["hostkey"]).expect("meta").mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&tags["cacert"]).expect("meta").mode() & 0o777, 0o644);
        // Sent again on a new connection: replaced, not refused.
        write(&session, &[file("hostkey.pem", 0o600, "key2\n")]).expect("again");
        assert_eq!(std::fs::read_to_string(&tags["hostkey"]).expect("key"), "key2\n");
        assert!(remove(&session).expect("remove"));
        assert!(!Path::new(&tags["hostkey"]).exists());
        assert!(!remove(&session).expect("nothing left"));
    }

    #[test]
    fn a_name_with_a_folder_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["../x", "a/b", "", ".."] {
            let err = write(dir.path(), &[file(name, 0o600, "x")]).expect_err(name);
            assert!(err.contains("unusable name"), "{err}");
        }
        assert!(!dir.path().join("x").exists());
    }
}
