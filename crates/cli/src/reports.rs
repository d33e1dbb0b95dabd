//! `xrdtest report`, `xrdtest export` and `run --wait --junit`: a session's reports as the
//! master makes them (`GET /api/sessions/{id}/report.json`, `junit.xml`, `results.csv`,
//! `report.tap`, `export.tar.gz`), written to a file, stdout or a folder.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};

use crate::client::ApiClient;

/// The formats of `xrdtest report`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The whole session with its values and, per case instance, what failed (report.json).
    Json,
    /// JUnit XML for CI servers (Jenkins, GitLab, Surefire readers).
    Junit,
    /// One row per stage run and slave, one column per result (RFC 4180).
    Csv,
    /// TAP version 13.
    Tap,
}

impl Format {
    /// The API path of this report of session `id`.
    pub fn path(self, id: u64) -> String {
        let file = match self {
            Format::Json => "report.json",
            Format::Junit => "junit.xml",
            Format::Csv => "results.csv",
            Format::Tap => "report.tap",
        };
        format!("/api/sessions/{id}/{file}")
    }
}

/// The arguments of `xrdtest report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The session's id.
    pub id: u64,
    /// Which report.
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Write the report to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The arguments of `xrdtest export`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The session's id.
    pub id: u64,
    /// The folder to write into; made if missing. Files of the export already there are
    /// replaced, others are left alone.
    pub dir: PathBuf,
}

/// `xrdtest report`: one report, to stdout or a file.
pub fn report(api: &ApiClient, args: &ReportArgs) -> Result<ExitCode> {
    let path = args.format.path(args.id);
    match &args.output {
        Some(file) => {
            let bytes = save(api, &path, file)?;
            eprintln!("session {}: {} bytes written to {}", args.id, bytes, file.display());
        }
        None => {
            let mut body = api.download(&path)?;
            let mut stdout = io::stdout().lock();
            io::copy(&mut body, &mut stdout).with_context(|| format!("{path}: reading the answer"))?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Downloads `path` into `file`, making its folder if needed (through a temporary file
/// beside it, so a broken download never leaves a half report under the name CI reads);
/// returns its size.
fn save(api: &ApiClient, path: &str, file: &Path) -> Result<u64> {
    let mut body = api.download(path)?;
    let partial = partial_name(file);
    let written = (|| -> io::Result<u64> {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let mut out = fs::File::create(&partial)?;
        let bytes = io::copy(&mut body, &mut out)?;
        out.sync_all()?;
        fs::rename(&partial, file)?;
        Ok(bytes)
    })();
    match written {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            let _ = fs::remove_file(&partial);
            Err(anyhow!("{}: {err}", file.display()))
        }
    }
}

/// `report.xml` → `.report.xml.partial` in the same folder.
fn partial_name(file: &Path) -> PathBuf {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
    file.with_file_name(format!(".{name}.partial"))
}

/// `run --wait --junit FILE`: the JUnit report of the session that just ended, written to
/// FILE whatever its outcome (a message on stderr, so that `--json` output stays JSON).
pub fn write_junit(api: &ApiClient, id: u64, file: &Path) -> Result<()> {
    let bytes = save(api, &Format::Junit.path(id), file)?;
    eprintln!("session {id}: JUnit report written to {} ({bytes} bytes)", file.display());
    Ok(())
}

/// `xrdtest export`: downloads the export archive and unpacks it into the folder.
pub fn export(api: &ApiClient, args: &ExportArgs) -> Result<ExitCode> {
    let body = api.download(&format!("/api/sessions/{}/export.tar.gz", args.id))?;
    let files = unpack(body, &args.dir)?;
    let bytes: u64 = files.iter().map(|(_, size)| size).sum();
    for (path, size) in &files {
        println!("{:>10}  {}", size, path.display());
    }
    println!(
        "session {}: {} files ({} bytes) written to {}; open {}",
        args.id,
        files.len(),
        bytes,
        args.dir.display(),
        args.dir.join("report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Unpacks an export archive (gzip-compressed tar, every entry under one top folder) into
/// `dir`, without that top folder. Refuses, before writing it, any entry that is not a
/// plain file or folder, or whose path is absolute, climbs with `..`, or would be written
/// through a symbolic link found in `dir`. Returns the files written with their sizes.
pub fn unpack(archive: impl Read, dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut top: Option<String> = None;
    let mut written = Vec::new();
    for entry in archive.entries().context("the export is not a tar.gz archive")? {
        let mut entry = entry.context("the export archive is damaged")?;
        let raw = entry.path().context("an entry of the export has no readable path")?.into_owned();
        let (first, relative) = split_entry(&raw)?;
        match &top {
            None => top = Some(first),
            Some(top) if *top != first => {
                bail!("refused: entry `{}` is outside the export's folder `{top}`", raw.display())
            }
            Some(_) => {}
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if let Some(relative) = relative {
                refuse_symlinks(dir, &relative)?;
                fs::create_dir_all(dir.join(&relative))?;
            }
            continue;
        }
        if !kind.is_file() {
            bail!("refused: entry `{}` is not a plain file ({kind:?})", raw.display());
        }
        let Some(relative) = relative else { bail!("refused: entry `{}` is not in a folder", raw.display()) };
        refuse_symlinks(dir, &relative)?;
        let target = dir.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot make {}", parent.display()))?;
        }
        let mut file = fs::File::create(&target).with_context(|| format!("cannot write {}", target.display()))?;
        let size =
            io::copy(&mut entry, &mut file).with_context(|| format!("the export broke off at {}", raw.display()))?;
        written.push((relative, size));
    }
    if top.is_none() {
        bail!("the export archive is empty");
    }
    Ok(written)
}

/// An entry's path as its top folder and the rest (none for the folder itself). Only plain
/// names are accepted (and `.`, skipped): no root, drive prefix or `..`.
fn split_entry(path: &Path) -> Result<(String, Option<PathBuf>)> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => bail!("refused: entry `{}` climbs out with `..`", path.display()),
            Component::RootDir | Component::Prefix(_) => {
                bail!("refused: entry `{}` has an absolute path", path.display())
            }
        }
    }
    let mut names = names.into_iter();
    let Some(first) = names.next() else { bail!("refused: an entry has an empty path") };
    let rest: PathBuf = names.collect();
    let rest = (!rest.as_os_str().is_empty()).then_some(rest);
    Ok((first.to_string_lossy().into_owned(), rest))
}

/// Refuses to write `dir/relative` when a folder on the way (or the file itself) is a
/// symbolic link: it could point anywhere.
fn refuse_symlinks(dir: &Path, relative: &Path) -> Result<()> {
    let mut path = dir.to_path_buf();
    for component in relative.components() {
        path.push(component);
        if fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            bail!("refused: {} is a symbolic link", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header
    }

    /// An archive of (raw path, content) entries; raw paths are written as they are, even
    /// the ones `tar` would refuse to make.
    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, content) in entries {
            let mut header = header(tar::EntryType::Regular, content.len() as u64);
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn an_export_is_unpacked_without_its_top_folder() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = archive(&[
            ("xrdtest-session-7/report.html", b"<!DOCTYPE html>"),
            ("xrdtest-session-7/stages/001-suite_init/s1/output.txt", b"hello\n"),
        ]);
        let target = dir.path().join("new/folder");
        let files = unpack(bytes.as_slice(), &target).unwrap();
        assert_eq!(
            files,
            [(PathBuf::from("report.html"), 15), (PathBuf::from("stages/001-suite_init/s1/output.txt"), 6)]
        );
        assert_eq!(fs::read_to_string(target.join("stages/001-suite_init/s1/output.txt")).unwrap(), "hello\n");
    }

    #[test]
    fn entries_that_would_leave_the_folder_are_refused() {
        for (path, why) in [
            ("xrdtest-session-7/../../evil", "climbs out"),
            ("/etc/evil", "absolute path"),
            ("other/evil", "outside the export's folder"),
            ("evil", "outside the export's folder"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let bytes = archive(&[("xrdtest-session-7/report.html", b"x"), (path, b"bad")]);
            let err = unpack(bytes.as_slice(), dir.path()).unwrap_err().to_string();
            assert!(err.contains(why), "{path}: {err}");
            assert!(!dir.path().join("evil").exists() && !dir.path().parent().unwrap().join("evil").exists());
        }
        // A link in the archive is refused.
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut link = header(tar::EntryType::Symlink, 0);
        link.set_link_name("/etc").unwrap();
        builder.append_data(&mut link, "xrdtest-session-7/stages", io::empty()).unwrap();
        let bytes = builder.into_inner().unwrap().finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(bytes.as_slice(), dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a plain file"), "{err}");
    }

    #[test]
    fn a_symbolic_link_in_the_folder_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("stages")).unwrap();
        let bytes = archive(&[("xrdtest-session-7/stages/x/output.txt", b"x")]);
        let err = unpack(bytes.as_slice(), dir.path()).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(fs::read_dir(elsewhere.path()).unwrap().next().is_none());
    }

    #[test]
    fn report_paths_name_the_api_files() {
        assert_eq!(Format::Junit.path(3), "/api/sessions/3/junit.xml");
        assert_eq!(Format::Csv.path(3), "/api/sessions/3/results.csv");
        assert_eq!(partial_name(Path::new("out/junit.xml")), PathBuf::from("out/.junit.xml.partial"));
    }
}
