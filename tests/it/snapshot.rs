//! Training snapshots: point-in-time values checked against the oracle, pass-through columns,
//! both output formats, no leakage, and clear errors without partial output.

use std::path::Path;
use std::process::Output;

use arrow_array::RecordBatch;
use rewind::workload::{GenConfig, Record};
use rewind_dataflows::library;
use serde_json::Value;

use crate::common::{self, ok, rewind};
use crate::oracle::{self, World};

/// Numbers as f64 all the way down, so `1`, `1.0` and `1e0` compare equal.
fn norm(v: Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(norm).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, norm(v))).collect()),
        other => other,
    }
}

/// `rewind snapshot` on `store` with `labels`, writing `out`.
fn snapshot(store: &Path, labels: &Path, out: &Path, extra: &[&str]) -> Output {
    let (store, labels, out) = (
        store.to_str().unwrap(),
        labels.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let mut args = vec![
        "snapshot", "--store", store, "--labels", labels, "--out", out,
    ];
    args.extend_from_slice(extra);
    rewind(&args)
}

fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// One cell of a Parquet column as normalized JSON.
fn parquet_cell(batch: &RecordBatch, column: &str, row: usize) -> Value {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_schema::DataType;
    let array = batch.column_by_name(column).unwrap();
    if array.is_null(row) {
        return Value::Null;
    }
    norm(match array.data_type() {
        DataType::Int64 => serde_json::json!(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => serde_json::json!(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => serde_json::json!(array.as_string::<i32>().value(row)),
        DataType::Boolean => serde_json::json!(array.as_boolean().value(row)),
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (k, v) = (
                entries.column(0).as_string::<i32>(),
                entries.column(1).as_primitive::<Float64Type>(),
            );
            Value::Object(
                (0..k.len())
                    .map(|i| (k.value(i).to_string(), serde_json::json!(v.value(i))))
                    .collect(),
            )
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            let items = items.as_string::<i32>();
            serde_json::json!((0..items.len()).map(|i| items.value(i)).collect::<Vec<_>>())
        }
        other => panic!("unexpected column type {other}"),
    })
}

/// A CSV cell as normalized JSON: numbers, JSON maps and lists, empty as null.
fn csv_cell(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text)
        .map(norm)
        .unwrap_or_else(|_| Value::String(text.to_string()))
}

struct Label {
    id: String,
    ts_ms: u64,
}

/// Labels for `entity` at tick boundaries, just before and after them, before each entity's
/// first event, and between changes.
fn labels(world: &World, ids: &[String], frontier: u64) -> Vec<Label> {
    let mut rows = Vec::new();
    let first = world.events.iter().map(|p| p.time).min().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let base = first + (i as u64 % 50) * 61_000;
        for ts in [
            first - 5_000,
            base,
            base - 1,
            base + 1,
            base + 999,
            base + 30_500,
            frontier - 1,
        ] {
            rows.push(Label {
                id: id.clone(),
                ts_ms: ts,
            });
        }
    }
    rows
}

fn write_labels(path: &Path, id_column: &str, rows: &[Label]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record([id_column, "ts", "label", "note"]).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let ts = if i % 3 == 0 {
            rewind::utc::format_ms(r.ts_ms)
        } else {
            r.ts_ms.to_string()
        };
        w.write_record([r.id.as_str(), &ts, &(i % 2).to_string(), &format!("n{i}")])
            .unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn snapshots_equal_the_oracle_as_of_each_label_in_parquet_and_csv() {
    let config = GenConfig {
        viewers: 120,
        titles: 30,
        seed: 31,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 40_000);
    let log = common::log(4);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let world = World::read(&log.brokers);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    let frontier = summary.frontier_ms;
    let dir = tempfile::tempdir().unwrap();

    let viewers: Vec<String> = (0..40)
        .map(|v| common::door().viewer_id(&format!("u{v:07}")).to_string())
        .collect();
    let title_ids: Vec<String> = (0..12).map(rewind::workload::title_id).collect();
    for (entity, id_column, ids) in [
        ("viewer", "viewer_id", &viewers),
        ("title", "title_id", &title_ids),
    ] {
        let rows = labels(&world, ids, frontier);
        let labels_path = dir.path().join(format!("{entity}.csv"));
        write_labels(&labels_path, id_column, &rows);
        let features: Vec<_> = library()
            .into_iter()
            .filter(|f| f.name.starts_with(entity))
            .collect();
        let mut expected_cache = std::collections::HashMap::new();
        let mut expect = |row: &Label, feature: &rewind_dataflows::Feature| {
            let t = row.ts_ms / 1000 * 1000;
            let values = expected_cache
                .entry(t)
                .or_insert_with(|| oracle::expected(&world, t));
            let json = values
                .get(&(feature.name.to_string(), row.id.clone()))
                .cloned();
            let json = json.unwrap_or_else(|| feature.default_json().to_string());
            norm(serde_json::from_str(&json).unwrap())
        };

        let parquet_out = dir.path().join(format!("{entity}.parquet"));
        ok(&snapshot(store.path(), &labels_path, &parquet_out, &[]));
        let batch = read_parquet(&parquet_out);
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut want_names = vec![
            id_column.to_string(),
            "ts".into(),
            "label".into(),
            "note".into(),
        ];
        want_names.extend(features.iter().map(|f| f.name.to_string()));
        assert_eq!(
            names, want_names,
            "label columns pass through in order, features follow"
        );
        assert_eq!(batch.num_rows(), rows.len());
        let mut seen = std::collections::BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(
                parquet_cell(&batch, "note", i),
                Value::String(format!("n{i}"))
            );
            for feature in &features {
                let want = expect(row, feature);
                let default = norm(serde_json::from_str(feature.default_json()).unwrap());
                *seen.entry(feature.name).or_insert(0) += usize::from(want != default);
                assert_eq!(
                    parquet_cell(&batch, feature.name, i),
                    want,
                    "{} row {i} (ts {})",
                    feature.name,
                    row.ts_ms
                );
            }
        }
        for (name, values) in seen {
            assert!(
                values > 5,
                "{name}: only {values} labels saw a value; the check is too weak"
            );
        }

        let csv_out = dir.path().join(format!("{entity}.out.csv"));
        ok(&snapshot(store.path(), &labels_path, &csv_out, &[]));
        let mut reader = csv::Reader::from_path(&csv_out).unwrap();
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            want_names
        );
        for (i, (record, row)) in reader.records().zip(&rows).enumerate() {
            let record = record.unwrap();
            for (j, feature) in features.iter().enumerate() {
                assert_eq!(
                    csv_cell(&record[4 + j]),
                    expect(row, feature),
                    "csv {} row {i}",
                    feature.name
                );
            }
        }
    }
}

#[test]
fn a_label_at_the_time_of_its_event_never_sees_it_and_raw_ids_stay_out() {
    let s = 1_767_225_600_000u64;
    let play = |ts: u64| {
        let json = format!(
            r#"{{"event_id":"e","user_id":"alice@account","ts":{ts},"type":"play_start","title_id":"t1"}}"#
        );
        Record {
            key: "alice@account".into(),
            json,
            ts_ms: ts,
            due_ms: ts,
        }
    };
    let log = common::log(1);
    common::produce(
        &log.brokers,
        common::EVENTS,
        &[play(s + 1500), play(s + 9000)],
    );
    let store = tempfile::tempdir().unwrap();
    common::run_caught_up(&log.brokers, store.path(), 1);
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    let at = |ts: u64| format!("alice@account,{ts},x\n");
    let body = format!(
        "viewer_id,ts,y\n{}{}{}",
        at(s + 1500),
        at(s + 1999),
        at(s + 2000)
    );
    std::fs::write(&labels, body).unwrap();
    let out_path = dir.path().join("out.csv");
    ok(&snapshot(
        store.path(),
        &labels,
        &out_path,
        &[
            "--features",
            "viewer.plays_24h,viewer.last_titles_10",
            "--raw-ids",
        ],
    ));
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        !text.contains("alice"),
        "a raw id reached the training set:\n{text}"
    );
    let pseudonym = common::door().viewer_id("alice@account").to_string();
    let rows: Vec<Vec<String>> = csv::Reader::from_path(&out_path)
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(
        rows[0],
        vec![
            pseudonym.clone(),
            (s + 1500).to_string(),
            "x".into(),
            "0".into(),
            "[]".into()
        ]
    );
    assert_eq!(
        rows[1][3], "0",
        "the event's own tick has not closed at ts + 499 ms"
    );
    assert_eq!(
        rows[2][3], "1",
        "visible from the first tick boundary after it"
    );
    assert_eq!(rows[2][4], r#"["t1"]"#);

    // The same labels as Parquet, with typed columns that pass through as they are.
    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
    let ids: ArrayRef = std::sync::Arc::new(StringArray::from(vec![pseudonym.as_str(); 2]));
    let ts: ArrayRef =
        std::sync::Arc::new(Int64Array::from(vec![(s + 1999) as i64, (s + 2000) as i64]));
    let weight: ArrayRef = std::sync::Arc::new(Float64Array::from(vec![0.5, 2.0]));
    let batch =
        RecordBatch::try_from_iter([("viewer_id", ids), ("ts", ts), ("weight", weight)]).unwrap();
    let labels = dir.path().join("labels.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&labels).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let out_path = dir.path().join("out.parquet");
    ok(&snapshot(store.path(), &labels, &out_path, &[]));
    let got = read_parquet(&out_path);
    assert_eq!(
        got.column_by_name("weight").unwrap().data_type(),
        &arrow_schema::DataType::Float64
    );
    assert_eq!(parquet_cell(&got, "weight", 1), serde_json::json!(2.0));
    assert_eq!(
        parquet_cell(&got, "viewer.plays_24h", 0),
        serde_json::json!(0.0)
    );
    assert_eq!(
        parquet_cell(&got, "viewer.plays_24h", 1),
        serde_json::json!(1.0)
    );
}

#[test]
fn bad_labels_get_clear_errors_and_no_output_file() {
    let config = GenConfig {
        viewers: 20,
        titles: 5,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 2_000);
    let log = common::log(1);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    let ok_ts = config.start_ms + 60_000;
    let cases: Vec<(String, Vec<&str>, String)> = vec![
        (
            "viewer_id,label\nv_1,1\n".into(),
            vec![],
            "no `ts` column".into(),
        ),
        (
            "user,ts\nv_1,5\n".into(),
            vec![],
            "need `viewer_id` or `title_id`".into(),
        ),
        (
            format!("viewer_id,ts\nv_1,{ok_ts}\nv_2,yesterday\n"),
            vec![],
            "label row 2: ts \"yesterday\" is neither ms since the epoch nor RFC 3339".into(),
        ),
        (
            format!("viewer_id,ts\nv_1,{ok_ts}\n"),
            vec!["--features", "viewer.nope"],
            "no viewer feature \"viewer.nope\"; known: viewer.".into(),
        ),
        (
            format!("viewer_id,ts\nv_1,{ok_ts}\nv_1,{}\n", summary.frontier_ms),
            vec![],
            format!(
                "label row 2: ts {} is at or past the store's frontier {}",
                summary.frontier_ms, summary.frontier_ms
            ),
        ),
    ];
    for (i, (body, extra, needle)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.csv");
        std::fs::write(&labels, body).unwrap();
        let out_path = dir.path().join("out.parquet");
        let out = snapshot(store.path(), &labels, &out_path, &extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} succeeded");
        assert!(stderr.contains(&needle), "case {i}: {stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("labels.csv")],
            "case {i} left output behind"
        );
    }
}

/// The last cause of the error line appears in it once.
fn assert_said_once(stderr: &str) {
    let line = stderr.lines().find(|l| l.starts_with("rewind: ")).unwrap();
    let cause = line.rsplit(": ").next().unwrap();
    assert_eq!(line.matches(cause).count(), 1, "repeated cause: {line}");
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("rewind.redb"), vec![7u8; 4096]).unwrap();
    let labels = dir.path().join("labels.csv");
    let out = dir.path().join("out.csv");
    let run = snapshot(&store, &labels, &out, &[]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("is not a rewind store"), "{stderr}");
    assert_said_once(&stderr);

    let run = std::process::Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["snapshot", "--store", store.to_str().unwrap()])
        .args([
            "--labels",
            labels.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args([
            "--raw-ids",
            "--key-file",
            dir.path().join("no.key").to_str().unwrap(),
        ])
        .env_remove("REWIND_PSEUDONYM_KEY")
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("cannot read or create key file"),
        "{stderr}"
    );
    assert_said_once(&stderr);
}

/// 2026-01-01T00:00:00Z: a midnight, so date-typed labels can be checked against it.
const DAY0_MS: u64 = 1_767_225_600_000;
const DAY_MS: u64 = 86_400_000;

fn play_start(user: &str, ts: u64) -> Record {
    let json = format!(
        r#"{{"event_id":"e{ts}","user_id":"{user}","ts":{ts},"type":"play_start","title_id":"t1"}}"#
    );
    Record {
        key: user.into(),
        json,
        ts_ms: ts,
        due_ms: ts,
    }
}

/// A store where alice starts playing at DAY0 + 1.5 s and + 9 s, and again a day later (so
/// the frontier passes the next midnight); with alice's pseudonym.
fn alice_store() -> (tempfile::TempDir, String) {
    let log = common::log(1);
    let plays = [DAY0_MS + 1500, DAY0_MS + 9000, DAY0_MS + DAY_MS + 3_600_000];
    let plays: Vec<Record> = plays.iter().map(|ts| play_start("alice", *ts)).collect();
    common::produce(&log.brokers, common::EVENTS, &plays);
    let store = tempfile::tempdir().unwrap();
    let summary = common::run_caught_up(&log.brokers, store.path(), 1);
    assert!(summary.frontier_ms > DAY0_MS + DAY_MS);
    (store, common::door().viewer_id("alice").to_string())
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// Files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_killed_snapshot_leaves_no_partial_file_behind_for_good() {
    let (store, alice) = alice_store();
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        format!("viewer_id,ts\n{alice},{}\n", DAY0_MS + 2000),
    )
    .unwrap();
    // What a run killed while writing leaves (pids above Linux's pid_max, so never ours), and
    // the file of a run still writing, which holds its lock.
    let dead = dir.path().join(".out.parquet.4194305.partial");
    std::fs::write(&dead, b"half a parquet file").unwrap();
    let live = dir.path().join(".out.parquet.4194306.partial");
    let live_file = std::fs::File::create(&live).unwrap();
    live_file.lock().unwrap();
    let other = dir.path().join(".other.parquet.4194307.partial");
    std::fs::write(&other, b"another output's").unwrap();

    ok(&snapshot(
        store.path(),
        &labels,
        &dir.path().join("out.parquet"),
        &[],
    ));
    assert_eq!(
        files_in(dir.path()),
        [
            ".other.parquet.4194307.partial",
            ".out.parquet.4194306.partial",
            "labels.csv",
            "out.parquet"
        ]
    );
    drop(live_file);
}

#[test]
fn labels_of_raw_ids_without_raw_ids_get_a_warning() {
    let (store, alice) = alice_store();
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.csv");
    let out = dir.path().join("out.csv");
    let ts = DAY0_MS + 60_000;
    let run = |body: String, extra: &[&str]| {
        std::fs::write(&labels, body).unwrap();
        let run = snapshot(store.path(), &labels, &out, extra);
        ok(&run);
        String::from_utf8_lossy(&run.stderr).into_owned()
    };
    let raw = format!("viewer_id,ts\nalice,{ts}\nbob,{ts}\nalice,{}\n", ts + 1);
    let warning = "none of the 2 viewer ids looks like a pseudonym (v_ + 32 hex); pass --raw-ids \
                   if they are raw account ids";
    let stderr = run(raw.clone(), &[]);
    assert!(stderr.contains(warning), "{stderr}");
    let stderr = run(raw, &["--raw-ids"]);
    assert!(!stderr.contains("pseudonym"), "{stderr}");

    let pseudonyms = format!("viewer_id,ts\n{alice},{ts}\nbob,{ts}\n");
    let stderr = run(pseudonyms, &[]);
    assert!(!stderr.contains("pseudonym"), "{stderr}");
    let upper = alice.to_uppercase().replace("V_", "v_");
    let stderr = run(format!("viewer_id,ts\n{upper},{ts}\n"), &[]);
    assert!(stderr.contains("none of the 1 viewer ids"), "{stderr}");

    let stderr = run(format!("viewer_id,ts\n{alice},{ts}\n"), &["--raw-ids"]);
    assert!(
        stderr.contains("all 1 viewer ids already look like pseudonyms"),
        "{stderr}"
    );
}

#[test]
fn ts_of_every_time_type_converts_to_ms_and_other_types_are_refused() {
    use arrow_array::{
        ArrayRef, BooleanArray, Date32Array, Date64Array, Float64Array, Int32Array, Int64Array,
        StringArray, Time32MillisecondArray, Time64MicrosecondArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
    };
    use std::sync::Arc;
    let (store, alice) = alice_store();
    let dir = tempfile::tempdir().unwrap();
    let s = DAY0_MS as i64;
    let day = (DAY0_MS / DAY_MS) as i32;
    // Each pair of labels straddles a boundary: the first sees none of alice's plays, the
    // second sees one (the tick after her first play) or two (the next midnight).
    let accepted: Vec<(ArrayRef, [f64; 2])> = vec![
        (
            Arc::new(Int64Array::from(vec![s + 1999, s + 2000])),
            [0.0, 1.0],
        ),
        (
            Arc::new(UInt64Array::from(vec![s as u64 + 1999, s as u64 + 2000])),
            [0.0, 1.0],
        ),
        (
            Arc::new(TimestampSecondArray::from(vec![s / 1000 + 1, s / 1000 + 2])),
            [0.0, 1.0],
        ),
        (
            Arc::new(
                TimestampMillisecondArray::from(vec![s + 1999, s + 2000]).with_timezone("UTC"),
            ),
            [0.0, 1.0],
        ),
        (
            Arc::new(
                TimestampMicrosecondArray::from(vec![(s + 1999) * 1000 + 999, (s + 2000) * 1000])
                    .with_timezone("+05:00"),
            ),
            [0.0, 1.0],
        ),
        (
            Arc::new(
                TimestampNanosecondArray::from(vec![
                    (s + 1999) * 1_000_000,
                    (s + 2000) * 1_000_000,
                ])
                .with_timezone("America/New_York"),
            ),
            [0.0, 1.0],
        ),
        (Arc::new(Date32Array::from(vec![day, day + 1])), [0.0, 2.0]),
        (
            Arc::new(Date64Array::from(vec![s, s + DAY_MS as i64])),
            [0.0, 2.0],
        ),
    ];
    let ids: ArrayRef = Arc::new(StringArray::from(vec![alice.as_str(); 2]));
    let labels = dir.path().join("labels.parquet");
    let out = dir.path().join("out.parquet");
    let features = ["--features", "viewer.plays_24h"];
    for (ts, want) in accepted {
        let data_type = ts.data_type().clone();
        let batch = RecordBatch::try_from_iter([("viewer_id", ids.clone()), ("ts", ts)]).unwrap();
        write_parquet(&labels, &batch);
        ok(&snapshot(store.path(), &labels, &out, &features));
        let got = read_parquet(&out);
        for (row, want) in want.iter().enumerate() {
            assert_eq!(
                parquet_cell(&got, "viewer.plays_24h", row),
                serde_json::json!(want),
                "ts of type {data_type}, row {row}"
            );
        }
        assert_eq!(got.column_by_name("ts").unwrap().data_type(), &data_type);
    }
    std::fs::remove_file(&out).unwrap();

    let refused: Vec<ArrayRef> = vec![
        Arc::new(BooleanArray::from(vec![true, false])),
        Arc::new(Time32MillisecondArray::from(vec![1999, 2000])),
        Arc::new(Time64MicrosecondArray::from(vec![1999, 2000])),
        Arc::new(Float64Array::from(vec![f64::NAN, s as f64])),
        Arc::new(Int32Array::from(vec![1999, 2000])),
    ];
    for ts in refused {
        let data_type = ts.data_type().clone();
        let batch = RecordBatch::try_from_iter([("viewer_id", ids.clone()), ("ts", ts)]).unwrap();
        write_parquet(&labels, &batch);
        let run = snapshot(store.path(), &labels, &out, &features);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{data_type} was taken as a time");
        let needle = format!("the `ts` column is of type {data_type}, not a time");
        assert!(stderr.contains(&needle), "{data_type}: {stderr}");
        assert!(
            stderr.contains("Timestamp"),
            "names what is accepted: {stderr}"
        );
        assert_eq!(files_in(dir.path()), ["labels.parquet"]);
    }

    let ts: ArrayRef = Arc::new(UInt64Array::from(vec![s as u64, u64::MAX]));
    let batch = RecordBatch::try_from_iter([("viewer_id", ids.clone()), ("ts", ts)]).unwrap();
    write_parquet(&labels, &batch);
    let run = snapshot(store.path(), &labels, &out, &features);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let needle = "label row 2: ts is out of range for ms since the epoch";
    assert!(stderr.contains(needle), "{stderr}");

    let ts: ArrayRef = Arc::new(Int64Array::from(vec![Some(s + 1999), None]));
    let batch = RecordBatch::try_from_iter([("viewer_id", ids.clone()), ("ts", ts)]).unwrap();
    write_parquet(&labels, &batch);
    let run = snapshot(store.path(), &labels, &out, &features);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("label row 2: ts is empty"), "{stderr}");
}

#[test]
fn bad_ts_values_and_duplicate_column_names_get_clear_errors_and_no_output_file() {
    let (store, alice) = alice_store();
    let ok_ts = DAY0_MS + 60_000;
    let twice = ["--features", "viewer.plays_24h,viewer.plays_24h"];
    let cases: Vec<(String, &[&str], String)> = vec![
        (
            "viewer_id,ts\nv_x,AAAAAAAAAAAAAAAAAAéx\n".into(),
            &[],
            r#"label row 1: ts "AAAAAAAAAAAAAAAAAAéx" is neither ms since the epoch nor RFC 3339"#
                .into(),
        ),
        (
            format!("viewer_id,ts\n{alice},{ok_ts}\n{alice},-5\n"),
            &[],
            "label row 2: ts -5 is before the Unix epoch".into(),
        ),
        (
            format!("viewer_id,ts\n{alice},1969-12-31T23:59:59Z\n"),
            &[],
            "label row 1: ts -1000 is before the Unix epoch".into(),
        ),
        (
            format!("viewer_id,ts\n{alice},NaN\n"),
            &[],
            r#"label row 1: ts "NaN" is neither ms since the epoch nor RFC 3339"#.into(),
        ),
        (
            format!("viewer_id,ts,ts\n{alice},{ok_ts},{ok_ts}\n"),
            &[],
            r#"labels have two columns named "ts" (columns 2 and 3)"#.into(),
        ),
        (
            format!("viewer_id,ts,viewer_id\n{alice},{ok_ts},{alice}\n"),
            &[],
            r#"labels have two columns named "viewer_id" (columns 1 and 3)"#.into(),
        ),
        (
            format!("viewer_id,ts,viewer.plays_24h\n{alice},{ok_ts},3\n"),
            &[],
            r#"label column "viewer.plays_24h" has the name of a requested feature"#.into(),
        ),
        (
            format!("viewer_id,ts\n{alice},{ok_ts}\n"),
            &twice,
            r#"feature "viewer.plays_24h" is requested twice"#.into(),
        ),
    ];
    for (i, (body, extra, needle)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let labels = dir.path().join("labels.csv");
        std::fs::write(&labels, body).unwrap();
        let out_path = dir.path().join("out.parquet");
        let out = snapshot(store.path(), &labels, &out_path, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} succeeded");
        assert!(stderr.contains(&needle), "case {i}: {stderr}");
        assert_eq!(files_in(dir.path()), ["labels.csv"], "case {i} left output");
    }
}

/// A sealed store replayed with consent gating personalization and analytics, from a
/// generated log and its consent records (`rewind gen` writes them beside the events).
/// Returns the store and the consent records, as `rewind gen` wrote them.
pub fn consented_store(dir: &Path) -> (std::path::PathBuf, Vec<ConsentLine>) {
    let events = dir.join("events.jsonl");
    let events_s = events.to_str().unwrap();
    let gen_args = ["--viewers", "30", "--titles", "10", "--events", "20000"];
    let gen_args = [&["gen"][..], &gen_args, &["--seed", "7", "--out", events_s]].concat();
    ok(&rewind(&gen_args));
    let (titles, consent) = (
        dir.join("events.titles.jsonl"),
        dir.join("events.consent.jsonl"),
    );
    let store = dir.join("store");
    ok(&rewind(&[
        "replay",
        "--file",
        events_s,
        "--titles-file",
        titles.to_str().unwrap(),
        "--consent",
        consent.to_str().unwrap(),
        "--consent-purposes",
        "personalization,analytics",
        "--store",
        store.to_str().unwrap(),
        "--seal",
    ]));
    let text = std::fs::read_to_string(&consent).unwrap();
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap());
    (store, lines.collect())
}

/// One consent record as the generator writes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConsentLine {
    pub user_id: String,
    pub purpose: String,
    pub granted: bool,
    pub ts: u64,
}

/// A user's records for `purpose`, in time order.
pub fn consent_of<'c>(
    records: &'c [ConsentLine],
    user: &str,
    purpose: &str,
) -> Vec<&'c ConsentLine> {
    let mut mine: Vec<_> = records
        .iter()
        .filter(|r| r.user_id == user && r.purpose == purpose)
        .collect();
    mine.sort_by_key(|r| r.ts);
    mine
}

/// A user granted `purpose` from the first answer on and then revoked it, with a minute of
/// quiet on either side of the revocation: (user, revocation ts).
pub fn granted_then_revoked(records: &[ConsentLine], purpose: &str) -> (String, u64) {
    let users: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.user_id.as_str()).collect();
    users
        .into_iter()
        .find_map(|user| {
            let mine = consent_of(records, user, purpose);
            let revoked = mine.iter().position(|r| !r.granted)?;
            let quiet = mine
                .get(revoked + 1)
                .is_none_or(|r| r.ts > mine[revoked].ts + 120_000);
            let all_granted = mine[..revoked].iter().all(|r| r.granted);
            // Ten minutes of grant first, so the viewer has values to lose.
            (revoked > 0 && all_granted && quiet && mine[revoked].ts > mine[0].ts + 600_000)
                .then(|| (user.to_string(), mine[revoked].ts))
        })
        .expect("a viewer who granted, then revoked")
}

/// Whether `user`'s latest record for `purpose` at or before `ts` is a grant.
pub fn consents_at(records: &[ConsentLine], user: &str, purpose: &str, ts: u64) -> bool {
    let mine = consent_of(records, user, purpose);
    mine.iter()
        .rev()
        .find(|r| r.ts <= ts)
        .is_some_and(|r| r.granted)
}

/// `snapshot --purpose`: a viewer revoked before a label's time gets every default and
/// `consent_<purpose>` false; the same viewer before the revocation, and a viewer consenting
/// then, get the values and true. A feature not declared for the purpose is refused, naming it
/// and its purposes; with no purpose named, the cut is what it always was.
#[test]
fn a_snapshot_for_a_purpose_withholds_viewers_without_consent_at_each_row() {
    let dir = tempfile::tempdir().unwrap();
    let (store, records) = consented_store(dir.path());
    let purpose = "personalization";
    let (revoked_user, revoked_at) = granted_then_revoked(&records, purpose);
    let (before, after) = (revoked_at - 60_000, revoked_at + 60_000);
    // Consenting at the row's time, and for a minute before it (clear of tick placement).
    let consenting_user = (0..30)
        .map(|u| format!("u{u:07}"))
        .find(|u| {
            let at = |ts| consents_at(&records, u, purpose, ts);
            *u != revoked_user && at(after) && at(after - 60_000)
        })
        .expect("a viewer consenting then");
    let id = |u: &str| common::door().viewer_id(u).to_string();
    let rows = [
        (id(&revoked_user), before),
        (id(&revoked_user), after),
        (id(&consenting_user), after),
    ];
    let labels = dir.path().join("labels.csv");
    let mut text = "viewer_id,ts\n".to_string();
    for (v, ts) in &rows {
        text.push_str(&format!("{v},{ts}\n"));
    }
    std::fs::write(&labels, text).unwrap();

    let out = dir.path().join("for.parquet");
    ok(&snapshot(&store, &labels, &out, &["--purpose", purpose]));
    let gated = read_parquet(&out);
    let plain_out = dir.path().join("plain.parquet");
    ok(&snapshot(&store, &labels, &plain_out, &[]));
    let plain = read_parquet(&plain_out);
    // Only the features declared for the purpose, then the consent column.
    let declared: Vec<_> = library()
        .into_iter()
        .filter(|f| {
            f.name.starts_with("viewer.") && f.purposes.iter().any(|p| p.as_str() == purpose)
        })
        .collect();
    let columns: Vec<String> = gated
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut want = vec!["viewer_id".to_string(), "ts".to_string()];
    want.extend(declared.iter().map(|f| f.name.to_string()));
    want.push(format!("consent_{purpose}"));
    assert_eq!(columns, want);
    let consent = |row| parquet_cell(&gated, &format!("consent_{purpose}"), row);
    assert_eq!(
        (consent(0), consent(1), consent(2)),
        (Value::Bool(true), Value::Bool(false), Value::Bool(true))
    );
    for f in &declared {
        let default: Value = serde_json::from_str(f.default_json()).unwrap();
        // Revoked at the row's time: the default, whatever history holds.
        assert_eq!(
            norm(parquet_cell(&gated, f.name, 1)),
            norm(default.clone()),
            "{}",
            f.name
        );
        // Consenting rows: exactly the values a cut without a purpose reads.
        for row in [0, 2] {
            let (got, plain) = (
                parquet_cell(&gated, f.name, row),
                parquet_cell(&plain, f.name, row),
            );
            assert_eq!(norm(got), norm(plain), "{} row {row}", f.name);
        }
    }
    // The values before the revocation, and the consenting viewer's, are not defaults.
    for row in [0, 2] {
        let genres = parquet_cell(&gated, "viewer.genre_share_90d", row);
        assert!(
            genres.as_object().is_some_and(|m| !m.is_empty()),
            "row {row}: {genres}"
        );
    }

    // A named feature not declared for the purpose: refused, naming it and its purposes.
    let refused = snapshot(
        &store,
        &labels,
        &dir.path().join("no.parquet"),
        &[
            "--purpose",
            "analytics",
            "--features",
            "viewer.plays_24h,viewer.genre_share_90d",
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("\"viewer.genre_share_90d\"") && stderr.contains("serves personalization"),
        "{stderr}"
    );
    assert!(!dir.path().join("no.parquet").exists());
    let unknown = snapshot(
        &store,
        &labels,
        &dir.path().join("no.parquet"),
        &["--purpose", "nope"],
    );
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        !unknown.status.success() && stderr.contains("known purposes"),
        "{stderr}"
    );
    // No viewer feature serves ads: nothing to cut, said so.
    let none = snapshot(
        &store,
        &labels,
        &dir.path().join("no.parquet"),
        &["--purpose", "ads"],
    );
    let stderr = String::from_utf8_lossy(&none.stderr);
    assert!(
        !none.status.success() && stderr.contains("no viewer feature is declared"),
        "{stderr}"
    );
}

/// The recorded consent is history like any other: under a short retention, a viewer's
/// consent that went out of force before the horizon is purged, and what is left still reads
/// the consent in force at every time from the horizon on.
#[test]
fn recorded_consent_is_purged_by_retention_like_any_history() {
    use rewind::purpose::CONSENT_FEATURE;
    let dir = tempfile::tempdir().unwrap();
    let (full, _) = consented_store(dir.path());
    let short = dir.path().join("short");
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    ok(&rewind(&[
        "replay",
        "--file",
        &file("events.jsonl"),
        "--titles-file",
        &file("events.titles.jsonl"),
        "--consent",
        &file("events.consent.jsonl"),
        "--consent-purposes",
        "personalization,analytics",
        "--retention",
        "30m",
        "--store",
        short.to_str().unwrap(),
        "--seal",
    ]));
    let open = |p: &Path| {
        rewind_state::ReadOnlyStore::open(p)
            .unwrap()
            .snapshot()
            .unwrap()
    };
    let (full, short) = (open(&full), open(&short));
    let consent_rows = |snap: &rewind_state::Snapshot| -> Vec<rewind_state::HistoryRow> {
        let rows = snap.history().unwrap().into_iter();
        rows.filter(|r| r.feature == CONSENT_FEATURE).collect()
    };
    let (all, kept) = (consent_rows(&full), consent_rows(&short));
    assert!(
        !kept.is_empty() && kept.len() < all.len(),
        "{} of {}",
        kept.len(),
        all.len()
    );
    let horizon = short.retained_from_ms().unwrap();
    assert!(horizon > 0);
    // Nothing kept went out of force before the horizon: every kept row but the last of its
    // viewer is followed by a change after the horizon.
    for pair in kept.windows(2) {
        if pair[0].entity_id == pair[1].entity_id {
            assert!(
                pair[1].valid_from_ms > horizon,
                "{:?} outlived retention",
                pair[0]
            );
        }
    }
    // From the horizon on, both stores read the same consent at every tick.
    let (lookup_full, lookup_short) = (
        full.history_lookup().unwrap(),
        short.history_lookup().unwrap(),
    );
    let frontier = short.frontier_ms().unwrap().unwrap();
    let viewers: std::collections::BTreeSet<&str> =
        all.iter().map(|r| r.entity_id.as_str()).collect();
    for t in (horizon..frontier).step_by(60_000) {
        for v in &viewers {
            let a = lookup_full.as_of(CONSENT_FEATURE, v, t).unwrap();
            assert_eq!(
                lookup_short.as_of(CONSENT_FEATURE, v, t).unwrap(),
                a,
                "{v} at {t}"
            );
        }
    }
}

/// `rewind privacy report` counts, per gated purpose, the viewers consenting as of the
/// store's as-of: the generator's records, replayed by the rule, give the same numbers.
#[test]
fn the_privacy_report_gives_consent_coverage_as_of_the_frontier() {
    let dir = tempfile::tempdir().unwrap();
    let (store, records) = consented_store(dir.path());
    let store_s = store.to_str().unwrap();
    let report: Value = serde_json::from_str(&ok(&rewind(&[
        "privacy", "report", "--store", store_s, "--json",
    ])))
    .unwrap();
    let snap = rewind_state::ReadOnlyStore::open(&store)
        .unwrap()
        .snapshot()
        .unwrap();
    let as_of = snap.meta_u64("as_of_ms").unwrap().unwrap();
    let users: std::collections::BTreeSet<&str> =
        records.iter().map(|r| r.user_id.as_str()).collect();
    let mut want = Vec::new();
    for purpose in ["personalization", "analytics"] {
        // Visible as of `as_of`: placed at the tick after their ts (none is late here); the
        // latest by (ts, revocation last) decides.
        let consenting = users.iter().filter(|user| {
            let mine = consent_of(&records, user, purpose);
            let latest = mine
                .iter()
                .filter(|r| r.ts < as_of)
                .max_by_key(|r| (r.ts, !r.granted));
            latest.is_some_and(|r| r.granted)
        });
        want.push(serde_json::json!([purpose, consenting.count()]));
    }
    assert_eq!(report["consent"], Value::Array(want), "{report}");
    assert!(report["consent"][0][1].as_u64() > Some(0));
    // A store without consent has no coverage to report.
    let plain = replayed_plain(dir.path());
    let report: Value = serde_json::from_str(&ok(&rewind(&[
        "privacy",
        "report",
        "--store",
        plain.to_str().unwrap(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(report["consent"], Value::Null);
}

/// The same log as [`consented_store`]'s, replayed without consent.
fn replayed_plain(dir: &Path) -> std::path::PathBuf {
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let store = dir.join("plain");
    ok(&rewind(&[
        "replay",
        "--file",
        &file("events.jsonl"),
        "--titles-file",
        &file("events.titles.jsonl"),
        "--store",
        store.to_str().unwrap(),
        "--seal",
    ]));
    store
}
