//! The binary, driven the way users drive it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, ok, rewind};

#[test]
fn gen_produce_run_and_get_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let events_s = events.to_str().unwrap();
    ok(&rewind(&[
        "gen",
        "--viewers",
        "40",
        "--titles",
        "12",
        "--events",
        "4000",
        "--seed",
        "9",
        "--out",
        events_s,
    ]));
    let titles = dir.path().join("events.titles.jsonl");
    assert_eq!(
        std::fs::read_to_string(&titles).unwrap().lines().count(),
        12
    );

    let log = common::log(2);
    let b = log.brokers.as_str();
    let titles_s = titles.to_str().unwrap();
    common::produce_files(b, titles_s, "1767225500000", events_s);
    let store = dir.path().join("store");
    let store_s = store.to_str().unwrap();
    let run = rewind(&[
        "run",
        "--brokers",
        b,
        "--store",
        store_s,
        "--until-caught-up",
        "--workers",
        "2",
    ]);
    ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("4000 events"), "{stderr}");

    let viewer = common::door().viewer_id("u0000001").to_string();
    let got: serde_json::Value = serde_json::from_str(&ok(&rewind(&[
        "get", "--store", store_s, "viewer", &viewer,
    ])))
    .unwrap();
    let snap = rewind_state::ReadOnlyStore::open(&store)
        .unwrap()
        .snapshot()
        .unwrap();
    for row in snap.online("viewer", &viewer).unwrap() {
        let value: serde_json::Value = serde_json::from_slice(&row.value_json).unwrap();
        assert_eq!(got["features"][&row.feature]["value"], value, "{got}");
    }
    assert_eq!(got["as_of_ms"], snap.meta_u64("as_of_ms").unwrap().unwrap());
    let one = ok(&rewind(&[
        "get",
        "--store",
        store_s,
        "title",
        "tt000000",
        "--feature",
        "title.plays_1h",
    ]));
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["features"].as_object().unwrap().len(), 1);
}

#[test]
fn hostile_and_incomplete_arguments_get_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--workers", "0"], "--workers"),
        (&["run", "--tick-ms", "0"], "--tick-ms"),
        (&["run", "--rate", "fast"], "not \"realtime\""),
        (&["run", "--until-caught-up"], "needs --brokers"),
        (&["bench", "ingest"], "--rate EVENTS_PER_S"),
        (
            &["bench", "ingest", "--rate", "10", "--max"],
            "cannot be used",
        ),
        (
            &["bench", "ingest", "--max", "--spike", "3@30s"],
            "is not a spike",
        ),
        (
            &["bench", "ingest", "--max", "--duration", "forever"],
            "is not a duration",
        ),
        (
            &[
                "bench",
                "ingest",
                "--max",
                "--duration",
                "5s",
                "--warmup",
                "9s",
            ],
            "shorter than --duration",
        ),
        (&["gen", "--events", "10"], "--out"),
        (
            &["gen", "--events", "10", "--out", "/dev/null", "--late", "2"],
            "fraction",
        ),
        (
            &["get", "--store", "/nonexistent/rewind", "viewer", "v_x"],
            "does not exist",
        ),
        (
            &[
                "get",
                "--store",
                "/tmp",
                "viewer",
                "v_x",
                "--feature",
                "nope",
            ],
            "known: viewer.",
        ),
    ];
    for (args, needle) in cases {
        let out = rewind(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args([
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--store",
            "/tmp/rewind-nokey",
        ])
        .env_remove("REWIND_PSEUDONYM_KEY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("REWIND_PSEUDONYM_KEY"));
}

/// The embedded default runs live; `get` reads the store while it writes; Ctrl-C stops it
/// with everything complete committed; a second run starts a fresh store.
#[test]
fn the_embedded_default_serves_reads_while_running_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let store_s = store.to_str().unwrap();
    let embedded = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--store",
            store_s,
            "--viewers",
            "2000",
            "--rate",
            "20000",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_rewind"))
            .args(&args)
            .env_remove("REWIND_PSEUDONYM_KEY")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let child = embedded(&[]);
    let started = Instant::now();
    let mut reads = 0;
    while reads < 3 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(300));
        let out = rewind(&["get", "--store", store_s, "title", "tt000000"]);
        if !out.status.success() {
            continue;
        }
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if got["as_of_ms"].is_u64() {
            reads += 1;
        }
    }
    assert_eq!(
        reads, 3,
        "get never saw a committed frontier while run was writing"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("everything complete committed"), "{stderr}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(store.join("pseudonym.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let out = embedded(&["--duration-s", "1"]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("starting a fresh store"), "{stderr}");
}

#[test]
fn the_catalog_lists_every_feature_as_a_table_and_as_json() {
    let table = ok(&rewind(&["features"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&rewind(&["features", "--json"]))).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), rewind_dataflows::library().len());
    for feature in rewind_dataflows::library() {
        assert!(
            table.contains(feature.name),
            "{} missing from\n{table}",
            feature.name
        );
        let row = rows.iter().find(|r| r["name"] == feature.name).unwrap();
        assert_eq!(row["description"], feature.description);
        assert!(!row["purposes"].as_array().unwrap().is_empty());
    }
    let ctr = rows.iter().find(|r| r["name"] == "title.ctr_24h").unwrap();
    assert_eq!(ctr["default"], serde_json::Value::Null);
    assert_eq!(ctr["window"], "24h");
    assert_eq!(ctr["entity"], "title");
}

/// A short open-loop run on the embedded cluster: the table is printed, the JSON counts every
/// event produced and consumed, nearly all made readable, with freshness figures and
/// per-second samples.
#[test]
fn bench_ingest_measures_a_short_run_as_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = rewind(&[
        "bench",
        "ingest",
        "--rate",
        "2000",
        "--duration",
        "4s",
        "--warmup",
        "1s",
        "--viewers",
        "500",
        "--titles",
        "50",
        "--partitions",
        "2",
        "--spike",
        "2x@2s+1s",
        "--json",
        json.to_str().unwrap(),
    ]);
    let table = ok(&out);
    for row in ["committed", "freshness", "consumer lag", "rss"] {
        assert!(table.contains(row), "no {row} in {table}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let totals = &report["totals"];
    let produced = totals["produced"].as_u64().unwrap();
    // 2000/s for 4 s, doubled for one second.
    assert!((9_000..=10_100).contains(&produced), "{produced} produced");
    assert_eq!(totals["consumed"].as_u64(), Some(produced));
    // The last events' ticks close only when later events move the watermark past them, so
    // the stream's tail may stay unread when production stops.
    let committed = totals["committed"].as_u64().unwrap();
    assert!(
        0 < committed && committed <= produced,
        "{committed} of {produced} readable"
    );
    assert_eq!(totals["dead_letters"].as_u64(), Some(0));
    let freshness = &report["freshness_ms"];
    assert!(freshness["count"].as_u64().unwrap() > 0);
    let (p50, max) = (
        freshness["p50"].as_f64().unwrap(),
        freshness["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= max, "{freshness}");
    assert!(report["samples"].as_array().unwrap().len() >= 4);
    assert!(report["rss_mib"]["peak"].as_f64().unwrap() > 0.0);
}

/// `rewind features | head -1`: a reader that stops early is not an error of rewind's, and
/// never a panic.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    for args in [&["features"][..], &["features", "--json"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rewind"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before anything is read.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{args:?}: {:?} {stderr}",
            output.status
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `rewind bench serve` starts `rewind run` and `rewind serve` on one store and measures every
/// scenario: HTTP at each connection count and in-process, for one viewer and batches, with
/// no request failing and the run ingesting throughout.
#[test]
fn bench_serve_measures_http_and_in_process_reads_beside_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("serve.json");
    let out = rewind(&[
        "bench",
        "serve",
        "--rate",
        "2000",
        "--viewers",
        "300",
        // The embedded default gates consent: its first commit holding viewers lands 3-4 s in
        // on this machine (the consent in force is written too), so 3 s was a coin toss.
        "--warmup",
        "5s",
        "--duration",
        "1s",
        "--connections",
        "1,3",
        "--batch",
        "10",
        "--dir",
        dir.path().join("bench").to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let table = ok(&out);
    assert!(table.contains("| in-process | 1 | 10 |"), "{table}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    let shape: Vec<(String, u64, u64)> = scenarios
        .iter()
        .map(|s| {
            (
                s["transport"].as_str().unwrap().to_string(),
                s["connections"].as_u64().unwrap(),
                s["entities_per_request"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64)> = [
        ("http", 1, 1),
        ("http", 3, 1),
        ("in-process", 1, 1),
        ("http", 1, 10),
        ("http", 3, 10),
        ("in-process", 1, 10),
    ]
    .iter()
    .map(|&(t, c, e)| (t.to_string(), c, e))
    .collect();
    assert_eq!(shape, expected);
    for s in scenarios {
        assert_eq!(s["errors"], 0, "{s}");
        assert!(s["requests"].as_u64().unwrap() > 0, "{s}");
        let (p50, p99) = (s["p50_us"].as_f64().unwrap(), s["p99_us"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99, "{s}");
    }
    assert!(report["ingested_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let viewer_features = rewind_dataflows::library()
        .iter()
        .filter(|d| d.entity() == Some(rewind_dataflows::Entity::Viewer))
        .count();
    assert_eq!(report["features_per_entity"], viewer_features);
}

/// `gen --out /dev/null` (to time the generator) sends every side file there too, and a
/// device or pipe that is not /dev/null needs the side files named: nothing is made in /dev.
#[test]
fn gen_to_a_device_makes_no_file_beside_it() {
    let made = || {
        std::fs::read_dir("/dev")
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".jsonl"))
            .collect::<Vec<_>>()
    };
    let before = made();
    let args = ["gen", "--viewers", "5", "--titles", "3", "--events", "200"];
    let out = rewind(&[&args[..], &["--out", "/dev/null"]].concat());
    ok(&out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("titles to /dev/null"), "{said}");
    let out = rewind(&[&args[..], &["--out", "/dev/zero"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not a regular file"), "{err}");
    assert!(err.contains("--titles-out"), "{err}");
    assert_eq!(made(), before);
}
