//! `xrdtest demo`: hands over to the `xrdtest-demo` program, which runs a master and
//! slaves in one process. It lives beside the daemons so that this command links no
//! server crate.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// The program that runs the demo.
pub const DEMO_PROGRAM: &str = "xrdtest-demo";

/// `xrdtest-demo` beside this executable (an install or a cargo target folder), else the
/// name alone for a search of PATH.
fn demo_program() -> PathBuf {
    let sibling = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(DEMO_PROGRAM)));
    match sibling {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from(DEMO_PROGRAM),
    }
}

/// Replaces this process with `xrdtest-demo ARGS`; returns only if that fails.
pub fn exec(args: &[OsString]) -> ExitCode {
    let program = demo_program();
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "xrdtest: cannot run {}: {err}; it comes with the xrdtest-master package, or build it with \
         `cargo build -p xrdtest-demo`",
        program.display()
    );
    ExitCode::from(2)
}
