//! `rewind run`: the pipeline, embedded by default or against a Kafka cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rewind::embedded::{self, EmbeddedConfig, Pace};
use rewind::engine::{
    self, ConsentConfig, ErasureConfig, LogSource, RunConfig, RunSummary, Shared,
};
use rewind::metrics::{Figures, Metrics};
use rewind::privacy::{KeySource, Pseudonymizer};
use rewind::serve::{Limits, Server, Source};
use rewind::workload::GenConfig;
use rewind::{TimePolicy, utc};
use rewind_connectors::KafkaSource;
use rewind_dataflows::consent::MAX_AGE_LIMIT_MS;
use rewind_dataflows::{ConsentRules, Purpose};

use super::serve::HttpArgs;

/// Run the pipeline: Kafka → privacy door → feature dataflows → redb store.
///
/// Without --brokers, runs the embedded default: an in-process Kafka cluster fed live by the
/// built-in workload generator. Its log lives only as long as the process.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kafka bootstrap servers (HOST:PORT). Without it, the embedded cluster is used.
    #[arg(long)]
    brokers: Option<String>,
    /// Topic of viewing events.
    #[arg(long, default_value = "events")]
    topic: String,
    /// Topic of title reference data (latest record per title_id wins).
    #[arg(long, default_value = "titles")]
    titles_topic: String,
    /// Store directory (created if missing).
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    /// Stop once every partition is read up to its end offset as of start, and everything
    /// complete is committed (every tick below the partitions' watermarks).
    #[arg(long)]
    until_caught_up: bool,
    /// With --until-caught-up: declare the log finished and commit every tick, up to one past
    /// the last event. Events appended to the log later are then late for this store.
    #[arg(long, requires = "until_caught_up")]
    seal: bool,
    #[command(flatten)]
    engine: EngineArgs,
    /// Stop after this many seconds (default: until Ctrl-C or caught up).
    #[arg(long)]
    duration_s: Option<u64>,
    #[command(flatten)]
    embedded: EmbeddedArgs,
    /// Also serve the store over HTTP on this address (as `rewind serve` does), reading
    /// through this process's own store handle.
    #[arg(long, value_name = "ADDR")]
    serve: Option<std::net::SocketAddr>,
    /// With --serve: a file holding the bearer token every request must carry.
    #[arg(long, requires = "serve")]
    serve_token_file: Option<PathBuf>,
    /// With --serve: largest request body, in bytes (`rewind serve --max-body-bytes`).
    #[arg(long, requires = "serve", default_value_t = Limits::default().max_body_bytes)]
    serve_max_body_bytes: usize,
    /// With --serve: most entities per request (`rewind serve --max-entities`).
    #[arg(long, requires = "serve", default_value_t = Limits::default().max_entities)]
    serve_max_entities: usize,
    /// With --serve: log the features of every response beside the store, as
    /// `rewind serve --log-served` does.
    #[arg(long, requires = "serve")]
    log_served: bool,
}

/// How the engine computes: shared by `run` and `replay`.
#[derive(Debug, Args)]
pub(super) struct EngineArgs {
    /// Timely worker threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Logical time step in ms. Fixed for the life of a store.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub tick_ms: u64,
    /// How late an event may arrive and still be on time, in ms. Fixed for the life of a store.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub lateness_ms: u64,
    /// File holding the pseudonymization key (else REWIND_PSEUDONYM_KEY; the embedded default
    /// creates one in the store).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// How long the Kafka cluster may stay unreachable before the run stops (it retries,
    /// with backoff, until then).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub max_outage_s: u64,
    /// A title's first record applies from the start of time, whatever its Kafka timestamp:
    /// for a catalogue produced today that holds for all of history. Later records of a title
    /// still apply at their timestamps.
    #[arg(long)]
    pub titles_from_start: bool,
    /// How long the store keeps what it holds, in event time: history that stopped being
    /// valid longer ago, and dead letters that old, are purged as time advances. A number and
    /// a unit: 365d, 90d, 12h, 30m, 10s, 500ms. At most 365 days (the default), at least one
    /// tick.
    #[arg(long, default_value = "365d", value_parser = parse_retention)]
    pub retention: u64,
    /// Purposes that need the viewer's consent, comma-separated ("personalization,analytics",
    /// or any purpose a feature declares), or "none". A feature serving one of them is computed
    /// only from viewers consenting to all of those it serves. Default: none, except in the
    /// embedded default, which gates personalization and analytics. Fixed for the life of a store.
    #[arg(long)]
    pub consent_purposes: Option<String>,
    /// How long a grant holds unless revoked or renewed: days ("730d"), hours ("12h") or
    /// minutes ("90m"). At most 730 days, the VPPA limit. Fixed for the life of a store.
    #[arg(long, default_value = "730d", value_parser = parse_max_age)]
    pub consent_max_age: u64,
    /// Topic of consent records ({user_id, purpose, granted, ts}), with --consent-purposes.
    #[arg(long, default_value = "consent")]
    pub consent_topic: String,
    /// Topic of erasure records ({user_id, ts}): the viewer's events before `ts` leave every
    /// viewer feature, and the store deletes the viewer's rows. Read whenever it exists.
    #[arg(long, default_value = "erasure")]
    pub erasure_topic: String,
}

/// A duration given as a whole number and a unit (`365d`, `12h`, `90m`, `30s`, `500ms`), in ms;
/// too large a number saturates, for the caller's limit to refuse.
fn parse_whole_ms(s: &str) -> Result<u64, String> {
    let units = [
        ("ms", 1u64),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ];
    let Some((number, scale)) = units
        .iter()
        .find_map(|(unit, scale)| s.strip_suffix(unit).map(|n| (n, *scale)))
    else {
        return Err(format!(
            "{s:?} has no unit: give a whole number and d, h, m, s or ms (e.g. 365d, 12h)"
        ));
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("{s:?} is not a whole number and d, h, m, s or ms (e.g. 365d, 12h)")
    })?;
    Ok(n.saturating_mul(scale))
}

/// `--retention`: at least a millisecond (a tick, checked with the tick), at most VPPA's year.
pub(super) fn parse_retention(s: &str) -> Result<u64, String> {
    match parse_whole_ms(s)? {
        0 => Err(
            "a retention of 0 would purge everything as it lands: give at least one tick"
                .to_string(),
        ),
        ms if ms > rewind_state::MAX_RETENTION_MS => Err(format!(
            "{s} is past the retention limit of 365 days (VPPA's): a store may keep less, \
             never more"
        )),
        ms => Ok(ms),
    }
}

/// `--consent-max-age`: how long a grant lasts, up to the VPPA's two years.
fn parse_max_age(s: &str) -> Result<u64, String> {
    match parse_whole_ms(s)? {
        0 => Err("a consent max age of 0 would expire every grant as it is given".to_string()),
        ms if ms > MAX_AGE_LIMIT_MS => Err(format!(
            "{s:?} is longer than 730 days, the most consent may last under the VPPA"
        )),
        ms => Ok(ms),
    }
}

impl EngineArgs {
    pub(super) fn max_outage(&self) -> Duration {
        Duration::from_secs(self.max_outage_s)
    }

    /// The consent settings: `default` purposes unless --consent-purposes says otherwise.
    pub(super) fn consent(&self, default: &str) -> anyhow::Result<Option<ConsentConfig>> {
        let names = self.consent_purposes.as_deref().unwrap_or(default);
        let library = rewind_dataflows::library();
        let mut purposes = Vec::new();
        for name in names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != "none")
        {
            let Some(purpose) = Purpose::find(name, &library) else {
                let known: Vec<&str> = Purpose::known(&library)
                    .iter()
                    .map(|p| p.as_str())
                    .collect();
                bail!(
                    "--consent-purposes: no feature serves {name:?}; known: {}",
                    known.join(", ")
                );
            };
            if !purposes.contains(&purpose) {
                purposes.push(purpose);
            }
        }
        Ok((!purposes.is_empty()).then(|| ConsentConfig {
            topic: self.consent_topic.clone(),
            rules: ConsentRules {
                purposes,
                max_age_ms: self.consent_max_age,
            },
        }))
    }

    pub(super) fn policy(&self) -> TimePolicy {
        TimePolicy {
            tick_ms: self.tick_ms,
            lateness_ms: self.lateness_ms,
        }
    }
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Embedded default (without --brokers)")]
struct EmbeddedArgs {
    /// Concurrent viewers the generator simulates.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=50_000_000))]
    viewers: u32,
    /// Titles in the generated catalog.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    titles: u32,
    /// Partitions of the embedded events topic.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// Generator pace: "realtime" (event time follows the clock), "max", or events per second.
    #[arg(long, default_value = "realtime", value_parser = parse_pace)]
    rate: Pace,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_pace(s: &str) -> Result<Pace, String> {
    match s {
        "realtime" => Ok(Pace::RealTime),
        "max" => Ok(Pace::Max),
        n => match n.parse::<u64>() {
            Ok(rate) if rate > 0 => Ok(Pace::Rate(rate)),
            _ => Err(format!(
                "{s:?} is not \"realtime\", \"max\" or a positive events/s"
            )),
        },
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::default());
    let stopper = shared.clone();
    ctrlc::set_handler(move || stopper.stop()).context("installing the Ctrl-C handler")?;
    let policy = args.engine.policy();
    let log = args
        .log_served
        .then(|| super::serve::open_served_log(&args.store))
        .transpose()?;
    let server = args
        .serve
        .map(|addr| serve(&args, addr, &shared, log.as_ref()))
        .transpose()?;
    let summary = match &args.brokers {
        Some(brokers) => run_brokers(&args, brokers, policy, shared),
        None => run_embedded(&args, policy, shared),
    };
    if let Some(server) = server {
        server.stop();
    }
    super::serve::close_served_log(log)?;
    print_summary(&summary?);
    Ok(())
}

/// Serves from inside the run: one runtime thread, the cores are the timely workers'.
fn serve(
    args: &RunArgs,
    addr: std::net::SocketAddr,
    shared: &Arc<Shared>,
    log: Option<&Arc<rewind::served::ServedLog>>,
) -> anyhow::Result<Server> {
    // The run's own key (created in the store by the embedded default, as the run would).
    let door = Pseudonymizer::load(&KeySource {
        key_file: args.engine.key_file.clone(),
        create_in: args.brokers.is_none().then(|| args.store.clone()),
    })?;
    let http = HttpArgs {
        listen: addr,
        token_file: args.serve_token_file.clone(),
        max_body_bytes: args.serve_max_body_bytes,
        max_entities: args.serve_max_entities,
    };
    let key = door.clone();
    let config = http.config(addr, Some(door), 1)?;
    let metrics = Metrics::new(Figures::Engine(shared.clone()));
    let hooks = super::serve::hooks(metrics, log);
    let server = Server::start(config, Source::Engine(shared.clone()), hooks)?;
    super::serve::follow_store(log, &server, Box::new(move || Ok(Some(key.clone()))))?;
    eprintln!(
        "rewind: serving http://{} from this run's store",
        server.addr()
    );
    Ok(server)
}

fn run_brokers(
    args: &RunArgs,
    brokers: &str,
    policy: TimePolicy,
    shared: Arc<Shared>,
) -> anyhow::Result<RunSummary> {
    let door = Pseudonymizer::load(&KeySource {
        key_file: args.engine.key_file.clone(),
        create_in: None,
    })?;
    let config = RunConfig {
        source: LogSource::Kafka {
            brokers: brokers.to_string(),
        },
        events_topic: args.topic.clone(),
        titles_topic: Some(args.titles_topic.clone()),
        store_dir: args.store.clone(),
        policy,
        workers: args.engine.workers.into(),
        until_caught_up: args.until_caught_up,
        seal: args.seal,
        titles_from_start: args.engine.titles_from_start,
        idle: Duration::from_secs(2),
        max_outage: args.engine.max_outage(),
        commit_interval: Duration::from_millis(100),
        door,
        consent: args.engine.consent("none")?,
        erasures: ErasureConfig {
            topic: args.engine.erasure_topic.clone(),
        },
        log_id: format!("kafka:{}", args.topic),
        retention_ms: args.engine.retention,
    };
    let mut topics = vec![args.topic.as_str(), args.titles_topic.as_str()];
    if config.consent.is_some() {
        topics.push(&args.engine.consent_topic);
    }
    // Lag is summed over topics that exist: the erasure topic may not.
    let erasure = &args.engine.erasure_topic;
    if KafkaSource::connect(brokers).is_ok_and(|s| s.topic_info(erasure).is_ok()) {
        topics.push(erasure);
    }
    let mut status = Status::new(brokers, &topics, !args.until_caught_up);
    drive(config, shared, &mut status, args.duration_s)
}

/// Runs the engine on its own thread, printing status until it ends (or `duration_s`).
pub(super) fn drive(
    config: RunConfig,
    shared: Arc<Shared>,
    status: &mut Status,
    duration_s: Option<u64>,
) -> anyhow::Result<RunSummary> {
    let engine_shared = shared.clone();
    let engine = std::thread::spawn(move || engine::run(config, engine_shared));
    watch(&shared, duration_s, || engine.is_finished(), status);
    shared.stop();
    let summary = engine
        .join()
        .map_err(|_| anyhow::anyhow!("engine thread panicked"))??;
    Ok(summary)
}

fn run_embedded(
    args: &RunArgs,
    policy: TimePolicy,
    shared: Arc<Shared>,
) -> anyhow::Result<RunSummary> {
    if args.until_caught_up {
        bail!("--until-caught-up needs --brokers: the embedded log is live and never ends");
    }
    let key_source = KeySource {
        key_file: args.engine.key_file.clone(),
        create_in: Some(args.store.clone()),
    };
    let door = Pseudonymizer::load(&key_source)?;
    let e = &args.embedded;
    let config = EmbeddedConfig {
        store_dir: args.store.clone(),
        workers: args.engine.workers.into(),
        partitions: e.partitions,
        generator: GenConfig {
            viewers: e.viewers,
            titles: e.titles,
            seed: e.seed,
            ..GenConfig::default()
        },
        pace: e.rate,
        policy,
        door,
        retention_ms: args.engine.retention,
        consent: args
            .engine
            .consent("personalization,analytics")?
            .map(|c| c.rules),
    };
    let running = embedded::start(config, shared.clone())?;
    if let Some(old) = &running.moved_aside {
        eprintln!(
            "rewind: the store in {} was built from an earlier embedded log, which died with its \
             process; starting a fresh store (the old file is kept as {})",
            args.store.display(),
            old.display()
        );
    }
    eprintln!(
        "rewind: embedded Kafka at {} (in-process, live: it keeps only the newest ~5 MiB \
         per partition); store {}; Ctrl-C stops cleanly",
        running.brokers,
        args.store.display()
    );
    let mut status = Status::new(&running.brokers, &[embedded::EVENTS_TOPIC], true);
    watch(&shared, args.duration_s, || running.finished(), &mut status);
    Ok(running.stop()?)
}

/// Prints a status line every second until the run ends, is stopped, or times out.
fn watch(
    shared: &Shared,
    duration_s: Option<u64>,
    finished: impl Fn() -> bool,
    status: &mut Status,
) {
    let started = Instant::now();
    let limit = duration_s.map(Duration::from_secs);
    while !finished() && !shared.stopping() {
        std::thread::sleep(Duration::from_millis(100));
        if status.due() {
            status.print(shared);
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            shared.stop();
        }
    }
}

/// The once-a-second status line: throughput, event-time progress, lag, bad records, output.
/// As a progress bar, it shows how much of the log as of start has been read.
pub(super) struct Status {
    source: Option<KafkaSource>,
    topics: Vec<String>,
    last_at: Instant,
    last_records: u64,
    enabled: bool,
    /// Records to read in all, for a progress bar.
    total: Option<u64>,
}

impl Status {
    pub(super) fn new(brokers: &str, topics: &[&str], enabled: bool) -> Status {
        Status {
            source: KafkaSource::connect(brokers).ok(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            last_at: Instant::now(),
            last_records: 0,
            enabled: enabled || std::io::IsTerminal::is_terminal(&std::io::stderr()),
            total: None,
        }
    }

    /// A progress bar over the log as of now, shown on a terminal only.
    pub(super) fn progress(brokers: &str, topics: &[&str]) -> Status {
        let mut status = Status::new(brokers, topics, false);
        let source = status.source.as_ref();
        let sizes = topics.iter().filter_map(|t| source?.topic_info(t).ok());
        status.total = Some(
            sizes
                .flat_map(|i| i.watermarks)
                .map(|(low, high)| high - low)
                .sum(),
        );
        status
    }

    /// A progress bar over `total` lines of files, shown on a terminal only.
    pub(super) fn lines(total: u64) -> Status {
        Status {
            source: None,
            topics: Vec::new(),
            last_at: Instant::now(),
            last_records: 0,
            enabled: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            total: Some(total),
        }
    }

    fn print_progress(&self, total: u64, records: u64, rate: f64) {
        let done = records.min(total);
        let fraction = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let filled = (fraction * 30.0) as usize;
        eprint!(
            "\r[{}{}] {:>5.1}% {done}/{total} records, {rate:.0}/s ",
            "#".repeat(filled),
            "-".repeat(30 - filled),
            fraction * 100.0
        );
    }

    fn due(&self) -> bool {
        self.last_at.elapsed() >= Duration::from_secs(1)
    }

    fn print(&mut self, shared: &Shared) {
        let counters = shared.counters();
        let rate =
            (counters.records - self.last_records) as f64 / self.last_at.elapsed().as_secs_f64();
        self.last_at = Instant::now();
        self.last_records = counters.records;
        if !self.enabled {
            return;
        }
        if let Some(total) = self.total {
            return self.print_progress(total, counters.records, rate);
        }
        let frontier = shared.frontier_ms();
        let watermark = if frontier == 0 {
            "-".to_string()
        } else {
            utc::format_ms(frontier)
        };
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let lag = self
            .source
            .as_ref()
            .and_then(|source| shared.lag(source, &topics))
            .map_or("?".to_string(), |l| l.to_string());
        let outage = shared.outage().map_or(String::new(), |(for_, why)| {
            format!(
                " | cluster unreachable for {} s, retrying: {why}",
                for_.as_secs()
            )
        });
        let consent = if counters.consent_records > 0 {
            format!(
                " | consent records {} ({} late), in force {}",
                counters.consent_records,
                counters.late_consent,
                shared.consents_in_force()
            )
        } else {
            String::new()
        };
        let erasures = if counters.erasure_records > 0 {
            format!(
                " | erasures read {}, applied {}",
                counters.erasure_records,
                shared.erasures_applied()
            )
        } else {
            String::new()
        };
        eprintln!(
            "{rate:>9.0} events/s | watermark {watermark} | lag {lag} | late {} | dead letters {} | no title {}{consent}{erasures} | features written {}{outage}",
            counters.late_events,
            counters.dead_letters,
            counters.untitled_events,
            shared.changes_written()
        );
    }
}

pub(super) fn print_summary(summary: &RunSummary) {
    for warning in &summary.warnings {
        eprintln!("rewind: warning: {warning}");
    }
    let purged = &summary.purged;
    if purged.history_entries + purged.dead_letters > 0 {
        eprintln!(
            "rewind: purged past the retention: {} history rows, {} dead letters, in {:.2} s of \
             the writer's {:.2} s in commits",
            purged.history_entries,
            purged.dead_letters,
            purged.elapsed.as_secs_f64(),
            summary.commit_time.as_secs_f64()
        );
    }
    let c = &summary.counters;
    let frontier = if summary.frontier_ms == 0 {
        "-".into()
    } else {
        utc::format_ms(summary.frontier_ms)
    };
    eprintln!(
        "rewind: stopped with everything complete committed: {} records read ({} events, {} \
         titles, {} late, {} dead letters, {} without a title), {} feature changes written, \
         store frontier {frontier}",
        c.records,
        c.events,
        c.titles,
        c.late_events,
        c.dead_letters,
        c.untitled_events,
        summary.changes_written
    );
    if c.consent_records > 0 {
        eprintln!(
            "rewind: consent: {} records read ({} late: read after time had passed their tick, \
             applied at the time read)",
            c.consent_records, c.late_consent
        );
    }
    if c.erasure_records > 0 {
        let erased = &summary.purged.erased;
        eprintln!(
            "rewind: erasure: {} records read ({} read after time had passed their tick); \
             {} erasures applied, deleting {} online rows and {} history rows",
            c.erasure_records,
            c.late_erasures,
            erased.erasures,
            erased.online_rows,
            erased.history_entries
        );
    }
    // A catalogue stamped later than the events (produced today, with ordinary timestamps)
    // silently empties every feature that joins titles: say so when it is more than a few.
    if c.untitled_events * 100 > c.events.max(1) && c.titles == 0 {
        eprintln!(
            "rewind: warning: no title records were read, so the {} events that name a title \
             found none, and features that join titles are empty: give the titles topic (or \
             --titles-file)",
            c.untitled_events
        );
    } else if c.untitled_events * 100 > c.events.max(1) {
        eprintln!(
            "rewind: warning: {} of {} events named a title with no titles record as of their \
             time; features that join titles skip them. If the catalogue was produced after the \
             events, rebuild with --titles-from-start (a title's first record then applies \
             from the start)",
            c.untitled_events, c.events
        );
    }
    if summary.resumed_from_ms > 0 {
        eprintln!(
            "rewind: resumed: ticks before {} were already in the store and were recomputed from \
             the log, not rewritten",
            utc::format_ms(summary.resumed_from_ms)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_max_ages_parse_like_retentions_with_their_own_limit() {
        assert_eq!(parse_max_age("730d"), Ok(730 * 86_400_000));
        assert_eq!(parse_max_age("90m"), Ok(90 * 60_000));
        let refused = [
            ("731d", "longer than 730 days"),
            ("0h", "expire every grant"),
            ("18446744073709551615d", "longer than 730 days"),
            ("2y", "no unit"),
            ("-1d", "not a whole number"),
            ("", "no unit"),
        ];
        for (given, says) in refused {
            let err = parse_max_age(given).unwrap_err();
            assert!(err.contains(says), "{given:?}: {err}");
        }
    }
}
