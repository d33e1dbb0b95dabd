//! Helpers shared by the slave's integration tests.

/// The text of a line printed as `[HH:MM:SS] text` (by the executor's timestamps and
/// functions.sh's `log`), or `None` when it is not stamped so.
pub fn stamped(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let ok = b.len() >= 11
        && b[0] == b'['
        && b[9] == b']'
        && b[10] == b' '
        && b[3] == b':'
        && b[6] == b':'
        && [1, 2, 4, 5, 7, 8].iter().all(|&i| b[i].is_ascii_digit());
    ok.then(|| &line[11..])
}
