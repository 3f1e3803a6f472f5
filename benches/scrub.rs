//! What an erasure's scrub costs the writer: a stream of commits at the live tick on a store
//! of some size, one of them carrying an erasure, with the scrub in place (the commit waits for
//! a copy of the whole store) and in the background (`Store::scrub_in_background`, what `rewind
//! run` does). Prints each mode's commit latencies: the erasure's commit, the worst of the
//! others, and their median.
//!
//! Run: `cargo bench --bench scrub` (`REWIND_SCRUB_CHANGES=N`: the store's size in changes,
//! 2,000,000 by default; ~60 bytes of file each).

use std::path::Path;
use std::time::{Duration, Instant};

use rewind_state::{Change, Commit, Erasure, Store};

const FEATURES: [&str; 5] = ["viewer.a", "viewer.b", "viewer.c", "viewer.d", "viewer.e"];
const VIEWERS: u64 = 20_000;
const PER_TICK: u64 = 10_000;

fn viewer(n: u64) -> String {
    format!("v_{n:032x}")
}

/// `PER_TICK` changes of tick `tick`, spread over the viewers and features.
fn tick_changes(tick: u64) -> Vec<Change> {
    (0..PER_TICK)
        .map(|i| {
            let n = (tick * 7919 + i * 104_729) % VIEWERS;
            Change {
                entity_kind: "viewer",
                feature: FEATURES[(i % 5) as usize],
                entity_id: viewer(n).into(),
                tick_ms: tick * 1000,
                value: Some(format!("{{\"n\":{},\"t\":{tick}}}", i * 31 % 997).into_bytes()),
            }
        })
        .collect()
}

fn commit(store: &Store, ticks: std::ops::Range<u64>, erasures: Vec<Erasure>) -> Duration {
    let frontier_ms = ticks.end * 1000;
    let changes = ticks.flat_map(tick_changes).collect();
    let started = Instant::now();
    store
        .commit(&Commit {
            frontier_ms,
            changes,
            erasures,
            ..Commit::default()
        })
        .unwrap();
    started.elapsed()
}

fn build(dir: &Path, changes: u64) -> u64 {
    let store = Store::open(dir).unwrap();
    let ticks = changes / PER_TICK;
    let mut tick = 1;
    while tick < ticks {
        let to = (tick + 20).min(ticks);
        commit(&store, tick..to, Vec::new());
        tick = to;
    }
    tick
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn main() {
    let changes: u64 = std::env::var("REWIND_SCRUB_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let built = tmp.path().join("built");
    let started = Instant::now();
    let next_tick = build(&built, changes);
    let bytes = std::fs::metadata(built.join(rewind_state::FILE_NAME))
        .unwrap()
        .len();
    println!(
        "scrub: a store of {changes} changes, {} MB, built in {:.1} s",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    for background in [false, true] {
        let dir = tmp.path().join(format!("run-{background}"));
        copy_dir(&built, &dir);
        let mut store = Store::open(&dir).unwrap();
        if background {
            store.scrub_in_background();
        }
        let mut others = Vec::new();
        let mut erasing = Duration::ZERO;
        // 40 commits a tick apart, every 100 ms; the 5th erases a viewer.
        for i in 0..40u64 {
            let tick = next_tick + i;
            let erasures = if i == 4 {
                vec![Erasure {
                    entity_kind: "viewer",
                    entity_id: viewer(42).into(),
                    ts_ms: tick * 1000,
                    tick_ms: tick * 1000,
                    token: [42; 32],
                }]
            } else {
                Vec::new()
            };
            let took = commit(&store, tick..tick + 1, erasures);
            if i == 4 {
                erasing = took;
            } else {
                others.push(took);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let closing = Instant::now();
        drop(store);
        let closed = closing.elapsed();
        others.sort();
        println!(
            "scrub {}: the erasure's commit {:.0} ms; the other 39 commits ({PER_TICK} changes \
             each): median {:.0} ms, worst {:.0} ms; closing the store {:.0} ms",
            if background {
                "in the background"
            } else {
                "in place"
            },
            erasing.as_secs_f64() * 1e3,
            others[others.len() / 2].as_secs_f64() * 1e3,
            others.last().unwrap().as_secs_f64() * 1e3,
            closed.as_secs_f64() * 1e3,
        );
    }
}
