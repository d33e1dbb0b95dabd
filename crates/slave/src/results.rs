//! The results file of a stage: the script (through `result` and `check` of `functions.sh`,
//! or any program writing lines to `$XRDTEST_RESULTS`) reports values and checks in it; the
//! slave reads it once the script has exited and sends what is valid with the stage's result.
//! The file's rules are in [`xrdtest_model::results`].

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use xrdtest_model::results::{parse_file, MAX_FILE_BYTES};
use xrdtest_model::StageValues;

/// Where stage `stage_id` writes its results: beside its script in the work folder.
pub fn path_for(work_dir: &Path, stage_id: u64) -> PathBuf {
    work_dir.join(format!(".xrdtest-results-{stage_id}"))
}

/// Creates the file empty (a leftover of an earlier run of the same id is emptied).
pub fn create(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map(drop)
}

/// Reads and removes the file: the values, and what was wrong with it, line by line, as lines
/// of stage output. A missing file (the script removed it) reports nothing.
pub fn collect(path: &Path) -> (StageValues, Vec<String>) {
    let read = (|| {
        // Not following a symlink, and not blocking on a FIFO: a script may have put either
        // in the file's place; only a regular file is read.
        let file =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("it is not a regular file"));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        Ok::<_, io::Error>(bytes)
    })();
    let _ = std::fs::remove_file(path);
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (StageValues::default(), Vec::new()),
        Err(e) => return (StageValues::default(), vec![format!("[xrdtest: cannot read the results file: {e}]")]),
    };
    let truncated = bytes.len() as u64 > MAX_FILE_BYTES;
    let kept = &bytes[..bytes.len().min(MAX_FILE_BYTES as usize)];
    let (values, problems) = parse_file(&String::from_utf8_lossy(kept), truncated);
    let lines = problems.into_iter().map(|problem| format!("[xrdtest: results file: {problem}]")).collect();
    (values, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_once_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), 7);
        create(&path).unwrap();
        std::fs::write(&path, "result a 1 ms\nbogus\ncheck ok pass\n").unwrap();
        let (values, problems) = collect(&path);
        assert_eq!(values.results.len(), 1);
        assert_eq!(values.checks.len(), 1);
        assert_eq!(problems, ["[xrdtest: results file: line 2: `bogus` is neither `result` nor `check`]"]);
        assert!(!path.exists());
        assert_eq!(collect(&path), (StageValues::default(), Vec::new()));
    }

    #[test]
    fn a_fifo_or_a_symlink_in_its_place_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = path_for(dir.path(), 9);
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let (values, problems) = collect(&fifo);
        assert!(values.is_empty());
        assert!(problems[0].contains("not a regular file"), "{problems:?}");
        assert!(!fifo.exists());

        let secret = dir.path().join("secret");
        std::fs::write(&secret, "result leaked 1\n").unwrap();
        let link = path_for(dir.path(), 10);
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let (values, problems) = collect(&link);
        assert!(values.is_empty(), "a symlink is not followed");
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn a_huge_file_is_read_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), 8);
        let line = "result r 1\n";
        std::fs::write(&path, line.repeat((MAX_FILE_BYTES as usize / line.len()) + 10)).unwrap();
        let (values, problems) = collect(&path);
        assert_eq!(values.results.len(), 1);
        assert!(problems.last().unwrap().contains("larger than"), "{problems:?}");
    }
}
