//! `rewind serve` and `rewind run --serve`, driven over real HTTP as model servers drive them:
//! Feast's wire format field by field, the native API, values against `rewind get` and the
//! history, and hostile requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use rewind::workload::GenConfig;
use rewind_dataflows::Entity;

use crate::common::{self, KEY, ok, rewind};

/// A running `rewind` process that serves; killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Runs `rewind ARGS` (which must serve on `127.0.0.1:0`) and waits for its address.
    fn start(args: &[&str], key: bool) -> Served {
        let spawned = common::spawn_rewind(args, key);
        let addr = spawned.words_after(&[common::SERVING], Duration::from_secs(30));
        Served {
            child: spawned.child,
            addr: addr[0].parse().unwrap(),
        }
    }

    /// Stops the process (SIGINT, as Ctrl-C) and waits for it to end.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> Reply {
        reply(agent().get(self.url(path)).call().unwrap())
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        let req = agent()
            .post(self.url(path))
            .header("Content-Type", "application/json");
        reply(req.send(body.to_string()).unwrap())
    }

    /// Waits until /health answers 200.
    fn wait_healthy(&self) {
        let started = Instant::now();
        while self.get("/health").status != 200 {
            assert!(started.elapsed() < Duration::from_secs(60), "never healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder().http_status_as_error(false);
    config.build().into()
}

fn reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Reply {
        status: response.status().as_u16(),
        headers,
        body: response.body_mut().read_to_string().unwrap(),
    }
}

/// Sends `request` as raw bytes (so nothing adds headers) and reads the answer.
fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may answer (413) and close before reading everything: a failed write is fine.
    let _ = stream.write_all(request);
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("0");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Reply {
        status: status.parse().unwrap_or(0),
        headers,
        body: body.to_string(),
    }
}

fn post_raw(addr: SocketAddr, path: &str, extra_headers: &str, body: &str) -> Reply {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    raw(addr, request.as_bytes())
}

/// A sealed store from a generated log, built by the binary: `rewind gen` then `rewind replay`.
fn replayed_store(dir: &Path) -> std::path::PathBuf {
    let events = dir.join("events.jsonl");
    let events_s = events.to_str().unwrap();
    ok(&rewind(&[
        "gen",
        "--viewers",
        "60",
        "--titles",
        "15",
        "--events",
        "6000",
        "--seed",
        "3",
        "--out",
        events_s,
    ]));
    let store = dir.join("store");
    let titles = dir.join("events.titles.jsonl");
    ok(&rewind(&[
        "replay",
        "--file",
        events_s,
        "--titles-file",
        titles.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--seal",
    ]));
    store
}

fn serve_store(store: &Path, extra: &[&str], key: bool) -> Served {
    let args = [
        &[
            "serve",
            "--store",
            store.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ][..],
        extra,
    ];
    Served::start(&args.concat(), key)
}

fn viewer(user: u32) -> String {
    common::door().viewer_id(&format!("u{user:07}")).to_string()
}

/// Feast's unit tests (`test_feature_server.py`) check a response this way: every requested
/// feature named in `metadata.feature_names`, one result per name, each as long as the entity
/// rows, the join key echoed first and PRESENT.
fn assert_feast_shape(response: &Value, names: &[&str], rows: usize) {
    let keys: Vec<_> = response.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, vec!["metadata", "results"], "{response}");
    assert_eq!(response["metadata"], json!({"feature_names": names}));
    let results = response["results"].as_array().unwrap();
    assert_eq!(results.len(), names.len());
    for result in results {
        let fields: Vec<_> = result.as_object().unwrap().keys().cloned().collect();
        assert_eq!(fields, vec!["event_timestamps", "statuses", "values"]);
        for field in ["values", "statuses", "event_timestamps"] {
            assert_eq!(
                result[field].as_array().unwrap().len(),
                rows,
                "{field}: {result}"
            );
        }
        for ts in result["event_timestamps"].as_array().unwrap() {
            let ts = ts.as_str().unwrap();
            assert!(
                ts.ends_with('Z') && ts.len() >= 20 && &ts[10..11] == "T",
                "{ts}"
            );
        }
    }
    assert_eq!(results[0]["statuses"], json!(vec!["PRESENT"; rows]));
    assert_eq!(
        results[0]["event_timestamps"],
        json!(vec!["1970-01-01T00:00:00Z"; rows])
    );
}

#[test]
fn the_feast_format_field_by_field_with_and_without_a_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let served = serve_store(&store, &[], true);
    served.wait_healthy();
    let known = viewer(1);
    let unknown = "v_00000000000000000000000000000000";
    let body = json!({
        "features": ["viewer:plays_24h", "viewer:genre_share_90d", "viewer:completes_1h"],
        "entities": {"viewer_id": [known, unknown]},
    });
    // Feast's own client posts the JSON string with no Content-Type.
    let bare = post_raw(served.addr, "/get-online-features", "", &body.to_string());
    let typed = served.post("/get-online-features", &body);
    assert_eq!((bare.status, typed.status), (200, 200), "{}", bare.body);
    assert_eq!(bare.json(), typed.json());
    let response = typed.json();
    assert_feast_shape(
        &response,
        &["viewer_id", "plays_24h", "genre_share_90d", "completes_1h"],
        2,
    );
    let results = &response["results"];
    assert_eq!(results[0]["values"], json!([known, unknown]));

    // The known viewer's values are `rewind get`'s, with its valid-from ticks.
    let got: Value = serde_json::from_str(&ok(&rewind(&[
        "get",
        "--store",
        store.to_str().unwrap(),
        "viewer",
        &known,
    ])))
    .unwrap();
    for (i, feature) in [
        "viewer.plays_24h",
        "viewer.genre_share_90d",
        "viewer.completes_1h",
    ]
    .iter()
    .enumerate()
    {
        let column = &results[i + 1];
        let expected = &got["features"][feature];
        assert_eq!(column["values"][0], expected["value"], "{feature}");
        assert_eq!(column["statuses"][0], "PRESENT", "{feature}");
        let ts = match expected["valid_from_ms"].as_u64() {
            Some(ms) => rewind::utc::format_ms(ms).replace(".000Z", "Z"),
            None => "1970-01-01T00:00:00Z".to_string(),
        };
        assert_eq!(column["event_timestamps"][0], ts.as_str(), "{feature}");
        // A viewer the store has never seen is NOT_FOUND, with a null value, as in Feast.
        assert_eq!(column["values"][1], Value::Null);
        assert_eq!(column["statuses"][1], "NOT_FOUND");
        assert_eq!(column["event_timestamps"][1], "1970-01-01T00:00:00Z");
    }
    let as_of = typed.header("x-rewind-as-of").unwrap();
    assert_eq!(Some(as_of), bare.header("x-rewind-as-of"));
    assert_eq!(
        as_of,
        rewind::utc::format_ms(got["as_of_ms"].as_u64().unwrap())
    );
    assert!(typed.header("x-rewind-frontier").is_some());
    assert!(typed.header("x-request-id").is_some());
}

#[test]
fn feature_services_full_names_and_two_views_read_what_rewind_get_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let served = serve_store(&store, &[], true);
    served.wait_healthy();
    // Join keys come back in the order sent (json! would sort them).
    let body = r#"{"feature_service": "home_ranker_v1", "full_feature_names": true,
        "entities": {"user_id": ["u0000002", 3], "title_id": ["tt000001", "no-such-title"]}}"#;
    let reply = post_raw(served.addr, "/get-online-features", "", body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    let names = [
        "user_id",
        "title_id",
        "viewer__watch_seconds_1h",
        "viewer__completes_1h",
        "viewer__plays_24h",
        "viewer__genre_share_90d",
        "viewer__last_titles_10",
        "title__plays_1h",
        "title__ctr_24h",
    ];
    assert_feast_shape(&response, &names, 2);
    // The raw ids are echoed as given; the values are `rewind get`'s (its own read of the
    // store's online table) of their pseudonyms.
    assert_eq!(response["results"][0]["values"], json!(["u0000002", 3]));
    let viewer_got = get(&store, "viewer", &viewer(2));
    let title_got = get(&store, "title", "tt000001");
    for (i, name) in names.iter().enumerate().skip(2) {
        let full = name.replace("__", ".");
        let got = match full.starts_with("viewer.") {
            true => &viewer_got,
            false => &title_got,
        };
        let column = &response["results"][i];
        let expected = &got["features"][full.as_str()]["value"];
        assert_eq!(column["values"][0], *expected, "{full}");
        // Row 0's viewer and title both have rows: every value is PRESENT.
        assert_eq!(column["statuses"][0], "PRESENT", "{full}");
        // Row 1's viewer (user id 3, never generated) and title have none.
        assert_eq!(column["values"][1], Value::Null, "{full}");
        assert_eq!(column["statuses"][1], "NOT_FOUND", "{full}");
    }
    // The second most popular title has impressions in this workload: its ctr is a number
    // (a null ctr, NULL_VALUE, is lookup.rs's unit test).
    assert!(
        title_got["features"]["title.ctr_24h"]["value"].is_f64(),
        "{title_got}"
    );
    assert!(viewer_got["features"]["viewer.plays_24h"]["value"].as_u64() > Some(0));
}

/// `rewind get ENTITY ID` of `store`, as JSON.
fn get(store: &Path, entity: &str, id: &str) -> Value {
    let out = ok(&rewind(&[
        "get",
        "--store",
        store.to_str().unwrap(),
        entity,
        id,
    ]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn served_values_equal_the_history_as_of_each_response_while_a_run_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_s = store.to_str().unwrap();
    // Serve first: the store does not exist yet.
    let served = serve_store(&store, &[], true);
    let waiting = served.get("/health");
    assert_eq!(waiting.status, 503);
    assert!(
        waiting.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no store"),
        "{}",
        waiting.body
    );
    assert_eq!(waiting.header("retry-after"), Some("1"));

    let mut run = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args([
            "run",
            "--store",
            store_s,
            "--viewers",
            "50",
            "--titles",
            "20",
            "--rate",
            "4000",
            "--duration-s",
            "8",
            // Every viewer's values, ungated, so each of the ten read has values by the end.
            "--consent-purposes",
            "none",
        ])
        .env("REWIND_PSEUDONYM_KEY", std::str::from_utf8(KEY).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    served.wait_healthy();
    let features = [
        "viewer:plays_24h",
        "viewer:watch_seconds_1h",
        "viewer:last_titles_10",
    ];
    let users: Vec<u32> = (0..10).collect();
    let mut responses = Vec::new();
    while run.try_wait().unwrap().is_none() {
        let body = json!({
            "features": features,
            "entities": {"user_id": users.iter().map(|u| format!("u{u:07}")).collect::<Vec<_>>()},
        });
        let reply = served.post("/get-online-features", &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let as_of = reply.header("x-rewind-as-of").unwrap().to_string();
        responses.push((as_of, reply.json()));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(run.wait().unwrap().success());
    let as_ofs: Vec<_> = responses.iter().map(|r| r.0.clone()).collect();
    assert!(as_ofs.windows(2).all(|w| w[0] <= w[1]), "{as_ofs:?}");
    assert!(
        as_ofs.first() < as_ofs.last(),
        "the server followed no commit: {as_ofs:?}"
    );

    // History is append-only: what each response served is the history as of its as-of,
    // read from the store file on its own, found or not included. Except for viewers the
    // embedded generator has erased since: their rows are gone by design.
    let reader = rewind_state::ReadOnlyStore::open(&store).unwrap();
    let snap = reader.snapshot().unwrap();
    let lookup = snap.history_lookup().unwrap();
    let viewer_features: Vec<&str> = rewind_dataflows::library()
        .iter()
        .filter(|f| f.entity() == Some(Entity::Viewer))
        .map(|f| f.name)
        .collect();
    let door = common::door();
    let erased = |user: u32| {
        let id = door.viewer_id(&format!("u{user:07}"));
        snap.erasure(door.erasure_token(&id)).unwrap().is_some()
    };
    let kept: Vec<(usize, u32)> = (users.iter().copied().enumerate())
        .filter(|(_, u)| !erased(*u))
        .collect();
    let mut checked = 0;
    for (as_of, response) in &responses {
        let as_of_ms = parse_utc(as_of);
        for &(row, user) in &kept {
            let id = viewer(user);
            // The store has a row for a viewer once any of its features changed.
            let found = viewer_features
                .iter()
                .any(|f| !lookup.rows(f, &id, as_of_ms).unwrap().is_empty());
            for (f, feature) in features.iter().enumerate() {
                let full = feature.replace(':', ".");
                let default = rewind::serve::LibFeature::default_of(&full).unwrap();
                let column = &response["results"][f + 1];
                let (expected, status): (Value, _) = match lookup.as_of(&full, &id, as_of_ms) {
                    _ if !found => (Value::Null, "NOT_FOUND"),
                    Ok(Some(bytes)) => (serde_json::from_slice(&bytes).unwrap(), "PRESENT"),
                    // None of these three defaults is null.
                    Ok(None) => (serde_json::from_str(default).unwrap(), "PRESENT"),
                    Err(e) => panic!("{e}"),
                };
                let at = format!("{full} u{user} as of {as_of}");
                assert_eq!(column["values"][row], expected, "{at}");
                assert_eq!(column["statuses"][row], status, "{at}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, responses.len() * features.len() * kept.len());
    // By the last response every one of the ten viewers (bar any erased) has played something: found, with a
    // count and a title list that are not their defaults.
    let (as_of, last) = responses.last().unwrap();
    for &(row, _) in &kept {
        let plays = &last["results"][1]["values"][row];
        assert!(plays.as_u64() > Some(0), "row {row} as of {as_of}: {plays}");
        let titles = last["results"][3]["values"][row].as_array();
        assert!(
            titles.is_some_and(|t| !t.is_empty()),
            "row {row} as of {as_of}"
        );
    }
}

fn parse_utc(text: &str) -> u64 {
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: days from the civil date, as utc.rs formats it.
    let n = |a: usize, b: usize| text[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19);
    (secs * 1000 + n(20, 23)) as u64
}

#[test]
fn run_serve_answers_from_the_writing_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let served = Served::start(
        &[
            "run",
            "--store",
            store.to_str().unwrap(),
            "--viewers",
            "30",
            "--titles",
            "10",
            "--rate",
            "3000",
            "--duration-s",
            "6",
            "--serve",
            "127.0.0.1:0",
            "--serve-max-entities",
            "100",
        ],
        false,
    );
    served.wait_healthy();
    // The limits are the flags', as `rewind serve`'s are; a batch past 64 entities reads off
    // the one runtime thread and answers all the same.
    let titles = |n: usize| (0..n).map(|i| format!("tt{i:06}")).collect::<Vec<_>>();
    let too_many = served.post("/v1/batch", &json!({"titles": titles(101)}));
    assert_eq!(too_many.status, 422, "{}", too_many.body);
    let batch = served.post("/v1/batch", &json!({"titles": titles(100)}));
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(batch.json()["titles"].as_array().unwrap().len(), 100);
    // The embedded run made its key in the store; the server pseudonymizes with it.
    let body = json!({"features": ["viewer:plays_24h"], "entities": {"user_id": ["u0000001"]}});
    let reply = served.post("/get-online-features", &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("x-rewind-frontier").is_some());
    let title = served.get("/v1/titles/tt000001");
    assert_eq!(title.status, 200, "{}", title.body);
    let title = title.json();
    assert!(title["as_of_ms"].as_u64().unwrap() < title["frontier_ms"].as_u64().unwrap());
    assert_eq!(title["features"].as_object().unwrap().len(), 2);
}

/// `run --serve` on a log that ends: once the run has read it all, the store stops moving, and
/// what the writing process served is what `rewind get` reads from the store after the run.
#[test]
fn run_serve_serves_what_rewind_get_reads_after_the_run() {
    let config = GenConfig {
        viewers: 20,
        titles: 8,
        seed: 5,
        ..GenConfig::default()
    };
    let (titles, events) = common::workload(config.clone(), 3_000);
    let log = common::log(2);
    common::produce_workload(&log.brokers, &titles, &events, config.start_ms);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let args = [
        "run",
        "--brokers",
        &log.brokers,
        "--store",
        store.to_str().unwrap(),
    ];
    let mut served = Served::start(&[&args[..], &["--serve", "127.0.0.1:0"]].concat(), true);
    served.wait_healthy();
    // Caught up, the frontier stays where the log's watermark holds it: two reads a second
    // apart at the same as-of.
    let as_of = |s: &Served| s.get("/health").json()["as_of_ms"].as_u64();
    let started = Instant::now();
    let mut last = as_of(&served);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = as_of(&served);
        if now == last && now.is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the store kept moving"
        );
        last = now;
    }
    let ids: Vec<String> = (0..titles.len()).map(|t| format!("tt{t:06}")).collect();
    let viewers: Vec<String> = (0..5).map(viewer).collect();
    let batch = served.post("/v1/batch", &json!({"titles": ids, "viewers": viewers}));
    assert_eq!(batch.status, 200, "{}", batch.body);
    let batch = batch.json();
    served.stop();

    let mut compared = 0;
    for (kind, list) in [("title", "titles"), ("viewer", "viewers")] {
        for entity in batch[list].as_array().unwrap() {
            let got = get(&store, kind, entity["id"].as_str().unwrap());
            assert_eq!(
                got["as_of_ms"], batch["as_of_ms"],
                "the store moved after serving"
            );
            assert_eq!(entity["features"].as_object().unwrap().len(), {
                got["features"].as_object().unwrap().len()
            });
            for (name, expected) in got["features"].as_object().unwrap() {
                let value = &entity["features"][name];
                assert_eq!(value["value"], expected["value"], "{kind} {name}");
                assert_eq!(value["valid_from_ms"], expected["valid_from_ms"], "{name}");
                compared += 1;
            }
        }
    }
    let count = |e| {
        let library = rewind_dataflows::library();
        library.iter().filter(|f| f.entity() == Some(e)).count()
    };
    let expected = 8 * count(Entity::Title) + 5 * count(Entity::Viewer);
    assert_eq!(
        (compared, expected),
        (51, 51),
        "eight titles of 2 features, 5 viewers of 7"
    );
    let plays = |e: &Value| e["features"]["title.plays_1h"]["value"].as_u64();
    assert!(plays(&batch["titles"][0]) > Some(0), "{batch}");
}

#[test]
fn the_native_api_reads_entities_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let served = serve_store(&store, &[], false);
    served.wait_healthy();
    let v = viewer(4);
    let one = served.get(&format!("/v1/viewers/{v}"));
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(
        (
            one["entity"].as_str(),
            one["id"].as_str(),
            one["found"].as_bool()
        ),
        (Some("viewer"), Some(v.as_str()), Some(true))
    );
    let got: Value = serde_json::from_str(&ok(&rewind(&[
        "get",
        "--store",
        store.to_str().unwrap(),
        "viewer",
        &v,
    ])))
    .unwrap();
    for (name, expected) in got["features"].as_object().unwrap() {
        assert_eq!(one["features"][name]["value"], expected["value"], "{name}");
        assert_eq!(
            one["features"][name]["valid_from_ms"], expected["valid_from_ms"],
            "{name}"
        );
    }
    assert_eq!(one["as_of_ms"], got["as_of_ms"]);
    let batch = served.post("/v1/batch", &json!({"viewers": [v, "v_00000000000000000000000000000000"], "titles": ["tt000002"], "features": ["viewer.plays_24h", "title.plays_1h"]}));
    assert_eq!(batch.status, 200, "{}", batch.body);
    let batch = batch.json();
    assert_eq!(
        batch["viewers"][0]["features"]["viewer.plays_24h"],
        one["features"]["viewer.plays_24h"]
    );
    assert_eq!(batch["viewers"][1]["found"], false);
    // An entity never seen reads as every default, valid from nowhere.
    assert_eq!(
        batch["viewers"][1]["features"]["viewer.plays_24h"],
        json!({"value": 0, "valid_from": null, "valid_from_ms": null})
    );
    assert_eq!(batch["titles"][0]["features"].as_object().unwrap().len(), 1);
}

#[test]
fn hostile_requests_get_clear_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    // No key: user_id is refused.
    let served = serve_store(&store, &["--max-entities", "100"], false);
    served.wait_healthy();
    let addr = served.addr;
    let feast = |body: &str| post_raw(addr, "/get-online-features", "", body);
    let detail = |r: &Reply| r.json()["detail"].as_str().unwrap().to_string();
    let v = viewer(1);

    // `feast serve`'s error body: a JSON string holding {"module", "class", "message"}, which
    // Feast's client (`FeastError.from_error_detail`) re-raises as the class named.
    let feast_error = |r: &Reply| -> (String, String) {
        let inner: Value = serde_json::from_str(r.json().as_str().expect("a JSON string"))
            .unwrap_or_else(|e| panic!("{e}: {}", r.body));
        assert_eq!(inner["module"], "feast.errors", "{}", r.body);
        let field = |f: &str| inner[f].as_str().unwrap().to_string();
        (field("class"), field("message"))
    };

    // A body FastAPI cannot parse is 422, as `feast serve` answers it.
    let r = feast("{not json");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(detail(&r).contains("not valid"));
    let r = feast(r#"{"features": "viewer:plays_24h", "entities": {"viewer_id": []}}"#);
    assert_eq!(r.status, 422);
    let r =
        feast(&json!({"features": ["viewer:nope"], "entities": {"viewer_id": [v]}}).to_string());
    assert_eq!(r.status, 404, "{}", r.body);
    let (class, message) = feast_error(&r);
    assert_eq!(class, "FeastObjectNotFoundException");
    assert!(message.contains("\"nope\""), "{message}");
    let r = feast(&json!({"features": ["driver:x"], "entities": {"viewer_id": [v]}}).to_string());
    assert_eq!(r.status, 404);
    let (class, message) = feast_error(&r);
    assert_eq!(class, "FeatureViewNotFoundException");
    assert!(message.contains("\"driver\""), "{message}");
    let r = feast(&json!({"feature_service": "nope", "entities": {"viewer_id": [v]}}).to_string());
    assert_eq!(r.status, 404);
    assert_eq!(feast_error(&r).0, "FeatureServiceNotFoundException");
    // An id of the wrong type is named by where it is, never by its value.
    let r = feast(r#"{"features": ["viewer:plays_24h"], "entities": {"user_id": [12.5]}}"#);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        detail(&r).contains("entity ids") && !r.body.contains("12.5"),
        "{}",
        r.body
    );
    let r = post_raw(
        addr,
        "/v1/batch",
        "",
        r#"{"titles": [{"secret-account": 1}]}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains("secret-account"), "{}", r.body);
    // The native API keeps FastAPI's {"detail"} with the unknown name.
    let r = served.post(
        "/v1/batch",
        &json!({"features": ["viewer.nope"], "viewers": [v]}),
    );
    assert_eq!(
        (r.status, r.json()["unknown"].as_str()),
        (404, Some("viewer.nope")),
        "{}",
        r.body
    );
    let r = feast(
        &json!({"features": ["viewer:plays_24h"], "entities": {"user_id": ["secret-account-7"]}})
            .to_string(),
    );
    assert_eq!(r.status, 422);
    assert!(
        detail(&r).contains("pseudonym key") && !r.body.contains("secret-account-7"),
        "{}",
        r.body
    );
    let r = feast(
        &json!({"features": ["viewer:plays_24h"], "entities": {"viewer_id": ["alice"]}})
            .to_string(),
    );
    assert_eq!(r.status, 422);
    let r = feast(&json!({"features": ["title:plays_1h", "viewer:plays_24h"], "entities": {"viewer_id": [v], "title_id": []}}).to_string());
    assert_eq!(r.status, 422);
    assert!(detail(&r).contains("one per row"), "{}", r.body);

    // Over the entity limit: refused while parsing.
    let ids: Vec<String> = (0..101).map(|_| v.clone()).collect();
    let r = feast(
        &json!({"features": ["viewer:plays_24h"], "entities": {"viewer_id": ids}}).to_string(),
    );
    assert_eq!(r.status, 422);
    assert!(detail(&r).contains("more than 100 entities"));
    // A million entities: refused by its declared length before any of it is read.
    let million = format!(
        r#"{{"features": ["viewer:plays_24h"], "entities": {{"viewer_id": [{}"v"]}}}}"#,
        "\"v\",".repeat(1_000_000)
    );
    let r = feast(&million);
    assert_eq!(r.status, 413, "{}", r.body);
    // Without a declared length (chunked), refused once the body passes the limit.
    let chunk = "x".repeat(64 * 1024);
    let mut chunked = b"POST /get-online-features HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(addr, &chunked).status, 413);

    // Ids, methods and paths.
    assert_eq!(served.get("/v1/viewers/alice").status, 422);
    assert_eq!(
        served
            .get(&format!("/v1/titles/{}", "t".repeat(300)))
            .status,
        422
    );
    assert_eq!(served.get("/v1/titles/t%zz").status, 400);
    let r = served.get("/get-online-features");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(served.get("/nope").status, 404);
    let metrics = served.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("rewind_http_requests_total"),
        "{}",
        metrics.body
    );

    // After all that, it still serves.
    let r = served.post(
        "/get-online-features",
        &json!({"features": ["viewer:plays_24h"], "entities": {"viewer_id": [v]}}),
    );
    assert_eq!(r.status, 200);
}

/// A control character (a NUL above all) has no place in an id: it would become part of a
/// store key, a served-log row, a log line. Every id path refuses it with 422, and never
/// quotes the id back.
#[test]
fn control_characters_in_ids_are_refused_without_quoting_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let served = serve_store(&store, &[], true);
    served.wait_healthy();
    let refused_for = |r: Reply, what: &str, why: &str| {
        assert_eq!(r.status, 422, "{what}: {}", r.body);
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains(why), "{what}: {}", r.body);
        assert!(!r.body.contains("secret"), "{what}: {}", r.body);
    };
    let refused = |r: Reply, what: &str| refused_for(r, what, "control character");
    for id in [
        "secret%00id",
        "tt000001%00",
        "secret%1b%5b2J",
        "secret%7f",
        "secret%c2%85",
    ] {
        refused(served.get(&format!("/v1/titles/{id}")), id);
    }
    // A viewer id is a pseudonym or nothing: 422 as well.
    let pseudonym = "pseudonym";
    refused_for(
        served.get("/v1/viewers/v_secret%00"),
        "viewer path",
        pseudonym,
    );
    for id in [r"secret\u0000id", r"tt000001\u0000", r"secret\nline"] {
        let feast = format!(
            r#"{{"features": ["title:plays_1h"], "entities": {{"title_id": ["tt000001", "{id}"]}}}}"#
        );
        refused(
            post_raw(served.addr, "/get-online-features", "", &feast),
            id,
        );
        let batch = format!(r#"{{"titles": ["{id}"]}}"#);
        refused(post_raw(served.addr, "/v1/batch", "", &batch), id);
    }
    let user =
        r#"{"features": ["viewer:plays_24h"], "entities": {"user_id": ["secret\u0000acct"]}}"#;
    refused(
        post_raw(served.addr, "/get-online-features", "", user),
        "user_id",
    );
    let viewer =
        r#"{"features": ["viewer:plays_24h"], "entities": {"viewer_id": ["v_secret\u0000"]}}"#;
    let r = post_raw(served.addr, "/get-online-features", "", viewer);
    refused_for(r, "viewer_id", pseudonym);
    let batch = r#"{"viewers": ["v_secret\u0000"]}"#;
    refused_for(
        post_raw(served.addr, "/v1/batch", "", batch),
        "batch viewer",
        pseudonym,
    );
    // The same ids without the control character are served.
    let fine = served.get("/v1/titles/tt000001");
    assert_eq!(fine.status, 200, "{}", fine.body);
}

#[test]
fn a_token_is_required_of_every_request_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let loose = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&token_file, loose).unwrap();
        let refused = rewind(&[
            "serve",
            "--store",
            store.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_file.to_str().unwrap(),
        ]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"));
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let served = serve_store(
        &store,
        &["--token-file", token_file.to_str().unwrap()],
        false,
    );
    let health = |auth: &str| {
        raw(
            served.addr,
            format!("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n")
                .as_bytes(),
        )
    };
    let missing = health("");
    assert_eq!(
        (missing.status, missing.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    assert_eq!(health("Authorization: Bearer wrong\r\n").status, 401);
    assert_eq!(
        health("Authorization: Bearer s3cret-token-longer\r\n").status,
        401
    );
    let started = Instant::now();
    while health("Authorization: Bearer s3cret-token\r\n").status != 200 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_slow_client_does_not_hold_up_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let served = serve_store(&store, &[], false);
    served.wait_healthy();
    // Half a request's headers, and a body promised but never sent.
    let mut stalled_head = TcpStream::connect(served.addr).unwrap();
    stalled_head
        .write_all(b"POST /get-online-features HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut stalled_body = TcpStream::connect(served.addr).unwrap();
    stalled_body
        .write_all(b"POST /get-online-features HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            served.get(&format!("/v1/viewers/{}", viewer(1))).status,
            200
        );
    }
    // The stalled body times out with 408 (the server's body timeout is 10 s).
    stalled_body
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    let _ = stalled_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn user_ids_are_refused_when_the_servers_key_is_not_the_stores() {
    let dir = tempfile::tempdir().unwrap();
    let store = replayed_store(dir.path());
    let other = dir.path().join("other.key");
    std::fs::write(&other, "another key, not the store's one").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let served = serve_store(&store, &["--key-file", other.to_str().unwrap()], false);
    served.wait_healthy();
    let body = json!({"features": ["viewer:plays_24h"], "entities": {"user_id": ["u0000001"]}});
    let reply = served.post("/get-online-features", &body);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("not the one the store")
    );
    // Pseudonyms need no key, and are served.
    let body = json!({"features": ["viewer:plays_24h"], "entities": {"viewer_id": [viewer(1)]}});
    assert_eq!(served.post("/get-online-features", &body).status, 200);
}

/// Serving reads for a purpose (the request's, or the server's `--purpose`): a viewer not
/// consenting as of the store's as-of is withheld (native: `"withheld": "consent"` and every
/// default; Feast: NOT_FOUND), one consenting is served what `rewind get` reads; a feature not
/// declared for the purpose is 403 with Feast's error body naming it; no purpose reads as
/// before.
#[test]
fn reads_for_a_purpose_withhold_viewers_without_consent_and_refuse_undeclared_features() {
    use crate::snapshot::{consented_store, consents_at};
    let dir = tempfile::tempdir().unwrap();
    let (store, records) = consented_store(dir.path());
    let served = serve_store(&store, &[], true);
    served.wait_healthy();
    let as_of = served.get("/health").json()["as_of_ms"].as_u64().unwrap();
    let purpose = "personalization";
    // Whose last record is a while before the as-of, so its tick is surely behind it.
    let settled = |user: &str, granted: bool| {
        let mine = crate::snapshot::consent_of(&records, user, purpose);
        let last = mine.iter().rev().find(|r| r.ts <= as_of);
        last.is_some_and(|r| r.ts + 60_000 < as_of && r.granted == granted)
            && consents_at(&records, user, purpose, as_of) == granted
    };
    let users: Vec<String> = (0..30).map(|u| format!("u{u:07}")).collect();
    let revoked = users
        .iter()
        .find(|u| settled(u, false))
        .expect("one revoked");
    let consenting = users
        .iter()
        .find(|u| settled(u, true))
        .expect("one consenting");
    let (revoked, consenting) = (
        common::door().viewer_id(revoked).to_string(),
        common::door().viewer_id(consenting).to_string(),
    );
    let declared: Vec<&str> = rewind_dataflows::library()
        .iter()
        .filter(|f| f.name.starts_with("viewer."))
        .filter(|f| f.purposes.iter().any(|p| p.as_str() == purpose))
        .map(|f| f.name)
        .collect();

    // Native: the revoked viewer is withheld, with every declared feature at its default.
    let native = |id: &str, query: &str| served.get(&format!("/v1/viewers/{id}{query}"));
    let r = native(&revoked, "?purpose=personalization");
    assert_eq!(r.status, 200, "{}", r.body);
    let withheld = r.json();
    assert_eq!(
        (&withheld["found"], &withheld["withheld"]),
        (&json!(true), &json!("consent"))
    );
    let names: Vec<&String> = withheld["features"].as_object().unwrap().keys().collect();
    assert_eq!(names.len(), declared.len(), "{names:?}");
    for name in &declared {
        let default: Value =
            serde_json::from_str(rewind::serve::LibFeature::default_of(name).unwrap()).unwrap();
        let want = json!({"value": default, "valid_from": null, "valid_from_ms": null});
        assert_eq!(withheld["features"][name], want, "{name}");
    }
    // Without a purpose the same viewer reads as it always did: found, no withholding.
    let plain = native(&revoked, "").json();
    assert_eq!(plain["withheld"], Value::Null);
    assert_eq!(plain["features"].as_object().unwrap().len(), 7);
    // The consenting viewer reads rewind get's values.
    let r = native(&consenting, "?purpose=personalization").json();
    assert_eq!(r["withheld"], Value::Null, "{r}");
    let got = get(&store, "viewer", &consenting);
    for name in &declared {
        assert_eq!(
            r["features"][name]["value"], got["features"][name]["value"],
            "{name}"
        );
    }
    let genres = &r["features"]["viewer.genre_share_90d"]["value"];
    assert!(
        genres.as_object().is_some_and(|m| !m.is_empty()),
        "{genres}"
    );

    // Feast, the purpose in a header: the revoked viewer's values are NOT_FOUND (null).
    let body = json!({"features": ["viewer:plays_24h", "viewer:genre_share_90d"],
                      "entities": {"viewer_id": [consenting, revoked]}});
    let header = "X-Rewind-Purpose: personalization\r\n";
    let r = post_raw(
        served.addr,
        "/get-online-features",
        header,
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let response = r.json();
    assert_feast_shape(&response, &["viewer_id", "plays_24h", "genre_share_90d"], 2);
    for (column, name) in [(1, "viewer.plays_24h"), (2, "viewer.genre_share_90d")] {
        let column = &response["results"][column];
        assert_eq!(
            column["values"][0], got["features"][name]["value"],
            "{name}"
        );
        assert_eq!(column["statuses"][0], "PRESENT");
        assert_eq!(
            (&column["values"][1], &column["statuses"][1]),
            (&Value::Null, &json!("NOT_FOUND"))
        );
    }
    // The batch names it in its body.
    let batch = served.post(
        "/v1/batch",
        &json!({"viewers": [revoked, consenting], "purpose": purpose}),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let batch = batch.json();
    assert_eq!(batch["viewers"][0]["withheld"], "consent");
    assert_eq!(batch["viewers"][1]["withheld"], Value::Null);

    // A feature not declared for the purpose: 403, Feast's error naming the feature.
    let body = json!({"features": ["viewer:plays_24h", "viewer:genre_share_90d"],
                      "entities": {"viewer_id": [consenting]}});
    let header = "X-Rewind-Purpose: analytics\r\n";
    let r = post_raw(
        served.addr,
        "/get-online-features",
        header,
        &body.to_string(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let inner: Value = serde_json::from_str(r.json().as_str().unwrap()).unwrap();
    assert_eq!(inner["class"], "FeastPermissionError");
    let message = inner["message"].as_str().unwrap();
    assert!(
        message.contains("\"viewer.genre_share_90d\"")
            && message.contains("serves personalization"),
        "{message}"
    );
    assert!(!r.body.contains(&consenting));
    let r = served.post("/v1/batch", &json!({"viewers": [consenting], "purpose": "analytics", "features": ["viewer.genre_share_90d"]}));
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("viewer.genre_share_90d")
    );
    // Without a feature list, a purpose reads only the features declared for it.
    let r = native(&consenting, "?purpose=analytics").json();
    assert!(r["features"].get("viewer.genre_share_90d").is_none(), "{r}");
    assert!(r["features"].get("viewer.plays_24h").is_some(), "{r}");
    // An unknown purpose is 422, without quoting it.
    let r = native(&consenting, "?purpose=secret%2Dthing");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(!r.body.contains("secret"), "{}", r.body);

    // A server started with --purpose reads every request naming none for it.
    drop(served);
    let served = serve_store(&store, &["--purpose", purpose], true);
    served.wait_healthy();
    let r = served.get(&format!("/v1/viewers/{revoked}")).json();
    assert_eq!(r["withheld"], "consent", "{r}");
    let r = served.get(&format!("/v1/viewers/{consenting}")).json();
    assert_eq!(r["withheld"], Value::Null, "{r}");
}
