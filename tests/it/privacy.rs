//! The privacy door, checked on the bytes of the store file: no raw account id, email, ip or
//! device id of the log may be found in it. And the key behind the pseudonyms: one per store,
//! taken from where the user said, never exposed, never clobbered.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind::engine::{self, Shared};
use rewind::privacy::{Pseudonymizer, STORE_KEY_FILE};
use rewind::workload::{GenConfig, Record};

use crate::common;

#[test]
fn the_store_file_holds_no_raw_identifier() {
    let config = GenConfig {
        viewers: 50,
        titles: 10,
        seed: 5,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 10_000);
    let log = common::log(2);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    assert!(summary.changes_written > 0);

    let bytes = std::fs::read(store.path().join(rewind_state::FILE_NAME)).unwrap();
    // Needles are ASCII, so a lossy view of the file finds them wherever the bytes are.
    let text = String::from_utf8_lossy(&bytes);
    let mut needles = std::collections::BTreeSet::new();
    for record in &events {
        let v: serde_json::Value = serde_json::from_str(&record.json).unwrap();
        for field in ["user_id", "email", "ip", "device_id"] {
            needles.insert(v[field].as_str().unwrap().to_string());
        }
    }
    assert!(needles.len() > 150);
    for needle in &needles {
        assert!(
            !text.contains(needle.as_str()),
            "{needle:?} is in the store file"
        );
    }
    // The pseudonyms, on the other hand, are there.
    let pseudonym = common::door().viewer_id("u0000001").to_string();
    assert!(holds(&bytes, &pseudonym));
}

/// Whether the store file holds `viewer_id` as the store keeps it (a pseudonym as its 16 bytes).
fn holds(file: &[u8], viewer_id: &str) -> bool {
    let stored = rewind_state::layout::entity_key(viewer_id);
    file.windows(stored.len()).any(|w| w == stored)
}

fn small_workload() -> (GenConfig, Vec<Record>, Vec<Record>) {
    let config = GenConfig {
        viewers: 20,
        titles: 5,
        seed: 8,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 2_000);
    (config, titles, events)
}

/// A new key gives every account a new pseudonym: resuming with one would split each
/// viewer in two, and the old pseudonyms' windows would never close.
#[test]
fn a_store_refuses_a_run_with_another_key_and_keeps_only_its_fingerprint() {
    let (config, titles, events) = small_workload();
    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, store.path(), 1);

    let other_key = b"another key, of enough bytes too";
    let mut run = common::config(&log.brokers, store.path(), 1);
    run.door = Pseudonymizer::new(other_key);
    let err = engine::run(run, Arc::new(Shared::default()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&store.path().display().to_string()), "{err}");
    assert!(err.contains("pseudonym key"), "{err}");
    assert!(err.contains("fresh --store"), "{err}");
    for key in [common::KEY, other_key] {
        assert!(!err.contains(std::str::from_utf8(key).unwrap()), "{err}");
    }
    // The same key still resumes.
    common::run_caught_up(&log.brokers, store.path(), 1);

    let bytes = std::fs::read(store.path().join(rewind_state::FILE_NAME)).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(std::str::from_utf8(common::KEY).unwrap()));
    assert!(text.contains(&common::door().fingerprint()));
}

fn private_key_file(dir: &Path, key: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("door.key");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `--key-file` is named on the command line; a variable left in the environment must not
/// override it (as `--help` says).
#[test]
fn the_key_file_wins_over_the_environment() {
    let (config, titles, events) = small_workload();
    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let dir = tempfile::tempdir().unwrap();
    let file_key = "the key in the file, not the env";
    let key_file = private_key_file(dir.path(), file_key);
    let store = dir.path().join("store");
    // common::rewind sets REWIND_PSEUDONYM_KEY to the tests' key.
    common::ok(&common::rewind(&[
        "run",
        "--brokers",
        &log.brokers,
        "--store",
        store.to_str().unwrap(),
        "--until-caught-up",
        "--key-file",
        key_file.to_str().unwrap(),
    ]));
    let bytes = std::fs::read(store.join(rewind_state::FILE_NAME)).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let file_door = Pseudonymizer::new(file_key.as_bytes());
    assert!(holds(&bytes, &file_door.viewer_id("u0000001").to_string()));
    assert!(!holds(
        &bytes,
        &common::door().viewer_id("u0000001").to_string()
    ));
    assert!(text.contains(&file_door.fingerprint()));
}

/// Through the binary: a key file others may read is refused, naming the chmod to run.
#[test]
fn the_binary_refuses_a_key_file_others_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = private_key_file(dir.path(), "0123456789abcdef0123456789abcdef");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = common::rewind(&[
        "run",
        "--brokers",
        "127.0.0.1:1",
        "--store",
        dir.path().join("store").to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let chmod = format!("chmod 600 {}", key_file.display());
    assert!(stderr.contains(&chmod), "{stderr}");
}

/// A store another embedded run is writing has a live log: a second run on the same
/// directory must leave that store and its key alone, and say why.
#[test]
fn a_second_embedded_run_leaves_a_live_runs_store_and_key_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let store_s = store.to_str().unwrap();
    let embedded = |duration_s: &str| {
        Command::new(env!("CARGO_BIN_EXE_rewind"))
            .args([
                "run",
                "--store",
                store_s,
                "--viewers",
                "500",
                "--titles",
                "50",
            ])
            .args(["--rate", "2000", "--duration-s", duration_s])
            .env_remove(rewind::privacy::KEY_ENV)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = embedded("30");
    let as_of = || {
        let out = common::rewind(&["get", "--store", store_s, "title", "tt000000"]);
        let got: Option<serde_json::Value> = serde_json::from_slice(&out.stdout).ok();
        got.and_then(|g| g["as_of_ms"].as_u64())
    };
    let started = Instant::now();
    let mut before = None;
    while before.is_none() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(300));
        before = as_of();
    }
    let before = before.expect("the first run never committed");
    let key = std::fs::read(store.join(STORE_KEY_FILE)).unwrap();

    let second = embedded("2").wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let refusal = format!(
        "store {store_s} is being written by another rewind run (pid unknown); stop it or pass \
         another --store"
    );
    assert!(stderr.contains(&refusal), "{stderr}");
    let names: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".old")), "{names:?}");
    assert_eq!(std::fs::read(store.join(STORE_KEY_FILE)).unwrap(), key);

    // The first run goes on writing the same store, then stops cleanly.
    let started = Instant::now();
    while as_of().is_none_or(|t| t <= before) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        as_of().is_some_and(|t| t > before),
        "the first run stopped writing"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended early"
    );
    let kill = Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("everything complete committed"), "{stderr}");
}
