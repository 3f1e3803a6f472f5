//! `rewind serve`: current feature values over HTTP, beside a `rewind run` writing the store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use rewind::metrics::{Figures, Metrics};
use rewind::privacy::{KeyError, KeySource, Pseudonymizer, STORE_KEY_FILE};
use rewind::serve::{Limits, RequestDone, ServeConfig, ServeHooks, Served, Server, Source};
use rewind::served::{self, LogConfig, ServedLog};

/// Serve the store's current feature values over HTTP: Feast's `POST /get-online-features`,
/// the native `GET /v1/viewers/{id}`, `GET /v1/titles/{id}` and `POST /v1/batch`,
/// `GET /health`, and Prometheus figures at `GET /metrics`.
///
/// Reads the store read-only while `rewind run` writes it, following each commit. It may start
/// before the store exists: it answers 503 until the run creates it.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "./rewind-data")]
    store: PathBuf,
    #[command(flatten)]
    http: HttpArgs,
    /// The pseudonymization key, for requests that give raw account ids (`user_id`); else
    /// REWIND_PSEUDONYM_KEY, else the store's own `pseudonym.key` (embedded default).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Runtime threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Log the features of every response beside the store (`served-N.redb`, pseudonyms only,
    /// kept for the store's retention), for `rewind snapshot --served`.
    #[arg(long)]
    log_served: bool,
    /// The purpose reads are for when a request names none (personalization, analytics, ads,
    /// or one a feature declares): features not declared for it are refused (403), and where
    /// the store gates it by consent, viewers who do not consent are served as withheld. A
    /// request names its own with `?purpose=` (native), `"purpose"` (batch) or the
    /// `X-Rewind-Purpose` header (Feast). Default: none, and reads are not gated.
    #[arg(long)]
    purpose: Option<String>,
}

/// What `serve` and `run --serve` share.
#[derive(Debug, Args)]
pub(super) struct HttpArgs {
    /// Address to listen on. Loopback by default: serve other hosts through a TLS proxy.
    #[arg(long, default_value = "127.0.0.1:6566")]
    pub listen: SocketAddr,
    /// A file holding a bearer token every request must carry (`Authorization: Bearer …`).
    /// Like a key file, it must not be readable by group or others.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most entities per request.
    #[arg(long, default_value_t = 10_000)]
    pub max_entities: usize,
}

impl HttpArgs {
    pub(super) fn config(
        &self,
        listen: SocketAddr,
        door: Option<Pseudonymizer>,
        threads: usize,
    ) -> anyhow::Result<ServeConfig> {
        let token = self.token_file.as_deref().map(load_token).transpose()?;
        Ok(ServeConfig {
            listen,
            token,
            door,
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_entities: self.max_entities,
                ..Limits::default()
            },
            threads,
            purpose: None,
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let door = serving_key(args.key_file.as_deref(), &args.store)?;
    let mut config = args
        .http
        .config(args.http.listen, door, args.threads.into())?;
    config.purpose = args
        .purpose
        .as_deref()
        .map(rewind::purpose::ReadPurpose::find)
        .transpose()
        .context("--purpose")?;
    let source = Source::Dir(args.store.clone());
    let log = args
        .log_served
        .then(|| open_served_log(&args.store))
        .transpose()?;
    let metrics = Metrics::new(Figures::of_dir(args.store.clone()));
    let server = Server::start(config, source, hooks(metrics, log.as_ref()))?;
    let (key_file, store) = (args.key_file.clone(), args.store.clone());
    let key = move || serving_key(key_file.as_deref(), &store).map_err(|e| format!("{e:#}"));
    follow_store(log.as_ref(), &server, Box::new(key))?;
    eprintln!(
        "rewind: serving http://{} from the store in {}; Ctrl-C stops",
        server.addr(),
        args.store.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    ctrlc::set_handler(move || stopper.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    close_served_log(log)
}

/// The server's hooks: the served log's when there is one.
/// The server's hooks in this process: its metrics, and the served log with --log-served.
struct Hooks {
    metrics: Metrics,
    log: Option<Arc<ServedLog>>,
}

impl ServeHooks for Hooks {
    fn connection_opened(&self) {
        self.metrics.connection_opened();
    }

    fn connection_closed(&self) {
        self.metrics.connection_closed();
    }

    fn request_done(&self, done: &RequestDone<'_>) {
        ServeHooks::request_done(&self.metrics, done);
    }

    fn served(&self, served: &Served<'_>) {
        if let Some(log) = &self.log {
            log.served(served);
        }
    }

    fn metrics(&self, store: Option<&rewind_state::Reader>) -> Option<String> {
        ServeHooks::metrics(&self.metrics, store)
    }
}

pub(super) fn hooks(metrics: Metrics, log: Option<&Arc<ServedLog>>) -> Arc<dyn ServeHooks> {
    Arc::new(Hooks {
        metrics,
        log: log.cloned(),
    })
}

/// Opens this process's served log in `store`, under the store's retention (the longest
/// allowed while the store records none, or does not exist yet).
pub(super) fn open_served_log(store: &Path) -> anyhow::Result<Arc<ServedLog>> {
    let retention_ms = match rewind_state::ReadOnlyStore::open(store) {
        Ok(opened) => served::store_retention_ms(&opened.snapshot()?)?,
        Err(rewind_state::StoreError::Missing { .. }) => served::DEFAULT_RETENTION_MS,
        Err(e) => return Err(e.into()),
    };
    let config = LogConfig {
        retention_ms,
        ..LogConfig::default()
    };
    let log = ServedLog::open(store, config)?;
    eprintln!(
        "rewind: logging served features to {}",
        log.path().display()
    );
    Ok(Arc::new(log))
}

/// Has the served log, if any, follow the store `server` reads: its erasures and retention.
pub(super) fn follow_store(
    log: Option<&Arc<ServedLog>>,
    server: &Server,
    key: served::KeyFn,
) -> anyhow::Result<()> {
    match log {
        Some(log) => Ok(log.follow(server.store_reader(), key)?),
        None => Ok(()),
    }
}

/// Writes what the log still holds queued, and says what it logged and lost.
pub(super) fn close_served_log(log: Option<Arc<ServedLog>>) -> anyhow::Result<()> {
    let Some(log) = log else {
        return Ok(());
    };
    let stats = log.close()?;
    eprintln!(
        "rewind: served log: {} responses logged, {} dropped (queue full), {} failed to write, \
         {} rows purged, {} rows of erased viewers deleted",
        stats.logged, stats.dropped, stats.failed, stats.purged, stats.erased
    );
    Ok(())
}

/// The key to pseudonymize `user_id`s with: named, from the environment, or the store's own;
/// `None` when there is none (such requests are then refused). Never creates one.
fn serving_key(key_file: Option<&Path>, store: &Path) -> anyhow::Result<Option<Pseudonymizer>> {
    let in_store = store.join(STORE_KEY_FILE);
    let key_file = key_file.map(Path::to_path_buf).or_else(|| {
        (std::env::var_os(rewind::privacy::KEY_ENV).is_none() && in_store.exists())
            .then_some(in_store)
    });
    match Pseudonymizer::load(&KeySource {
        key_file,
        create_in: None,
    }) {
        Ok(door) => Ok(Some(door)),
        Err(KeyError::Missing) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A bearer token from its file: trailing newlines dropped, never empty, private like a key.
pub(super) fn load_token(path: &Path) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading token file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "token file {} may be read by group or others (mode {:04o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    let token = text.trim_end_matches(['\n', '\r']).to_string();
    if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
        bail!(
            "token file {} must hold one token of printable ASCII without spaces",
            path.display()
        );
    }
    Ok(token)
}
