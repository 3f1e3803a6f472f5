//! `rewind erase` on a store built from a file, the way an operator answers an erasure request:
//! the viewer reads as never seen, no byte of them is left in any file of the store directory,
//! every other viewer reads exactly as before, and the id is never echoed.

use std::path::Path;

use rewind::served::file::{LogFile, LogReader, slot_paths};
use rewind::served::{Served, ServedEntity, ServedValue};

use crate::common;

const VIEWERS: usize = 40;
const ERASED: &str = "u0000007";

/// A store replayed from `rewind gen`, with the tests' key in a private file.
fn replayed(dir: &Path) -> (String, String) {
    let events = dir.join("e.jsonl");
    common::ok(&common::rewind(&[
        "gen",
        "--viewers",
        &VIEWERS.to_string(),
        "--titles",
        "10",
        "--events",
        "8000",
        "--seed",
        "12",
        "--out",
        events.to_str().unwrap(),
    ]));
    let key = dir.join("key");
    std::fs::write(&key, common::KEY).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let store = dir.join("store");
    common::ok(&common::rewind(&[
        "replay",
        "--file",
        events.to_str().unwrap(),
        "--titles-file",
        dir.join("e.titles.jsonl").to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]));
    (
        store.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// `rewind erase` of the account `user_id` from `store`, with the tests' key file and `extra`.
fn erase(store: &str, key: &str, user_id: &str, extra: &[&str]) -> std::process::Output {
    erase_with(store, key, &[&["--user-id", user_id], extra].concat())
}

/// `rewind erase` from `store` with the key file `key` and `args` naming the accounts.
fn erase_with(store: &str, key: &str, args: &[&str]) -> std::process::Output {
    let base = ["erase", "--store", store, "--key-file", key];
    common::rewind(&[&base[..], args].concat())
}

fn user(n: usize) -> String {
    format!("u{n:07}")
}

fn get(store: &str, viewer: &str) -> serde_json::Value {
    let out = common::rewind(&["get", "--store", store, "viewer", viewer]);
    serde_json::from_str(&common::ok(&out)).unwrap()
}

/// Whether `rewind get` finds a value of `viewer` that is not the default.
fn has_values(store: &str, viewer: &str) -> bool {
    let got = get(store, viewer);
    let features = got["features"].as_object().unwrap();
    features.values().any(|f| !f["valid_from_ms"].is_null())
}

/// Rows a `rewind serve --log-served` would have logged for `viewer` and another.
fn log_served(store: &Path, viewer: &str, other: &str) {
    let mut log = LogFile::claim(store).unwrap();
    let entity = |id: &str| ServedEntity {
        kind: "viewer".into(),
        id: id.into(),
        values: vec![ServedValue {
            feature: "viewer.plays_24h".into(),
            json: "3".into(),
            valid_from_ms: Some(1_000),
        }],
    };
    let now = rewind::served::now_ms();
    for i in 0..20 {
        let served = Served {
            request_id: format!("r{i}"),
            served_at_ms: now + i,
            as_of_ms: now,
            entities: vec![entity(viewer), entity(other)],
        };
        log.append(&[served], 0).unwrap();
    }
    log.close();
}

/// The byte patterns that would betray a pseudonym: its packed key, its 16 bytes, its text, its
/// hex digits.
pub fn traces(viewer: &str) -> Vec<Vec<u8>> {
    let key = rewind_state::layout::entity_key(viewer);
    vec![
        key.clone(),
        key[1..].to_vec(),
        viewer.as_bytes().to_vec(),
        viewer.as_bytes()[2..].to_vec(),
    ]
}

pub fn files_holding(dir: &Path, patterns: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for p in patterns {
            if bytes.windows(p.len()).any(|w| w == p.as_slice()) {
                found.push(format!("{} holds {p:02x?}", path.display()));
            }
        }
    }
    found
}

/// Every history row, but the erased viewer's.
fn others_history(store: &str, erased: &str) -> Vec<rewind_state::HistoryRow> {
    let snap = rewind_state::ReadOnlyStore::open(Path::new(store))
        .unwrap()
        .snapshot()
        .unwrap();
    let rows = snap.history().unwrap();
    rows.into_iter().filter(|r| r.entity_id != erased).collect()
}

#[test]
fn an_erased_viewer_reads_as_never_seen_and_leaves_no_byte_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = replayed(dir.path());
    let door = common::door();
    let gone = door.viewer_id(ERASED).to_string();
    let other = door.viewer_id(&user(8)).to_string();
    log_served(Path::new(&store), &gone, &other);
    let before: Vec<_> = (0..VIEWERS)
        .map(|n| get(&store, &door.viewer_id(&user(n)).to_string()))
        .collect();
    let history = others_history(&store, &gone);
    let gone_before = get(&store, &gone);
    assert!(
        gone_before["features"]
            .as_object()
            .unwrap()
            .values()
            .any(|f| !f["valid_from_ms"].is_null()),
        "the viewer to erase has values: {gone_before}"
    );
    assert!(!files_holding(Path::new(&store), &traces(&gone)).is_empty());

    let out = erase(&store, &key, ERASED, &[]);
    let text = common::ok(&out);
    assert!(text.contains("erased: 1 online row"), "{text}");
    assert!(text.contains("served-log rows erased: 20"), "{text}");
    let said = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    for secret in [ERASED, gone.as_str(), &gone[2..]] {
        assert!(!said.contains(secret), "{secret} in {said}");
    }

    // Defaults, as for a viewer never seen.
    let now = get(&store, &gone);
    for (name, feature) in now["features"].as_object().unwrap() {
        assert!(feature["valid_from_ms"].is_null(), "{name}: {now}");
    }
    assert_eq!(
        files_holding(Path::new(&store), &traces(&gone)),
        Vec::<String>::new()
    );
    // Everyone else exactly as before, now and at every tick of history.
    for (n, was) in before.iter().enumerate() {
        if user(n) != ERASED {
            assert_eq!(
                &get(&store, &door.viewer_id(&user(n)).to_string()),
                was,
                "{}",
                user(n)
            );
        }
    }
    assert_eq!(others_history(&store, &gone), history);
    let served = rewind::served::file::LogReader::open(Path::new(&store)).unwrap();
    let rows = served.rows(0).unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.id == other));

    let report = common::rewind(&["privacy", "report", "--store", &store, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&common::ok(&report)).unwrap();
    assert_eq!(report["erasures"]["applied"], 1);
    assert_eq!(report["erasures"]["viewers"], 1);
    assert_eq!(
        report["erasures"]["latest"]["tick_ms"],
        now["as_of_ms"].as_u64().unwrap() + 1000
    );
    let text = common::rewind(&["privacy", "report", "--store", &store]);
    assert!(
        common::ok(&text).contains("erasures applied: 1 (1 viewers"),
        "{text:?}"
    );

    // Again: a repeat, nothing more to remove, nothing counted twice.
    let again = erase(&store, &key, ERASED, &[]);
    assert!(common::ok(&again).contains("already erased"), "{again:?}");
}

#[test]
fn hostile_arguments_and_a_held_store_get_clear_errors_that_never_show_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = replayed(dir.path());
    // Near the most one argument may be (128 KiB on Linux).
    let huge = "u".repeat(100_000);
    let secret = "u0000003";
    let wrong_key = dir.path().join("wrong");
    std::fs::write(&wrong_key, "another key, sixteen bytes or more").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let wrong_key = wrong_key.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--user-id", ""], "--user-id is empty"),
        (vec!["--user-id", &huge], "100000 bytes"),
        (
            vec!["--user-id", secret, "--ts", "abc"],
            "invalid value 'abc'",
        ),
        (
            vec!["--user-id", secret, "--ts", "-5"],
            "unexpected argument '-5'",
        ),
        (
            vec!["--user-id", secret, "--ts", "5"],
            "not a plausible time",
        ),
        (
            vec!["--user-id", secret, "--ts", "4000000000000"],
            "after the store's frontier",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["erase", "--store", &store, "--key-file", &key];
        all.extend(&args);
        let out = common::rewind(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !err.contains(secret) && err.len() < 2_000,
            "{args:?}: {err}"
        );
    }
    // An id that looks like an option is taken as the id (and not echoed as an unknown one).
    let out = erase_with(&store, &key, &["--user-id", "-x9"]);
    assert!(
        common::ok(&out).contains("no rows of this account"),
        "{out:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("-x9"));
    let out = erase_with(&store, wrong_key, &["--user-id", secret]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the one the store was built with"),
        "{err}"
    );
    let missing = dir.path().join("nowhere");
    let out = erase_with(missing.to_str().unwrap(), &key, &["--user-id", secret]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no store in"),
        "{out:?}"
    );
    assert!(!missing.exists(), "an erase must not create a store");

    // While a writer holds the store.
    let writer = rewind_state::Store::open(Path::new(&store)).unwrap();
    let out = erase_with(&store, &key, &["--user-id", secret]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("being written by another process"), "{err}");
    assert!(err.contains("erasure` topic"), "{err}");
    drop(writer);
    // A served log held by a process that never erases it: the store's erasure is done, and
    // the command fails naming the log, after the wait.
    let mut served = LogFile::claim(Path::new(&store)).unwrap();
    let held = served.path().display().to_string();
    let option_like = common::door().viewer_id("-x9").to_string();
    let row = Served {
        request_id: "r".into(),
        served_at_ms: rewind::served::now_ms(),
        as_of_ms: 0,
        entities: vec![ServedEntity {
            kind: "viewer".into(),
            id: option_like.clone(),
            values: Vec::new(),
        }],
    };
    served.append(&[row], 0).unwrap();
    let out = erase_with(&store, &key, &["--user-id", "-x9", "--server-wait", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("1 row(s) of the account(s) are still in"),
        "{err}"
    );
    assert!(err.contains(&held), "{err}");
    assert!(!err.contains(&option_like), "{err}");
    served.close();
    // Nothing of all that erased anything but the account that looked like an option.
    let snap = rewind_state::ReadOnlyStore::open(Path::new(&store))
        .unwrap()
        .snapshot()
        .unwrap();
    assert_eq!(snap.erasures_applied().unwrap(), 1);
    let door = common::door();
    let kept = door.viewer_id(secret).to_string();
    assert!(!snap.online("viewer", &kept).unwrap().is_empty());
}

/// A `rewind serve` reading the store in another process follows the rewritten file: the
/// erased viewer is not found, the others answer as before, and the server lets go of the old
/// file (whose free pages held the viewer) instead of keeping it open.
#[test]
fn a_running_server_follows_the_erasure() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let (store, key) = replayed(dir.path());
    let door = common::door();
    let gone = door.viewer_id(ERASED).to_string();
    let other = door.viewer_id(&user(9)).to_string();
    /// Killed when dropped, so a failed assertion leaves no server behind.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["serve", "--store", &store, "--listen", "127.0.0.1:0"])
        .args(["--log-served", "--key-file", &key])
        .env_remove(rewind::privacy::KEY_ENV)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let server = Server(server);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let read = |viewer: &str| -> serde_json::Value {
        let url = format!("http://{addr}/v1/viewers/{viewer}");
        let mut response = agent.get(&url).call().unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    };
    let started = Instant::now();
    while agent
        .get(format!("http://{addr}/health"))
        .call()
        .unwrap()
        .status()
        != 200
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(read(&gone)["found"], true);
    let other_before = read(&other);
    // The server logs what it served (in the background).
    let logged = |viewer: &str| {
        let log = LogReader::open(Path::new(&store)).unwrap();
        log.count_as_of("viewer", viewer, u64::MAX).unwrap()
    };
    let started = Instant::now();
    while logged(&gone) == 0 || logged(&other) == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never logged");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The server holds its served log, and erases the viewer's rows there itself.
    let erased = common::ok(&erase(&store, &key, ERASED, &[]));
    assert!(erased.contains("erased by them"), "{erased}");
    assert_eq!(logged(&gone), 0);
    assert_eq!(logged(&other), 1);
    let served_logs: Vec<_> = slot_paths(Path::new(&store));
    assert_eq!(served_logs.len(), 1);
    for file in &served_logs {
        let bytes = std::fs::read(file).unwrap();
        for trace in traces(&gone) {
            assert!(
                !bytes.windows(trace.len()).any(|w| w == trace),
                "{} still holds the erased viewer",
                file.display()
            );
        }
    }
    // The very next read already follows (the old file is marked replaced).
    assert_eq!(read(&gone)["found"], false);
    assert_eq!(read(&other), other_before);
    // Again, after the server served the account since: a repeat, and nothing is left.
    let again = common::ok(&erase(&store, &key, ERASED, &["--server-wait", "5"]));
    assert!(again.contains("already erased"), "{again}");
    assert!(again.contains("erased by them"), "{again}");
    #[cfg(target_os = "linux")]
    {
        let fds = format!("/proc/{}/fd", server.0.id());
        let started = Instant::now();
        loop {
            let deleted: Vec<String> = std::fs::read_dir(&fds)
                .unwrap()
                .filter_map(|fd| std::fs::read_link(fd.unwrap().path()).ok())
                .map(|target| target.display().to_string())
                .filter(|target| target.contains("rewind.redb") && target.contains("(deleted)"))
                .collect();
            if deleted.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the server still holds the replaced file: {deleted:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    drop(server);
}

/// A live run over the mock cluster, stopped when dropped.
pub struct LiveRun {
    pub shared: std::sync::Arc<rewind::engine::Shared>,
    run: Option<std::thread::JoinHandle<rewind::engine::RunSummary>>,
}

impl LiveRun {
    /// Starts `rewind run` on `log` as a server would keep it: never caught up, never sealed,
    /// partitions quiet for 200 ms stop holding time back.
    pub fn start(mut config: rewind::engine::RunConfig) -> LiveRun {
        config.until_caught_up = false;
        config.seal = false;
        config.idle = std::time::Duration::from_millis(200);
        let shared = std::sync::Arc::new(rewind::engine::Shared::default());
        let run = {
            let shared = shared.clone();
            std::thread::spawn(move || rewind::engine::run(config, shared).unwrap())
        };
        LiveRun {
            shared,
            run: Some(run),
        }
    }

    /// Waits, at most a minute, until `done` holds of the store; panics with `what` if never.
    pub fn wait_for(
        &self,
        store: &Path,
        what: &str,
        done: impl Fn(&rewind_state::Snapshot) -> bool,
    ) {
        let started = std::time::Instant::now();
        loop {
            let snap = rewind_state::ReadOnlyStore::open(store).and_then(|s| s.snapshot());
            if snap.is_ok_and(|snap| done(&snap)) {
                return;
            }
            let ended = self.run.as_ref().is_none_or(|r| r.is_finished());
            assert!(!ended, "the run ended before: {what}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "never: {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        self.shared.stop();
        if let Some(run) = self.run.take() {
            let _ = run.join();
        }
    }
}

/// `(key, json)` of one event of `user` at `ts_ms`.
pub fn event(user: &str, ts_ms: u64, body: &str) -> rewind::workload::Record {
    rewind::workload::Record {
        key: user.to_string(),
        json: format!(r#"{{"event_id":"{user}-{ts_ms}","user_id":"{user}","ts":{ts_ms},{body}}}"#),
        ts_ms,
        due_ms: ts_ms,
    }
}

/// A play of title `a` by each of `users`, a second apart from `from_ms`, `n` each.
pub fn plays(users: &[&str], from_ms: u64, n: u64) -> Vec<rewind::workload::Record> {
    let play = r#""type":"play_start","title_id":"a""#;
    (0..n)
        .flat_map(|i| {
            users
                .iter()
                .map(move |u| event(u, from_ms + i * 1000, play))
        })
        .collect()
}

/// A log with one title and the topic `control` of one partition, for a live run.
pub fn control_log(control: &str) -> common::Log {
    let log = common::log(1);
    log.create_topic(control, 1);
    let title = rewind::workload::Record {
        key: "a".into(),
        json:
            r#"{"title_id":"a","genres":["drama"],"rating":4.0,"duration_s":3600,"kind":"movie"}"#
                .into(),
        ts_ms: START_MS - 60_000,
        due_ms: 0,
    };
    common::produce(&log.brokers, common::TITLES, &[title]);
    log
}

/// A tick boundary in 2026, where the live tests' events start.
pub const START_MS: u64 = 1_767_225_600_000;

/// The one record of a sparse erasure topic: a live run applies it within the commits that
/// follow, though no record after it in its partition ever vouches for its time.
#[test]
fn a_lone_erasure_in_a_live_run_is_applied_within_the_commits_that_follow() {
    let log = control_log(common::ERASURE);
    common::produce(
        &log.brokers,
        common::EVENTS,
        &plays(&["u1", "u2"], START_MS, 30),
    );
    let store = tempfile::tempdir().unwrap();
    let run = LiveRun::start(common::config(&log.brokers, store.path(), 2));
    let door = common::door();
    let gone = door.viewer_id("u1").to_string();
    run.wait_for(store.path(), "u1 has values", |snap| {
        !snap.online("viewer", &gone).unwrap().is_empty()
    });

    let erasure = rewind::workload::Record {
        key: "u1".into(),
        json: format!(r#"{{"user_id":"u1","ts":{}}}"#, START_MS + 30_000),
        ts_ms: START_MS + 30_000,
        due_ms: 0,
    };
    common::produce(&log.brokers, common::ERASURE, &[erasure]);
    // Time goes on with u2 only; u1 sends nothing more.
    common::produce(
        &log.brokers,
        common::EVENTS,
        &plays(&["u2"], START_MS + 30_000, 30),
    );
    run.wait_for(store.path(), "u1's erasure applied", |snap| {
        snap.erasures_applied().unwrap() == 1
            && snap.online("viewer", &gone).unwrap().is_empty()
            && snap.history().unwrap().iter().all(|r| r.entity_id != gone)
    });
    let snap = rewind_state::ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let u2 = door.viewer_id("u2").to_string();
    assert!(!snap.online("viewer", &u2).unwrap().is_empty());
    assert_eq!(snap.dead_letters().unwrap(), vec![]);
}

/// `--user-id-file`: many accounts in one command, from a file or standard input, none of them
/// on the command line; a bad line stops it whole, named by its number, never by its content.
#[test]
fn erase_reads_many_ids_from_a_file_or_stdin_and_never_echoes_a_bad_line() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let (store, key) = replayed(dir.path());
    let door = common::door();
    let (a, b, c) = (user(3), user(4), user(5));
    let ids = |path: &str, text: &str| {
        let file = dir.path().join(path);
        std::fs::write(&file, text).unwrap();
        file.to_str().unwrap().to_string()
    };
    let erase_file = |file: &str| erase_with(&store, &key, &["--user-id-file", file]);
    let long = "u".repeat(300);
    let bad = [
        (format!("{a}\n\n{b}\n"), "line 2 of", "is empty or blank"),
        (format!("{a}\n{b}\n{long}\n"), "line 3 of", "300 bytes"),
        (format!("{a}\n {b}\n"), "line 2 of", "spaces at an end"),
        (String::new(), "holds no account id", ""),
    ];
    for (n, (text, line, why)) in bad.iter().enumerate() {
        let out = erase_file(&ids(&format!("bad{n}"), text));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?}");
        assert!(err.contains(line) && err.contains(why), "{text:?}: {err}");
        let said = format!("{err}{}", String::from_utf8_lossy(&out.stdout));
        for secret in [a.as_str(), b.as_str(), &long] {
            assert!(!said.contains(secret), "{secret} in {said}");
        }
    }
    // Nothing was erased by a file with a bad line.
    let viewer = |id: &str| door.viewer_id(id).to_string();
    assert!(has_values(&store, &viewer(&a)));
    let both = erase_file(&ids("ids", &format!("{a}\r\n{b}\n{a}\n")));
    let text = common::ok(&both);
    assert!(text.contains("2 account(s)"), "{text}");
    assert!(text.contains("2 online rows"), "{text}");
    for id in [&a, &b] {
        assert!(!has_values(&store, &viewer(id)));
        assert_eq!(
            files_holding(Path::new(&store), &traces(&viewer(id))),
            Vec::<String>::new()
        );
    }
    assert!(has_values(&store, &viewer(&c)));

    let mut child = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args([
            "erase",
            "--store",
            &store,
            "--key-file",
            &key,
            "--user-id-file",
            "-",
        ])
        .env_remove(rewind::privacy::KEY_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{c}\n{a}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = common::ok(&out);
    assert!(text.contains("1 account(s) already erased"), "{text}");
    assert!(text.contains("2 account(s)"), "{text}");
    assert!(files_holding(Path::new(&store), &traces(&viewer(&c))).is_empty());
    let both = erase_with(&store, &key, &["--user-id", &a, "--user-id-file", "-"]);
    assert!(!both.status.success());
}
