//! Collects the tails of the log files a suite asks for after a stage.

use std::io::{self, Read, Seek, SeekFrom};

use xrdtest_proto::message::LogFile;

/// Reads at most the last `limit_bytes` of each file in `paths` (already tag-expanded).
///
/// The read starts at the tail (the file is never read whole); `truncated_bytes` says how
/// many bytes were cut from the front. A file that cannot be read (missing, unreadable, a
/// directory, not a regular file such as a FIFO that would block) gets `error` set to the OS
/// error text and no content. Never panics.
pub async fn collect_logs(stage_id: u64, paths: &[String], limit_bytes: u64) -> Vec<LogFile> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let p = path.clone();
        let result = tokio::task::spawn_blocking(move || read_tail(&p, limit_bytes))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("reading the log failed: {e}"))));
        let log = match result {
            Ok((content, truncated_bytes)) => {
                LogFile { stage_id, path: path.clone(), content, truncated_bytes, error: None }
            }
            Err(e) => LogFile {
                stage_id,
                path: path.clone(),
                content: Vec::new(),
                truncated_bytes: 0,
                error: Some(e.to_string()),
            },
        };
        out.push(log);
    }
    out
}

/// The last `limit` bytes of the file and the number of bytes before them.
fn read_tail(path: &str, limit: u64) -> io::Result<(Vec<u8>, u64)> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut file = std::fs::File::open(path)?;
    // The length of the open file, in case it changed since the metadata call.
    let len = file.metadata()?.len();
    let start = len.saturating_sub(limit);
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    // The file may grow while it is read: never take more than the limit.
    let mut content = Vec::with_capacity(limit.min(len) as usize);
    file.take(limit).read_to_end(&mut content)?;
    Ok((content, start))
}
