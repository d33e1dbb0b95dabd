//! `xrdtest-slave fault ...`: a stage script's fault call (behind `fault_partition`,
//! `fault_netem`, `fault_pause`, `fault_resume`, `fault_kill` and `fault_heal` of
//! functions.sh), sent through the slave's sync socket to the master, which applies it on
//! its targets and answers once they have (docs/faults.md).
//!
//! The words are parsed by hand: `partition A... -- B...` and `netem T delay 100ms loss 1%`
//! read as tc and Jepsen users write them, which a derive parser would not allow.

use std::io::Write;

use xrdtest_defs::units::{parse_loss_ppm, parse_micros, parse_rate_bps};
use xrdtest_proto::{FaultOp, FaultUntil, SyncReply};

use crate::sync::{ask, stage_endpoint, LocalOp, LocalRequest};

pub const USAGE: &str = "\
usage: fault partition A... [-- B...] [--until stage|case|session]
       fault netem TARGET[,TARGET...] [delay D [JITTER]] [jitter D] [loss P%] [rate R] [--until ...]
       fault pause [--on TARGET[,...]] PATTERN [--until stage|case|session]
       fault resume [PATTERN]
       fault kill [--on TARGET[,...]] PATTERN [SIGNAL]
       fault heal
Targets are slave names, role:ROLE or * (every slave of the session); without `-- B...` a
partition cuts A from every other slave. D: 100ms, 1s, 250us. R: 10mbit, 512kbit, 1gbit,
8000bit. PATTERN: an extended regex on command lines (pgrep -f). SIGNAL: a name (TERM,
SIGKILL) or a number; default TERM. A fault heals at the end of its stage unless --until
says otherwise, and always by the session's end.";

/// Parses the words after `fault` into the master's fault call.
pub fn parse(words: &[String]) -> Result<FaultOp, String> {
    let (what, rest) = words.split_first().ok_or("which fault? (partition, netem, pause, resume, kill, heal)")?;
    let mut rest: Vec<String> = rest.to_vec();
    let until = take_until(&mut rest)?;
    let no_until = |op: FaultOp| match until {
        Some(_) => Err(format!("{what} takes no --until")),
        None => Ok(op),
    };
    let until = until.unwrap_or(FaultUntil::Stage);
    match what.as_str() {
        "partition" => {
            let split = rest.iter().position(|w| w == "--");
            let (a, b) = match split {
                Some(at) => (targets(&rest[..at]), targets(&rest[at + 1..])),
                None => (targets(&rest), vec!["*".to_string()]),
            };
            if a.is_empty() {
                return Err("partition: name the slaves to cut off (A... [-- B...])".into());
            }
            if b.is_empty() {
                return Err("partition: nothing after `--`".into());
            }
            Ok(FaultOp::Partition { a, b, until })
        }
        "netem" => parse_netem(&rest, until),
        "pause" => {
            let on = take_on(&mut rest)?;
            let pattern = one_pattern(what, &rest)?;
            Ok(FaultOp::Pause { targets: on, pattern, until })
        }
        "resume" => {
            let pattern = match rest.as_slice() {
                [] => None,
                [pattern] => Some(pattern.clone()),
                _ => return Err("resume takes one PATTERN at most (quote it)".into()),
            };
            no_until(FaultOp::Resume { pattern })
        }
        "kill" => {
            let on = take_on(&mut rest)?;
            let (pattern, signal) = match rest.as_slice() {
                [pattern] => (pattern.clone(), libc::SIGTERM),
                [pattern, signal] => (pattern.clone(), parse_signal(signal)?),
                [] => return Err("kill: which processes? (PATTERN)".into()),
                _ => return Err("kill takes PATTERN and an optional SIGNAL (quote the pattern)".into()),
            };
            no_until(FaultOp::Kill { targets: on, pattern, signal })
        }
        "heal" if rest.is_empty() => no_until(FaultOp::Heal),
        "heal" => Err("heal takes no arguments: it heals every fault of the session".into()),
        other => Err(format!("`{other}` is not a fault (partition, netem, pause, resume, kill, heal)")),
    }
}

/// Removes `--until X` (or `--until=X`) from the words.
fn take_until(words: &mut Vec<String>) -> Result<Option<FaultUntil>, String> {
    let Some(value) = take_option(words, "--until")? else { return Ok(None) };
    match value.as_str() {
        "stage" => Ok(Some(FaultUntil::Stage)),
        "case" => Ok(Some(FaultUntil::Case)),
        "session" => Ok(Some(FaultUntil::Session)),
        other => Err(format!("--until `{other}`: use stage, case or session")),
    }
}

/// Removes `--on T[,T...]`; default: every slave of the session.
fn take_on(words: &mut Vec<String>) -> Result<Vec<String>, String> {
    match take_option(words, "--on")? {
        Some(value) => {
            let list = targets(&[value]);
            if list.is_empty() {
                return Err("--on needs a target".into());
            }
            Ok(list)
        }
        None => Ok(vec!["*".to_string()]),
    }
}

fn take_option(words: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    let prefix = format!("{name}=");
    let Some(at) = words.iter().position(|w| w == name || w.starts_with(&prefix)) else { return Ok(None) };
    let word = words.remove(at);
    if let Some(value) = word.strip_prefix(&prefix) {
        return Ok(Some(value.to_string()));
    }
    if at < words.len() {
        Ok(Some(words.remove(at)))
    } else {
        Err(format!("{name} needs a value"))
    }
}

/// Targets from words that may each hold several, comma-separated.
fn targets(words: &[String]) -> Vec<String> {
    words.iter().flat_map(|w| w.split(',')).map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect()
}

fn one_pattern(what: &str, words: &[String]) -> Result<String, String> {
    match words {
        [pattern] => Ok(pattern.clone()),
        [] => Err(format!("{what}: which processes? (PATTERN)")),
        _ => Err(format!("{what} takes one PATTERN (quote it if it has spaces)")),
    }
}

fn parse_netem(words: &[String], until: FaultUntil) -> Result<FaultOp, String> {
    let (first, mut rest) = words.split_first().ok_or("netem: which slaves? (TARGET[,TARGET...])")?;
    let targets = targets(std::slice::from_ref(first));
    let (mut delay_us, mut jitter_us, mut loss_ppm, mut rate_bps) = (0, 0, 0, 0);
    while let Some((word, tail)) = rest.split_first() {
        let value = tail.first().ok_or_else(|| format!("netem: `{word}` needs a value"))?;
        rest = &tail[1..];
        match word.as_str() {
            "delay" => {
                delay_us = parse_micros(value)?;
                // tc's form: `delay 100ms 10ms`, the second figure being the jitter.
                if let Some(next) = rest.first().filter(|w| w.starts_with(|c: char| c.is_ascii_digit())) {
                    jitter_us = parse_micros(next)?;
                    rest = &rest[1..];
                }
            }
            "jitter" => jitter_us = parse_micros(value)?,
            "loss" => loss_ppm = parse_loss_ppm(value)?,
            "rate" => rate_bps = parse_rate_bps(value)?,
            other => return Err(format!("netem: `{other}` is not delay, jitter, loss or rate")),
        }
    }
    if delay_us == 0 && jitter_us == 0 && loss_ppm == 0 && rate_bps == 0 {
        return Err("netem: give a delay, a loss or a rate".into());
    }
    Ok(FaultOp::Netem { targets, delay_us, jitter_us, loss_ppm, rate_bps, until })
}

/// A signal by name (`TERM`, `SIGKILL`, `stop`) or number.
fn parse_signal(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse::<i32>() {
        return Ok(n);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let signal = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "ABRT" => libc::SIGABRT,
        _ => {
            return Err(format!(
                "`{text}` is not a signal (TERM, KILL, HUP, INT, QUIT, USR1, USR2, STOP, CONT, ABRT or a number)"
            ))
        }
    };
    Ok(signal)
}

/// Runs `fault ...` inside a stage: `words` are those after `fault`. Returns the exit
/// status: 0 applied (or healed), 1 refused or failed (and a failed check `fault:KIND` is
/// recorded, which fails the stage), 2 a usage error or not in a stage.
pub fn run(words: &[String]) -> i32 {
    if words.first().is_some_and(|w| w == "--help" || w == "-h" || w == "help") {
        // A closed stdout is no reason to fail.
        let _ = writeln!(std::io::stdout(), "{USAGE}");
        return 0;
    }
    let op = match parse(words) {
        Ok(op) => op,
        Err(err) => {
            eprintln!("fault: {err}\n{USAGE}");
            return 2;
        }
    };
    let (socket, stage_id) = match stage_endpoint() {
        Ok(found) => found,
        Err(err) => {
            eprintln!("fault: {err}");
            return 2;
        }
    };
    let what = words.join(" ");
    let kind = words.first().cloned().unwrap_or_default();
    let request = LocalRequest { stage_id, op: LocalOp::Fault(op), timeout_ms: None };
    let failure = match ask(&socket, &request) {
        Ok(SyncReply::Done { .. }) => {
            eprintln!("fault: {what}: done");
            return 0;
        }
        Ok(SyncReply::Failed { reason }) => reason,
        Err(err) => err,
    };
    eprintln!("fault: {what}: failed: {failure}");
    // A fault that could not be made fails its stage, even when the script goes on.
    if let Err(err) = record_failed_check(&kind, &failure) {
        eprintln!("fault: cannot record the failed check: {err}");
    }
    1
}

/// Appends `check fault:KIND fail REASON` to the stage's results file ($XRDTEST_RESULTS).
fn record_failed_check(kind: &str, reason: &str) -> Result<(), String> {
    let path = std::env::var_os("XRDTEST_RESULTS").ok_or("XRDTEST_RESULTS is not set")?;
    let line = format!("check fault:{kind} fail {}\n", reason.replace(['\n', '\r'], " "));
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(&path).map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut file, line.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn partitions_with_and_without_a_far_side() {
        assert_eq!(
            parse(&words("partition a,b c -- role:server --until case")),
            Ok(FaultOp::Partition { a: words("a b c"), b: words("role:server"), until: FaultUntil::Case })
        );
        assert_eq!(
            parse(&words("partition s1")),
            Ok(FaultOp::Partition { a: words("s1"), b: words("*"), until: FaultUntil::Stage })
        );
        assert!(parse(&words("partition -- b")).unwrap_err().contains("name the slaves"));
        assert!(parse(&words("partition a --")).unwrap_err().contains("nothing after"));
        assert!(parse(&words("partition a --until ever")).unwrap_err().contains("stage, case or session"));
    }

    #[test]
    fn netem_reads_tc_words() {
        assert_eq!(
            parse(&words("netem s1,s2 delay 100ms 10ms loss 1.5% rate 10mbit --until=session")),
            Ok(FaultOp::Netem {
                targets: words("s1 s2"),
                delay_us: 100_000,
                jitter_us: 10_000,
                loss_ppm: 15_000,
                rate_bps: 10_000_000,
                until: FaultUntil::Session
            })
        );
        let op = parse(&words("netem role:db jitter 250us delay 1s")).unwrap();
        assert!(matches!(op, FaultOp::Netem { delay_us: 1_000_000, jitter_us: 250, loss_ppm: 0, rate_bps: 0, .. }));
        assert!(parse(&words("netem s1")).unwrap_err().contains("give a delay"));
        assert!(parse(&words("netem s1 loss 0%")).unwrap_err().contains("above 0"));
        assert!(parse(&words("netem s1 rate fast")).unwrap_err().contains("10mbit"));
        assert!(parse(&words("netem s1 delay")).unwrap_err().contains("needs a value"));
        assert!(parse(&words("netem s1 corrupt 1%")).unwrap_err().contains("not delay"));
    }

    #[test]
    fn pause_kill_resume_and_heal() {
        assert_eq!(
            parse(&words("pause xrootd")),
            Ok(FaultOp::Pause { targets: words("*"), pattern: "xrootd".into(), until: FaultUntil::Stage })
        );
        assert_eq!(
            parse(&words("pause --on role:server,c1 ^cmsd --until case")),
            Ok(FaultOp::Pause { targets: words("role:server c1"), pattern: "^cmsd".into(), until: FaultUntil::Case })
        );
        assert_eq!(
            parse(&words("kill --on s2 xrootd KILL")),
            Ok(FaultOp::Kill { targets: words("s2"), pattern: "xrootd".into(), signal: libc::SIGKILL })
        );
        assert_eq!(
            parse(&words("kill xrootd")),
            Ok(FaultOp::Kill { targets: words("*"), pattern: "xrootd".into(), signal: libc::SIGTERM })
        );
        assert_eq!(parse(&words("kill x SIGHUP")).map(|op| matches!(op, FaultOp::Kill { signal: 1, .. })), Ok(true));
        assert!(parse(&words("kill x BOOM")).unwrap_err().contains("not a signal"));
        assert!(parse(&words("kill x --until case")).unwrap_err().contains("no --until"));
        assert_eq!(parse(&words("resume")), Ok(FaultOp::Resume { pattern: None }));
        assert_eq!(parse(&words("resume xrootd")), Ok(FaultOp::Resume { pattern: Some("xrootd".into()) }));
        assert_eq!(parse(&words("heal")), Ok(FaultOp::Heal));
        assert!(parse(&words("heal now")).is_err());
        assert!(parse(&words("pause")).unwrap_err().contains("which processes"));
        assert!(parse(&words("explode")).unwrap_err().contains("is not a fault"));
        assert!(parse(&[]).is_err());
    }
}
