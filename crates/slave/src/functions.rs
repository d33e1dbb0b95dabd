//! The shell library stage scripts can source (XrdTest's `functions.sh`): `log`, `stamp`,
//! `assert_fail`, `result`, `check`. The slave installs it and passes its path in
//! `XRDTEST_FUNCTIONS`, so a script uses it with `source "$XRDTEST_FUNCTIONS"`.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The library's text.
pub const FUNCTIONS_SH: &str = include_str!("functions.sh");

/// Writes [`FUNCTIONS_SH`] as `functions.sh` (mode 0644) in `dir`, creating `dir` if needed,
/// and returns its path. The file is replaced atomically, so a script sourcing it at the
/// same moment sees either the old or the new text.
pub fn install(dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("functions.sh");
    let tmp = dir.join(format!(".functions.sh.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&tmp)?;
        f.write_all(FUNCTIONS_SH.as_bytes())?;
        // The mode given at creation is subject to the umask; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| path)
}
