//! `xrdtest`: the command-line client of the xrdtest framework.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xrdtest_cli::commands::RunArgs;
use xrdtest_cli::{client, clusters, commands, compare, peers, reports, tokens, validate};

/// xrdtest: distributed system tests on clusters of real and virtual machines.
///
/// A master runs test suites as sessions of barrier-synchronized stages across slaves.
/// This client checks definitions, starts and follows sessions through the master's API,
/// and runs a complete local demo.
#[derive(Parser, Debug)]
#[command(name = "xrdtest", version, propagate_version = true)]
struct Cli {
    /// The master's API address.
    #[arg(long, global = true, env = "XRDTEST_MASTER", default_value = "http://127.0.0.1:20080")]
    master: String,
    /// The API token: needed for write calls (run, cancel), and sent with every call, for masters
    /// whose reading needs a login (`[web] require_login`).
    #[arg(long, global = true, env = "XRDTEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a session of SUITE on the master.
    ///
    /// With --wait, print each stage's progress per slave as it happens and exit 0 only if
    /// the session passed: 1 failed, 3 cancelled or interrupted, 4 could not start,
    /// 2 an error of this command (master unreachable, unknown suite...).
    ///
    /// A passed session with flaky cases (failed, then passed when run again) exits 0
    /// and is printed FLAKY.
    ///
    /// --case and --skip choose the cases (suite init and finalize always run); an unknown
    /// name, parameter or bad option is an error that says what the suite has, and no
    /// session is created.
    Run {
        suite: String,
        /// Follow the session to its end.
        #[arg(long)]
        wait: bool,
        /// With --wait: when the session has ended, write its JUnit XML report to FILE for
        /// a CI server, whatever the outcome (the exit code still tells it).
        #[arg(long, value_name = "FILE", requires = "wait")]
        junit: Option<std::path::PathBuf>,
        #[command(flatten)]
        options: RunArgs,
    },
    /// Print what `run` with the same options would run, without running it: every stage
    /// in order with its case instance, its slaves and its tags (--json for all of it).
    Plan {
        suite: String,
        #[command(flatten)]
        options: RunArgs,
    },
    /// List sessions, newest first.
    Sessions {
        #[arg(long)]
        suite: Option<String>,
        /// queued, starting_cluster, waiting_slaves, running, passed, failed, cancelled, interrupted
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one session: every stage on every slave, and the output of what failed.
    Show { id: u64 },
    /// List the slaves (and hypervisors) the master knows.
    Slaves,
    /// List the defined clusters and, for running ones, their hypervisor and state.
    Clusters,
    /// Start or stop a cluster by hand (sessions start and stop their own clusters).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// List the hypervisors with their capacity and the clusters they run.
    Hypervisors,
    /// Who may connect: list the slaves' and hypervisors' identities, approve one that
    /// waits to enroll, or revoke one (docs/peer-identity.md).
    Peers {
        #[command(subcommand)]
        action: Option<PeersAction>,
    },
    /// API tokens with a scope (read, run, admin) and an end, kept hashed by the master;
    /// making, listing and revoking them needs an admin token (docs/api.md, "Tokens").
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Cancel a session: its current stage is killed, suite finalize runs for cleanup.
    Cancel {
        id: u64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Compare session B with session A: what changed, regressions first.
    ///
    /// Per case instance (matched by name and pass): its state in A and in B, the change
    /// (regression: passed or flaky in A, failed or not run in B; fixed; still failing;
    /// new; gone; unchanged) and its duration's delta. Then per result and slave: both
    /// values and the delta, absolute and in %; whether a change is worse follows the
    /// case's `[results.NAME]` `better` in the master's definitions (a result without a
    /// threshold is shown, not judged). --json prints the API's answer (`GET /api/compare`).
    ///
    /// Exits 0, or with --fail-on-regression 1 when B regressed; 2 on an error (an
    /// unknown session, the master unreachable).
    Compare(compare::CompareArgs),
    /// Print a report of a session, or write it to a file with -o.
    ///
    /// json: the whole session with the values its stages reported and, per case instance,
    /// its state, failed stages (with their last lines of output), checks and results.
    /// junit: JUnit XML as Jenkins, GitLab and Maven Surefire read it (a testcase per case
    /// instance and per check; a flaky instance passes with a flakyFailure per failed
    /// attempt). csv: one row per stage run and slave, a column per result. tap: TAP 13.
    /// The formats are described in docs/results.md.
    Report(reports::ReportArgs),
    /// Download a session's export and unpack it into DIR (made if missing): report.html
    /// (one page that opens from disk, no server needed), report.json, junit.xml,
    /// results.csv, export-notes.txt, and every stage run's output and collected logs
    /// under stages/. Prints each file written.
    Export(reports::ExportArgs),
    /// Check suite and cluster definitions and report every problem found.
    ///
    /// With one DIR, DIR is a definitions repository holding `suites/` and `clusters/`.
    /// With two, they are the suites folder and the clusters folder. With none, the
    /// current folder is the repository. Exits 0 only when every definition is valid.
    Validate(validate::ValidateArgs),
    /// Run a master and local slaves on embedded defaults and run a suite with live
    /// progress (default: ts_demo on slave1..slave3, definitions from the current folder).
    ///
    /// Runs the `xrdtest-demo` program (beside this one, or on PATH) with these arguments;
    /// `xrdtest demo --help` lists them.
    #[command(disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Subcommand, Debug)]
enum TokenAction {
    /// Make a token and print it (the only time it is shown).
    Create {
        name: String,
        /// read: the API's reads; run: also start and cancel runs and clusters; admin: also
        /// peers and tokens.
        #[arg(long, default_value = "run")]
        scope: String,
        /// When it ends, as a duration (`30d`, `12h`); default: never.
        #[arg(long)]
        expires: Option<String>,
    },
    /// The tokens: name, scope, when made, when they end.
    List,
    /// Refuse a token from now on.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
enum PeersAction {
    /// Every identity: enrolled, waiting for approval (pending) or revoked (the default).
    List,
    /// Let a peer that waits (pending) enroll: it receives its certificate at its next
    /// connection attempt. Needs the API token.
    Approve { name: String },
    /// End a peer's access at once: its connection drops and its certificate is refused
    /// from then on; it can come back only by a new approval. Needs the API token.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Create the cluster's network and VMs on a hypervisor with room; it stays up,
    /// and sessions of its suites use it, until `cluster stop`.
    Start {
        name: String,
        /// Follow its states until it is active (exit 0) or fails (exit 1).
        #[arg(long)]
        wait: bool,
    },
    /// Remove a cluster started by hand: its VMs, disks and network.
    Stop {
        name: String,
        /// Follow its states until it is stopped.
        #[arg(long)]
        wait: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`xrdtest sessions | head`) instead of panicking on the broken pipe.
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let api = || client::ApiClient::new(&cli.master, cli.token.clone());
    let result = match &cli.command {
        Command::Run { suite, wait, junit, options } => {
            commands::run(&api(), suite, options, *wait, junit.as_deref(), cli.json)
        }
        Command::Plan { suite, options } => commands::plan(&api(), suite, options, cli.json),
        Command::Sessions { suite, state, limit } => {
            commands::sessions(&api(), suite.as_deref(), state.as_deref(), *limit, cli.json)
        }
        Command::Show { id } => commands::show(&api(), *id, cli.json),
        Command::Slaves => commands::slaves(&api(), cli.json),
        Command::Clusters => clusters::list(&api(), cli.json),
        Command::Cluster { action: ClusterAction::Start { name, wait } } => {
            clusters::command(&api(), name, true, *wait)
        }
        Command::Cluster { action: ClusterAction::Stop { name, wait } } => {
            clusters::command(&api(), name, false, *wait)
        }
        Command::Hypervisors => clusters::hypervisors(&api(), cli.json),
        Command::Peers { action: None | Some(PeersAction::List) } => peers::list(&api(), cli.json),
        Command::Peers { action: Some(PeersAction::Approve { name }) } => peers::decide(&api(), name, true),
        Command::Peers { action: Some(PeersAction::Revoke { name }) } => peers::decide(&api(), name, false),
        Command::Token { action: TokenAction::Create { name, scope, expires } } => {
            tokens::create(&api(), name, scope, expires.as_deref(), cli.json)
        }
        Command::Token { action: TokenAction::List } => tokens::list(&api(), cli.json),
        Command::Token { action: TokenAction::Revoke { name } } => tokens::revoke(&api(), name),
        Command::Cancel { id, reason } => commands::cancel(&api(), *id, reason.as_deref()),
        Command::Compare(args) => compare::run(&api(), args, cli.json),
        Command::Report(args) => reports::report(&api(), args),
        Command::Export(args) => reports::export(&api(), args),
        Command::Validate(args) => validate::run(args),
        // A Rust program ignores SIGPIPE again when it starts, so the demo's sockets still
        // see EPIPE after the reset above.
        Command::Demo { args } => return xrdtest_cli::demo::exec(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xrdtest: {err:#}");
            ExitCode::from(2)
        }
    }
}
