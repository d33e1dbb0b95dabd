//! Machine roles: names such as `server` or `client` given to the machines of a session,
//! by a cluster host's `roles` and by a suite's `[roles]` table. Scripts see them as
//! `XRDTEST_ROLES` and `@roles@`; sync counts (`role:server`) and fault targets use them.

use crate::cluster::Cluster;
use crate::suite::Suite;

/// Longest role name.
pub const MAX_ROLE_NAME: usize = 64;

/// Checks a role name: 1 to 64 ASCII letters, digits, `_`, `-` and `.`, starting with a
/// letter. The error is the message to report on the field that gives it.
pub fn check_role_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= MAX_ROLE_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a role name (1 to {MAX_ROLE_NAME} letters, digits, `_`, `-` and `.`, starting with a letter)"
        ))
    }
}

/// The roles of `machine` in a session of `suite`: the suite's `[roles]` entries that name
/// it and, with a cluster, the `roles` of the cluster host that is this machine (a cluster
/// host's slave is named by the host's full name, as the suite's machines are). Sorted,
/// each role once.
pub fn roles_of(suite: &Suite, cluster: Option<&Cluster>, machine: &str) -> Vec<String> {
    let from_suite =
        suite.roles.iter().filter(|(_, machines)| machines.iter().any(|m| m == machine)).map(|(role, _)| role);
    let from_host = cluster.into_iter().flat_map(|c| &c.hosts).filter(|h| h.name == machine).flat_map(|h| &h.roles);
    let mut roles: Vec<String> = from_suite.chain(from_host).cloned().collect();
    roles.sort();
    roles.dedup();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for good in ["server", "data", "a", "Redirector-1", "x_y.z", &"r".repeat(64)] {
            assert_eq!(check_role_name(good), Ok(()), "{good}");
        }
        for bad in ["", "1server", "_x", "-x", ".x", "a b", "a/b", "rôle", "a:b", &"r".repeat(65)] {
            let message = check_role_name(bad).unwrap_err();
            assert!(message.contains(&format!("`{bad}` is not a role name")), "{message}");
            assert!(message.contains("starting with a letter"), "{message}");
        }
    }
}
