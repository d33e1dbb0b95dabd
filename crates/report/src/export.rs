//! The export of a session: a folder (shipped as a .tar.gz) a person can keep, mail or
//! attach to a bug, that opens with no server (like ducktape's results folder):
//!
//! ```text
//! xrdtest-session-<id>/
//!   report.html  report.json  junit.xml  results.csv  export-notes.txt
//!   stages/<NNN>-<stage label>/<slave>/output.txt
//!   stages/<NNN>-<stage label>/<slave>/logs/<log path>
//! ```
//!
//! `NNN` is the stage's place in the session from 001; labels, slaves and log paths are
//! made safe as file names ([`crate::format::safe_name`]). [`files`] lists the folder, a pure
//! function of the session; [`write_tar_gz`] writes it a file at a time, making each report
//! as its entry is written and reading output and logs through an [`ExportSource`]. Output
//! and logs are capped ([`Limits`]): a cut file ends with a line saying so, and
//! `export-notes.txt` lists what was cut or unreadable.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use xrdtest_model::{LogFile, OutputLine, SessionRecord, StageId};

use crate::data::SessionData;
use crate::format::safe_name;

/// The notes file every export has: its limits, and what was cut or could not be read.
pub const NOTES_FILE: &str = "export-notes.txt";

/// Where each stage run's files lie in the export folder, by the run's place in the record.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// (stage index, run index) → the run's folder.
    runs: BTreeMap<(usize, usize), String>,
    /// (stage index, run index, log index in `StageRun::logs`) → the log's file.
    logs: BTreeMap<(usize, usize, usize), String>,
}

impl Layout {
    /// The layout of a session's runs that were sent to their slave (others have no files).
    pub fn of(record: &SessionRecord) -> Layout {
        let mut layout = Layout::default();
        for (stage_index, stage) in record.stages.iter().enumerate() {
            let stage_dir = format!("stages/{:03}-{}", stage_index + 1, safe_name(&stage.label()));
            let mut slaves = BTreeSet::new();
            for (run_index, run) in stage.runs.iter().enumerate() {
                if run.stage_id == 0 {
                    continue;
                }
                let run_dir = format!("{stage_dir}/{}", unique(&mut slaves, safe_name(&run.slave)));
                let mut logs = BTreeSet::new();
                for (log_index, path) in run.logs.iter().enumerate() {
                    let file = format!("{run_dir}/logs/{}", unique(&mut logs, safe_name(path)));
                    layout.logs.insert((stage_index, run_index, log_index), file);
                }
                layout.runs.insert((stage_index, run_index), run_dir);
            }
        }
        layout
    }

    /// The path of a run's `output.txt`, if the run has files.
    pub fn output(&self, stage: usize, run: usize) -> Option<String> {
        self.runs.get(&(stage, run)).map(|dir| format!("{dir}/output.txt"))
    }

    /// The path of a run's collected log (by its place in `StageRun::logs`).
    pub fn log(&self, stage: usize, run: usize, log: usize) -> Option<&str> {
        self.logs.get(&(stage, run, log)).map(String::as_str)
    }
}

/// `name`, or `name-2`, `name-3`... when a folder already has it (two slaves or logs whose
/// names differ only in characters made safe).
fn unique(taken: &mut BTreeSet<String>, name: String) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    candidate
}

/// A report of the export folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Html,
    Json,
    Junit,
    Csv,
}

impl Report {
    /// This report of `data`.
    pub fn make(self, data: &SessionData) -> String {
        match self {
            Report::Html => crate::html::html(data),
            Report::Json => crate::json::json(data),
            Report::Junit => crate::junit::junit(data),
            Report::Csv => crate::csv::csv(data),
        }
    }
}

/// What a file of the export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A report, made when its file is written.
    Report(Report),
    /// A stage run's whole output, read from the store.
    Output { stage_id: StageId },
    /// A collected log, read from the store.
    Log { stage_id: StageId, path: String },
    /// [`NOTES_FILE`], written last, from what writing the others found.
    Notes,
}

/// One file of the export folder, its path relative to the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub path: String,
    pub content: Content,
}

/// The name of the export's folder (and of its archive, with `.tar.gz`).
pub fn folder_name(record: &SessionRecord) -> String {
    format!("xrdtest-session-{}", record.id)
}

/// Every file of a session's export folder: the four reports, then per stage run its
/// output and logs, then the notes.
pub fn files(data: &SessionData) -> Vec<ExportFile> {
    let record = &data.record;
    let report = |path: &str, report| ExportFile { path: path.to_string(), content: Content::Report(report) };
    let mut files = vec![
        report("report.html", Report::Html),
        report("report.json", Report::Json),
        report("junit.xml", Report::Junit),
        report("results.csv", Report::Csv),
    ];
    let layout = Layout::of(record);
    for (stage_index, stage) in record.stages.iter().enumerate() {
        for (run_index, run) in stage.runs.iter().enumerate() {
            let Some(output) = layout.output(stage_index, run_index) else { continue };
            files.push(ExportFile { path: output, content: Content::Output { stage_id: run.stage_id } });
            for (log_index, path) in run.logs.iter().enumerate() {
                if let Some(file) = layout.log(stage_index, run_index, log_index) {
                    files.push(ExportFile {
                        path: file.to_string(),
                        content: Content::Log { stage_id: run.stage_id, path: path.clone() },
                    });
                }
            }
        }
    }
    files.push(ExportFile { path: NOTES_FILE.into(), content: Content::Notes });
    files
}

/// Where the export reads what the record does not hold: the store, behind the master's
/// handle. Errors are sentences; the export notes them and goes on.
pub trait ExportSource {
    /// A page of a stage's output from chunk `from` on: its lines and the chunk to ask for
    /// next. `next` no greater than `from`: the end.
    fn output(&mut self, stage_id: StageId, from: u64) -> Result<(Vec<OutputLine>, u64), String>;
    /// The log collected at `path` after a stage, if it is stored.
    fn log(&mut self, stage_id: StageId, path: &str) -> Result<Option<LogFile>, String>;
}

/// How much stage output and log content one export holds.
///
/// In memory, [`write_tar_gz`] holds the [`SessionData`] and one file of the folder at a
/// time, dropped once its tar entry is written: a report (made for its entry), a stage's
/// output (at most `file_bytes`, and the page of it the source read last), or a log as the
/// source gives it (bounded by the stage's log limit when it was collected, then cut to the
/// budget). Besides: what the source keeps between calls, and the gzip encoder's and the
/// writer's buffers. `total_bytes` bounds the archive, not memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All output and logs together.
    pub total_bytes: u64,
    /// One output or log file.
    pub file_bytes: u64,
}

impl Default for Limits {
    /// 256 MiB in all, 32 MiB a file.
    fn default() -> Limits {
        Limits { total_bytes: 256 << 20, file_bytes: 32 << 20 }
    }
}

/// What writing an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub files: usize,
    /// Output and log bytes written.
    pub bytes: u64,
    /// Files cut at a limit, with why.
    pub cut: Vec<String>,
    /// What could not be read, or was already cut when collected.
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export: cannot write the archive: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a session's export folder as a gzip-compressed tar archive to `out`, every path
/// under [`folder_name`]. Only a failing `out` stops it; what cannot be read is noted.
pub fn write_tar_gz<W: Write>(
    data: &SessionData,
    source: &mut dyn ExportSource,
    limits: Limits,
    out: W,
) -> Result<Written, ExportError> {
    let root = folder_name(&data.record);
    let mtime = data.record.ended_ms.or(data.record.started_ms).unwrap_or(data.record.created_ms) / 1000;
    let mut archive = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    let mut written = Written::default();
    for file in files(data) {
        // This file's bytes, dropped when its entry is written.
        let bytes = match file.content {
            Content::Report(report) => report.make(data).into_bytes(),
            Content::Output { stage_id } => read_output(stage_id, &file.path, source, limits, &mut written),
            Content::Log { stage_id, path } => read_log(stage_id, &path, &file.path, source, limits, &mut written),
            Content::Notes => notes(limits, &written).into_bytes(),
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        archive.append_data(&mut header, format!("{root}/{}", file.path), bytes.as_slice())?;
        written.files += 1;
    }
    archive.into_inner()?.finish()?;
    Ok(written)
}

/// How many bytes the next output or log file may have.
fn budget(limits: Limits, written: &Written) -> u64 {
    limits.file_bytes.min(limits.total_bytes.saturating_sub(written.bytes))
}

fn cut_line(limits: Limits) -> String {
    format!(
        "[xrdtest export: cut here: an export holds at most {} MiB per file and {} MiB in all; the master has the rest]\n",
        limits.file_bytes >> 20,
        limits.total_bytes >> 20
    )
}

fn read_output(
    stage_id: StageId,
    file: &str,
    source: &mut dyn ExportSource,
    limits: Limits,
    written: &mut Written,
) -> Vec<u8> {
    let budget = budget(limits, written);
    let mut bytes = Vec::new();
    let mut from = 0;
    let mut cut = false;
    'pages: loop {
        let (lines, next) = match source.output(stage_id, from) {
            Ok(page) => page,
            Err(why) => {
                written.problems.push(format!("{file}: could not be read to its end: {why}"));
                bytes.extend_from_slice(format!("[xrdtest export: the rest could not be read: {why}]\n").as_bytes());
                break;
            }
        };
        if next <= from {
            break;
        }
        for line in lines {
            if (bytes.len() + line.text.len() + 1) as u64 > budget {
                cut = true;
                break 'pages;
            }
            bytes.extend_from_slice(line.text.as_bytes());
            bytes.push(b'\n');
        }
        from = next;
    }
    written.bytes += bytes.len() as u64;
    if cut {
        written.cut.push(format!("{file}: cut after {} bytes", bytes.len()));
        let line = cut_line(limits);
        // Exactly: a full file's buffer is not doubled for one more line.
        bytes.reserve_exact(line.len());
        bytes.extend_from_slice(line.as_bytes());
    }
    bytes
}

fn read_log(
    stage_id: StageId,
    path: &str,
    file: &str,
    source: &mut dyn ExportSource,
    limits: Limits,
    written: &mut Written,
) -> Vec<u8> {
    let log = match source.log(stage_id, path) {
        Ok(Some(log)) => log,
        Ok(None) => {
            written.problems.push(format!("{file}: {path} is not stored"));
            return format!("[xrdtest export: the log {path} is not stored]\n").into_bytes();
        }
        Err(why) => {
            written.problems.push(format!("{file}: could not be read: {why}"));
            return format!("[xrdtest export: the log {path} could not be read: {why}]\n").into_bytes();
        }
    };
    if let Some(error) = &log.error {
        written.problems.push(format!("{file}: {path} could not be collected: {error}"));
        return format!("[xrdtest: the log {path} could not be collected: {error}]\n").into_bytes();
    }
    if log.truncated_bytes > 0 {
        written.problems.push(format!(
            "{file}: the first {} bytes of {path} were left out when it was collected (the stage's log limit)",
            log.truncated_bytes
        ));
    }
    let budget = budget(limits, written) as usize;
    let mut bytes = log.content;
    let cut = bytes.len() > budget;
    bytes.truncate(budget);
    written.bytes += bytes.len() as u64;
    if cut {
        written.cut.push(format!("{file}: cut after {} bytes", bytes.len()));
        bytes.extend_from_slice(format!("\n{}", cut_line(limits)).as_bytes());
    }
    bytes
}

fn notes(limits: Limits, written: &Written) -> String {
    let mut text = format!(
        "This export holds at most {} MiB of stage output and logs in all, {} MiB per file.\n",
        limits.total_bytes >> 20,
        limits.file_bytes >> 20
    );
    if written.cut.is_empty() && written.problems.is_empty() {
        text.push_str("Nothing was cut or left out.\n");
    }
    if !written.cut.is_empty() {
        text.push_str("\nCut at a limit (each ends with a line saying so):\n");
        for line in &written.cut {
            text.push_str(&format!("- {line}\n"));
        }
    }
    if !written.problems.is_empty() {
        text.push_str("\nNot complete:\n");
        for line in &written.problems {
            text.push_str(&format!("- {line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;
    use std::io::Read;

    /// Output and logs of a session held in memory.
    #[derive(Debug, Clone, Default)]
    struct MemorySource {
        /// Per stage id, its output in pages (chunks).
        output: BTreeMap<StageId, Vec<Vec<OutputLine>>>,
        logs: Vec<LogFile>,
    }

    impl ExportSource for MemorySource {
        fn output(&mut self, stage_id: StageId, from: u64) -> Result<(Vec<OutputLine>, u64), String> {
            let pages = self.output.get(&stage_id).map(Vec::as_slice).unwrap_or(&[]);
            Ok(match pages.get(from as usize) {
                Some(page) => (page.clone(), from + 1),
                None => (Vec::new(), from),
            })
        }

        fn log(&mut self, stage_id: StageId, path: &str) -> Result<Option<LogFile>, String> {
            Ok(self.logs.iter().find(|log| log.stage_id == stage_id && log.path == path).cloned())
        }
    }

    fn unpack(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut files = BTreeMap::new();
        for entry in archive.entries().expect("a tar archive") {
            let mut entry = entry.expect("an entry");
            let path = entry.path().expect("a path").display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("its content");
            files.insert(path, content);
        }
        files
    }

    fn lines(texts: &[&str]) -> Vec<OutputLine> {
        texts.iter().map(|t| OutputLine { unix_ms: 0, text: t.to_string() }).collect()
    }

    fn with_logs() -> (SessionData, MemorySource) {
        let mut data = testdata::mixed();
        data.record.stages[2].runs[1].logs = vec!["/var/log/app.log".into(), "/var/log/missing.log".into()];
        let mut source = MemorySource::default();
        source.output.insert(6, vec![lines(&["one", "two"]), lines(&["three"])]);
        source.logs.push(LogFile {
            stage_id: 6,
            path: "/var/log/app.log".into(),
            content: b"log line\n".to_vec(),
            truncated_bytes: 0,
            error: None,
        });
        source.logs.push(LogFile {
            stage_id: 6,
            path: "/var/log/missing.log".into(),
            content: Vec::new(),
            truncated_bytes: 0,
            error: Some("No such file or directory".into()),
        });
        (data, source)
    }

    #[test]
    fn the_folder_lists_reports_then_each_run_then_notes() {
        let (data, _) = with_logs();
        let files = files(&data);
        let reports: Vec<&Content> = files.iter().take(4).map(|f| &f.content).collect();
        let made_later = [Report::Html, Report::Json, Report::Junit, Report::Csv].map(Content::Report);
        assert_eq!(reports, made_later.iter().collect::<Vec<_>>());
        let paths: Vec<String> = files.into_iter().map(|f| f.path).collect();
        assert_eq!(paths[..4], ["report.html", "report.json", "junit.xml", "results.csv"]);
        assert_eq!(paths[4], "stages/001-suite_init/s1/output.txt");
        assert!(paths.contains(&"stages/003-case_run_broken/s2/output.txt".to_string()));
        assert!(paths.contains(&"stages/003-case_run_broken/s2/logs/var_log_app.log".to_string()));
        assert!(paths.contains(&"stages/005-case_run_wobbly_attempt_2/s1/output.txt".to_string()));
        // Skipped runs were never sent: no files.
        assert!(!paths.iter().any(|p| p.contains("later")), "{paths:?}");
        assert_eq!(paths.last().map(String::as_str), Some(NOTES_FILE));
        let unique: BTreeSet<&String> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len());
    }

    #[test]
    fn names_that_become_equal_stay_apart() {
        let mut data = testdata::mixed();
        data.record.stages[1].runs[1].slave = "s:1".into();
        data.record.stages[1].runs[0].slave = "s/1".into();
        let layout = Layout::of(&data.record);
        assert_eq!(layout.output(1, 0).as_deref(), Some("stages/002-case_run_measure/s_1/output.txt"));
        assert_eq!(layout.output(1, 1).as_deref(), Some("stages/002-case_run_measure/s_1-2/output.txt"));
    }

    #[test]
    fn the_archive_holds_every_file_under_one_folder() {
        let (data, mut source) = with_logs();
        let mut bytes = Vec::new();
        let written = write_tar_gz(&data, &mut source, Limits::default(), &mut bytes).expect("written");
        let files = unpack(&bytes);
        assert_eq!(written.files, files.len());
        assert!(files.keys().all(|p| p.starts_with("xrdtest-session-42/")), "{:?}", files.keys());
        let get = |path: &str| String::from_utf8_lossy(&files[&format!("xrdtest-session-42/{path}")]).into_owned();
        assert!(get("report.html").starts_with("<!DOCTYPE html>"));
        assert_eq!(get("junit.xml"), crate::junit::junit(&data));
        assert_eq!(get("results.csv"), crate::csv::csv(&data));
        assert_eq!(get("stages/003-case_run_broken/s2/output.txt"), "one\ntwo\nthree\n");
        assert_eq!(get("stages/003-case_run_broken/s2/logs/var_log_app.log"), "log line\n");
        assert!(get("stages/003-case_run_broken/s2/logs/var_log_missing.log").contains("No such file"));
        assert_eq!(get("stages/001-suite_init/s1/output.txt"), "", "no output: an empty file");
        let notes = get(NOTES_FILE);
        assert!(notes.contains("var_log_missing.log: /var/log/missing.log could not be collected"), "{notes}");
        assert!(!notes.contains("Nothing was cut"), "{notes}");
    }

    #[test]
    fn limits_cut_files_and_say_so() {
        let (data, mut source) = with_logs();
        let limits = Limits { total_bytes: 10, file_bytes: 8 };
        let mut bytes = Vec::new();
        let written = write_tar_gz(&data, &mut source, limits, &mut bytes).expect("written");
        let files = unpack(&bytes);
        let output =
            String::from_utf8_lossy(&files["xrdtest-session-42/stages/003-case_run_broken/s2/output.txt"]).into_owned();
        assert!(output.starts_with("one\ntwo\n[xrdtest export: cut here"), "{output}");
        // 8 bytes used of 10: the log gets the 2 left.
        let log =
            String::from_utf8_lossy(&files["xrdtest-session-42/stages/003-case_run_broken/s2/logs/var_log_app.log"])
                .into_owned();
        assert!(log.starts_with("lo\n[xrdtest export: cut here"), "{log}");
        assert_eq!(written.bytes, 10);
        assert_eq!(written.cut.len(), 2, "{:?}", written.cut);
        let notes = String::from_utf8_lossy(&files["xrdtest-session-42/export-notes.txt"]).into_owned();
        assert!(notes.contains("Cut at a limit") && notes.contains("output.txt: cut after 8 bytes"), "{notes}");
    }

    /// An output that fails half-way, then a writer that fails.
    struct Broken;

    impl ExportSource for Broken {
        fn output(&mut self, _: StageId, from: u64) -> Result<(Vec<OutputLine>, u64), String> {
            match from {
                0 => Ok((lines(&["first"]), 1)),
                _ => Err("disk on fire".into()),
            }
        }
        fn log(&mut self, _: StageId, _: &str) -> Result<Option<LogFile>, String> {
            Ok(None)
        }
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn read_errors_are_noted_and_write_errors_stop() {
        let data = testdata::mixed();
        let mut bytes = Vec::new();
        let written = write_tar_gz(&data, &mut Broken, Limits::default(), &mut bytes).expect("written");
        let files = unpack(&bytes);
        let output =
            String::from_utf8_lossy(&files["xrdtest-session-42/stages/001-suite_init/s1/output.txt"]).into_owned();
        assert_eq!(output, "first\n[xrdtest export: the rest could not be read: disk on fire]\n");
        assert!(written.problems.iter().any(|p| p.contains("disk on fire")));
        assert!(matches!(write_tar_gz(&data, &mut Broken, Limits::default(), Closed), Err(ExportError::Io(_))));
    }
}
