//! `rewind bench serve`: what a model server sees when it reads features while rewind ingests.
//!
//! The benchmark starts `rewind run` (the embedded default, paced at `--rate` events/s) and
//! `rewind serve` on the same store, as a deployment runs them: two processes, one writing,
//! one reading. Once the run has written a warm-up's worth of viewers, it measures, closed
//! loop (each connection sends its next request when the last one is answered):
//!
//! - over HTTP, `POST /get-online-features` as Feast's clients send it, with 1, 8 and 64
//!   keep-alive connections, for one viewer × every viewer feature and for batches;
//! - in-process, the same reads through `rewind-state`'s reader, which a Rust model server
//!   embeds.
//!
//! Every request's latency goes into an HDR histogram; a request answered with anything but
//! 200 counts as an error and is reported, never retried. The ingest rate over the measured
//! span is read back from the store, so the report shows the reads really ran beside writes.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rewind_dataflows::{Entity, library};
use rewind_state::{ReadOnlyStore, Reader, StoreError};
use serde::Serialize;

use super::http::{Connection, HttpError};

/// One benchmark run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The `rewind` binary to start `run` and `serve` from.
    pub exe: PathBuf,
    pub store_dir: PathBuf,
    /// Events per second `rewind run` ingests while the reads run.
    pub rate: u64,
    pub viewers: u32,
    /// How long the run ingests before the first measurement.
    pub warmup: Duration,
    /// How long each scenario runs.
    pub duration: Duration,
    /// Keep-alive connections, one scenario each.
    pub connections: Vec<usize>,
    /// Entities per request in the batch scenarios.
    pub batch: usize,
}

/// What a run measured. Serialized as the `--json` file.
#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    pub rate: u64,
    pub viewers: u32,
    pub features_per_entity: usize,
    pub duration_per_scenario_s: f64,
    pub cores: usize,
    /// Events per second the run committed while the scenarios ran.
    pub ingested_per_s: f64,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// `http` or `in-process`.
    pub transport: &'static str,
    pub connections: usize,
    pub entities_per_request: usize,
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub errors: u64,
    /// The first error, when there were any.
    pub first_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeBenchError {
    #[error("starting `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`rewind {command}` exited before the benchmark ended ({status}); see {log}")]
    Exited {
        command: &'static str,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("{0}")]
    NotReady(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A child process stopped (SIGTERM, then SIGKILL) however the benchmark ends.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(
        exe: &Path,
        name: &'static str,
        args: &[String],
        log: PathBuf,
    ) -> Result<Process, ServeBenchError> {
        let file = std::fs::File::create(&log)?;
        let child = Command::new(exe)
            .arg(name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|source| ServeBenchError::Spawn {
                command: format!("{} {name}", exe.display()),
                source,
            })?;
        Ok(Process { name, child, log })
    }

    /// An error if the process has already stopped.
    fn check(&mut self) -> Result<(), ServeBenchError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(ServeBenchError::Exited {
                command: self.name,
                status,
                log: self.log.display().to_string(),
            }),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A clean stop first, so `rewind run` commits and releases the store as it would for
        // an operator; no signal crate for one call, `kill(1)` is everywhere this runs.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(config: &ServeConfig) -> Result<ServeReport, ServeBenchError> {
    std::fs::create_dir_all(&config.store_dir)?;
    let log = |name: &str| config.store_dir.join(format!("bench-{name}.log"));
    let store = config.store_dir.join("store");
    let store_arg = store.display().to_string();
    let mut run = Process::spawn(
        &config.exe,
        "run",
        &[
            "--store".into(),
            store_arg.clone(),
            "--rate".into(),
            config.rate.to_string(),
            "--viewers".into(),
            config.viewers.to_string(),
        ],
        log("run"),
    )?;
    let reader = wait_for_store(&store, &mut run, config.warmup)?;
    let addr = free_loopback_port()?;
    let mut server = Process::spawn(
        &config.exe,
        "serve",
        &[
            "--store".into(),
            store_arg,
            "--listen".into(),
            addr.to_string(),
        ],
        log("serve"),
    )?;
    wait_for_health(addr, &mut server)?;

    let features: Vec<&'static str> = library()
        .into_iter()
        .filter(|d| d.entity() == Some(Entity::Viewer))
        .map(|d| d.name)
        .collect();
    let viewers = sample_viewers(&reader, 10_000)?;
    let embedded = Reader::open(&store)?;
    let committed_before = (Instant::now(), events_total(&reader)?);

    let mut scenarios = Vec::new();
    for &entities in &[1, config.batch] {
        let bodies = feast_bodies(&features, &viewers, entities);
        for &connections in &config.connections {
            run.check()?;
            server.check()?;
            scenarios.push(http_scenario(
                addr,
                &bodies,
                connections,
                entities,
                config.duration,
            ));
        }
        scenarios.push(in_process_scenario(
            &embedded,
            &viewers,
            entities,
            config.duration,
        )?);
    }
    run.check()?;
    let (since, before) = committed_before;
    let ingested = events_total(&reader)?.saturating_sub(before);
    Ok(ServeReport {
        rate: config.rate,
        viewers: config.viewers,
        features_per_entity: features.len(),
        duration_per_scenario_s: config.duration.as_secs_f64(),
        cores: thread::available_parallelism().map_or(1, |n| n.get()),
        ingested_per_s: ingested as f64 / since.elapsed().as_secs_f64(),
        scenarios,
    })
}

/// Waits out the warm-up, then opens the store the run has been writing.
fn wait_for_store(
    store: &Path,
    run: &mut Process,
    warmup: Duration,
) -> Result<ReadOnlyStore, ServeBenchError> {
    let start = Instant::now();
    loop {
        run.check()?;
        let elapsed = start.elapsed();
        if elapsed >= warmup
            && store.join(rewind_state::FILE_NAME).exists()
            && let Ok(reader) = ReadOnlyStore::open(store)
            && reader.snapshot()?.frontier_ms()?.is_some()
        {
            return Ok(reader);
        }
        if elapsed > warmup + Duration::from_secs(60) {
            return Err(ServeBenchError::NotReady(format!(
                "`rewind run` committed nothing to {} within {:?}",
                store.display(),
                elapsed
            )));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback port nothing listens on now (the server binds it right after).
fn free_loopback_port() -> Result<SocketAddr, ServeBenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_for_health(addr: SocketAddr, server: &mut Process) -> Result<(), ServeBenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        server.check()?;
        match Connection::open(addr, None).and_then(|mut c| c.get("/health")) {
            Ok(response) if response.status == 200 => return Ok(()),
            Ok(response) => last = format!("status {}", response.status),
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(ServeBenchError::NotReady(format!(
        "`rewind serve` on {addr} was not healthy within 30 s: {last}"
    )))
}

/// Up to `limit` viewer ids that have features in the store.
fn sample_viewers(reader: &ReadOnlyStore, limit: usize) -> Result<Vec<String>, ServeBenchError> {
    let mut ids: Vec<String> = reader
        .snapshot()?
        .online_all()?
        .into_iter()
        .filter(|(kind, _, _)| kind == Entity::Viewer.as_str())
        .map(|(_, id, _)| id)
        .collect();
    ids.dedup();
    ids.truncate(limit);
    if ids.is_empty() {
        return Err(ServeBenchError::NotReady(
            "the store has no viewer yet; give a longer --warmup".into(),
        ));
    }
    Ok(ids)
}

fn events_total(reader: &ReadOnlyStore) -> Result<u64, ServeBenchError> {
    Ok(reader.snapshot()?.meta_u64("events_total")?.unwrap_or(0))
}

/// Feast request bodies over the sampled viewers, `entities` viewers each, round robin.
fn feast_bodies(features: &[&str], viewers: &[String], entities: usize) -> Vec<Vec<u8>> {
    let names: Vec<String> = features.iter().map(|f| f.replacen('.', ":", 1)).collect();
    let requests = (viewers.len() / entities).clamp(1, 1_000);
    (0..requests)
        .map(|r| {
            let ids: Vec<&String> = (0..entities)
                .map(|i| &viewers[(r * entities + i) % viewers.len()])
                .collect();
            serde_json::to_vec(&serde_json::json!({
                "features": names,
                "entities": { "viewer_id": ids },
                "full_feature_names": false,
            }))
            .expect("a JSON value serializes")
        })
        .collect()
}

/// Latencies in ns: 1 ns to 100 s at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

#[derive(Default)]
struct Tally {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

fn http_scenario(
    addr: SocketAddr,
    bodies: &[Vec<u8>],
    connections: usize,
    entities: usize,
    duration: Duration,
) -> Scenario {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let results: Vec<(Histogram<u64>, Tally)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                scope.spawn(move || {
                    let mut latencies = histogram();
                    let mut tally = Tally::default();
                    let mut conn = match Connection::open(addr, None) {
                        Ok(conn) => conn,
                        Err(e) => {
                            tally.error(e.to_string());
                            return (latencies, tally);
                        }
                    };
                    let mut next = c;
                    while Instant::now() < deadline {
                        let body = &bodies[next % bodies.len()];
                        next += connections;
                        let sent = Instant::now();
                        match conn.post_json("/get-online-features", body) {
                            Ok(r) if r.status == 200 => {
                                latencies.saturating_record(sent.elapsed().as_nanos() as u64);
                                tally.requests += 1;
                            }
                            Ok(r) => tally.error(format!(
                                "status {}: {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            )),
                            Err(e) => {
                                tally.error(e.to_string());
                                match Connection::open(conn.addr(), None) {
                                    Ok(fresh) => conn = fresh,
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    (latencies, tally)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a load thread does not panic"))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latencies = histogram();
    let mut tally = Tally::default();
    for (h, t) in results {
        latencies
            .add(&h)
            .expect("histograms of the same bounds add");
        tally.requests += t.requests;
        tally.errors += t.errors;
        if tally.first_error.is_none() {
            tally.first_error = t.first_error;
        }
    }
    scenario("http", connections, entities, &latencies, tally, elapsed)
}

/// The reads a Rust model server makes through the embedded reader: a view (one read
/// transaction, which is how it follows commits) and the entities' current values.
fn in_process_scenario(
    reader: &Reader,
    viewers: &[String],
    entities: usize,
    duration: Duration,
) -> Result<Scenario, ServeBenchError> {
    let mut latencies = histogram();
    let mut tally = Tally::default();
    let started = Instant::now();
    let deadline = started + duration;
    let mut next = 0;
    let (mut rows_read, mut rows_absent) = (0u64, 0u64);
    while Instant::now() < deadline {
        let ids = (next..next + entities).map(|i| viewers[i % viewers.len()].as_str());
        next += entities;
        let sent = Instant::now();
        let mut view = reader.view()?;
        let rows = view.entities(Entity::Viewer.as_str(), ids)?;
        std::hint::black_box(&rows);
        drop(view);
        latencies.saturating_record(sent.elapsed().as_nanos() as u64);
        tally.requests += 1;
        rows_read += rows.len() as u64;
        rows_absent += rows.iter().filter(|r| r.is_none()).count() as u64;
    }
    // A sampled viewer the run erased since has no row, rightly (the embedded generator
    // erases about one viewer a minute), and HTTP answers it NOT_FOUND; but reads that find
    // mostly nothing measure a broken setup, not the reader.
    if rows_absent * 2 > rows_read {
        tally.error(format!(
            "{rows_absent} of {rows_read} sampled viewers had no online row"
        ));
    }
    Ok(scenario(
        "in-process",
        1,
        entities,
        &latencies,
        tally,
        started.elapsed(),
    ))
}

fn scenario(
    transport: &'static str,
    connections: usize,
    entities: usize,
    latencies: &Histogram<u64>,
    tally: Tally,
    elapsed: Duration,
) -> Scenario {
    let us = |q: f64| latencies.value_at_quantile(q) as f64 / 1_000.0;
    Scenario {
        transport,
        connections,
        entities_per_request: entities,
        requests: tally.requests,
        requests_per_s: tally.requests as f64 / elapsed.as_secs_f64(),
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: latencies.max() as f64 / 1_000.0,
        errors: tally.errors,
        first_error: tally.first_error,
    }
}

impl ServeReport {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = format!(
            "serving while `rewind run` ingests at {} events/s ({:.0}/s committed during the \
             reads), {} viewers, {} features per viewer, {} cores, {:.0} s per scenario\n\n",
            self.rate,
            self.ingested_per_s,
            self.viewers,
            self.features_per_entity,
            self.cores,
            self.duration_per_scenario_s,
        );
        out.push_str(
            "| transport | connections | entities/request | requests/s | p50 µs | p99 µs | \
             p99.9 µs | max µs | errors |\n|---|---|---|---|---|---|---|---|---|\n",
        );
        for s in &self.scenarios {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {} |\n",
                s.transport,
                s.connections,
                s.entities_per_request,
                s.requests_per_s,
                s.p50_us,
                s.p99_us,
                s.p999_us,
                s.max_us,
                s.errors
            ));
        }
        for s in self.scenarios.iter().filter(|s| s.errors > 0) {
            out.push_str(&format!(
                "\n{} × {} at {} connections: {} errors, the first: {}\n",
                s.transport,
                s.entities_per_request,
                s.connections,
                s.errors,
                s.first_error.as_deref().unwrap_or("?")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feast_bodies_name_views_and_cycle_through_viewers() {
        let viewers: Vec<String> = (0..5).map(|i| format!("v_{i}")).collect();
        let bodies = feast_bodies(&["viewer.plays_24h", "viewer.genre_share_90d"], &viewers, 2);
        assert_eq!(bodies.len(), 2);
        let first: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(
            first,
            serde_json::json!({
                "features": ["viewer:plays_24h", "viewer:genre_share_90d"],
                "entities": {"viewer_id": ["v_0", "v_1"]},
                "full_feature_names": false,
            })
        );
        let second: serde_json::Value = serde_json::from_slice(&bodies[1]).unwrap();
        assert_eq!(
            second["entities"]["viewer_id"],
            serde_json::json!(["v_2", "v_3"])
        );
    }
}
