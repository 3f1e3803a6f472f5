//! The served-feature log through the binary: `rewind snapshot --served` joins labels to the
//! values a log holds, by request id and by entity and time, and says clearly what it cannot
//! join (unknown request ids, a missing or damaged log).

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use rewind::served::{LogConfig, Served, ServedEntity, ServedLog, ServedValue, now_ms};
use serde_json::{Value, json};

use crate::common::{ok, rewind};

const V1: &str = "v_0123456789abcdef0123456789abcdef";
const V2: &str = "v_fedcba9876543210fedcba9876543210";

fn viewer(id: &str, watch_s: f64, plays: i64, genres: Value) -> ServedEntity {
    let value = |feature: &'static str, json: String, valid_from_ms: Option<u64>| ServedValue {
        feature: feature.into(),
        json,
        valid_from_ms,
    };
    ServedEntity {
        kind: "viewer".into(),
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

/// `rewind serve --log-served` on a store the binary built; stopped with SIGTERM, as systemd
/// stops it, so the log drains.
struct LoggingServer {
    child: std::process::Child,
    addr: String,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl LoggingServer {
    fn start(store: &Path) -> LoggingServer {
        let store = store.to_str().unwrap();
        let args = [
            "serve",
            "--store",
            store,
            "--listen",
            "127.0.0.1:0",
            "--log-served",
        ];
        let spawned = crate::common::spawn_rewind(&args, true);
        let addr = spawned.words_after(
            &[crate::common::SERVING],
            std::time::Duration::from_secs(30),
        );
        LoggingServer {
            child: spawned.child,
            addr: addr[0].clone(),
            stderr: spawned.lines,
        }
    }

    /// A request with `X-Request-Id: request_id`: (status, JSON body).
    fn call(&self, method: &str, path: &str, request_id: &str, body: Option<&Value>) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("http://{}{path}", self.addr);
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).header("X-Request-Id", request_id).call(),
            (_, body) => agent
                .post(&url)
                .header("X-Request-Id", request_id)
                .send(body.map_or(String::new(), Value::to_string)),
        }
        .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let echoed = response.headers().get("x-request-id").unwrap().to_str();
        assert_eq!(echoed.unwrap(), request_id);
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// SIGTERM, then the process's exit and the rest of its stderr.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(killed.unwrap().success());
        assert!(self.child.wait().unwrap().success());
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sealed store built by the binary from a generated log.
fn replayed_store(dir: &Path) -> std::path::PathBuf {
    let events = dir.join("events.jsonl");
    let titles = dir.join("events.titles.jsonl");
    let store = dir.join("store");
    let (events_s, store_s) = (events.to_str().unwrap(), store.to_str().unwrap());
    let gen_args = [
        "--viewers",
        "40",
        "--titles",
        "12",
        "--events",
        "5000",
        "--seed",
        "5",
    ];
    ok(&rewind(
        &[&["gen", "--out", events_s][..], &gen_args].concat(),
    ));
    let titles_s = titles.to_str().unwrap();
    let replay = ["replay", "--file", events_s, "--titles-file", titles_s];
    ok(&rewind(
        &[&replay[..], &["--store", store_s, "--seal"]].concat(),
    ));
    store
}

/// Numbers as f64 all the way down, so `1`, `1.0` and `1e0` compare equal.
fn norm(v: Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(norm).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, norm(v))).collect()),
        other => other,
    }
}

/// A label row by request id: the request, the viewer, and the values its response carried.
type Expected<'a> = (&'a str, String, Vec<(String, Value)>);

/// The values of entity row `row` of a Feast response, by full feature name.
fn feast_row(response: &Value, row: usize) -> Vec<(String, Value)> {
    let names = response["metadata"]["feature_names"].as_array().unwrap();
    names
        .iter()
        .zip(response["results"].as_array().unwrap())
        .skip(1)
        .map(|(name, result)| {
            let full = format!("viewer.{}", name.as_str().unwrap());
            (full, result["values"][row].clone())
        })
        .collect()
}

/// The values of one entity of a native response, by full feature name.
fn native_row(entity: &Value) -> Vec<(String, Value)> {
    let features = entity["features"].as_object().unwrap();
    features
        .iter()
        .map(|(name, v)| (name.clone(), v["value"].clone()))
        .collect()
}

#[test]
fn what_the_server_answered_is_what_snapshot_served_joins() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let door = crate::common::door();
    let v = |user: u32| door.viewer_id(&format!("u{user:07}")).to_string();
    let absent = "v_00000000000000000000000000000000".to_string();
    let server = LoggingServer::start(&store);
    let features = [
        "viewer:plays_24h",
        "viewer:watch_seconds_1h",
        "viewer:genre_share_90d",
        "viewer:last_titles_10",
    ];
    let feast = server.call(
        "POST",
        "/get-online-features",
        "feast-1",
        Some(&json!({"features": features, "entities": {"viewer_id": [v(1), v(2), absent]}})),
    );
    let between = now_ms();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let raw = server.call(
        "POST",
        "/get-online-features",
        "feast-raw",
        Some(&json!({"features": features, "entities": {"user_id": ["u0000005"]}})),
    );
    let native = server.call("GET", &format!("/v1/viewers/{}", v(3)), "native-1", None);
    let batch = server.call(
        "POST",
        "/v1/batch",
        "batch-1",
        Some(&json!({"viewers": [v(1), v(4)]})),
    );
    let after = now_ms();
    let stderr = server.stop();
    assert!(stderr.contains("4 responses logged, 0 dropped"), "{stderr}");

    // No raw account id reaches the log.
    for file in rewind::served::file::slot_paths(&store) {
        let bytes = std::fs::read(file).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"u0000005"));
    }

    let labels = dir.path().join("by_request.csv");
    let rows: Vec<Expected<'_>> = vec![
        ("feast-1", v(1), feast_row(&feast, 0)),
        ("feast-1", v(2), feast_row(&feast, 1)),
        ("feast-1", absent.clone(), feast_row(&feast, 2)),
        ("feast-raw", v(5), feast_row(&raw, 0)),
        ("native-1", v(3), native_row(&native)),
        ("batch-1", v(1), native_row(&batch["viewers"][0])),
        ("batch-1", v(4), native_row(&batch["viewers"][1])),
    ];
    let csv_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(r, id, _)| vec![r.to_string(), id.clone()])
        .collect();
    write_csv(&labels, &["request_id", "viewer_id"], &csv_rows);
    let out = dir.path().join("by_request.parquet");
    ok(&snapshot_served(&store, &labels, &out));
    let batch_out = read_parquet(&out);
    for (row, (request_id, _, values)) in rows.iter().enumerate() {
        assert_eq!(
            cell(&batch_out, "served_request_id", row),
            json!(request_id)
        );
        assert!(!values.is_empty());
        for (name, value) in values {
            let got = norm(cell(&batch_out, name, row));
            assert_eq!(got, norm(value.clone()), "row {row} {request_id} {name}");
        }
    }

    // By entity and time: viewer 1's label between its two responses gets the first, one
    // after both the second.
    let labels = dir.path().join("by_time.csv");
    let csv_rows = vec![
        vec![v(1), between.to_string()],
        vec![v(1), after.to_string()],
        vec![v(3), after.to_string()],
    ];
    write_csv(&labels, &["viewer_id", "ts"], &csv_rows);
    let out = dir.path().join("by_time.parquet");
    ok(&snapshot_served(&store, &labels, &out));
    let by_time = read_parquet(&out);
    let expected = [
        ("feast-1", feast_row(&feast, 0)),
        ("batch-1", native_row(&batch["viewers"][0])),
        ("native-1", native_row(&native)),
    ];
    for (row, (request_id, values)) in expected.iter().enumerate() {
        assert_eq!(cell(&by_time, "served_request_id", row), json!(request_id));
        for (name, value) in values {
            let got = norm(cell(&by_time, name, row));
            assert_eq!(got, norm(value.clone()), "row {row} {name}");
        }
    }
}
