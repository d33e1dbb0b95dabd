//! Retention (`[retention]` in `master.toml`, docs/retention.md): which finished sessions
//! go, and the background task that removes them with everything they stored.
//!
//! A session is pruned when it breaks a rule that is set: it ended more than `keep_days`
//! ago, or it is not among the newest `keep_per_suite` finished sessions of its suite. When
//! the store's disk has less than `min_free_disk` free, the oldest finished sessions go
//! too, one by one, until there is enough. Never a session that is not finished, nor one
//! marked `keep`.

use std::path::Path;

use tracing::{info, warn};

pub use crate::config::RetentionConfig;
use crate::disk::free_bytes;
use crate::model::{SessionId, SessionSummary};
use crate::store::Store;

/// For `min_free_disk`: sessions removed in a row without the free space growing before a
/// pass gives up, and sessions a pass removes at most.
const FRUITLESS_LIMIT: usize = 5;
const MAX_PER_PASS: usize = 200;

/// The sessions the age and per-suite rules prune, oldest first. `sessions` are every
/// session with its `keep` mark.
pub fn by_rules(config: &RetentionConfig, sessions: &[(SessionSummary, bool)], now_ms: u64) -> Vec<SessionId> {
    let mut newest_first: Vec<&(SessionSummary, bool)> = sessions.iter().filter(|s| s.0.state.is_final()).collect();
    newest_first.sort_by_key(|(s, _)| std::cmp::Reverse(s.id));
    let mut seen_per_suite: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out = Vec::new();
    // Kept sessions do not count among a suite's newest: they stay in any case.
    for (summary, _) in newest_first.into_iter().filter(|(_, kept)| !kept) {
        let too_old = config.keep_days.is_some_and(|days| {
            let ended = summary.ended_ms.unwrap_or(summary.created_ms);
            now_ms.saturating_sub(ended) > days * 86_400_000
        });
        let rank = seen_per_suite.entry(summary.suite.as_str()).or_insert(0);
        *rank += 1;
        let beyond = config.keep_per_suite.is_some_and(|keep| *rank > keep);
        if too_old || beyond {
            out.push(summary.id);
        }
    }
    out.sort_unstable();
    out
}

/// Finished, unkept sessions not pruned by the rules, oldest first: what goes when the disk
/// runs short.
pub fn by_age(sessions: &[(SessionSummary, bool)], already: &[SessionId]) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> = sessions
        .iter()
        .filter(|(s, kept)| !kept && s.state.is_final() && !already.contains(&s.id))
        .map(|(s, _)| s.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// What one pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: Vec<SessionId>,
    pub output_bytes: u64,
}

/// One pass: removes what the rules and the free-space floor say. Runs on a blocking
/// thread (it reads every summary and deletes files).
pub fn prune_once(store: &Store, config: &RetentionConfig, store_dir: &Path) -> Result<Pruned, String> {
    let sessions = store.all_summaries().map_err(|e| e.to_string())?;
    let mut pruned = Pruned::default();
    let remove = |id: SessionId, pruned: &mut Pruned| -> Result<(), String> {
        // Checked again at the last moment: a session never goes while it runs.
        let running = store.summary(id).map_err(|e| e.to_string())?.is_some_and(|s| !s.state.is_final());
        if running || store.is_kept(id).map_err(|e| e.to_string())? {
            return Ok(());
        }
        pruned.output_bytes += store.delete_session(id).map_err(|e| e.to_string())?;
        pruned.sessions.push(id);
        Ok(())
    };
    let by_rules = by_rules(config, &sessions, crate::model::now_ms());
    for &id in &by_rules {
        remove(id, &mut pruned)?;
    }
    if let Some(floor) = config.min_free_disk_bytes {
        // Sessions removed in a row without the free space growing: something else fills the
        // disk (or the space stays in sled until it compacts); the history is not all thrown
        // after it.
        let mut fruitless = 0;
        for id in by_age(&sessions, &by_rules) {
            let Some(before) = free_bytes(store_dir).filter(|&free| free < floor) else { break };
            if fruitless >= FRUITLESS_LIMIT || pruned.sessions.len() >= MAX_PER_PASS {
                warn!(
                    free_bytes = before,
                    min_free_disk = floor,
                    "retention: the store's disk stays short of min_free_disk; pruning for it stops for this pass"
                );
                break;
            }
            remove(id, &mut pruned)?;
            fruitless = if free_bytes(store_dir).is_some_and(|after| after > before) { 0 } else { fruitless + 1 };
        }
    }
    if !pruned.sessions.is_empty() {
        store.flush_now().map_err(|e| e.to_string())?;
    }
    Ok(pruned)
}

/// Prunes every `every`, from now on, while the master runs; `store_dir` is the store's
/// folder (whose file system `min_free_disk` looks at). After the sessions, each pass calls
/// `prune_snapshots` (the definition snapshots nothing uses; it returns how many went).
pub fn start(
    store: Store,
    config: RetentionConfig,
    store_dir: std::path::PathBuf,
    prune_snapshots: impl Fn() -> Result<usize, String> + Clone + Send + 'static,
) {
    if !config.is_on() {
        return;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(config.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let (store, config, dir) = (store.clone(), config.clone(), store_dir.clone());
            let snapshots = prune_snapshots.clone();
            let pass = move || {
                let pruned = prune_once(&store, &config, &dir);
                match snapshots() {
                    Ok(0) => {}
                    Ok(removed) => info!(snapshots = removed, "retention: unused definition snapshots removed"),
                    Err(err) => warn!(error = %err, "retention: pruning snapshots failed"),
                }
                pruned
            };
            match tokio::task::spawn_blocking(pass).await {
                Ok(Ok(pruned)) if !pruned.sessions.is_empty() => {
                    info!(sessions = ?pruned.sessions, output_bytes = pruned.output_bytes, "retention: sessions pruned")
                }
                Ok(Ok(_)) => {}
                Ok(Err(err)) => warn!(error = %err, "retention: pruning failed"),
                Err(err) => warn!(error = %err, "retention: the pruning task failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SessionState, Trigger};

    fn summary(id: SessionId, suite: &str, state: SessionState, ended_days_ago: u64, now: u64) -> SessionSummary {
        SessionSummary {
            id,
            suite: suite.into(),
            trigger: Trigger::Manual,
            state,
            reason: None,
            created_ms: now - ended_days_ago * 86_400_000 - 1000,
            started_ms: None,
            ended_ms: state.is_final().then(|| now - ended_days_ago * 86_400_000),
            cases_passed: 0,
            cases_failed: 0,
            cases_total: 0,
            cases_flaky: 0,
        }
    }

    #[test]
    fn rules_spare_the_running_the_kept_and_the_newest() {
        let now = 100 * 86_400_000;
        let sessions = vec![
            (summary(1, "a", SessionState::Passed, 40, now), false),
            (summary(2, "a", SessionState::Failed, 35, now), true),
            (summary(3, "a", SessionState::Passed, 5, now), false),
            (summary(4, "b", SessionState::Passed, 50, now), false),
            (summary(5, "a", SessionState::Running, 0, now), false),
            (summary(6, "a", SessionState::Passed, 1, now), false),
        ];
        let days = RetentionConfig { keep_days: Some(30), ..RetentionConfig::default() };
        assert_eq!(by_rules(&days, &sessions, now), [1, 4], "older than 30 days, not kept");
        let last = RetentionConfig { keep_per_suite: Some(1), ..RetentionConfig::default() };
        assert_eq!(by_rules(&last, &sessions, now), [1, 3], "a keeps 6 (and kept 2, running 5); b keeps 4");
        let both = RetentionConfig { keep_days: Some(30), keep_per_suite: Some(2), ..RetentionConfig::default() };
        assert_eq!(by_rules(&both, &sessions, now), [1, 4]);
        assert_eq!(by_rules(&RetentionConfig::default(), &sessions, now), Vec::<SessionId>::new());
        assert_eq!(by_age(&sessions, &[1]), [3, 4, 6], "for the disk floor: oldest first, never 2 or 5");
    }
}
