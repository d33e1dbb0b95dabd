//! Test hosts in network namespaces of their own, for what crosses a network (faults):
//! a hub namespace holds a bridge and the master, each host namespace one slave, joined to
//! the bridge by a veth pair; one more veth pair lets the test reach the hub (the master's
//! API). Everything is made by the test and removed on drop, pass or fail.
//!
//! Addresses, for subnet S: the bridge 10.252.S.1/24, host i 10.252.S.(11+i)/24; the test's
//! end of its pair 10.253.S.1/30, the hub's end 10.253.S.2/30.

use std::process::Command;

use crate::vm::{sh, sh_ok};

pub struct Hosts {
    prefix: String,
    subnet: u8,
    names: Vec<String>,
}

impl Hosts {
    /// Makes the hub and one namespace per name. `prefix` (at most 5 characters) and
    /// `subnet` must be unique among the tests that run at the same time.
    pub fn up(prefix: &str, subnet: u8, names: &[&str]) -> Hosts {
        assert!(prefix.len() <= 5, "interface names are at most 15 bytes");
        let hosts = Hosts { prefix: prefix.to_string(), subnet, names: names.iter().map(|n| n.to_string()).collect() };
        // A run killed halfway may have left them.
        hosts.remove();
        let (p, s, hub) = (prefix, subnet, hosts.hub());
        sh_ok(&format!(
            "set -e; ip netns add {hub}; ip -n {hub} link set lo up; \
             ip -n {hub} link add br0 type bridge; ip -n {hub} addr add 10.252.{s}.1/24 dev br0; \
             ip -n {hub} link set br0 up; \
             ip link add {p}r0 type veth peer name {p}r1 netns {hub}; \
             ip addr add 10.253.{s}.1/30 dev {p}r0; ip link set {p}r0 up; \
             ip -n {hub} addr add 10.253.{s}.2/30 dev {p}r1; ip -n {hub} link set {p}r1 up"
        ));
        for (i, name) in names.iter().enumerate() {
            let ns = hosts.netns(name);
            let ip = hosts.ip(name);
            sh_ok(&format!(
                "set -e; ip netns add {ns}; ip -n {ns} link set lo up; \
                 ip link add {p}h{i} netns {hub} type veth peer name eth0 netns {ns}; \
                 ip -n {hub} link set {p}h{i} master br0; ip -n {hub} link set {p}h{i} up; \
                 ip -n {ns} addr add {ip}/24 dev eth0; ip -n {ns} link set eth0 up"
            ));
        }
        hosts
    }

    /// The hub's namespace: where the master runs.
    pub fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    /// The hub's address on the bridge: where the slaves reach the master.
    pub fn hub_ip(&self) -> String {
        format!("10.252.{}.1", self.subnet)
    }

    /// The hub's end of the test's veth pair: where the test reaches the master's API.
    pub fn web_ip(&self) -> String {
        format!("10.253.{}.2", self.subnet)
    }

    pub fn netns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    pub fn ip(&self, name: &str) -> String {
        let i = self.names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no host {name}"));
        format!("10.252.{}.{}", self.subnet, 11 + i)
    }

    /// Runs a shell command inside host `name`'s namespace.
    pub fn exec(&self, name: &str, command: &str) -> std::process::Output {
        sh(&format!("ip netns exec {} bash -c {}", self.netns(name), shell_quote(command)))
    }

    fn remove(&self) {
        let mut script = format!("ip link del {}r0 2>/dev/null; ip netns del {} 2>/dev/null;", self.prefix, self.hub());
        for name in &self.names {
            script.push_str(&format!(" ip netns del {} 2>/dev/null;", self.netns(name)));
        }
        script.push_str(" true");
        let _ = Command::new("bash").args(["-c", &script]).status();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.remove();
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
