//! The served-feature log through the binary: `rewind snapshot --served` joins labels to the
//! values a log holds, by request id and by entity and time, and says clearly what it cannot
//! join (unknown request ids, a missing or damaged log).

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use rewind::served::{LogConfig, Served, ServedEntity, ServedLog, ServedValue, now_ms};
use serde_json::{Value, json};

use crate::common::{ok, rewind};

const V1: &str = "v_0123456789abcdef0123456789abcdef";
const V2: &str = "v_fedcba9876543210fedcba9876543210";

fn viewer(id: &str, watch_s: f64, plays: i64, genres: Value) -> ServedEntity {
    let value = |feature: &str, json: String, valid_from_ms: Option<u64>| ServedValue {
        feature: feature.into(),
        json,
        valid_from_ms,
    };
    ServedEntity {
        kind: Arc::from("viewer"),
        id: id.into(),
        values: vec![
            value(
                "viewer.watch_seconds_1h",
                json!(watch_s).to_string(),
                Some(5_000),
            ),
            value("viewer.plays_24h", plays.to_string(), Some(6_000)),
            value("viewer.genre_share_90d", genres.to_string(), None),
        ],
    }
}

fn served(request_id: &str, served_at_ms: u64, entities: Vec<ServedEntity>) -> Served {
    Served {
        request_id: request_id.into(),
        served_at_ms,
        as_of_ms: 10_000,
        entities,
    }
}

/// A store directory whose log holds three responses, served 3 s, 2 s and 1 s before `now`.
fn logged(dir: &Path, now: u64) {
    let log = ServedLog::open(dir, LogConfig::default()).unwrap();
    let drama = json!({"drama": 1.0});
    let mixed = json!({"drama": 0.25, "comedy": 0.75});
    log.record(served(
        "req-a",
        now - 3000,
        vec![viewer(V1, 30.5, 1, drama.clone())],
    ));
    log.record(served(
        "req-b",
        now - 2000,
        vec![
            viewer(V1, 60.0, 2, mixed.clone()),
            viewer(V2, 0.0, 0, json!({})),
        ],
    ));
    log.record(served(
        "req-c",
        now - 1000,
        vec![viewer(V1, 90.25, 3, mixed)],
    ));
    log.close().unwrap();
}

fn write_csv(path: &Path, header: &[&str], rows: &[Vec<String>]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(header).unwrap();
    for row in rows {
        w.write_record(row).unwrap();
    }
    w.flush().unwrap();
}

fn snapshot_served(store: &Path, labels: &Path, out: &Path) -> std::process::Output {
    rewind(&[
        "snapshot",
        "--served",
        "--store",
        store.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// One cell as JSON (null for a null cell).
pub fn cell(batch: &RecordBatch, column: &str, row: usize) -> Value {
    use arrow_array::Array;
    let array = batch
        .column_by_name(column)
        .unwrap_or_else(|| panic!("no {column}"));
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        arrow_schema::DataType::Int64 => json!(array.as_primitive::<Int64Type>().value(row)),
        arrow_schema::DataType::Float64 => json!(array.as_primitive::<Float64Type>().value(row)),
        arrow_schema::DataType::Utf8 => json!(array.as_string::<i32>().value(row)),
        arrow_schema::DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (k, v) = (
                entries.column(0).as_string::<i32>(),
                entries.column(1).as_primitive::<Float64Type>(),
            );
            Value::Object(
                (0..k.len())
                    .map(|i| (k.value(i).to_string(), json!(v.value(i))))
                    .collect(),
            )
        }
        arrow_schema::DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            let items = items.as_string::<i32>();
            json!((0..items.len()).map(|i| items.value(i)).collect::<Vec<_>>())
        }
        other => panic!("unexpected column type {other}"),
    }
}

fn names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn labels_join_by_request_id_to_exactly_what_was_served() {
    let store = tempfile::tempdir().unwrap();
    let now = now_ms();
    logged(store.path(), now);
    let labels = store.path().join("labels.csv");
    let rows = [
        ["req-c", V1, "1"],
        ["req-b", V2, "0"],
        ["req-a", V1, "1"],
        ["req-b", V1, "0"],
        ["req-unknown", V1, "1"],
    ];
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    write_csv(&labels, &["request_id", "viewer_id", "clicked"], &rows);
    let out = store.path().join("train.parquet");
    let output = snapshot_served(store.path(), &labels, &out);
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 of 5 label rows matched no served response"),
        "{stderr}"
    );
    assert!(stderr.contains("req-unknown"), "{stderr}");

    let batch = read_parquet(&out);
    let mut want = vec!["request_id", "viewer_id", "clicked"];
    let features = rewind_dataflows::library()
        .into_iter()
        .filter(|f| f.name.starts_with("viewer."))
        .map(|f| f.name)
        .collect::<Vec<_>>();
    want.extend(features.iter());
    want.extend(["served_request_id", "served_at_ms"]);
    assert_eq!(names(&batch), want);
    let expect = [
        (
            "req-c",
            90.25,
            3,
            json!({"drama": 0.25, "comedy": 0.75}),
            now - 1000,
        ),
        ("req-b", 0.0, 0, json!({}), now - 2000),
        ("req-a", 30.5, 1, json!({"drama": 1.0}), now - 3000),
        (
            "req-b",
            60.0,
            2,
            json!({"drama": 0.25, "comedy": 0.75}),
            now - 2000,
        ),
    ];
    for (row, (request_id, watch, plays, genres, at)) in expect.into_iter().enumerate() {
        assert_eq!(cell(&batch, "viewer.watch_seconds_1h", row), json!(watch));
        assert_eq!(cell(&batch, "viewer.plays_24h", row), json!(plays));
        assert_eq!(cell(&batch, "viewer.genre_share_90d", row), genres);
        // A feature the response did not carry is null, not a default nobody served.
        assert_eq!(cell(&batch, "viewer.completes_1h", row), Value::Null);
        assert_eq!(cell(&batch, "served_request_id", row), json!(request_id));
        assert_eq!(cell(&batch, "served_at_ms", row), json!(at));
    }
    for column in ["viewer.plays_24h", "served_request_id", "served_at_ms"] {
        assert_eq!(cell(&batch, column, 4), Value::Null, "{column}");
    }
    assert_eq!(
        cell(&batch, "clicked", 4),
        json!("1"),
        "labels pass through"
    );
}

#[test]
fn labels_join_by_entity_to_the_latest_response_at_or_before_their_time() {
    let store = tempfile::tempdir().unwrap();
    let now = now_ms();
    logged(store.path(), now);
    let labels = store.path().join("labels.csv");
    let at = |ms: u64| ms.to_string();
    let rows = vec![
        vec![V1.to_string(), at(now - 3001)],
        vec![V1.to_string(), at(now - 3000)],
        vec![V1.to_string(), rewind::utc::format_ms(now - 1500)],
        vec![V1.to_string(), at(now - 1000)],
        vec![V2.to_string(), at(now)],
    ];
    write_csv(&labels, &["viewer_id", "ts"], &rows);
    let out = store.path().join("train.csv");
    ok(&snapshot_served(store.path(), &labels, &out));
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                &r[column("served_request_id")],
                &r[column("viewer.plays_24h")],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("", ""),
            ("req-a", "1"),
            ("req-b", "2"),
            ("req-c", "3"),
            ("req-b", "0")
        ]
    );
}

#[test]
fn a_batch_request_without_an_entity_column_is_ambiguous() {
    let store = tempfile::tempdir().unwrap();
    logged(store.path(), now_ms());
    let labels = store.path().join("labels.csv");
    write_csv(&labels, &["request_id"], &[vec!["req-b".into()]]);
    let out = store.path().join("train.csv");
    let output = snapshot_served(store.path(), &labels, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("served 2 entities"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn labels_after_now_are_refused() {
    let store = tempfile::tempdir().unwrap();
    let now = now_ms();
    logged(store.path(), now);
    let labels = store.path().join("labels.csv");
    let later = (now + 3_600_000).to_string();
    write_csv(&labels, &["viewer_id", "ts"], &[vec![V1.into(), later]]);
    let output = snapshot_served(store.path(), &labels, &store.path().join("t.csv"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("after now"), "{stderr}");
}

#[test]
fn a_missing_or_damaged_log_is_a_clear_error() {
    let store = tempfile::tempdir().unwrap();
    let labels = store.path().join("labels.csv");
    write_csv(&labels, &["request_id"], &[vec!["req-a".into()]]);
    let out = store.path().join("train.csv");
    let output = snapshot_served(store.path(), &labels, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no served log") && stderr.contains("--log-served"),
        "{stderr}"
    );

    logged(store.path(), now_ms());
    let file = store.path().join("served-0.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(5).position(|w| w == b"req-a").unwrap();
    bytes[at + 4] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let output = snapshot_served(store.path(), &labels, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("served-0.redb") && stderr.contains("damaged"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    std::fs::write(&file, b"not a database at all, just text").unwrap();
    let output = snapshot_served(store.path(), &labels, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("served-0.redb"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists());
}
