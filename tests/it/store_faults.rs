//! The store file under faults: flipped bytes, an empty or foreign file, an unclean stop, and
//! the signals service managers send. Every fault is either the same answer or a clear error
//! naming the file; never a panic, never a different answer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rewind::workload::GenConfig;

use crate::common::{self, rewind};

/// A small store built from a seeded workload; returns its directory and some viewer ids.
fn build_store() -> (tempfile::TempDir, Vec<String>) {
    let config = GenConfig {
        viewers: 30,
        titles: 8,
        seed: 17,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 3_000);
    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    assert!(summary.changes_written > 0);
    let ids = (1..=5)
        .map(|n| common::door().viewer_id(&format!("u{n:07}")).to_string())
        .collect();
    (store, ids)
}

fn file(dir: &Path) -> PathBuf {
    dir.join(rewind_state::FILE_NAME)
}

/// A copy of the store directory's file in a fresh directory.
fn copy_of(store: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(file(store), file(copy.path())).unwrap();
    copy
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// What a reader printed: `Ok(stdout)` or `Err(stderr)`; fails the test on a panic.
fn read(args: &[&str]) -> Result<String, String> {
    let out = rewind(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "`rewind {}` panicked: {stderr}",
        args.join(" ")
    );
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap()),
        false => Err(stderr),
    }
}

/// The three readers' answers on the store in `dir`: `get` of each id, `verify`, `snapshot`.
fn answers(dir: &Path, ids: &[String], labels: &Path) -> Vec<Result<String, String>> {
    let mut all: Vec<_> = ids
        .iter()
        .map(|id| read(&["get", "--store", s(dir), "viewer", id]))
        .collect();
    all.push(read(&["verify", "--store", s(dir)]));
    let out = dir.join("out.csv");
    let _ = std::fs::remove_file(&out);
    let snap = read(&[
        "snapshot",
        "--store",
        s(dir),
        "--labels",
        s(labels),
        "--out",
        s(&out),
    ]);
    all.push(snap.map(|_| std::fs::read_to_string(&out).unwrap()));
    all
}

/// Labels for each id at a few times before the store's frontier.
fn write_labels(store: &Path, dir: &Path, ids: &[String]) -> PathBuf {
    let snap = rewind_state::ReadOnlyStore::open(store)
        .unwrap()
        .snapshot()
        .unwrap();
    let as_of = snap.meta_u64("as_of_ms").unwrap().unwrap();
    let labels = dir.join("labels.csv");
    let mut body = String::from("viewer_id,ts\n");
    for id in ids {
        for before_ms in [1, 60_000, 400_000, 900_000] {
            body.push_str(&format!("{id},{}\n", as_of - before_ms));
        }
    }
    std::fs::write(&labels, body).unwrap();
    labels
}

/// An error is clear when it names the store file and says it is damaged (or, where the
/// flip hit the file's magic number, not a store at all).
fn assert_clear(stderr: &str, dir: &Path) {
    assert!(stderr.contains(s(&file(dir))), "no file named: {stderr}");
    let said = stderr.contains("is damaged") || stderr.contains("is not a rewind store");
    assert!(said, "not called damaged: {stderr}");
}

#[test]
fn flipped_bytes_anywhere_give_the_same_answer_or_a_clear_error() {
    let (store, ids) = build_store();
    let scratch = tempfile::tempdir().unwrap();
    let labels = write_labels(store.path(), scratch.path(), &ids);
    let good = answers(store.path(), &ids, &labels);
    assert!(good.iter().all(Result::is_ok), "{good:?}");
    let len = std::fs::metadata(file(store.path())).unwrap().len() as usize;
    let (mut errors, mut writer_refusals) = (0, 0);
    // Spread over the whole file, with odd strides so they land at every position in a page.
    for at in (0..61)
        .map(|i| i * (len / 61) + (i * 37) % 4096)
        .filter(|&at| at < len)
    {
        let copy = copy_of(store.path());
        let mut bytes = std::fs::read(file(copy.path())).unwrap();
        bytes[at] ^= 0x5a;
        std::fs::write(file(copy.path()), &bytes).unwrap();
        for (got, want) in answers(copy.path(), &ids, &labels).iter().zip(&good) {
            match got {
                Ok(_) => assert_eq!(got, want, "byte {at} flipped: a different answer"),
                Err(stderr) => {
                    assert_clear(stderr, copy.path());
                    errors += 1;
                }
            }
        }
        // A writer checks every page as it opens the file: it refuses the damage, or finds
        // none (the flip hit a free page) and leaves the answers as they were.
        match rewind_state::Store::open(copy.path()) {
            Err(err) => {
                assert_clear(&err.to_string(), copy.path());
                writer_refusals += 1;
            }
            Ok(store) => {
                drop(store);
                let again = answers(copy.path(), &ids, &labels);
                assert_eq!(
                    again, good,
                    "byte {at} flipped: a writer's open changed answers"
                );
            }
        }
    }
    assert!(errors > 0, "no flip was noticed; the check is too weak");
    assert!(
        writer_refusals > 0,
        "no flip stopped a writer; the check is too weak"
    );
}

#[test]
fn a_flipped_digit_in_a_stored_value_fails_verify_and_reads() {
    let (store, ids) = build_store();
    // A long value is found only where it is stored, not by chance elsewhere in the file.
    let snap = rewind_state::ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let (id, value) = ids
        .iter()
        .flat_map(|id| {
            let rows = snap.online("viewer", id).unwrap();
            rows.into_iter().map(move |r| (id.clone(), r.value_json))
        })
        .max_by_key(|(_, v)| v.len())
        .unwrap();
    drop(snap);
    assert!(value.len() > 20, "{}", String::from_utf8_lossy(&value));
    let digit = value
        .iter()
        .position(|b| (b'1'..=b'8').contains(b))
        .unwrap();
    let path = file(store.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let mut flipped = 0;
    let mut at = 0;
    // Every copy, in online and history alike: both still agree, and are still valid JSON.
    while let Some(found) = bytes[at..].windows(value.len()).position(|w| w == value) {
        bytes[at + found + digit] += 1;
        flipped += 1;
        at += found + value.len();
    }
    assert!(flipped > 0);
    std::fs::write(&path, &bytes).unwrap();

    let verify = read(&["verify", "--store", s(store.path())]).unwrap_err();
    assert_clear(&verify, store.path());
    assert!(verify.contains("checksum"), "{verify}");
    let get = read(&["get", "--store", s(store.path()), "viewer", &id]).unwrap_err();
    assert_clear(&get, store.path());
    assert!(get.contains(&id), "the damaged key is not named: {get}");
}

#[test]
fn an_empty_or_foreign_store_file_is_refused_and_left_alone() {
    for content in [&b""[..], b"not a database at all, just some text\n"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(file(dir.path()), content).unwrap();
        for args in [
            &["verify", "--store", s(dir.path())][..],
            &["get", "--store", s(dir.path()), "viewer", "v_1"],
        ] {
            let stderr = read(args).unwrap_err();
            assert!(stderr.contains(s(&file(dir.path()))), "{stderr}");
            assert!(stderr.contains("not a rewind store"), "{stderr}");
        }
        let err = rewind_state::Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("not a rewind store"), "{err}");
        assert_eq!(std::fs::read(file(dir.path())).unwrap(), content);
    }
}

/// The embedded default, writing `store` until stopped.
fn embedded_run(store: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["run", "--store", s(store), "--duration-s", "60"])
        .args(["--viewers", "500", "--rate", "5000"])
        .env_remove("REWIND_PSEUDONYM_KEY")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `get` sees a committed frontier in `store`.
fn wait_for_a_commit(store: &Path) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(out) = read(&["get", "--store", s(store), "title", "tt000000"]) {
            let got: serde_json::Value = serde_json::from_str(&out).unwrap();
            if got["as_of_ms"].is_u64() {
                return;
            }
        }
    }
    panic!("the run never committed output to {}", store.display());
}

fn signal(child: &Child, name: &str) {
    let kill = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
}

#[test]
fn a_store_left_by_a_killed_writer_is_readable_with_no_writer_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let child = embedded_run(&store);
    wait_for_a_commit(&store);
    signal(&child, "KILL");
    let out: Output = child.wait_with_output().unwrap();
    assert!(!out.status.success());

    let verified = read(&["verify", "--store", s(&store)]).unwrap();
    assert!(verified.starts_with("ok: "), "{verified}");
    let got = read(&["get", "--store", s(&store), "title", "tt000000"]).unwrap();
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert!(got["as_of_ms"].is_u64(), "{got}");
}

#[test]
fn sigterm_and_sighup_stop_a_run_as_cleanly_as_ctrl_c() {
    for name in ["TERM", "HUP"] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("data");
        let child = embedded_run(&store);
        wait_for_a_commit(&store);
        signal(&child, name);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "SIG{name}: {stderr}");
        assert!(
            stderr.contains("stopped with everything complete committed"),
            "SIG{name}: {stderr}"
        );
        let verified = read(&["verify", "--store", s(&store)]).unwrap();
        assert!(verified.starts_with("ok: "), "SIG{name}: {verified}");
    }
}
