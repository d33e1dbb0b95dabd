//! `[[links]]` of a cluster: network conditions between its hosts (Testground's link
//! shaping): added delay, jitter, loss and a rate limit, both ways between two groups of
//! hosts, applied for every session on the cluster and healed at its end.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::cluster::{qualify, Host};
use crate::source::Checker;
use crate::units::{parse_loss_ppm, parse_micros, parse_rate_bps};

/// One `[[links]]` entry, its sides resolved to full host names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub a: Vec<String>,
    pub b: Vec<String>,
    pub delay_us: u64,
    pub jitter_us: u64,
    pub loss_ppm: u32,
    pub rate_bps: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    a: Option<Spanned<Side>>,
    b: Option<Spanned<Side>>,
    delay: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    loss: Option<Spanned<String>>,
    rate: Option<Spanned<String>>,
}

/// A side: one host or role (`"server"`, `"role:data"`), or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Side {
    One(String),
    Many(Vec<String>),
}

/// Checks the `[[links]]` against the cluster's (valid) hosts.
pub(crate) fn check_links(
    check: &mut Checker,
    raw: &[Spanned<RawLink>],
    hosts: &[Host],
    domain: &str,
) -> Option<Vec<Link>> {
    let mut links = Vec::new();
    let mut ok = true;
    for (index, entry) in raw.iter().enumerate() {
        match check_link(check, entry, index, hosts, domain) {
            Some(link) => links.push(link),
            None => ok = false,
        }
    }
    ok.then_some(links)
}

fn check_link(
    check: &mut Checker,
    entry: &Spanned<RawLink>,
    index: usize,
    hosts: &[Host],
    domain: &str,
) -> Option<Link> {
    let raw = entry.get_ref();
    let field = |name: &str| format!("links[{index}].{name}");
    let side = |value: &Option<Spanned<Side>>, name: &str, check: &mut Checker| -> Option<Vec<String>> {
        let Some(value) = value else {
            check.at(entry, &field(name), "is required: a host, `role:NAME`, or a list of them");
            return None;
        };
        let words = match value.get_ref() {
            Side::One(word) => vec![word.clone()],
            Side::Many(words) => words.clone(),
        };
        let mut names: Vec<String> = Vec::new();
        for word in &words {
            let found: Vec<String> = match word.strip_prefix("role:") {
                Some(role) => {
                    hosts.iter().filter(|h| h.roles.iter().any(|r| r == role)).map(|h| h.name.clone()).collect()
                }
                None => hosts.iter().filter(|h| h.name == qualify(word, domain)).map(|h| h.name.clone()).collect(),
            };
            if found.is_empty() {
                check.at(value, &field(name), format!("`{word}` is not a host of the cluster, nor a role one has"));
                return None;
            }
            for host in found {
                if !names.contains(&host) {
                    names.push(host);
                }
            }
        }
        if names.is_empty() {
            check.at(value, &field(name), "names no host");
            return None;
        }
        Some(names)
    };
    let a = side(&raw.a, "a", check);
    let b = side(&raw.b, "b", check);
    let figure = |value: &Option<Spanned<String>>,
                  name: &str,
                  check: &mut Checker,
                  parse: &dyn Fn(&str) -> Result<u64, String>| {
        match value {
            None => Some(0),
            Some(v) => parse(v.get_ref()).map_err(|message| check.at(v, &field(name), message)).ok(),
        }
    };
    let delay_us = figure(&raw.delay, "delay", check, &parse_micros);
    let jitter_us = figure(&raw.jitter, "jitter", check, &parse_micros);
    let loss_ppm = figure(&raw.loss, "loss", check, &|t| parse_loss_ppm(t).map(u64::from));
    let rate_bps = figure(&raw.rate, "rate", check, &parse_rate_bps);
    let (a, b) = (a?, b?);
    if let Some(both) = a.iter().find(|h| b.contains(h)) {
        check.at(entry, &field("b"), format!("host {both} is on both sides of the link"));
        return None;
    }
    let link =
        Link { a, b, delay_us: delay_us?, jitter_us: jitter_us?, loss_ppm: loss_ppm? as u32, rate_bps: rate_bps? };
    if link.delay_us == 0 && link.jitter_us == 0 && link.loss_ppm == 0 && link.rate_bps == 0 {
        check.at(entry, &format!("links[{index}]"), "gives no condition: set delay, jitter, loss or rate");
        return None;
    }
    if link.jitter_us > 0 && link.delay_us == 0 {
        check.at(entry, &field("jitter"), "needs a delay to vary around");
        return None;
    }
    Some(link)
}
