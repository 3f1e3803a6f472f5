//! rewind's store: one redb file holding what the feature dataflows produced.
//!
//! Eight tables (layout in `docs/store.md`, [`layout`] and [`codec`]):
//! - `online`: (entity kind, entity id) → every current feature value of the entity, packed,
//!   each with the tick it is valid from: one read per entity.
//! - `history`: (tick, first key) → a block of the changes of that tick, sorted by (feature,
//!   entity): time-major and append-only, so a commit writes at the tree's edge (and the
//!   retention purge deletes at the other end). Each change
//!   points to its key's previous change and to one earlier jump, so a point-in-time lookup
//!   walks O(log n) blocks back from the key's online head; a training snapshot sweeps the
//!   blocks in time order instead.
//! - `catalog`: feature index → (entity kind, feature name), append-only.
//! - `offsets`: (topic, partition) → next offset to read.
//! - `dead_letters`: (topic, partition, offset) → reason.
//! - `dead_letter_times`: (time it landed, topic, partition, offset), for the retention purge.
//! - `erasures`: the suppression list, keyed hash of an erased entity → its erasure's times.
//! - `meta`: the output frontier, the time policy the store was built with, counters.
//!
//! Invariant: a [`Commit`] lands in one write transaction, so after a crash the file is exactly
//! what some prefix of the log produced. This crate knows nothing of features: values are opaque
//! JSON bytes, entity kinds and feature names are strings.
//!
//! A commit that carries a retention purges, in the same transaction, every row older than it
//! ([`retention`]): history changes whose validity ended before the horizon, and dead letters
//! that landed before it.
//!
//! A commit that carries erasures ([`erase`]) deletes every row of each erased entity in the
//! same transaction, records a keyed hash of it, then rewrites the file into a fresh one so that
//! no byte of the deleted rows remains ([`Store::scrub`]), at once or on a thread of its own
//! while commits go on ([`Store::scrub_in_background`]); readers follow to the fresh file.
//!
//! Every stored row (a history block, an entity's online row, …) carries a checksum, checked on
//! every read; a file that is damaged, empty, foreign or of another [`FORMAT_VERSION`] is a
//! [`StoreError`] naming it, never a panic and never a fresh store.
//!
//! The file is opened in redb's single-writer mode, so other processes may open it read-only
//! with [`ReadOnlyStore`] while the writer runs, and see each commit as it lands. A reader that
//! finds the file left unclean by a writer that died repairs it itself, so reading never waits
//! for a writer to come back.

mod catalog;
pub mod codec;
mod commits;
pub mod erase;
mod guard;
pub mod layout;
mod open;
mod read;
pub mod retention;
mod scrub;
mod seal;
mod serving;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, StorageError, TableError, TransactionError};

pub use catalog::Catalog;
pub use codec::{BlockEntry, EntityId, EntityRef};
pub use commits::COMMITS_FILE;
pub use erase::{Erased, ErasureRecord, Scrubbed};
use layout::META;
pub use read::{
    DeadLetterRow, HistoryBlock, HistoryLookup, HistoryRow, HistorySweep, OnlineRow, ReadOnlyStore,
    Snapshot,
};
pub use retention::{MAX_RETENTION_MS, Purged};
pub use scrub::META_REPLACED;
pub use serving::{CurrentValue, META_AS_OF, Reader, View};

/// The store's file name inside its directory.
pub const FILE_NAME: &str = "rewind.redb";

/// Meta key of the output frontier: every tick strictly below it is final in the store.
pub const META_FRONTIER: &str = "frontier_ms";
/// Present (the start, ms since the epoch) while `rewind replay` is building the store, and
/// left behind by a replay that stopped before its end: such a store is a prefix of its log.
pub const META_REPLAYING: &str = "replay_started_ms";

/// The layout of the file this version writes and reads; a file of another is refused.
/// 3: time-major history blocks, one online row per entity, a feature catalog. (2: a row per
/// change, keyed by feature and entity; 1, which recorded no version, had no checksums.)
pub const FORMAT_VERSION: u64 = 3;

/// Errors of the store. Every variant crossed file I/O or redb; none is a bad record.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create store {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("store {path} does not exist; run `rewind run --store` on it first")]
    Missing { path: PathBuf },
    #[error(
        "{path} is not a rewind store ({detail}); move it aside, and a run will start a fresh \
         store there"
    )]
    NotAStore { path: PathBuf, detail: String },
    #[error(
        "store {path} is being written by another process{doing}; one process at a time may \
         write a store: stop the other, or wait for it"
    )]
    Busy { path: PathBuf, doing: &'static str },
    #[error(
        "store {path} needs repair after an unclean stop, and this process cannot repair it \
         ({reason}); once the cause is fixed (write access to the file, free disk space), run \
         `rewind verify --store {dir}`: a reader that may write the file repairs it"
    )]
    NeedsRepair {
        path: PathBuf,
        dir: String,
        reason: redb::DatabaseError,
    },
    #[error(
        "store {path} is damaged: {detail}. Nothing read from it can be trusted: restore the \
         file from a copy, or rebuild the store from the log into a fresh --store"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "store {path}: the scrub after an erasure failed ({detail}). The commits landed and \
         the erased rows are deleted, but their bytes stay in the file's free pages until a \
         scrub succeeds: the next erasure scrubs again, and so does the next writer to open \
         the store"
    )]
    ScrubFailed { path: PathBuf, detail: String },
    #[error(
        "store {path} has format {found}, and this rewind reads format {FORMAT_VERSION}; \
         rebuild it from the log into a fresh --store (`rewind replay`)"
    )]
    Format { path: PathBuf, found: String },
    /// A value whose checksum does not match its row. Every public read names the file, making
    /// this [`StoreError::Damaged`].
    #[error("the checksum of table {table} at key {key} does not match: the store is damaged")]
    Unsealed { table: &'static str, key: String },
    /// Bytes that passed their seal but do not decode, or a history chain that points to a
    /// change that is not there. Every public read names the file, making this
    /// [`StoreError::Damaged`].
    #[error("table {table} at key {key} does not decode: the store is damaged")]
    Malformed { table: &'static str, key: String },
    #[error("store transaction failed: {0}")]
    Transaction(#[from] TransactionError),
    #[error("store table failed: {0}")]
    Table(#[from] TableError),
    #[error("store read or write failed: {0}")]
    Storage(#[from] StorageError),
    #[error("store commit failed (nothing of it landed; a retry may help): {0}")]
    Commit(#[from] redb::CommitError),
    #[error("store meta {key:?} is malformed")]
    BadMeta { key: String },
    #[error(
        "a commit writes tick {tick_ms}, but the store's history already holds tick {last_ms}: \
         history is append-only, and each tick lands once, complete"
    )]
    TickWritten { tick_ms: u64, last_ms: u64 },
    #[error(
        "an erasure lands at tick {tick_ms}, outside the commit that applies it (ticks \
         {frontier_ms} to {new_frontier_ms}): an erasure is applied by the commit of its tick"
    )]
    ErasureTick {
        tick_ms: u64,
        frontier_ms: u64,
        new_frontier_ms: u64,
    },
    #[error("the store's feature catalog is full (65,536 features)")]
    CatalogFull,
    #[error(
        "history before {retained_from_ms} ms was purged (the store keeps its retention), so \
         no value as of {as_of_ms} ms can be given; ask for a time at or after \
         {retained_from_ms} ms"
    )]
    Purged {
        as_of_ms: u64,
        retained_from_ms: u64,
    },
    #[error(
        "a retention of {retention_ms} ms is past the limit of {MAX_RETENTION_MS} ms (365 days)"
    )]
    RetentionPastLimit { retention_ms: u64 },
}

impl StoreError {
    /// Names the file in the errors that say it is damaged.
    fn at(self, path: &Path) -> StoreError {
        let damaged = |detail: String| StoreError::Damaged {
            path: path.to_path_buf(),
            detail,
        };
        match self {
            StoreError::Unsealed { table, key } => damaged(format!(
                "the checksum of table {table} at key {key} does not match"
            )),
            StoreError::Malformed { table, key } => {
                damaged(format!("table {table} at key {key} does not decode"))
            }
            StoreError::Storage(StorageError::Corrupted(detail))
            | StoreError::Table(TableError::Storage(StorageError::Corrupted(detail)))
            | StoreError::Transaction(TransactionError::Storage(StorageError::Corrupted(detail))) => {
                damaged(detail)
            }
            other => other,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One change of one feature of one entity at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub entity_kind: &'static str,
    pub feature: &'static str,
    pub entity_id: EntityId,
    pub tick_ms: u64,
    /// The new value as JSON, or `None` when the feature returned to its default.
    pub value: Option<Vec<u8>>,
}

/// A record that could not be decoded, kept by position and reason, never by content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
    /// The event time it belongs to (its partition's frontier when it was read), by which the
    /// retention purges it; `None` when its partition had no time yet: the frontier of the
    /// commit that lands it stands in.
    pub time_ms: Option<u64>,
}

/// One erasure the commit applies (see [`erase`]): every trace of the entity goes, its
/// changes before `tick_ms` are dropped, and the store records `token`, never the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// `"viewer"`: the kind of the entity erased.
    pub entity_kind: &'static str,
    /// The pseudonym (the same id as [`Change::entity_id`]).
    pub entity_id: EntityId,
    /// `E`: the erasure's own time. The pipeline ignores the entity's events before it. With
    /// the entity, what the erasure is known by: one the store holds at the same or a later `E`
    /// is a repeat, skipped whatever its tick.
    pub ts_ms: u64,
    /// `T_e`: the tick the erasure lands at. The commit's changes of this entity before it are
    /// dropped. It lies within the commit: at or after the store's frontier before the commit,
    /// at or before the commit's new frontier.
    pub tick_ms: u64,
    /// A keyed hash of the pseudonym, computed by the caller with a key the store never sees:
    /// what the suppression list keeps as proof of the erasure.
    pub token: [u8; 32],
}

/// Everything one write transaction lands: the changes of a run of completed ticks, the
/// frontier they complete, and the source positions and dead letters that produced them.
#[derive(Debug, Default, Clone)]
pub struct Commit {
    /// New output frontier: every tick below it is final after this commit.
    pub frontier_ms: u64,
    /// Changes in tick order.
    pub changes: Vec<Change>,
    /// (topic, partition, next offset to read).
    pub next_offsets: Vec<(String, u32, u64)>,
    pub dead_letters: Vec<DeadLetter>,
    /// Cumulative counters for the prefix of the log these offsets end.
    pub counters: Vec<(&'static str, u64)>,
    /// Purge, in the same transaction, everything older than this many ms before the new
    /// frontier (see [`retention`]); `None` keeps everything (and records nothing).
    pub retention_ms: Option<u64>,
    /// Erasures applied in this commit, before its changes (see [`erase`]).
    pub erasures: Vec<Erasure>,
}

/// The writer's handle on the store. Only one process may hold it.
pub struct Store {
    /// Behind a lock because a scrub replaces the file (see [`Store::scrub`]); snapshots keep
    /// the handle they were taken from alive.
    db: RwLock<Arc<Database>>,
    dir: PathBuf,
    path: Arc<Path>,
    /// The file's catalog as of the last commit: only the writer adds to it.
    catalog: Mutex<Catalog>,
    /// What snapshots read the catalog through (see [`catalog::CatalogCache`]).
    read_catalog: Arc<catalog::CatalogCache>,
    /// Off only in tests that show what an erasure leaves in free pages without it.
    scrub_after_erasure: bool,
    /// Bumped after every write transaction, so readers know when their view is still newest.
    published: commits::Published,
    /// Scrubs copy on a thread of their own while commits go on ([`Store::scrub_in_background`]).
    background_scrub: bool,
    /// The background scrub under way, if any. Locked only under the commit lock.
    scrubbing: Mutex<Option<Scrubbing>>,
    /// A background scrub that failed, not yet taken ([`Store::take_scrub_failure`]).
    scrub_failure: Mutex<Option<StoreError>>,
    /// When to try again after a background scrub failed: the erased rows' bytes are in the
    /// file until one succeeds, erasures or none.
    scrub_retry_at: Mutex<Option<Instant>>,
}

/// How long after a failed background scrub the next is started (by the next commit then).
const SCRUB_RETRY: Duration = Duration::from_secs(30);

/// A scrub copying the store on a thread of its own while the writer goes on committing to the
/// old file: what lands meanwhile is queued, and lands on the fresh file too (by the thread as
/// it catches up, the last of it under the commit lock) before the fresh file is put in place,
/// so that it holds exactly what the old one does.
struct Scrubbing {
    copy: std::thread::JoinHandle<Result<CaughtUp>>,
    /// What landed on the old file after the copied commit and the thread has not taken yet,
    /// in order.
    since: Arc<Mutex<Vec<Landed>>>,
}

/// A fresh file and what it holds beyond the copy.
struct CaughtUp {
    fresh: scrub::Fresh,
    /// The catalog of the fresh file: the copied commit's, extended by what landed since.
    catalog: Catalog,
    /// Online rows that what landed since erased: the fresh file's free pages hold them.
    erased_rows: u64,
}

/// One write to the old file while a background scrub copies it.
enum Landed {
    Commit(Commit),
    /// A meta entry written (`Some`) or removed (`None`).
    Meta(String, Option<Vec<u8>>),
}

impl CaughtUp {
    /// Lands `landed` on the fresh file, in one transaction.
    fn land(&mut self, landed: &[Landed]) -> Result<()> {
        if landed.is_empty() {
            return Ok(());
        }
        let mut txn = self.fresh.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .expect("no savepoints are ever taken");
        for landed in landed {
            match landed {
                Landed::Commit(commit) => {
                    let purged = write::commit(&txn, &mut self.catalog, commit)?;
                    self.erased_rows += purged.erased.online_rows;
                }
                Landed::Meta(key, Some(value)) => {
                    let sealed = layout::meta_row(key).seal(value);
                    txn.open_table(META)?
                        .insert(key.as_str(), sealed.as_slice())?;
                }
                Landed::Meta(key, None) => {
                    txn.open_table(META)?.remove(key.as_str())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// How many rounds of catching up the scrub's thread makes before it leaves the rest to the
/// commit lock: it keeps up with a writer of any pace, but must end.
const CATCH_UP_ROUNDS: usize = 8;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the store in `dir`. Only a missing file starts a fresh store: an empty or foreign
    /// file is refused, and an existing store must be of this [`FORMAT_VERSION`].
    ///
    /// Every page of the file's trees is checked against redb's checksums first (one pass over
    /// the file, small next to the replay a run starts with), so a writer never builds on a
    /// damaged file.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path: Arc<Path> = dir.join(FILE_NAME).into();
        if !path.exists() {
            open::create_fresh(&path)?;
        }
        let db = open::writer(&path)?;
        let mut store = Store {
            db: RwLock::new(Arc::new(db)),
            dir: dir.to_path_buf(),
            path,
            catalog: Mutex::default(),
            read_catalog: Arc::default(),
            scrub_after_erasure: true,
            published: commits::Published::open(dir)?,
            background_scrub: false,
            scrubbing: Mutex::default(),
            scrub_failure: Mutex::default(),
            scrub_retry_at: Mutex::default(),
        };
        let snapshot = store.snapshot()?;
        snapshot.check_format()?;
        let catalog = snapshot.catalog()?.clone();
        drop(snapshot);
        retention::upgrade(&store.db()).map_err(|e| e.at(&store.path))?;
        store.catalog = Mutex::new(catalog);
        // Only now, holding the writer's lock: no other scrub can be building one.
        scrub::remove_leftovers(dir)?;
        let pending = store.snapshot()?.meta(erase::META_SCRUB_PENDING)?;
        if pending.is_some() {
            // A crash came between an erasure's commit and its scrub.
            store.scrub()?;
        }
        // The upgrade above, or a repair of the file, may have changed what readers see.
        store.published.bump(&store.path)?;
        Ok(store)
    }

    /// The file's handle (a scrub replaces it).
    fn db(&self) -> Arc<Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rewrites the store into a fresh file holding only its live rows and puts it in place of
    /// the old one, so that no byte of a deleted row remains in the store's file. A commit that
    /// applied an erasure runs it itself; see [`scrub`](mod@scrub) for how readers follow.
    pub fn scrub(&self) -> Result<Scrubbed> {
        let writing = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let mut scrubbing = self.scrubbing.lock().unwrap_or_else(|p| p.into_inner());
        self.finish_scrub(&mut scrubbing, &writing, true)?;
        self.scrub_locked()
    }

    /// Makes the scrub after an erasure copy the store on a thread of its own, so that the
    /// writer's commits go on meanwhile instead of waiting for a copy of the whole store. The
    /// erased rows are deleted by the erasure's own commit either way; the fresh file, with no
    /// byte of them, takes the old one's place at the first commit after the copy is done (or
    /// when the store is dropped). Until then the old file keeps `scrub_pending`, so a crash
    /// leaves the scrub to the next writer. `rewind run` scrubs in the background; `rewind
    /// erase` and tests wait.
    pub fn scrub_in_background(&mut self) {
        self.background_scrub = true;
    }

    /// The failure of a background scrub since the last call, if one failed: a commit that
    /// lands is never an error for a scrub's sake, so a writer asks here after its commits.
    /// The file keeps `scrub_pending` meanwhile.
    pub fn take_scrub_failure(&self) -> Option<StoreError> {
        self.scrub_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Waits for a background scrub under way (and any it starts) and puts it in place, and
    /// scrubs in place if one failed before: what a writer calls as it stops, so that it leaves
    /// no erased byte behind, or learns that it does ([`StoreError::ScrubFailed`]; the file
    /// then keeps `scrub_pending` for the next writer). Dropping the store only waits.
    pub fn settle_scrub(&self) -> Result<()> {
        let failed = |e: StoreError| StoreError::ScrubFailed {
            path: self.path.to_path_buf(),
            detail: e.to_string(),
        };
        let writing = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let mut scrubbing = self.scrubbing.lock().unwrap_or_else(|p| p.into_inner());
        while scrubbing.is_some() {
            self.finish_scrub(&mut scrubbing, &writing, true)
                .map_err(failed)?;
        }
        let pending = self.snapshot()?.meta(erase::META_SCRUB_PENDING)?;
        if pending.is_some() && self.scrub_after_erasure {
            self.scrub_locked().map_err(failed)?;
        }
        self.take_scrub_failure();
        *self
            .scrub_retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// Starts a background scrub of the newest commit (just landed, under the commit lock).
    fn start_scrub(&self, catalog: &Catalog) -> Result<Scrubbing> {
        let db = self.db();
        // Begun here, under the commit lock: the copy is of exactly this commit, and every
        // later one lands in `since`.
        let from = guard::reading(&self.path, || Ok(db.begin_read()?))?;
        let path = self.path.clone();
        let since: Arc<Mutex<Vec<Landed>>> = Arc::default();
        let queue = since.clone();
        let catalog = catalog.clone();
        let copy = std::thread::Builder::new()
            .name("rewind-scrub".into())
            .spawn(move || {
                let fresh = scrub::copy_fresh(&from, &path);
                drop(from);
                drop(db);
                let mut caught_up = CaughtUp {
                    fresh: fresh?,
                    catalog,
                    erased_rows: 0,
                };
                // Most of what landed during the copy lands here, without the commit lock; the
                // writer finishes the rest (usually one commit's worth).
                for _ in 0..CATCH_UP_ROUNDS {
                    let landed =
                        std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()));
                    if landed.is_empty() {
                        break;
                    }
                    if let Err(e) = caught_up.land(&landed) {
                        caught_up.fresh.discard();
                        return Err(e);
                    }
                }
                Ok(caught_up)
            })
            .map_err(|source| StoreError::Create {
                path: self.path.to_path_buf(),
                source,
            })?;
        Ok(Scrubbing { copy, since })
    }

    /// Puts a background scrub's fresh file in place once its thread is done (`wait`: waiting
    /// for it): lands on it the rest of what the old file took meanwhile, renames it over the
    /// old one, and starts another scrub when what it took meanwhile erased something. The
    /// caller holds the commit lock, whose catalog is `current`.
    fn finish_scrub(
        &self,
        scrubbing: &mut Option<Scrubbing>,
        current: &Catalog,
        wait: bool,
    ) -> Result<()> {
        if !scrubbing
            .as_ref()
            .is_some_and(|s| wait || s.copy.is_finished())
        {
            return Ok(());
        }
        let Scrubbing { copy, since } = scrubbing.take().expect("checked above");
        let mut caught_up = copy.join().unwrap_or_else(|_| {
            Err(StoreError::Damaged {
                path: self.path.to_path_buf(),
                detail: "the scrub's copy panicked".into(),
            })
        })?;
        let rest = std::mem::take(&mut *since.lock().unwrap_or_else(|p| p.into_inner()));
        if let Err(e) = caught_up.land(&rest) {
            caught_up.fresh.discard();
            return Err(StoreError::at(e, &self.path));
        }
        debug_assert_eq!(
            caught_up.catalog.len(),
            current.len(),
            "the fresh file's catalog differs"
        );
        let old = self.db();
        let (fresh, _) =
            scrub::install(caught_up.fresh, &old, &self.path).map_err(|e| e.at(&self.path))?;
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        self.published.bump(&self.path)?;
        if caught_up.erased_rows > 0 {
            *scrubbing = Some(self.start_scrub(current)?);
        }
        Ok(())
    }

    /// The scrub, the caller holding the commit lock.
    fn scrub_locked(&self) -> Result<Scrubbed> {
        let old = self.db();
        let (fresh, scrubbed) = scrub::rewrite(&old, &self.path).map_err(|e| e.at(&self.path))?;
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        self.published.bump(&self.path)?;
        Ok(scrubbed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A consistent read view of the latest commit.
    pub fn snapshot(&self) -> Result<Snapshot> {
        guard::reading(&self.path, || {
            let db = self.db();
            let txn = db.begin_read()?;
            Ok(Snapshot::new(
                txn,
                self.path.clone(),
                self.read_catalog.clone(),
                db,
            ))
        })
    }

    /// Writes one meta entry on its own, for settings fixed when a store is created.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let _writing = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db().begin_write()?;
        let sealed = layout::meta_row(key).seal(value);
        txn.open_table(META)?.insert(key, sealed.as_slice())?;
        txn.commit()?;
        self.landed(|| Landed::Meta(key.to_string(), Some(value.to_vec())));
        self.published.bump(&self.path)
    }

    /// Keeps what just landed for the background scrub under way, if any.
    fn landed(&self, what: impl FnOnce() -> Landed) {
        let scrubbing = self.scrubbing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(scrubbing) = scrubbing.as_ref() {
            let mut since = scrubbing.since.lock().unwrap_or_else(|p| p.into_inner());
            since.push(what());
        }
    }

    /// Removes a meta entry (nothing if it is absent).
    pub fn remove_meta(&self, key: &str) -> Result<()> {
        let _writing = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db().begin_write()?;
        txn.open_table(META)?.remove(key)?;
        txn.commit()?;
        self.landed(|| Landed::Meta(key.to_string(), None));
        self.published.bump(&self.path)
    }

    /// Lands `commit` atomically and durably, with the purge its retention asks for. Its ticks
    /// must all lie after every tick already in the store's history
    /// ([`StoreError::TickWritten`] otherwise: nothing lands).
    pub fn commit(&self, commit: &Commit) -> Result<Purged> {
        if let Some(retention_ms) = commit.retention_ms.filter(|r| *r > MAX_RETENTION_MS) {
            return Err(StoreError::RetentionPastLimit { retention_ms });
        }
        let mut current = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let mut catalog = current.clone();
        let mut txn = self.db().begin_write()?;
        txn.set_durability(Durability::Immediate)
            .expect("no savepoints are ever taken");
        let mut purged = write::commit(&txn, &mut catalog, commit).map_err(|e| e.at(&self.path))?;
        txn.commit()?;
        *current = catalog;
        self.published.bump(&self.path)?;
        let mut scrubbing = self.scrubbing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(scrubbing) = scrubbing.as_ref() {
            let mut since = scrubbing.since.lock().unwrap_or_else(|p| p.into_inner());
            since.push(Landed::Commit(commit.clone()));
        }
        if purged.erased.online_rows > 0 && self.scrub_after_erasure && !self.background_scrub {
            purged.erased.scrub = self.scrub_locked()?;
            return Ok(purged);
        }
        // The commit has landed: from here a failure is the scrub's, kept for the writer to
        // take, never this commit's error.
        let mut retry_at = self
            .scrub_retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let retry = retry_at.is_some_and(|at| Instant::now() >= at);
        let erased = (purged.erased.online_rows > 0 && self.scrub_after_erasure) || retry;
        let scrubbed = match scrubbing.is_none() {
            // Its own commit is in the copy: the next one is the first to finish it.
            true if erased => self.start_scrub(&current).map(|s| *scrubbing = Some(s)),
            // A scrub under way takes an erasure's commit with what it lands meanwhile, and
            // starts another once it is in place.
            _ => self.finish_scrub(&mut scrubbing, &current, false),
        };
        match scrubbed {
            Ok(()) if erased => *retry_at = None,
            Ok(()) => {}
            Err(e) => {
                let failure = StoreError::ScrubFailed {
                    path: self.path.to_path_buf(),
                    detail: e.to_string(),
                };
                *self.scrub_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
                *retry_at = Some(Instant::now() + SCRUB_RETRY);
            }
        }
        Ok(purged)
    }
}

impl Drop for Store {
    /// A background scrub under way is waited for and put in place, so a run that ends leaves
    /// a clean file. If that fails, the file keeps `scrub_pending` and the next writer scrubs.
    fn drop(&mut self) {
        let writing = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let mut scrubbing = self.scrubbing.lock().unwrap_or_else(|p| p.into_inner());
        while scrubbing.is_some() {
            if self.finish_scrub(&mut scrubbing, &writing, true).is_err() {
                break;
            }
        }
    }
}

pub(crate) fn decode_u64(key: &str, bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::BadMeta {
        key: key.to_string(),
    })?;
    Ok(u64::from_le_bytes(arr))
}

#[cfg(test)]
mod tests;
