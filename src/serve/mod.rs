//! Serving current feature values to live model servers over HTTP: `rewind serve` beside a
//! writing `rewind run`, or `rewind run --serve` inside it.
//!
//! - `POST /get-online-features`: Feast's feature-server wire format ([`feast`]), so Feast's
//!   clients work unchanged; freshness in the `X-Rewind-As-Of` and `X-Rewind-Frontier` headers.
//! - `GET /v1/viewers/{id}`, `GET /v1/titles/{id}`, `POST /v1/batch`: the native API
//!   ([`native`]), freshness in the body.
//! - `GET /health`: 200 while the store is readable and holds output, else 503 with the reason.
//!
//! Every response carries `X-Request-Id` (the caller's, when it sent a sane one). What other
//! parts hook into (request metrics, connection counts, the served-feature log, `/metrics`) is
//! [`ServeHooks`]. Reads are redb read transactions of a few microseconds per entity: a request
//! of up to 64 entities reads inline on the runtime's threads, a larger one on tokio's blocking
//! pool, so a 10,000-entity batch does not stall the other connections. The writer never waits
//! for a reader, and a slow client holds only its own connection (and one response for at most
//! [`Limits::response_timeout`]).

mod feast;
mod http;
mod io;
mod lookup;
mod native;
mod request;
pub(crate) mod slot;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use lookup::{LibFeature, ServedEntity, ServedValue, Status};
pub use slot::Slot;

use crate::engine::Shared;
use crate::privacy::Pseudonymizer;

/// Hooks into every request and connection; every method defaults to nothing.
///
/// Called on the server's runtime threads, inline: keep them to a few microseconds (count,
/// enqueue), never block.
pub trait ServeHooks: Send + Sync + 'static {
    /// A connection was accepted.
    fn connection_opened(&self) {}
    /// A connection ended (closed by either side, timed out, or failed).
    fn connection_closed(&self) {}
    /// A request was answered: `endpoint` is one of [`ENDPOINTS`].
    fn request_done(&self, _done: &RequestDone<'_>) {}
    /// Values were served, exactly as the response carries them; called before the response
    /// is sent. Viewer ids are pseudonyms (a `user_id` request's too): never raw account ids.
    fn served(&self, _served: &Served<'_>) {}
    /// The body of `GET /metrics` (Prometheus' text format); `None` answers 404. `store` is
    /// the server's reader when it has one, for figures kept in the store (its meta counters,
    /// frontier and as-of: `reader.view()?.meta(..)`), which is where `rewind serve` finds
    /// them; `rewind run --serve` also has the engine's own.
    fn metrics(&self, _store: Option<&rewind_state::Reader>) -> Option<String> {
        None
    }
}

/// Endpoint labels, as [`RequestDone::endpoint`] gives them.
pub const ENDPOINTS: [&str; 7] = [
    "get-online-features",
    "native-entity",
    "native-batch",
    "health",
    "metrics",
    "unknown",
    "unauthorized",
];

/// One finished request.
#[derive(Debug)]
pub struct RequestDone<'a> {
    pub endpoint: &'static str,
    pub status: u16,
    /// From the request's arrival to its response being handed to the connection.
    pub latency: Duration,
    pub request_id: &'a str,
}

/// What one response served.
#[derive(Debug)]
pub struct Served<'a> {
    pub request_id: &'a str,
    pub endpoint: &'static str,
    pub as_of_ms: u64,
    pub frontier_ms: u64,
    /// Every entity row read, each with its values in the order requested. A Feast request
    /// over two views lists each view's rows in turn.
    pub entities: &'a [ServedEntity],
}

/// The hooks of a server nobody hooks into.
#[derive(Debug, Default)]
pub struct NoHooks;

impl ServeHooks for NoHooks {}

/// What a request may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Larger bodies get 413, refused as soon as the body passes this.
    pub max_body_bytes: usize,
    /// Entities per request (over all join keys); more get 422 as the body is parsed.
    pub max_entities: usize,
    /// For a request's headers, and for the next request on an idle keep-alive connection.
    pub header_timeout: Duration,
    /// For a request's whole body.
    pub body_timeout: Duration,
    /// For a response write that makes no progress (a client that stopped reading).
    pub write_timeout: Duration,
    /// For all the writes of one response, however steadily they progress: a client that
    /// reads a few bytes now and then does not hold a large response for ever.
    pub response_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // 10,000 pseudonyms are ~370 KB of JSON: the limits below bind first.
            max_body_bytes: 1 << 20,
            // A ranker scores hundreds of candidates per request; thousands is a batch job,
            // which belongs in `rewind snapshot`.
            max_entities: 10_000,
            // uvicorn (under `feast serve`) keeps idle connections 5 s; clients retry a
            // connection closed while idle. 10 s bounds what a silent client holds.
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            // The largest response (max_entities of every feature) is a few MB: a minute is
            // ample for any client that reads it.
            response_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// How to serve.
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Every request must carry `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Pseudonymizes `user_id` join keys; without it they are refused.
    pub door: Option<Pseudonymizer>,
    pub limits: Limits,
    /// Runtime threads: 1 inside `rewind run`, where the timely workers need the cores.
    pub threads: usize,
    /// The purpose reads are for when a request names none ([`crate::purpose`]); `None`: a
    /// request naming none reads as before purposes existed.
    pub purpose: Option<rewind_dataflows::Purpose>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<withheld>"))
            .field("door", &self.door)
            .field("limits", &self.limits)
            .field("threads", &self.threads)
            .field("purpose", &self.purpose)
            .finish()
    }
}

/// Where the values come from.
pub enum Source {
    /// A store directory another process writes (or will create).
    Dir(PathBuf),
    /// The store this process's engine writes.
    Engine(Arc<Shared>),
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
}

/// A running server; dropping it does not stop it, [`Server::stop`] does.
pub struct Server {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    slot: Arc<Slot>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `config.listen` now (so a taken port is an error here) and serves on a thread of
    /// its own.
    pub fn start(
        config: ServeConfig,
        source: Source,
        hooks: Arc<dyn ServeHooks>,
    ) -> Result<Server, ServeError> {
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Runtime)?;
        listener
            .set_nonblocking(true)
            .map_err(ServeError::Runtime)?;
        let runtime = match config.threads {
            0 | 1 => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            n => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .thread_name("rewind-serve")
                .enable_all()
                .build(),
        }
        .map_err(ServeError::Runtime)?;
        let slot = match source {
            Source::Dir(dir) => slot::of_dir(dir),
            Source::Engine(shared) => slot::of_engine(shared),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let state = Arc::new(http::State::new(config, slot.clone(), hooks));
        let thread = std::thread::Builder::new()
            .name("rewind-serve".into())
            .spawn(move || runtime.block_on(http::serve(listener, state, stopped)))
            .map_err(ServeError::Runtime)?;
        Ok(Server {
            addr,
            stop,
            slot,
            thread: Some(thread),
        })
    }

    /// The store's reader as the server has it (none while it waits for the store), for the
    /// served log to follow the store the server reads ([`crate::served::ServedLog::follow`]).
    pub fn store_reader(&self) -> crate::served::ReaderFn {
        let slot = self.slot.clone();
        Box::new(move || slot.reader().ok())
    }

    /// The address it listens on (the port chosen, for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, and returns once the serving thread has ended.
    pub fn stop(mut self) {
        self.slot.stop();
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An error answer: its status, and a FastAPI-shaped body (`{"detail": …}`, as `feast serve`
/// answers), naming what was unknown for a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub detail: String,
    pub unknown: Option<String>,
    /// The class in `feast.errors` that `feast serve` raises for this error, for the Feast
    /// endpoint's body.
    pub feast_class: Option<&'static str>,
}

impl ApiError {
    pub fn new_status(status: u16, detail: impl Into<String>) -> ApiError {
        ApiError::new(status, detail)
    }

    fn new(status: u16, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
            unknown: None,
            feast_class: None,
        }
    }

    pub fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::new(422, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, detail)
    }

    pub fn not_found(detail: impl Into<String>, unknown: &str) -> ApiError {
        ApiError {
            unknown: Some(unknown.to_string()),
            ..ApiError::new(404, detail)
        }
    }

    /// A read for a purpose a requested feature is not declared for: Feast's
    /// `FeastPermissionError` (its 403).
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(403, detail).feast_class("FeastPermissionError")
    }

    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(503, detail)
    }

    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(500, detail)
    }

    pub fn feast_class(self, class: &'static str) -> ApiError {
        ApiError {
            feast_class: Some(class),
            ..self
        }
    }

    /// The body `feast serve` sends for this error: a JSON string holding
    /// `{"module", "class", "message"}` (`FeastError.to_error_detail()`), which Feast's client
    /// turns back into the typed exception. A 404 without a class of its own is
    /// `FeastObjectNotFoundException`, the base of Feast's not-found errors; other errors keep
    /// the FastAPI shape.
    pub fn feast_body(&self) -> Vec<u8> {
        let class = match (self.feast_class, self.status) {
            (Some(class), _) => class,
            (None, 404) => "FeastObjectNotFoundException",
            _ => return self.body(),
        };
        let mut inner = br#"{"module": "feast.errors", "class": "#.to_vec();
        feast::json_str(&mut inner, class);
        inner.extend_from_slice(br#", "message": "#);
        feast::json_str(&mut inner, &self.detail);
        inner.push(b'}');
        let mut out = Vec::with_capacity(inner.len() + 16);
        feast::json_str(
            &mut out,
            std::str::from_utf8(&inner).expect("built from strings"),
        );
        out
    }

    pub fn body(&self) -> Vec<u8> {
        let mut out = br#"{"detail":"#.to_vec();
        feast::json_str(&mut out, &self.detail);
        if let Some(unknown) = &self.unknown {
            out.extend_from_slice(br#","unknown":"#);
            feast::json_str(&mut out, unknown);
        }
        out.push(b'}');
        out
    }
}
