//! `xrdtest validate`: load a definitions repository and report every problem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use xrdtest_defs::{load_repository_with, DefError, SourcePolicy};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// A repository folder, or a suites folder followed by a clusters folder.
    #[arg(value_name = "DIR", num_args = 0..=2)]
    paths: Vec<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// A folder outside the repository that `file:///` scripts may name, as the master's
    /// `script_dirs` (repeatable; none: absolute script paths are refused).
    #[arg(long = "script-dir", value_name = "DIR")]
    script_dirs: Vec<PathBuf>,
    /// A host that `http://` (not https) scripts may come from, as the master's
    /// `http_script_hosts` (repeatable; none: plain http is refused).
    #[arg(long = "http-host", value_name = "HOST")]
    http_hosts: Vec<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    suites: Vec<&'a str>,
    clusters: Vec<&'a str>,
    errors: &'a [DefError],
}

/// Where the suites and clusters are, from the command's paths.
fn definition_folders(paths: &[PathBuf]) -> Result<(PathBuf, PathBuf)> {
    match paths {
        [suites, clusters] => Ok((suites.clone(), clusters.clone())),
        [] => repository_folders(Path::new(".")),
        [repo] => repository_folders(repo),
        _ => bail!("give a repository folder, or a suites folder and a clusters folder"),
    }
}

fn repository_folders(repo: &Path) -> Result<(PathBuf, PathBuf)> {
    let suites = repo.join("suites");
    if !suites.is_dir() {
        bail!(
            "{} has no suites/ folder; give `xrdtest validate SUITES_DIR CLUSTERS_DIR` for other layouts",
            repo.display()
        );
    }
    Ok((suites, repo.join("clusters")))
}

pub fn run(args: &ValidateArgs) -> Result<ExitCode> {
    let (suites_dir, clusters_dir) = definition_folders(&args.paths)?;
    let policy = SourcePolicy { script_dirs: args.script_dirs.clone(), http_hosts: args.http_hosts.clone() };
    let report = load_repository_with(&suites_dir, &clusters_dir, &policy);
    if args.json {
        let json = JsonReport {
            valid: report.is_valid(),
            suites: report.repository.suites.keys().map(String::as_str).collect(),
            clusters: report.repository.clusters.keys().map(String::as_str).collect(),
            errors: &report.errors,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for error in &report.errors {
            println!("{error}");
        }
        let summary = format!(
            "{} of {} suites and {} of {} clusters valid",
            report.repository.suites.len(),
            report.suites_seen,
            report.repository.clusters.len(),
            report.clusters_seen
        );
        match report.errors.len() {
            0 => eprintln!("ok: {summary}"),
            1 => eprintln!("1 error; {summary}"),
            n => eprintln!("{n} errors; {summary}"),
        }
    }
    Ok(if report.is_valid() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
