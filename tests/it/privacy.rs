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

/// `rewind privacy report` on a store built from a log full of raw ids, emails and IPs: clean,
/// with every history row and dead letter accounted for. A file planted beside the store with
/// an email and an IP is found, reported by offset only, and fails `--check`.
#[test]
fn the_privacy_report_finds_nothing_in_a_store_and_what_was_planted_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.jsonl");
    let events_s = events.to_str().unwrap();
    common::ok(&common::rewind(&[
        "gen",
        "--viewers",
        "60",
        "--titles",
        "12",
        "--events",
        "6000",
        "--seed",
        "4",
        "--out",
        events_s,
    ]));
    // Two dead letters of one class (numbers differ), one of another; each full of raw data.
    let mut log = std::fs::read_to_string(&events).unwrap();
    log.push_str("{\"user_id\":\"u0000007\",\"email\":\"u0000007@example.com\"\n");
    log.push_str("{\"user_id\":\"u0000008\",\"ip\":\"10.1.2.3\",,\"event_id\":12345}\n");
    log.push_str(
        "{\"event_id\":\"x\",\"type\":\"play_start\",\"user_id\":\"u0000009\",\"ts\":5,\
         \"title_id\":\"t1\",\"ip\":\"10.9.9.9\"}\n",
    );
    std::fs::write(&events, log).unwrap();
    let store = dir.path().join("store");
    let store_s = store.to_str().unwrap();
    common::ok(&common::rewind(&[
        "replay",
        "--file",
        events_s,
        "--titles-file",
        dir.path().join("e.titles.jsonl").to_str().unwrap(),
        "--store",
        store_s,
    ]));
    let report = common::rewind(&["privacy", "report", "--store", store_s, "--json", "--check"]);
    let report: serde_json::Value = serde_json::from_str(&common::ok(&report)).unwrap();

    let history = rewind_state::ReadOnlyStore::open(&store)
        .unwrap()
        .snapshot()
        .unwrap()
        .history()
        .unwrap();
    let table = &report["retention"]["tables"][0];
    assert_eq!(table["table"], "history");
    assert_eq!(table["rows"], history.len() as u64);
    assert_eq!(
        table["oldest_ms"],
        history.iter().map(|r| r.valid_from_ms).min().unwrap()
    );
    assert_eq!(table["past_retention"], 0);
    assert_eq!(report["retention"]["limit_ms"], 365 * 86_400_000u64);
    assert_eq!(report["dead_letters"]["total"], 3);
    let letters = &report["retention"]["tables"][1];
    assert_eq!(
        (
            &letters["table"],
            &letters["rows"],
            &letters["past_retention"]
        ),
        (
            &serde_json::json!("dead_letters"),
            &serde_json::json!(3),
            &serde_json::json!(0)
        )
    );
    assert_eq!(
        report["dead_letters"]["by_reason"],
        serde_json::json!([
            ["bad JSON: syntax error at column N", 2],
            [
                "`ts` is not a plausible time (ms since epoch, years N to N)",
                1
            ]
        ])
    );
    let scan = report["scan"].as_array().unwrap();
    let mut files: Vec<&str> = scan.iter().map(|f| f["file"].as_str().unwrap()).collect();
    files.sort();
    assert_eq!(
        files,
        [rewind_state::COMMITS_FILE, rewind_state::FILE_NAME],
        "{scan:?}"
    );
    assert!(
        scan.iter().all(|f| f["findings"] == serde_json::json!([])),
        "{scan:?}"
    );

    let planted = b"\x00\x01notes: reach u0000042 at someone@mail.example.com from 192.168.0.17\n";
    std::fs::write(store.join("notes.bin"), planted).unwrap();
    let checked = common::rewind(&["privacy", "report", "--store", store_s, "--check"]);
    assert_eq!(checked.status.code(), Some(2), "{checked:?}");
    let text = String::from_utf8(checked.stdout).unwrap();
    assert!(text.contains("notes.bin"), "{text}");
    for (kind, offset) in [("raw id u:7", 15), ("email", 27), ("ipv4", 57)] {
        assert!(
            text.contains(&format!("1 × {kind}, first at byte offsets [{offset}]")),
            "{kind} at {offset}: {text}"
        );
    }
    // Found by offset, never shown.
    for secret in ["u0000042", "someone@", "192.168"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

/// A cluster that cannot describe topic configs (librdkafka's mock cluster cannot) is named in
/// the report with the reason; the rest of the report stands.
#[test]
fn the_privacy_report_says_when_kafka_cannot_tell_its_retention() {
    let (config, titles, events) = small_workload();
    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, store.path(), 1);
    let store_s = store.path().to_str().unwrap();
    let out = common::rewind(&[
        "privacy",
        "report",
        "--store",
        store_s,
        "--json",
        "--brokers",
        &log.brokers,
    ]);
    let report: serde_json::Value = serde_json::from_str(&common::ok(&out)).unwrap();
    assert_eq!(report["kafka"]["brokers"], log.brokers.as_str());
    assert_eq!(report["kafka"]["topics"], serde_json::json!([]));
    let error = report["kafka"]["error"].as_str().unwrap();
    assert!(error.contains(log.brokers.as_str()), "{error}");
    assert!(report["retention"]["tables"][0]["rows"].as_u64().unwrap() > 0);
}
