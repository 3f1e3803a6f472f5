//! rewind's store: one redb file holding what the feature dataflows produced.
//!
//! Five tables (layout in `docs/store.md`):
//! - `online`: (entity kind, entity id, feature) → (valid_from tick, value): the current values.
//! - `history`: (feature, entity id, valid_from tick) → value, or a tombstone when the feature
//!   returned to its default: every change the dataflow produced.
//! - `offsets`: (topic, partition) → next offset to read.
//! - `dead_letters`: (topic, partition, offset) → reason.
//! - `meta`: the output frontier, the time policy the store was built with, counters.
//!
//! Invariant: a [`Commit`] lands in one write transaction, so after a crash the file is exactly
//! what some prefix of the log produced. This crate knows nothing of features: values are opaque
//! JSON bytes, entity kinds and feature names are strings.
//!
//! The file is opened in redb's single-writer mode, so other processes may open it read-only
//! with [`ReadOnlyStore`] while the writer runs, and see each commit as it lands.

mod read;

use std::path::{Path, PathBuf};

use redb::{ConcurrencyMode, Database, Durability, ReadableDatabase, TableDefinition};

pub use read::{DeadLetterRow, HistoryLookup, HistoryRow, OnlineRow, ReadOnlyStore, Snapshot};

/// The store's file name inside its directory.
pub const FILE_NAME: &str = "rewind.redb";

pub(crate) const ONLINE: TableDefinition<(&str, &str, &str), (u64, &[u8])> =
    TableDefinition::new("online");
pub(crate) const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("history");
pub(crate) const OFFSETS: TableDefinition<(&str, u32), u64> = TableDefinition::new("offsets");
pub(crate) const DEAD_LETTERS: TableDefinition<(&str, u32, u64), &str> =
    TableDefinition::new("dead_letters");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Meta key of the output frontier: every tick strictly below it is final in the store.
pub const META_FRONTIER: &str = "frontier_ms";

/// Errors of the store. Every variant crossed file I/O or redb; none is a bad record.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open store {path}: {source} (is another `rewind run` writing it?)")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("store {path} does not exist; run `rewind run --store` on it first")]
    Missing { path: PathBuf },
    #[error("store transaction failed: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("store table failed: {0}")]
    Table(#[from] redb::TableError),
    #[error("store read or write failed: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("store commit failed (nothing of it landed; a retry may help): {0}")]
    Commit(#[from] redb::CommitError),
    #[error("store meta {key:?} is malformed")]
    BadMeta { key: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One change of one feature of one entity at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub entity_kind: &'static str,
    pub feature: &'static str,
    pub entity_id: String,
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
}

/// Everything one write transaction lands: the changes of a run of completed ticks, the
/// frontier they complete, and the source positions and dead letters that produced them.
#[derive(Debug, Default)]
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
}

/// The writer's handle on the store. Only one process may hold it.
pub struct Store {
    db: Database,
    dir: PathBuf,
}

impl Store {
    /// Opens the store in `dir`, creating the directory and file if needed.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = redb::Builder::new()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .create(&path)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let store = Store {
            db,
            dir: dir.to_path_buf(),
        };
        store.create_tables()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn create_tables(&self) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(ONLINE)?;
        txn.open_table(HISTORY)?;
        txn.open_table(OFFSETS)?;
        txn.open_table(DEAD_LETTERS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(())
    }

    /// A consistent read view of the latest commit.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::new(self.db.begin_read()?))
    }

    /// Writes one meta entry on its own, for settings fixed when a store is created.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// Lands `commit` atomically and durably.
    pub fn commit(&self, commit: &Commit) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .expect("no savepoints are ever taken");
        {
            let mut online = txn.open_table(ONLINE)?;
            let mut history = txn.open_table(HISTORY)?;
            // In each table's key order: a B-tree takes sorted inserts leaf by leaf, where
            // random ones walk and copy pages all over the tree.
            let mut order: Vec<&Change> = commit.changes.iter().collect();
            order.sort_by(|a, b| {
                (a.feature, &a.entity_id, a.tick_ms).cmp(&(b.feature, &b.entity_id, b.tick_ms))
            });
            for c in &order {
                let key = (c.feature, c.entity_id.as_str(), c.tick_ms);
                history.insert(key, c.value.as_deref().unwrap_or(&[]))?;
            }
            // Changes are in tick order, and the sort is stable: a key's last change wins.
            order.sort_by(|a, b| {
                (a.entity_kind, &a.entity_id, a.feature).cmp(&(
                    b.entity_kind,
                    &b.entity_id,
                    b.feature,
                ))
            });
            for c in &order {
                let key = (c.entity_kind, c.entity_id.as_str(), c.feature);
                match c.value.as_deref() {
                    Some(v) => online.insert(key, (c.tick_ms, v))?,
                    None => online.remove(key)?,
                };
            }
            let mut offsets = txn.open_table(OFFSETS)?;
            for (topic, partition, next) in &commit.next_offsets {
                offsets.insert((topic.as_str(), *partition), *next)?;
            }
            let mut dead = txn.open_table(DEAD_LETTERS)?;
            for d in &commit.dead_letters {
                dead.insert((d.topic.as_str(), d.partition, d.offset), d.reason.as_str())?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(META_FRONTIER, commit.frontier_ms.to_le_bytes().as_slice())?;
            for (name, value) in &commit.counters {
                meta.insert(*name, value.to_le_bytes().as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
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
