//! Kappa: a store built by `rewind replay` equals the one built live from the same log, and
//! `rewind verify` holds on both and catches a planted difference.

use std::path::Path;
use std::process::Output;

use rewind::workload::GenConfig;
use rewind_state::ReadOnlyStore;

use crate::common::{self, ok, rewind};

/// The history and online tables, row for row.
fn tables(dir: &Path) -> impl PartialEq + std::fmt::Debug {
    let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
    (
        snap.frontier_ms().unwrap(),
        snap.history().unwrap(),
        snap.online_all().unwrap(),
    )
}

fn verify(dir: &Path) -> Output {
    rewind(&["verify", "--store", dir.to_str().unwrap()])
}

#[test]
fn replay_from_a_cluster_equals_the_live_store_and_both_verify() {
    let config = GenConfig {
        viewers: 200,
        titles: 30,
        seed: 21,
        late: 0.002,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 30_000);
    let log = common::log(3);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let live = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, live.path(), 1);

    let dir = tempfile::tempdir().unwrap();
    let replayed = dir.path().join("replayed");
    let out = rewind(&[
        "replay",
        "--brokers",
        &log.brokers,
        "--store",
        replayed.to_str().unwrap(),
        "--workers",
        "2",
        // The live store is a finished log's (`run_caught_up` seals).
        "--seal",
    ]);
    ok(&out);
    assert_eq!(tables(&replayed), tables(live.path()));
    assert!(ok(&verify(live.path())).starts_with("ok: "));
    assert!(ok(&verify(&replayed)).starts_with("ok: "));

    let again = rewind(&[
        "replay",
        "--brokers",
        &log.brokers,
        "--store",
        replayed.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a store"));
}

#[test]
fn replay_from_a_file_equals_the_live_store_of_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let titles = dir.path().join("events.titles.jsonl");
    let (e, t) = (events.to_str().unwrap(), titles.to_str().unwrap());
    ok(&rewind(&[
        "gen",
        "--viewers",
        "100",
        "--titles",
        "20",
        "--events",
        "20000",
        "--seed",
        "4",
        "--out",
        e,
    ]));

    let log = common::log(2);
    let b = log.brokers.as_str();
    common::produce_files(b, t, "946684800000", e);
    let live = dir.path().join("live");
    ok(&rewind(&[
        "run",
        "--brokers",
        b,
        "--store",
        live.to_str().unwrap(),
        "--until-caught-up",
    ]));

    let replayed = dir.path().join("replayed");
    ok(&rewind(&[
        "replay",
        "--file",
        e,
        "--titles-file",
        t,
        "--store",
        replayed.to_str().unwrap(),
    ]));
    assert_eq!(tables(&replayed), tables(&live));
    let snap = ReadOnlyStore::open(&replayed).unwrap().snapshot().unwrap();
    let shares = snap
        .history()
        .unwrap()
        .into_iter()
        .filter(|r| r.feature == "viewer.genre_share_90d")
        .count();
    assert!(shares > 0, "titles from the file reached the features");
}

#[test]
fn verify_finds_a_planted_difference() {
    let config = GenConfig {
        viewers: 50,
        titles: 10,
        seed: 2,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 5_000);
    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, store.path(), 1);
    assert!(ok(&verify(store.path())).starts_with("ok: "));

    let (feature, entity) = plant(store.path());
    let out = verify(store.path());
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{feature} of {entity}: values differ; online 999")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 difference(s)"));
}

/// Overwrites one online value behind the writer's back; returns its (feature, entity).
fn plant(dir: &Path) -> (String, String) {
    use redb::ReadableTable;
    use rewind_state::{codec, layout};
    let (kind, id, feature, index) = {
        let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
        let (kind, id, row) = snap.online_all().unwrap().into_iter().next().unwrap();
        let index = snap.catalog().unwrap().index(&kind, &row.feature).unwrap();
        (kind, id, row.feature, index)
    };
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(dir.join(rewind_state::FILE_NAME))
        .unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(layout::ONLINE).unwrap();
        let entity = layout::entity_key(&id);
        let key = (kind.as_str(), entity.as_slice());
        let stored = table.get(key).unwrap().unwrap().value().to_vec();
        let row = layout::online_row(&kind, &entity);
        let mut features = codec::take_online(row.clone().open(&stored).unwrap()).unwrap();
        let planted = features.iter_mut().find(|f| f.feature == index).unwrap();
        planted.value = Some(b"999".to_vec());
        let mut payload = Vec::new();
        codec::put_online(&mut payload, &features);
        // Sealed as the store seals it: a difference in agreeing, intact rows.
        table.insert(key, row.seal(&payload).as_slice()).unwrap();
    }
    txn.commit().unwrap();
    (feature, id)
}

/// Writes `rewind gen` files into `dir`; returns (events, titles) paths.
fn gen_files(dir: &Path, args: &[&str]) -> (String, String) {
    let events = dir.join("events.jsonl").to_str().unwrap().to_string();
    ok(&rewind(&[&["gen", "--out", &events][..], args].concat()));
    let titles = events.replace("events.jsonl", "events.titles.jsonl");
    (events, titles)
}

fn meta(dir: &Path, key: &str) -> u64 {
    let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
    snap.meta_u64(key).unwrap().unwrap_or(0)
}

/// A file far larger than any in-process log keeps per partition, a titles file of 11 MB,
/// one 8 MiB line, and a line that is not UTF-8: every line is read, the bad ones are dead
/// letters at their line, and nothing good is lost.
#[test]
fn replay_from_a_file_reads_every_line_however_large() {
    let dir = tempfile::tempdir().unwrap();
    let (events, titles) = gen_files(
        dir.path(),
        &[
            "--viewers",
            "2",
            "--titles",
            "100000",
            "--events",
            "150000",
            "--seed",
            "9",
        ],
    );
    let mut lines: Vec<Vec<u8>> = std::fs::read(&events)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len(), 150_000);
    let mut huge =
        br#"{"event_id":"x","type":"search","user_id":"u","ts":1767225600000,"query":""#.to_vec();
    huge.resize(8 << 20, b'q');
    huge.extend_from_slice(br#""}"#);
    lines.insert(70_000, huge);
    lines.insert(70_001, b"{\"event_id\":\"\xff\xfe\"}".to_vec());
    std::fs::write(&events, lines.join(&b'\n')).unwrap();

    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    ok(&rewind(&[
        "replay",
        "--file",
        &events,
        "--titles-file",
        &titles,
        "--store",
        s,
        "--seal",
    ]));
    assert_eq!(meta(&store, "events_total"), 150_000);
    assert_eq!(meta(&store, "titles_total"), 100_000);
    assert_eq!(meta(&store, "dead_letters_total"), 2);
    let snap = ReadOnlyStore::open(&store).unwrap().snapshot().unwrap();
    let dead = snap.dead_letters().unwrap();
    assert_eq!((dead[0].offset, dead[1].offset), (70_000, 70_001));
    assert!(dead[0].reason.contains("exceeds"), "{}", dead[0].reason);
    assert!(dead[1].reason.contains("UTF-8"), "{}", dead[1].reason);
    assert_eq!(snap.next_offsets().unwrap()[0].2, 150_002);
    assert!(ok(&verify(&store)).starts_with("ok: "));
}

/// A replay of a file that is not there says which, and leaves nothing behind: no store file,
/// no commit counter beside it, and so no store a later run would take for a started one.
#[test]
fn a_replay_of_a_missing_file_fails_and_leaves_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _) = gen_files(dir.path(), &["--viewers", "2", "--events", "50"]);
    let missing = dir.path().join("missing.jsonl");
    let missing = missing.to_str().unwrap();
    for files in [
        vec!["--file", missing],
        vec!["--file", &events, "--titles-file", missing],
        vec!["--file", &events, "--erasures", missing],
    ] {
        let store = dir.path().join("store");
        let s = store.to_str().unwrap();
        let out = rewind(&[&["replay", "--store", s][..], &files].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{files:?}");
        assert!(stderr.contains("missing.jsonl"), "{files:?}: {stderr}");
        let left: Vec<_> = std::fs::read_dir(&store)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{files:?} left {left:?}");
    }
}

/// A file is one partition, so a second worker has none: it follows the first, and the run
/// must still end, every time, with the store one worker writes.
#[test]
fn replay_from_a_file_with_more_workers_than_partitions_ends_with_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let (events, titles) = gen_files(
        dir.path(),
        &["--viewers", "30", "--titles", "10", "--events", "40000"],
    );
    // Bad lines and one event far ahead, over three of the reader's batches (16,384 lines
    // each), which the decoding thread and the other worker decode while the reader places
    // the batch before: each must stay a dead letter at its own line, whoever decodes it.
    // The far event ends the first batch, so what vouches for it (or not) is in the next.
    let text = std::fs::read_to_string(&events).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let bad = |n: usize| format!("{{\"type\":\"heartbeat\",\"bad\":{n}");
    lines.insert(10, bad(0));
    lines.insert(16_382, bad(1));
    let far = lines[16_383].replacen("\"ts\":", "\"ts\":3786912000000, \"was\":", 1);
    lines.insert(16_383, far);
    lines.insert(16_384, bad(2));
    lines.insert(32_775, bad(3));
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let replay = |name: &str, workers: &str| {
        let store = dir.path().join(name);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rewind"))
            .args(["replay", "--file", &events, "--titles-file", &titles])
            .args(["--store", store.to_str().unwrap(), "--workers", workers])
            .env(
                "REWIND_PSEUDONYM_KEY",
                std::str::from_utf8(common::KEY).unwrap(),
            )
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("replay with {workers} workers did not end");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(child.wait().unwrap().success());
        store
    };
    let dead = |store: &Path| {
        let snap = ReadOnlyStore::open(store).unwrap().snapshot().unwrap();
        let letters = snap.dead_letters().unwrap().into_iter();
        letters.map(|d| (d.offset, d.reason)).collect::<Vec<_>>()
    };
    let twos: Vec<_> = (0..6).map(|r| replay(&format!("two-{r}"), "2")).collect();
    let one_store = replay("one", "1");
    let one = tables(&one_store);
    let one_dead = dead(&one_store);
    let offsets: Vec<u64> = one_dead.iter().map(|d| d.0).collect();
    assert_eq!(offsets, [10, 16_382, 16_383, 16_384, 32_775]);
    for two in &twos {
        assert_eq!(tables(two), one);
        assert_eq!(dead(two), one_dead);
    }
}

/// `GET /health` of a `rewind serve` on `addr`: (status, body).
fn health(addr: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: rewind\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// A store `rewind replay` has not finished is a prefix of its log: a server refuses it (503,
/// saying why) rather than serve it as current; a finished replay is served.
#[test]
fn a_server_refuses_a_store_whose_replay_has_not_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (events, titles) = gen_files(dir.path(), &["--events", "200000", "--viewers", "500"]);
    let stopped = dir.path().join("stopped");
    let mut replay = std::process::Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args([
            "replay",
            "--file",
            &events,
            "--titles-file",
            &titles,
            "--store",
        ])
        .arg(&stopped)
        .env(
            "REWIND_PSEUDONYM_KEY",
            "0011223344556677889900aabbccddeeff0011223344556677889900aabbccdd",
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = stopped.join(rewind_state::FILE_NAME);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "replay made no store");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Stopped the way an operator stops it: the store stays a prefix.
    std::process::Command::new("kill")
        .args(["-TERM", &replay.id().to_string()])
        .status()
        .unwrap();
    replay.wait().unwrap();

    let finished = dir.path().join("finished");
    ok(&rewind(&[
        "replay",
        "--file",
        &events,
        "--titles-file",
        &titles,
        "--store",
        finished.to_str().unwrap(),
    ]));

    for (store, expect) in [(&stopped, 503), (&finished, 200)] {
        let store = store.to_str().unwrap();
        let args = ["serve", "--listen", "127.0.0.1:0", "--store", store];
        let mut server = common::spawn_rewind(&args, false);
        let within = std::time::Duration::from_secs(30);
        let addr = server.words_after(&[common::SERVING], within).remove(0);
        let (status, body) = health(&addr);
        let _ = server.child.kill();
        let _ = server.child.wait();
        assert_eq!(status, expect, "{store}: {body}");
        if expect == 503 {
            assert!(body.contains("rewind replay"), "{body}");
        }
    }
}

/// With consent gating, a replay of the files (`--consent FILE`) equals the live store built
/// from the same records in Kafka: consent records land at the same ticks either way.
#[test]
fn replay_with_consent_equals_the_live_store_of_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let (titles, consent) = (
        dir.path().join("events.titles.jsonl"),
        dir.path().join("events.consent.jsonl"),
    );
    let (e, t, c) = (
        events.to_str().unwrap(),
        titles.to_str().unwrap(),
        consent.to_str().unwrap(),
    );
    let gen_args = [
        "gen",
        "--viewers",
        "100",
        "--titles",
        "20",
        "--events",
        "20000",
    ];
    ok(&rewind(
        &[&gen_args[..], &["--seed", "5", "--out", e]].concat(),
    ));
    assert!(
        std::fs::read_to_string(&consent)
            .unwrap()
            .contains("\"granted\":false")
    );

    let log = common::log(2);
    log.create_topic(common::CONSENT, 1);
    let b = log.brokers.as_str();
    common::produce_files(b, t, "946684800000", e);
    ok(&rewind(&[
        "produce",
        "--brokers",
        b,
        "--topic",
        "consent",
        "--file",
        c,
    ]));
    let gate = ["--consent-purposes", "personalization,analytics"];
    let live = dir.path().join("live");
    let run = ["run", "--brokers", b, "--until-caught-up", "--store"];
    let out = rewind(&[&run[..], &[live.to_str().unwrap()], &gate[..]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(stderr.contains("consent:"), "{stderr}");

    let replayed = dir.path().join("replayed");
    let replay = [
        "replay",
        "--file",
        e,
        "--titles-file",
        t,
        "--consent",
        c,
        "--store",
    ];
    ok(&rewind(
        &[&replay[..], &[replayed.to_str().unwrap()], &gate[..]].concat(),
    ));
    assert_eq!(tables(&replayed), tables(&live));
    // The live store refuses a run without its consent settings.
    let out = rewind(&[&run[..], &[live.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("consent"),
        "{stderr}"
    );
}

/// As `tables`, saying where they first differ rather than printing both.
fn assert_same_tables(a: &Path, b: &Path) {
    let read = |dir: &Path| {
        let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
        (
            snap.frontier_ms().unwrap(),
            snap.history().unwrap(),
            snap.online_all().unwrap(),
        )
    };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.0, b.0, "frontiers");
    let only = |x: &[rewind_state::HistoryRow], y: &[rewind_state::HistoryRow]| {
        x.iter()
            .filter(|r| !y.contains(r))
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        a.1 == b.1,
        "history: only in the first {:?}; only in the second {:?}",
        only(&a.1, &b.1),
        only(&b.1, &a.1)
    );
    let first = a.2.iter().zip(&b.2).find(|(x, y)| x != y);
    assert!(
        a.2 == b.2,
        "online ({} and {} rows): first difference {first:?}",
        a.2.len(),
        b.2.len()
    );
}

/// Whether `needle` occurs in any file of `dir`.
fn bytes_in(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

/// The suppression list by token and erasure time: the tick an erasure landed at differs
/// between a live run (its own tick) and a replay (the first).
fn suppressed(dir: &Path) -> Vec<([u8; 32], u64)> {
    let snap = ReadOnlyStore::open(dir).unwrap().snapshot().unwrap();
    let mut list: Vec<_> = snap
        .erasures()
        .unwrap()
        .into_iter()
        .map(|e| (e.token, e.ts_ms))
        .collect();
    list.sort();
    list
}

/// After erasures, a replay of the files (`--erasures FILE`) holds no trace of what erased
/// viewers did before their erasure, not even in early history, and equals the live store
/// built from the same records in Kafka in everything else.
#[test]
fn replay_with_erasures_equals_the_live_store_and_forgets_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let titles = dir.path().join("events.titles.jsonl");
    let erasures = dir.path().join("events.erasures.jsonl");
    let (e, t, x) = (
        events.to_str().unwrap(),
        titles.to_str().unwrap(),
        erasures.to_str().unwrap(),
    );
    let gen_args = [
        "gen",
        "--viewers",
        "100",
        "--titles",
        "20",
        "--events",
        "20000",
    ];
    ok(&rewind(
        &[&gen_args[..], &["--seed", "6", "--out", e]].concat(),
    ));
    // A viewer who watches a little, asks to be forgotten, and never comes back.
    let start = GenConfig::default().start_ms;
    let gone: Vec<String> = (0..6)
        .map(|i| {
            let ts = start + 200 + i * 10_000;
            format!(
                r#"{{"event_id":"g{i}","type":"heartbeat","user_id":"gone","ts":{ts},"title_id":"t0000001","position_s":{i},"interval_s":10}}"#
            )
        })
        .collect();
    let ts_of = |line: &String| {
        let at = line.find(r#""ts":"#).unwrap() + r#""ts":"#.len();
        let digits = line[at..].bytes().take_while(u8::is_ascii_digit).count();
        line[at..at + digits].parse::<u64>().unwrap()
    };
    let mut lines: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    // In time order, so that they are as late or on time in one partition as in several.
    for line in gone {
        let at = lines.iter().position(|l| ts_of(l) > ts_of(&line)).unwrap();
        lines.insert(at, line);
    }
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let mut erasure_lines: Vec<String> = std::fs::read_to_string(&erasures)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(erasure_lines.len() > 5, "{erasure_lines:?}");
    let erased_at = start + 70_000;
    erasure_lines.push(format!(r#"{{"user_id":"gone","ts":{erased_at}}}"#));
    let ts_of = |line: &String| {
        line.rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('}')
            .parse::<u64>()
            .unwrap()
    };
    erasure_lines.sort_by_key(ts_of);
    std::fs::write(&erasures, erasure_lines.join("\n") + "\n").unwrap();

    let log = common::log(2);
    log.create_topic(common::ERASURE, 1);
    let b = log.brokers.as_str();
    common::produce_files(b, t, "946684800000", e);
    ok(&rewind(&[
        "produce",
        "--brokers",
        b,
        "--topic",
        "erasure",
        "--file",
        x,
    ]));
    let live = dir.path().join("live");
    let run = [
        "run",
        "--brokers",
        b,
        "--until-caught-up",
        "--seal",
        "--store",
    ];
    let out = rewind(&[&run[..], &[live.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(&out);
    assert!(stderr.contains("erasure:"), "{stderr}");

    let replayed = dir.path().join("replayed");
    let replay = [
        "replay",
        "--file",
        e,
        "--titles-file",
        t,
        "--erasures",
        x,
        "--seal",
    ];
    ok(&rewind(
        &[
            &replay[..],
            &["--workers", "2", "--store", replayed.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert_same_tables(&replayed, &live);
    assert_eq!(suppressed(&replayed), suppressed(&live));
    // One entry per erased viewer, whose erasure time is that of its latest erasure.
    let users: std::collections::BTreeSet<&str> = erasure_lines
        .iter()
        .map(|l| l.split('"').nth(3).unwrap())
        .collect();
    assert_eq!(suppressed(&live).len(), users.len());

    // A replay from the cluster reads its erasure topic first, to the same effect.
    let from_cluster = dir.path().join("from_cluster");
    let replay = ["replay", "--brokers", b, "--seal", "--store"];
    ok(&rewind(
        &[&replay[..], &[from_cluster.to_str().unwrap()]].concat(),
    ));
    assert_same_tables(&from_cluster, &live);
    assert_eq!(suppressed(&from_cluster), suppressed(&live));

    // The viewer who never came back: not a byte of its pseudonym in any of the stores.
    let viewer = common::door().viewer_id("gone");
    for store in [&live, &replayed, &from_cluster] {
        let text = viewer.to_string();
        assert!(
            !bytes_in(store, text.as_bytes()),
            "{text} in {}",
            store.display()
        );
        assert!(
            !bytes_in(store, &viewer.0.to_be_bytes()),
            "{text} in {}",
            store.display()
        );
    }
    // A replay without the erasures would hold it: the scan is not vacuous.
    let unerased = dir.path().join("unerased");
    let replay = [
        "replay",
        "--file",
        e,
        "--titles-file",
        t,
        "--seal",
        "--store",
    ];
    ok(&rewind(
        &[&replay[..], &[unerased.to_str().unwrap()]].concat(),
    ));
    assert!(bytes_in(&unerased, &viewer.0.to_be_bytes()));
}
