//! The fixture machinery on a folder of its own (under Cargo's temporary folder).

use std::panic::{catch_unwind, AssertUnwindSafe};

use xrdtest_golden::{differences, hex, unhex, Fixtures, Samples};

/// A folder removed when the test ends.
struct Folder(&'static str);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}

/// Fixtures in a fresh folder named `name`, and that folder.
fn fixtures(name: &str) -> (Fixtures, Folder) {
    let root = format!("{}/golden-{name}-{}", env!("CARGO_TARGET_TMPDIR"), std::process::id());
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(format!("{root}/pins")).unwrap();
    let root: &'static str = Box::leak(root.into_boxed_str());
    let fixtures = Fixtures {
        crate_dir: root,
        dir: "pins",
        prefix: "schema",
        what: "test schema",
        hex_of: "bytes",
        constant: "TEST_VERSION",
        constant_in: "src/lib.rs",
        test: "cargo test -p example",
        subject: "the samples",
        harm: "Readers of schema {N} would misread them.",
        also: "keep the `v{N}` types, ",
    };
    (fixtures, Folder(root))
}

fn samples(pairs: &[(&str, &[u8])]) -> Samples {
    pairs.iter().map(|(name, bytes)| (name.to_string(), hex(bytes))).collect()
}

/// The panic message of `f`, which must panic.
fn panic_of(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("should panic");
    payload.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn hex_round_trips_and_refuses_non_hex() {
    assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    assert_eq!(unhex("0001abff"), [0, 1, 0xab, 0xff]);
    assert_eq!(unhex("0001ABFF"), [0, 1, 0xab, 0xff]);
    assert!(unhex("").is_empty());
    for bad in ["0", "+f", "zz", "é0"] {
        assert!(catch_unwind(|| unhex(bad)).is_err(), "{bad}");
    }
}

#[test]
fn blessing_writes_a_missing_version_and_then_it_must_match() {
    let (fixtures, _folder) = fixtures("bless");
    let now = samples(&[("one", &[1]), ("two", &[2, 2])]);

    let missing = panic_of(|| fixtures.check_with(1, &now, false));
    assert!(missing.contains("no golden bytes for test schema 1"), "{missing}");
    assert!(missing.contains("XRDTEST_BLESS=1 cargo test -p example"), "{missing}");

    fixtures.check_with(1, &now, true);
    let text = std::fs::read_to_string(fixtures.path(1)).unwrap();
    assert_eq!(text, fixtures.render(1, &now));
    assert!(text.ends_with("one 01\ntwo 0202\n"), "{text}");
    assert_eq!(fixtures.read(1), Some(now.clone()));
    assert_eq!(fixtures.read(2), None);
    assert_eq!(fixtures.versions(), [1]);
    fixtures.check_with(1, &now, false);
    fixtures.check_with(1, &now, true);
}

#[test]
fn a_difference_fails_with_what_differs_and_how_to_bump_and_blessing_never_rewrites() {
    let (fixtures, _folder) = fixtures("differ");
    let pinned = samples(&[("gone", &[0]), ("same", &[1]), ("changed", &[2])]);
    fixtures.check_with(3, &pinned, true);
    let now = samples(&[("same", &[1]), ("changed", &[3]), ("new", &[4])]);

    let message = panic_of(|| fixtures.check_with(3, &now, false));
    for words in [
        "the samples no longer encode as pins/schema3.txt says, but TEST_VERSION is still 3:\n",
        "  changed: changed\n  new samples: new\n  samples gone: gone\n",
        "Readers of schema 3 would misread them.",
        "Bump TEST_VERSION in src/lib.rs to 4, keep the `v3` types, then write pins/schema4.txt with\n  \
         XRDTEST_BLESS=1 cargo test -p example\nand keep pins/schema3.txt as history.",
    ] {
        assert!(message.contains(words), "{words:?} not in:\n{message}");
    }
    assert!(!message.contains("never rewrites"), "{message}");

    let blessed = panic_of(|| fixtures.check_with(3, &now, true));
    assert!(blessed.contains("XRDTEST_BLESS never rewrites the fixture of an existing version"), "{blessed}");
    assert_eq!(fixtures.read(3), Some(pinned), "the fixture is untouched");
}

#[test]
fn versions_are_listed_in_order_and_a_newer_one_than_current_fails() {
    let (fixtures, _folder) = fixtures("versions");
    for version in [1, 2, 10] {
        fixtures.check_with(version, &samples(&[("a", &[version as u8])]), true);
    }
    std::fs::write(fixtures.path(7).with_file_name(".schema7.txt.partial"), "half").unwrap();
    assert_eq!(fixtures.versions(), [1, 2, 10]);

    let newer = panic_of(|| fixtures.check_with(2, &samples(&[("a", &[2])]), false));
    assert!(newer.contains("pins/schema10.txt is newer than test schema 2"), "{newer}");

    std::fs::write(fixtures.path(1).with_file_name("notes.md"), "").unwrap();
    let stray = panic_of(|| drop(fixtures.versions()));
    assert!(stray.contains("stray file notes.md"), "{stray}");
}

#[test]
fn differences_are_empty_for_equal_samples() {
    let same = samples(&[("a", &[1])]);
    assert_eq!(differences(&same, &same), "");
}
