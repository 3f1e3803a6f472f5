//! The pipeline against a real Kafka-protocol broker: tansu on loopback with SQLite storage,
//! started by the test. A live run is stopped halfway, the rest of the log arrives, a second
//! run resumes from the offsets the store holds, and the store must equal the oracle.
//!
//! tansu comes from crates.io (`cargo install tansu --features libsql`, which `.ci/run` does
//! when it is missing). Without it the test says so and passes, except under CI (`CI` set),
//! where a missing broker is a failure.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind::engine::{self, Shared};
use rewind::workload::GenConfig;

use crate::common;
use crate::oracle::{World, check_store, sample_times};

/// A tansu broker process, stopped on drop.
struct Tansu {
    child: Child,
    brokers: String,
    _data: tempfile::TempDir,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REWIND_TANSU") {
        return Some(path.into());
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home.map(|h| h.join("bin")));
    candidates
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
}

fn start_tansu() -> Option<Tansu> {
    let Some(binary) = tansu_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "tansu is not installed: `cargo install tansu --features libsql` (.ci/run does this)"
        );
        eprintln!("SKIPPED: tansu is not installed (cargo install tansu --features libsql)");
        return None;
    };
    let data = tempfile::tempdir().unwrap();
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    // tansu reads the path of a sqlite:// URL relative to its working directory.
    let child = Command::new(&binary)
        .current_dir(data.path())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let tansu = Tansu {
        child,
        brokers: format!("127.0.0.1:{port}"),
        _data: data,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(tansu)
}

#[test]
fn a_stopped_and_resumed_run_on_tansu_equals_the_oracle() {
    let Some(tansu) = start_tansu() else { return };
    let brokers = tansu.brokers.clone();
    rewind_connectors::ensure_topic(&brokers, common::EVENTS, 3).unwrap();
    rewind_connectors::ensure_topic(&brokers, common::TITLES, 1).unwrap();
    let config = GenConfig {
        viewers: 200,
        titles: 40,
        seed: 21,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 8_000);
    common::produce_workload(&brokers, &titles, &events[..4_000], config.start_ms);

    let store = tempfile::tempdir().unwrap();
    let shared = Arc::new(Shared::default());
    let mut live = common::config(&brokers, store.path(), 2);
    live.until_caught_up = false;
    // Never idle: a stop must not seal ticks that the rest of the log still feeds.
    live.idle = Duration::from_secs(3600);
    let watcher = {
        let shared = shared.clone();
        let all = (titles.len() + 4_000) as u64;
        std::thread::spawn(move || common::stop_when_settled(&shared, all))
    };
    let first = engine::run(live, shared).unwrap();
    watcher.join().unwrap();
    common::produce(&brokers, common::EVENTS, &events[4_000..]);
    let second = common::run_caught_up(&brokers, store.path(), 2);

    assert!(
        first.frontier_ms > config.start_ms,
        "the first run committed"
    );
    assert_eq!(second.resumed_from_ms, first.frontier_ms);
    assert_eq!(second.counters.events, 8_000);
    let snap = rewind_state::ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    let offsets: u64 = snap.next_offsets().unwrap().iter().map(|o| o.2).sum();
    assert_eq!(
        offsets,
        8_000 + titles.len() as u64,
        "offsets cover the log"
    );

    let world = World::read(&brokers);
    assert_eq!(world.events.len(), 8_000);
    let times = sample_times(&world, 60, config.seed, &[first.frontier_ms]);
    check_store(store.path(), &world, &times);
}
