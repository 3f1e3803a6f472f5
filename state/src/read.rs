//! Reading the store: from the writer's own process ([`crate::Store::snapshot`]) or from another
//! process that opened the file read-only ([`ReadOnlyStore`]). Every read goes through a
//! [`Snapshot`], one redb read transaction, so a reader never sees half a commit.

use std::path::Path;

use redb::{ConcurrencyMode, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable};

use crate::{
    DEAD_LETTERS, FILE_NAME, HISTORY, META, META_FRONTIER, OFFSETS, ONLINE, Result, StoreError,
    decode_u64,
};

/// A read-only handle on a store another process may be writing.
pub struct ReadOnlyStore {
    db: ReadOnlyDatabase,
}

impl ReadOnlyStore {
    pub fn open(dir: &Path) -> Result<ReadOnlyStore> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Err(StoreError::Missing { path });
        }
        let db = redb::Builder::new()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .open_read_only(&path)
            .map_err(|source| StoreError::Open { path, source })?;
        Ok(ReadOnlyStore { db })
    }

    /// A consistent view of the newest commit; take a new one to follow the writer.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::new(self.db.begin_read()?))
    }
}

/// One current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineRow {
    pub feature: String,
    pub valid_from_ms: u64,
    pub value_json: Vec<u8>,
}

/// One history row; `value_json` is `None` for a tombstone (back to the default).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryRow {
    pub feature: String,
    pub entity_id: String,
    pub valid_from_ms: u64,
    pub value_json: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRow {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
}

/// Point-in-time lookups in one snapshot's history table.
pub struct HistoryLookup {
    table: redb::ReadOnlyTable<(&'static str, &'static str, u64), &'static [u8]>,
}

impl HistoryLookup {
    /// Every row of (`feature`, `entity_id`) with `valid_from <= until_ms`, oldest first:
    /// `(valid_from, value)`, `None` for a tombstone. One scan answers many lookups.
    pub fn rows(
        &self,
        feature: &str,
        entity_id: &str,
        until_ms: u64,
    ) -> Result<Vec<(u64, Option<Vec<u8>>)>> {
        let mut rows = Vec::new();
        for entry in self
            .table
            .range((feature, entity_id, 0)..=(feature, entity_id, until_ms))?
        {
            let (key, value) = entry?;
            let bytes = value.value();
            rows.push((key.value().2, (!bytes.is_empty()).then(|| bytes.to_vec())));
        }
        Ok(rows)
    }

    /// The latest history row of (`feature`, `entity_id`) with `valid_from <= as_of_ms`;
    /// `None` means the default (no row, or a tombstone).
    pub fn as_of(&self, feature: &str, entity_id: &str, as_of_ms: u64) -> Result<Option<Vec<u8>>> {
        let range = (feature, entity_id, 0)..=(feature, entity_id, as_of_ms);
        match self.table.range(range)?.next_back() {
            Some(entry) => {
                let (_, value) = entry?;
                let bytes = value.value();
                Ok((!bytes.is_empty()).then(|| bytes.to_vec()))
            }
            None => Ok(None),
        }
    }
}

/// A consistent view of one commit of the store.
pub struct Snapshot {
    txn: ReadTransaction,
}

impl Snapshot {
    pub(crate) fn new(txn: ReadTransaction) -> Snapshot {
        Snapshot { txn }
    }

    /// The output frontier: every tick strictly below it is final. `None` before the first
    /// commit of output.
    pub fn frontier_ms(&self) -> Result<Option<u64>> {
        self.meta_u64(META_FRONTIER)
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let table = self.txn.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        self.meta(key)?.map(|b| decode_u64(key, &b)).transpose()
    }

    /// The current values of one entity, in feature order.
    pub fn online(&self, entity_kind: &str, entity_id: &str) -> Result<Vec<OnlineRow>> {
        let table = self.txn.open_table(ONLINE)?;
        let mut rows = Vec::new();
        for entry in table.range((entity_kind, entity_id, "")..)? {
            let (key, value) = entry?;
            let (kind, id, feature) = key.value();
            if kind != entity_kind || id != entity_id {
                break;
            }
            let (valid_from_ms, json) = value.value();
            rows.push(OnlineRow {
                feature: feature.to_string(),
                valid_from_ms,
                value_json: json.to_vec(),
            });
        }
        Ok(rows)
    }

    /// Every current value: (entity kind, entity id, row).
    pub fn online_all(&self) -> Result<Vec<(String, String, OnlineRow)>> {
        let table = self.txn.open_table(ONLINE)?;
        let mut rows = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (kind, id, feature) = key.value();
            let (valid_from_ms, json) = value.value();
            let row = OnlineRow {
                feature: feature.to_string(),
                valid_from_ms,
                value_json: json.to_vec(),
            };
            rows.push((kind.to_string(), id.to_string(), row));
        }
        Ok(rows)
    }

    /// The value of `feature` for `entity_id` as of tick `as_of_ms`: the latest history row with
    /// `valid_from <= as_of_ms`. `None` means the default (no row, or a tombstone).
    pub fn as_of(&self, feature: &str, entity_id: &str, as_of_ms: u64) -> Result<Option<Vec<u8>>> {
        self.history_lookup()?.as_of(feature, entity_id, as_of_ms)
    }

    /// The history table opened once, for many point-in-time lookups (training snapshots).
    pub fn history_lookup(&self) -> Result<HistoryLookup> {
        Ok(HistoryLookup {
            table: self.txn.open_table(HISTORY)?,
        })
    }

    /// Every history row, in (feature, entity, valid_from) order.
    pub fn history(&self) -> Result<Vec<HistoryRow>> {
        let table = self.txn.open_table(HISTORY)?;
        let mut rows = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (feature, entity_id, valid_from_ms) = key.value();
            let bytes = value.value();
            rows.push(HistoryRow {
                feature: feature.to_string(),
                entity_id: entity_id.to_string(),
                valid_from_ms,
                value_json: (!bytes.is_empty()).then(|| bytes.to_vec()),
            });
        }
        Ok(rows)
    }

    /// (topic, partition) → next offset to read, for every partition the store has read.
    pub fn next_offsets(&self) -> Result<Vec<(String, u32, u64)>> {
        let table = self.txn.open_table(OFFSETS)?;
        let mut rows = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (topic, partition) = key.value();
            rows.push((topic.to_string(), partition, value.value()));
        }
        Ok(rows)
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetterRow>> {
        let table = self.txn.open_table(DEAD_LETTERS)?;
        let mut rows = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (topic, partition, offset) = key.value();
            let reason = value.value().to_string();
            rows.push(DeadLetterRow {
                topic: topic.to_string(),
                partition,
                offset,
                reason,
            });
        }
        Ok(rows)
    }
}
