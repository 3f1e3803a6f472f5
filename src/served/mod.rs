//! The served-feature log: what every response of the server held, so that training sees what
//! serving saw (rule #29 of Google's Rules of ML).
//!
//! With `--log-served`, each response is handed to a [`ServedLog`] as one [`Served`]: its
//! request id, the serving wall time, the store's as-of time, and per entity (a pseudonym or a
//! title id, never a raw account id) every feature it returned, with its value exactly as
//! served and the tick it is valid from. `rewind snapshot --served` ([`join`]) joins a label
//! table to those values.
//!
//! Invariants:
//! - The request path never waits on disk. [`ServedLog::record`] moves the response into a
//!   bounded queue and returns; one background thread writes what is queued, many responses per
//!   transaction. When the queue is full the response is still served, and the log counts it
//!   as dropped: the count is reported on stderr, kept in the log file (so `snapshot --served`
//!   warns about it) and returned by [`ServedLog::stats`]. A write that fails is counted and
//!   reported the same way. Nothing is lost silently.
//! - A clean stop ([`ServedLog::close`], or dropping the handle) writes everything queued.
//! - Rows never outlive the retention: the writer purges rows served before
//!   `now - retention` when it opens and every [`PURGE_EVERY`], and readers skip any it has
//!   not reached yet.
//! - Every process that logs has a file of its own ([`file`]): two servers of one store never
//!   share a writer.

pub mod file;
mod follow;
mod hooks;
pub mod join;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use self::file::LogFile;
use self::follow::Following;
pub use self::follow::{FOLLOW_EVERY, KeyFn, ReaderFn};

/// The retention when the store records none (meta `retention_ms`): 365 days, the seed's limit
/// and the longest VPPA allows.
pub const DEFAULT_RETENTION_MS: u64 = 365 * 86_400_000;

/// The store's meta key for its retention (u64 LE ms), written by the store's writer.
pub const META_RETENTION: &str = "retention_ms";

/// How often the writer purges rows past the retention. Rows are at most this much older than
/// the retention when purged; readers never return them meanwhile.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Responses the queue holds before it drops: a few seconds of a busy server's responses
/// (at ~10k responses/s) while the disk stalls, at most a few tens of MB for 100-entity
/// batches.
pub const DEFAULT_QUEUE: usize = 16_384;

/// Most responses one transaction writes: bounds the time a commit holds the writer.
const MAX_BATCH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ServedLogError {
    #[error("cannot create the served log {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the served log {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error(
        "served log {path} is damaged ({detail}); move it aside (its rows are lost to \
         `snapshot --served`), and serving starts a fresh one"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path} is not a served log ({detail}); move it aside, or name another store directory"
    )]
    NotALog { path: PathBuf, detail: String },
    #[error(
        "every one of the {slots} served-log files in {dir} is in use by another process; stop \
         one of them"
    )]
    AllBusy { dir: PathBuf, slots: usize },
    #[error("served log {path}: {source}")]
    Redb { path: PathBuf, source: redb::Error },
    #[error("the served log's writer stopped unexpectedly: {0}")]
    WriterDied(String),
}

/// One response, as served.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The `X-Request-Id` echoed to the client.
    pub request_id: String,
    /// Wall time the response was built, ms since the epoch.
    pub served_at_ms: u64,
    /// The store's as-of time the values reflect (events with `ts < as_of_ms`).
    pub as_of_ms: u64,
    pub entities: Vec<ServedEntity>,
}

/// One entity of a response and every feature returned for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedEntity {
    /// `viewer` or `title`. Borrowed from the library, like feature names, so that handing a
    /// response to the log copies no name.
    pub kind: Cow<'static, str>,
    /// A pseudonym (`v_…`) or a title id: the server pseudonymizes raw ids before this.
    pub id: String,
    pub values: Vec<ServedValue>,
}

/// One feature value as the response carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedValue {
    /// The feature's full name (`viewer.watch_seconds_1h`), as `rewind features` lists it.
    pub feature: Cow<'static, str>,
    /// The value's JSON text, exactly as served (a default as its default: `0`, `[]`, `null`).
    pub json: String,
    /// The tick the value is valid from; `None` for a feature at its default with no history.
    pub valid_from_ms: Option<u64>,
}

/// Counts since the log was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServedStats {
    /// Responses written to the file.
    pub logged: u64,
    /// Responses served but not logged because the queue was full.
    pub dropped: u64,
    /// Responses whose write failed (the error was reported on stderr).
    pub failed: u64,
    /// Rows removed by retention purges.
    pub purged: u64,
    /// Rows removed by erasures: [`ServedLog::erase`], the store's as the log follows them
    /// ([`ServedLog::follow`]), and rows of erased viewers kept out as they were written.
    pub erased: u64,
}

#[derive(Default)]
struct Counters {
    logged: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    purged: AtomicU64,
    erased: AtomicU64,
    retention_ms: AtomicU64,
}

impl Counters {
    fn stats(&self) -> ServedStats {
        ServedStats {
            logged: self.logged.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
            erased: self.erased.load(Ordering::Relaxed),
        }
    }
}

enum Message {
    Served(Served),
    /// Deletes every row of one entity, then answers with the number deleted.
    Erase {
        kind: String,
        id: String,
        done: std::sync::mpsc::Sender<Result<u64, ServedLogError>>,
    },
    /// From now on, follow the store's erasures and retention.
    Follow(Box<Following>),
    /// A clean stop: everything queued before it is written, then the writer ends.
    Stop,
    /// Tests stall the writer until the sender is dropped, to fill the queue.
    #[cfg(test)]
    Hold(Receiver<()>),
}

/// How a log is opened.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Responses queued before new ones are dropped (and counted).
    pub queue: usize,
    /// Rows older than this (by serving wall time) are purged.
    pub retention_ms: u64,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            queue: DEFAULT_QUEUE,
            retention_ms: DEFAULT_RETENTION_MS,
        }
    }
}

/// The serving process's handle on its log, shared behind an `Arc` with the server.
pub struct ServedLog {
    queue: SyncSender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    path: PathBuf,
}

impl std::fmt::Debug for ServedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedLog")
            .field("path", &self.path)
            .finish()
    }
}

impl ServedLog {
    /// Opens a log file of this process's own in `store_dir` (see [`file`]), purges it, and
    /// starts its writer.
    pub fn open(store_dir: &Path, config: LogConfig) -> Result<ServedLog, ServedLogError> {
        let file = LogFile::claim(store_dir)?;
        let counters = Arc::new(Counters::default());
        counters
            .retention_ms
            .store(config.retention_ms, Ordering::Relaxed);
        let path = file.path().to_path_buf();
        let (queue, messages) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let shared = counters.clone();
        let store_dir = store_dir.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("served-log".into())
            .spawn(move || Writer::new(file, store_dir, shared).run(messages))
            .map_err(|source| ServedLogError::Create {
                path: path.clone(),
                source,
            })?;
        Ok(ServedLog {
            queue,
            writer: Mutex::new(Some(writer)),
            counters,
            path,
        })
    }

    /// The file this process writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one response for writing, without waiting. `false` when the queue was full: the
    /// response is counted as dropped.
    pub fn record(&self, served: Served) -> bool {
        match self.queue.try_send(Message::Served(served)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let before = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                // Report the first drop and then every power of two, so a long overload is
                // visible without a line per response.
                if before.is_power_of_two() || before == 0 {
                    eprintln!(
                        "rewind: served log {} cannot keep up: {} responses not logged so far",
                        self.path.display(),
                        before + 1
                    );
                }
                false
            }
        }
    }

    /// Follows the store `reader` reads ([`follow`]): from now on, a viewer the store erases
    /// loses its served rows here too, within [`FOLLOW_EVERY`] and a scrub of the file, and
    /// the store's retention is the log's. `key` gives the key the served pseudonyms were made
    /// with, to find erased viewers by.
    pub fn follow(&self, reader: ReaderFn, key: KeyFn) -> Result<(), ServedLogError> {
        let following = Box::new(Following::new(reader, key));
        self.queue
            .send(Message::Follow(following))
            .map_err(|_| ServedLogError::WriterDied("its queue is closed".into()))
    }

    /// Deletes every logged row of one entity, in one transaction after everything queued
    /// before it, and returns how many rows it deleted.
    pub fn erase(&self, kind: &str, id: &str) -> Result<u64, ServedLogError> {
        let (done, answer) = std::sync::mpsc::channel();
        let dead = || ServedLogError::WriterDied("its queue is closed".into());
        let message = Message::Erase {
            kind: kind.to_string(),
            id: id.to_string(),
            done,
        };
        self.queue.send(message).map_err(|_| dead())?;
        answer.recv().map_err(|_| dead())?
    }

    pub fn stats(&self) -> ServedStats {
        self.counters.stats()
    }

    /// Stalls the writer until `until`'s sender is dropped.
    #[cfg(test)]
    fn hold(&self, until: Receiver<()>) {
        let held = self.queue.send(Message::Hold(until));
        held.expect("writer running");
    }

    /// Writes everything queued, closes the file, and returns the final counts. Responses
    /// recorded after it began are counted as dropped. Closing again changes nothing.
    pub fn close(&self) -> Result<ServedStats, ServedLogError> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            // Waits for room in a full queue: a stop writes what is queued, never drops it.
            let _ = self.queue.send(Message::Stop);
            if let Err(panic) = writer.join() {
                return Err(ServedLogError::WriterDied(format!("{panic:?}")));
            }
        }
        Ok(self.counters.stats())
    }
}

impl Drop for ServedLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            eprintln!("rewind: {e}");
        }
    }
}

/// Wall time now, ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The store's retention: its meta `retention_ms` when it records one, else
/// [`DEFAULT_RETENTION_MS`]. Never longer than the default.
pub fn store_retention_ms(
    snapshot: &rewind_state::Snapshot,
) -> Result<u64, rewind_state::StoreError> {
    Ok(retention_of(snapshot.meta_u64(META_RETENTION)?))
}

/// The retention a store's meta `retention_ms` gives (see [`store_retention_ms`]).
fn retention_of(recorded: Option<u64>) -> u64 {
    recorded.map_or(DEFAULT_RETENTION_MS, |r| r.min(DEFAULT_RETENTION_MS))
}

/// The background writer: drains the queue into the file, many responses per transaction.
struct Writer {
    file: LogFile,
    store_dir: PathBuf,
    counters: Arc<Counters>,
    last_purge: Option<Instant>,
    follow: Option<Following>,
    /// Rows were deleted and the file not yet rewritten: their bytes are in its free pages
    /// until a scrub succeeds, so a failed one is tried again.
    scrub_owed: bool,
}

impl Writer {
    fn new(file: LogFile, store_dir: PathBuf, counters: Arc<Counters>) -> Writer {
        Writer {
            file,
            store_dir,
            counters,
            last_purge: None,
            follow: None,
            scrub_owed: false,
        }
    }

    /// Deletes the entity's rows, then rewrites the file so no byte of them remains.
    fn erase(&mut self, kind: &str, id: &str) -> Result<u64, ServedLogError> {
        let n = self.file.erase(kind, id)?;
        self.owe_scrub(n);
        self.pay_scrub()?;
        Ok(n)
    }

    /// Counts `erased` rows deleted, whose bytes a scrub must now take from the file.
    fn owe_scrub(&mut self, erased: u64) {
        self.scrub_owed |= erased > 0;
        self.counters.erased.fetch_add(erased, Ordering::Relaxed);
    }

    /// Rewrites the file if rows were deleted since the last scrub that succeeded.
    fn pay_scrub(&mut self) -> Result<(), ServedLogError> {
        if self.scrub_owed {
            self.file.scrub()?;
            self.scrub_owed = false;
        }
        Ok(())
    }

    fn run(mut self, messages: Receiver<Message>) {
        let mut batch = Vec::new();
        loop {
            self.purge_when_due();
            self.follow_when_due(false);
            let first = match messages.recv_timeout(FOLLOW_EVERY) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut next = Some(first);
            let mut stop = false;
            while let Some(message) = next.take() {
                match message {
                    Message::Served(served) => batch.push(served),
                    Message::Stop => stop = true,
                    Message::Follow(following) => self.follow = Some(*following),
                    Message::Erase { kind, id, done } => {
                        // Everything queued before the erasure lands first, so the erasure
                        // catches it.
                        self.write(&mut batch);
                        let _ = done.send(self.erase(&kind, &id));
                    }
                    #[cfg(test)]
                    Message::Hold(until) => while until.recv().is_ok() {},
                }
                if batch.len() >= MAX_BATCH {
                    self.write(&mut batch);
                    // A queue that never empties must not hold an erasure back.
                    self.follow_when_due(false);
                }
                next = messages.try_recv().ok();
            }
            self.write(&mut batch);
            if stop {
                break;
            }
        }
        self.write(&mut batch);
        // An erasure the store landed since the last look is not left to a later server.
        self.follow_when_due(true);
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if let Err(e) = self.file.record_dropped(dropped) {
            eprintln!("rewind: recording {dropped} dropped served responses: {e}");
        }
        self.file.close();
    }

    fn write(&mut self, batch: &mut Vec<Served>) {
        if batch.is_empty() {
            return;
        }
        if let Some(following) = &mut self.follow {
            // Served before an erasure the log has handled, written after: kept out.
            let erased = following.screen(batch);
            self.counters.erased.fetch_add(erased, Ordering::Relaxed);
        }
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        let n = batch.len() as u64;
        match self.file.append(batch, dropped) {
            Ok(()) => self.counters.logged.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                eprintln!("rewind: {n} served responses not logged: {e}");
                self.counters.failed.fetch_add(n, Ordering::Relaxed)
            }
        };
        batch.clear();
    }

    fn purge_when_due(&mut self) {
        if self.last_purge.is_some_and(|at| at.elapsed() < PURGE_EVERY) {
            return;
        }
        self.last_purge = Some(Instant::now());
        let retention_ms = self.counters.retention_ms.load(Ordering::Relaxed);
        let cutoff_ms = now_ms().saturating_sub(retention_ms);
        match self.file.purge_before(cutoff_ms) {
            Ok(n) => self.counters.purged.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                eprintln!("rewind: purging the served log: {e}");
                0
            }
        };
        // Files no process holds (a server that stopped) are purged by whoever runs.
        match file::purge_idle(&self.store_dir, cutoff_ms) {
            Ok(n) => self.counters.purged.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                eprintln!("rewind: purging idle served logs: {e}");
                0
            }
        };
    }
}

#[cfg(test)]
mod tests;
