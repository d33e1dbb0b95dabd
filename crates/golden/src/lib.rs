//! Golden bytes, shared by the tests that pin an encoding: the wire protocol's
//! (`crates/proto/tests/golden.rs`) and the store's (`crates/model/tests/golden.rs`).
//!
//! A test encodes fixed samples, names them, and calls [`Fixtures::check`] with the hex of
//! each. The fixture of a version is one file, `{prefix}{version}.txt` in the test's
//! folder, with one `name hex` line per sample (`#` lines are comments). The fixture of the
//! current version must match exactly. `XRDTEST_BLESS=1` writes the fixture of a version
//! that has none, and never rewrites one: a change to pinned bytes needs a new version.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Samples by name, each as its bytes in hex.
pub type Samples = BTreeMap<String, String>;

/// The fixtures of one encoding: where they are, and the words its messages use.
///
/// In `harm` and `also`, `{N}` stands for the version whose bytes no longer match.
#[derive(Debug, Clone, Copy)]
pub struct Fixtures {
    /// The crate's folder: `env!("CARGO_MANIFEST_DIR")`.
    pub crate_dir: &'static str,
    /// The fixtures' folder within it, as messages show it: `"tests/golden"`.
    pub dir: &'static str,
    /// Start of a fixture's file name, before the version: `"v"`, `"schema"`.
    pub prefix: &'static str,
    /// What the version numbers: `"protocol version"`, `"store schema"`.
    pub what: &'static str,
    /// What each line's hex is, for the fixture's header: `"bincode payload"`.
    pub hex_of: &'static str,
    /// The constant holding the current version: `"PROTOCOL_VERSION"`.
    pub constant: &'static str,
    /// The file defining it: `"crates/proto/src/message.rs"`.
    pub constant_in: &'static str,
    /// The command running the test: `"cargo test -p xrdtest-proto --test golden"`.
    pub test: &'static str,
    /// What was encoded, as the subject of a sentence: `"the messages"`.
    pub subject: &'static str,
    /// Why a mismatch matters, one sentence: `"A peer of version {N} would misread them."`.
    pub harm: &'static str,
    /// Steps of a bump besides raising the constant, each ending in `", "`; may be empty.
    pub also: &'static str,
}

impl Fixtures {
    /// The fixture file of `version`.
    pub fn path(&self, version: u32) -> PathBuf {
        Path::new(self.crate_dir).join(self.dir).join(self.file_name(version))
    }

    fn file_name(&self, version: u32) -> String {
        format!("{}{version}.txt", self.prefix)
    }

    /// The fixture of `version` as messages show it: `tests/golden/v2.txt`.
    fn label(&self, version: u32) -> String {
        format!("{}/{}", self.dir, self.file_name(version))
    }

    /// The pinned samples of `version`, or `None` when it has no fixture.
    pub fn read(&self, version: u32) -> Option<Samples> {
        let path = self.path(version);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(parse(&path, &text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => panic!("{}: {err}", path.display()),
        }
    }

    /// Every version with a fixture, oldest first (none without the folder). Panics on a file
    /// of another name; files starting with `.` are skipped (a fixture being blessed).
    pub fn versions(&self) -> Vec<u32> {
        let dir = Path::new(self.crate_dir).join(self.dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => panic!("{}: {err}", dir.display()),
        };
        let mut versions: Vec<u32> = entries
            .filter_map(|entry| {
                let name = entry.unwrap_or_else(|err| panic!("{}: {err}", dir.display())).file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') {
                    return None;
                }
                let version = name.strip_prefix(self.prefix).and_then(|rest| rest.strip_suffix(".txt"));
                let version = version.filter(|v| v.bytes().all(|b| b.is_ascii_digit())).and_then(|v| v.parse().ok());
                Some(version.unwrap_or_else(|| panic!("stray file {} in {}", name, dir.display())))
            })
            .collect();
        versions.sort_unstable();
        versions
    }

    /// The text of the fixture of `version` holding `samples`.
    pub fn render(&self, version: u32, samples: &Samples) -> String {
        let mut text = format!(
            "# xrdtest {} {version}: each sample of tests/golden.rs as its {}, in hex.\n\
             # Written by XRDTEST_BLESS=1 {}. Never edit it.\n",
            self.what, self.hex_of, self.test
        );
        for (name, hex) in samples {
            text.push_str(&format!("{name} {hex}\n"));
        }
        text
    }

    /// Passes when `now` is exactly the fixture of `version` (the current one). Under
    /// `XRDTEST_BLESS=1` writes the fixture of a version that has none. Otherwise panics,
    /// saying what differs and how to bump the version.
    pub fn check(&self, version: u32, now: &Samples) {
        self.check_with(version, now, blessing());
    }

    /// [`Fixtures::check`] with blessing asked for or not by `bless`, not by the environment.
    pub fn check_with(&self, version: u32, now: &Samples, bless: bool) {
        if let Some(newest) = self.versions().into_iter().rfind(|&v| v > version) {
            panic!(
                "{} is newer than {} {version} ({} in {}): a bump was undone without its fixture",
                self.label(newest),
                self.what,
                self.constant,
                self.constant_in
            );
        }
        let Some(pinned) = self.read(version) else {
            if !bless {
                panic!(
                    "no golden bytes for {} {version} ({}): write them with\n  XRDTEST_BLESS=1 {}",
                    self.what,
                    self.path(version).display(),
                    self.test
                );
            }
            self.write(version, now);
            return;
        };
        if pinned == *now {
            return;
        }
        let (n, next) = (version.to_string(), version + 1);
        let refused = if bless { "XRDTEST_BLESS never rewrites the fixture of an existing version.\n" } else { "" };
        panic!(
            "{subject} no longer encode as {file} says, but {constant} is still {n}:\n{differences}\
             {harm} {refused}Bump {constant} in {constant_in} to {next}, {also}then write {new_file} with\n  \
             XRDTEST_BLESS=1 {test}\n\
             and keep {file} as history. (Only if {file} was written in this same uncommitted change may you \
             delete it and bless again.)",
            subject = self.subject,
            file = self.label(version),
            constant = self.constant,
            differences = differences(&pinned, now),
            harm = self.harm.replace("{N}", &n),
            constant_in = self.constant_in,
            also = self.also.replace("{N}", &n),
            new_file = self.label(next),
            test = self.test,
        );
    }

    /// Writes the fixture aside, then renames it: a test reading the folder meanwhile never
    /// sees half a fixture.
    fn write(&self, version: u32, samples: &Samples) {
        let path = self.path(version);
        let dir = path.parent().expect("a fixture is in a folder");
        std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        let partial = dir.join(format!(".{}.partial", self.file_name(version)));
        std::fs::write(&partial, self.render(version, samples))
            .unwrap_or_else(|err| panic!("{}: {err}", partial.display()));
        std::fs::rename(&partial, &path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        eprintln!("wrote {} for {} {version}", path.display(), self.what);
    }
}

/// Whether `XRDTEST_BLESS=1` asks for missing fixtures to be written.
pub fn blessing() -> bool {
    std::env::var_os("XRDTEST_BLESS").is_some_and(|value| value == "1")
}

/// The `name hex` lines of a fixture's text; `path` is for messages.
pub fn parse(path: &Path, text: &str) -> Samples {
    let lines = text.lines().filter(|line| !line.is_empty() && !line.starts_with('#'));
    lines
        .map(|line| {
            let (name, hex) =
                line.split_once(' ').unwrap_or_else(|| panic!("{}: not `name hex`: {line}", path.display()));
            (name.to_string(), hex.to_string())
        })
        .collect()
}

/// How `pinned` and `now` differ, one indented line per kind of difference.
pub fn differences(pinned: &Samples, now: &Samples) -> String {
    let all: BTreeSet<&String> = pinned.keys().chain(now.keys()).collect();
    let list = |differs: fn(Option<&String>, Option<&String>) -> bool| {
        let names: Vec<&str> =
            all.iter().filter(|n| differs(pinned.get(**n), now.get(**n))).map(|n| n.as_str()).collect();
        names.join(", ")
    };
    let changed = list(|was, is| matches!((was, is), (Some(was), Some(is)) if was != is));
    let added = list(|was, _| was.is_none());
    let removed = list(|_, is| is.is_none());
    [("changed", changed), ("new samples", added), ("samples gone", removed)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("  {what}: {names}\n"))
        .collect()
}

/// Lowercase hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The bytes of [`hex`] text. Panics on anything but pairs of hex digits.
pub fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|err| panic!("not hex ({err}): {text}"))
}
