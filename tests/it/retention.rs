//! Retention: a store keeps nothing older than its retention, and everything inside it exactly
//! as a store that never purged (the same log replayed with the longest retention).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rewind::TimePolicy;
use rewind::engine::{self, LogSource, RunConfig, Shared};
use rewind_state::{HistoryRow, ReadOnlyStore, Snapshot};

use crate::common::{self, ok, rewind};

const TICK_MS: u64 = 60_000;
const RETENTION: &str = "12h";
const RETENTION_MS: u64 = 12 * 3_600_000;

/// Three viewers for about two days of event time (they act every 10 s or so), with lines
/// that are not events spread through it (dead letters at several times).
fn log(dir: &Path) -> (String, String) {
    let events = dir.join("events.jsonl");
    let titles = dir.join("events.titles.jsonl");
    let (e, t) = (events.to_str().unwrap(), titles.to_str().unwrap());
    ok(&rewind(&[
        "gen",
        "--viewers",
        "3",
        "--titles",
        "20",
        "--events",
        "50000",
        "--seed",
        "5",
        "--out",
        e,
    ]));
    let text = std::fs::read_to_string(&events).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    for at in (1..10).rev().map(|n| n * 5000) {
        lines.insert(at, "{not an event");
    }
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    (e.to_string(), t.to_string())
}

fn replay(events: &str, titles: &str, store: &Path, retention: &str, workers: &str) {
    ok(&rewind(&[
        "replay",
        "--file",
        events,
        "--titles-file",
        titles,
        "--store",
        store.to_str().unwrap(),
        "--seal",
        "--tick-ms",
        &TICK_MS.to_string(),
        "--retention",
        retention,
        "--workers",
        workers,
    ]));
}

fn snapshot(dir: &Path) -> Snapshot {
    ReadOnlyStore::open(dir).unwrap().snapshot().unwrap()
}

type Key = (String, String);

/// Each key's rows, oldest first.
fn by_key(rows: Vec<HistoryRow>) -> BTreeMap<Key, Vec<HistoryRow>> {
    let mut keys: BTreeMap<Key, Vec<HistoryRow>> = BTreeMap::new();
    for row in rows {
        let key = (row.feature.clone(), row.entity_id.clone());
        keys.entry(key).or_default().push(row);
    }
    keys
}

/// What a purge to `horizon` must leave of `full`: each key's rows after the horizon, and the
/// one valid at the horizon.
fn expected(full: &BTreeMap<Key, Vec<HistoryRow>>, horizon: u64) -> Vec<HistoryRow> {
    let mut rows = Vec::new();
    for key_rows in full.values() {
        let at = key_rows.partition_point(|r| r.valid_from_ms <= horizon);
        rows.extend(key_rows[at.saturating_sub(1)..].iter().cloned());
    }
    rows.sort_unstable();
    rows
}

/// Everything the purged store holds is what it must hold, and reads at every tick from the
/// horizon to the frontier equal those of the store that kept everything.
fn check_purged_against_full(purged: &Path, full: &Path) {
    let (p, f) = (snapshot(purged), snapshot(full));
    let frontier = p.frontier_ms().unwrap().unwrap();
    assert_eq!(f.frontier_ms().unwrap(), Some(frontier));
    let horizon = p.retained_from_ms().unwrap();
    assert_eq!(horizon, frontier - RETENTION_MS);
    assert_eq!(p.retention_ms().unwrap(), Some(RETENTION_MS));

    // History: exactly the rows valid at or after the horizon, none older.
    let full_rows = by_key(f.history().unwrap());
    let kept = p.history().unwrap();
    let first_tick = full_rows
        .values()
        .flat_map(|r| r.first())
        .map(|r| r.valid_from_ms)
        .min()
        .unwrap();
    assert!(
        first_tick + 2 * RETENTION_MS < horizon,
        "the log spans well past the retention"
    );
    assert!(
        f.retained_from_ms().unwrap() < first_tick,
        "365 days purge nothing"
    );
    let want = expected(&full_rows, horizon);
    assert!(
        kept.len() * 2 < f.history().unwrap().len(),
        "most was purged"
    );
    assert_eq!(kept, want);

    // Point in time, at every tick inside the retention.
    let (lp, lf) = (p.history_lookup().unwrap(), f.history_lookup().unwrap());
    let as_of = p.meta_u64("as_of_ms").unwrap().unwrap();
    for (feature, id) in full_rows.keys() {
        for t in (horizon..=as_of).step_by(TICK_MS as usize) {
            let got = lp.as_of(feature, id, t).unwrap();
            assert_eq!(
                got,
                lf.as_of(feature, id, t).unwrap(),
                "{feature} {id} as of {t}"
            );
        }
        let err = lp.as_of(feature, id, horizon - 1).unwrap_err();
        assert!(err.to_string().contains("purged"), "{err}");
    }
    assert_eq!(p.online_all().unwrap(), f.online_all().unwrap());

    // Dead letters: those of the last 12 h stay, the older ones are gone, with their times.
    let times = p.dead_letter_times().unwrap();
    let all_times = f.dead_letter_times().unwrap();
    assert_eq!(all_times.len(), 9);
    let recent: Vec<_> = all_times
        .iter()
        .filter(|t| t.0 >= horizon)
        .cloned()
        .collect();
    assert!(!recent.is_empty() && recent.len() < 9, "{all_times:?}");
    assert_eq!(times, recent);
    let offsets: Vec<u64> = p.dead_letters().unwrap().iter().map(|d| d.offset).collect();
    assert_eq!(offsets, recent.iter().map(|t| t.3).collect::<Vec<_>>());

    // Meta holds settings, counters and positions, no rows: the counters still count all.
    assert_eq!(
        p.meta_u64("events_total").unwrap(),
        f.meta_u64("events_total").unwrap()
    );
    assert!(ok(&rewind(&["verify", "--store", purged.to_str().unwrap()])).starts_with("ok: "));
}

#[test]
fn a_purged_store_keeps_nothing_older_than_its_retention_and_everything_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let (events, titles) = log(dir.path());
    let full = dir.path().join("full");
    replay(&events, &titles, &full, "365d", "1");
    for workers in ["1", "2"] {
        let purged = dir.path().join(format!("purged-{workers}"));
        replay(&events, &titles, &purged, RETENTION, workers);
        check_purged_against_full(&purged, &full);
    }
}

fn file_config(events: &Path, titles: &Path, store: &Path) -> RunConfig {
    RunConfig {
        source: LogSource::Files {
            events: events.to_path_buf(),
            titles: Some(titles.to_path_buf()),
            consent: None,
            erasures: None,
        },
        until_caught_up: true,
        seal: false,
        policy: TimePolicy {
            tick_ms: TICK_MS,
            ..TimePolicy::default()
        },
        log_id: format!("file:{}", events.display()),
        retention_ms: RETENTION_MS,
        commit_interval: Duration::from_millis(20),
        ..common::config("unused:0", store, 2)
    }
}

/// A run over the first part of the log, then a run over all of it (a restart reads the whole
/// log again), purge across the restart exactly as one run over the whole log: the dead
/// letters the first run purged do not come back.
#[test]
fn a_purge_across_a_restart_equals_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (events, titles) = log(dir.path());
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let growing = dir.path().join("growing.jsonl");
    std::fs::write(&growing, lines[..36_000].join("\n") + "\n").unwrap();
    let (split, whole) = (dir.path().join("split"), dir.path().join("whole"));
    let titles = Path::new(&titles);
    let first = engine::run(
        file_config(&growing, titles, &split),
        Arc::new(Shared::default()),
    )
    .unwrap();
    assert!(first.purged.history_entries > 0 && first.purged.dead_letters > 0);
    std::fs::write(&growing, text).unwrap();
    let second = engine::run(
        file_config(&growing, titles, &split),
        Arc::new(Shared::default()),
    )
    .unwrap();
    assert_eq!(second.resumed_from_ms, first.frontier_ms);
    assert!(second.purged.history_entries > 0);

    let one = dir.path().join("one.jsonl");
    std::fs::copy(&growing, &one).unwrap();
    let mut config = file_config(&one, titles, &whole);
    config.log_id = format!("file:{}", growing.display());
    engine::run(config, Arc::new(Shared::default())).unwrap();
    let (s, w) = (snapshot(&split), snapshot(&whole));
    assert_eq!(s.frontier_ms().unwrap(), w.frontier_ms().unwrap());
    assert_eq!(s.retained_from_ms().unwrap(), w.retained_from_ms().unwrap());
    assert_eq!(s.history().unwrap(), w.history().unwrap());
    assert_eq!(s.online_all().unwrap(), w.online_all().unwrap());
    assert_eq!(s.dead_letters().unwrap(), w.dead_letters().unwrap());
    assert_eq!(
        s.dead_letter_times().unwrap(),
        w.dead_letter_times().unwrap()
    );
}

/// Lowering the retention of a store purges at its next commit; raising it keeps what was
/// purged purged, and says so.
#[test]
fn a_run_may_lower_the_retention_and_raising_it_brings_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let (events, titles) = log(dir.path());
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let growing = dir.path().join("growing.jsonl");
    let store = dir.path().join("store");
    let titles = Path::new(&titles);
    let mut horizons = Vec::new();
    for (end, retention_ms) in [
        (30_000, RETENTION_MS),
        (40_000, 3_600_000),
        (50_009, RETENTION_MS),
    ] {
        std::fs::write(&growing, lines[..end].join("\n") + "\n").unwrap();
        let mut config = file_config(&growing, titles, &store);
        config.retention_ms = retention_ms;
        let summary = engine::run(config, Arc::new(Shared::default())).unwrap();
        let snap = snapshot(&store);
        let (frontier, horizon) = (
            snap.frontier_ms().unwrap().unwrap(),
            snap.retained_from_ms().unwrap(),
        );
        horizons.push((frontier, horizon, summary.warnings));
    }
    assert_eq!(horizons[0].1, horizons[0].0 - RETENTION_MS);
    assert_eq!(horizons[1].1, horizons[1].0 - 3_600_000);
    // Back to 12 h: the horizon waits until 12 h before the frontier passes it.
    assert_eq!(
        horizons[2].1,
        horizons[1].1.max(horizons[2].0 - RETENTION_MS)
    );
    assert!(
        horizons[2].2.iter().any(|w| w.contains("stays so")),
        "{:?}",
        horizons[2].2
    );
}

/// Hostile `--retention` values: each a clear error, no store written.
#[test]
fn bad_retentions_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let store = dir.path().join("store");
    let cases = [
        ("0d", "0 would purge everything"),
        ("0", "no unit"),
        ("-1d", "not a whole number"),
        ("366d", "past the retention limit of 365 days"),
        ("8761h", "past the retention limit of 365 days"),
        ("99999999999999999999d", "not a whole number"),
        ("18446744073709551615d", "past the retention limit"),
        ("1y", "no unit"),
        ("1.5d", "not a whole number"),
        ("10 parsecs", "not a whole number"),
        ("", "no unit"),
        ("d", "not a whole number"),
        ("500ms", "shorter than one tick"),
    ];
    for (value, says) in cases {
        let out = rewind(&[
            "replay",
            "--file",
            events.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            &format!("--retention={value}"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value:?} was taken");
        assert!(stderr.contains(says), "{value:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{value:?}: {stderr}");
        assert!(!store.join(rewind_state::FILE_NAME).exists(), "{value:?}");
    }
}

/// A training snapshot with a label older than the retention is refused, naming the row and
/// the horizon; labels inside the retention are cut as from the store that kept everything.
#[test]
fn a_snapshot_before_the_retention_is_refused_and_inside_it_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (events, titles) = log(dir.path());
    let (full, purged) = (dir.path().join("full"), dir.path().join("purged"));
    replay(&events, &titles, &full, "365d", "1");
    replay(&events, &titles, &purged, RETENTION, "1");
    let snap = snapshot(&purged);
    let horizon = snap.retained_from_ms().unwrap();
    let as_of = snap.meta_u64("as_of_ms").unwrap().unwrap();
    let viewers: Vec<String> = snap
        .online_all()
        .unwrap()
        .into_iter()
        .filter(|(kind, ..)| kind == "viewer")
        .map(|(_, id, _)| id)
        .collect();
    let cut = |store: &Path, times: &[u64]| {
        let labels = dir.path().join("labels.csv");
        let mut body = "viewer_id,ts\n".to_string();
        for t in times {
            body.push_str(&format!("{},{t}\n", viewers[0]));
        }
        std::fs::write(&labels, body).unwrap();
        let out = dir.path().join("out.csv");
        let _ = std::fs::remove_file(&out);
        let run = rewind(&[
            "snapshot",
            "--store",
            store.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        (run, std::fs::read_to_string(&out).ok())
    };
    let inside: Vec<u64> = (0..20)
        .map(|n| horizon + n * (as_of - horizon) / 19)
        .collect();
    let (run, purged_cut) = cut(&purged, &inside);
    ok(&run);
    let (run, full_cut) = cut(&full, &inside);
    ok(&run);
    assert_eq!(purged_cut, full_cut);

    let (run, out) = cut(&purged, &[horizon + 5_000, horizon - TICK_MS]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("label row 2") && stderr.contains("retention horizon"),
        "{stderr}"
    );
    assert_eq!(out, None, "no output file");
}
