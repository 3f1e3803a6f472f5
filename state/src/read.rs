//! Reading the store: from the writer's own process ([`crate::Store::snapshot`]) or from another
//! process that opened the file read-only ([`ReadOnlyStore`]). Every read goes through a
//! [`Snapshot`], one redb read transaction, so a reader never sees half a commit. Every value
//! read is checked against its row's seal, and every read runs inside the guard that turns a
//! damaged file into [`StoreError::Damaged`].

use std::path::Path;
use std::sync::Arc;

use redb::{ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableError};

use crate::layout::{self, Crc, DEAD_LETTERS, HISTORY, META, META_FORMAT, OFFSETS, ONLINE};
use crate::{
    FILE_NAME, FORMAT_VERSION, META_FRONTIER, Result, StoreError, decode_u64, guard, open,
};

/// A read-only handle on a store another process may be writing.
pub struct ReadOnlyStore {
    db: ReadOnlyDatabase,
    path: Arc<Path>,
}

impl ReadOnlyStore {
    /// Opens the store in `dir` read-only. A file left unclean by a writer that died is
    /// repaired first when no writer holds it, which needs write permission on the file.
    pub fn open(dir: &Path) -> Result<ReadOnlyStore> {
        let path: Arc<Path> = dir.join(FILE_NAME).into();
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let db = open::reader(&path)?;
        let store = ReadOnlyStore { db, path };
        store.snapshot()?.check_format()?;
        Ok(store)
    }

    /// A consistent view of the newest commit; take a new one to follow the writer.
    pub fn snapshot(&self) -> Result<Snapshot> {
        guard::reading(&self.path, || {
            Ok(Snapshot::new(self.db.begin_read()?, self.path.clone()))
        })
    }
}

/// The payload of `stored` under `row`'s seal, or the damage named by table and key.
fn unseal<'a>(
    row: Crc,
    stored: &'a [u8],
    table: &'static str,
    key: impl FnOnce() -> String,
) -> Result<&'a [u8]> {
    row.open(stored)
        .ok_or_else(|| StoreError::Unsealed { table, key: key() })
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
    path: Arc<Path>,
}

/// A history value: `None` for a tombstone (back to the default).
fn history_value(key: (&str, &str, u64), stored: &[u8]) -> Result<Option<Vec<u8>>> {
    let payload = unseal(layout::history_row(key), stored, "history", || {
        format!("{key:?}")
    })?;
    Ok((!payload.is_empty()).then(|| payload.to_vec()))
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
        guard::reading(&self.path, || {
            let mut rows = Vec::new();
            for entry in self
                .table
                .range((feature, entity_id, 0)..=(feature, entity_id, until_ms))?
            {
                let (key, value) = entry?;
                let key = key.value();
                rows.push((key.2, history_value(key, value.value())?));
            }
            Ok(rows)
        })
    }

    /// The latest history row of (`feature`, `entity_id`) with `valid_from <= as_of_ms`;
    /// `None` means the default (no row, or a tombstone).
    pub fn as_of(&self, feature: &str, entity_id: &str, as_of_ms: u64) -> Result<Option<Vec<u8>>> {
        guard::reading(&self.path, || {
            let range = (feature, entity_id, 0)..=(feature, entity_id, as_of_ms);
            match self.table.range(range)?.next_back() {
                Some(entry) => {
                    let (key, value) = entry?;
                    history_value(key.value(), value.value())
                }
                None => Ok(None),
            }
        })
    }
}

/// A consistent view of one commit of the store.
pub struct Snapshot {
    txn: ReadTransaction,
    path: Arc<Path>,
}

impl Snapshot {
    pub(crate) fn new(txn: ReadTransaction, path: Arc<Path>) -> Snapshot {
        Snapshot { txn, path }
    }

    /// Refuses a file that is not a rewind store of this [`FORMAT_VERSION`].
    pub(crate) fn check_format(&self) -> Result<()> {
        let path = || self.path.to_path_buf();
        let found = guard::reading(&self.path, || {
            let table = match self.txn.open_table(META) {
                Err(TableError::TableDoesNotExist(_)) => {
                    return Err(StoreError::NotAStore {
                        path: path(),
                        detail: "a redb file without rewind's tables".into(),
                    });
                }
                table => table?,
            };
            let Some(stored) = table.get(META_FORMAT)? else {
                return Ok("1 (values without checksums)".to_string());
            };
            let row = layout::meta_row(META_FORMAT);
            let payload = unseal(row, stored.value(), "meta", || format!("{META_FORMAT:?}"))?;
            Ok(decode_u64(META_FORMAT, payload)?.to_string())
        })?;
        match found == FORMAT_VERSION.to_string() {
            true => Ok(()),
            false => Err(StoreError::Format {
                path: path(),
                found,
            }),
        }
    }

    /// The output frontier: every tick strictly below it is final. `None` before the first
    /// commit of output.
    pub fn frontier_ms(&self) -> Result<Option<u64>> {
        self.meta_u64(META_FRONTIER)
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(META)?;
            let Some(stored) = table.get(key)? else {
                return Ok(None);
            };
            let payload = unseal(layout::meta_row(key), stored.value(), "meta", || {
                format!("{key:?}")
            })?;
            Ok(Some(payload.to_vec()))
        })
    }

    /// Every meta entry, in key order.
    pub fn meta_all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(META)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (key, stored) = entry?;
                let key = key.value();
                let row = layout::meta_row(key);
                let payload = unseal(row, stored.value(), "meta", || format!("{key:?}"))?;
                rows.push((key.to_string(), payload.to_vec()));
            }
            Ok(rows)
        })
    }

    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        self.meta(key)?.map(|b| decode_u64(key, &b)).transpose()
    }

    /// The current values of one entity, in feature order.
    pub fn online(&self, entity_kind: &str, entity_id: &str) -> Result<Vec<OnlineRow>> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(ONLINE)?;
            let mut rows = Vec::new();
            for entry in table.range((entity_kind, entity_id, "")..)? {
                let (key, value) = entry?;
                let (kind, id, _) = key.value();
                if kind != entity_kind || id != entity_id {
                    break;
                }
                rows.push(online_row(key.value(), value.value())?);
            }
            Ok(rows)
        })
    }

    /// Every current value: (entity kind, entity id, row).
    pub fn online_all(&self) -> Result<Vec<(String, String, OnlineRow)>> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(ONLINE)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let (kind, id, _) = key.value();
                let row = online_row(key.value(), value.value())?;
                rows.push((kind.to_string(), id.to_string(), row));
            }
            Ok(rows)
        })
    }

    /// The value of `feature` for `entity_id` as of tick `as_of_ms`: the latest history row with
    /// `valid_from <= as_of_ms`. `None` means the default (no row, or a tombstone).
    pub fn as_of(&self, feature: &str, entity_id: &str, as_of_ms: u64) -> Result<Option<Vec<u8>>> {
        self.history_lookup()?.as_of(feature, entity_id, as_of_ms)
    }

    /// The history table opened once, for many point-in-time lookups (training snapshots).
    pub fn history_lookup(&self) -> Result<HistoryLookup> {
        guard::reading(&self.path, || {
            Ok(HistoryLookup {
                table: self.txn.open_table(HISTORY)?,
                path: self.path.clone(),
            })
        })
    }

    /// Every history row, in (feature, entity, valid_from) order.
    pub fn history(&self) -> Result<Vec<HistoryRow>> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(HISTORY)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let key = key.value();
                let (feature, entity_id, valid_from_ms) = key;
                rows.push(HistoryRow {
                    feature: feature.to_string(),
                    entity_id: entity_id.to_string(),
                    valid_from_ms,
                    value_json: history_value(key, value.value())?,
                });
            }
            Ok(rows)
        })
    }

    /// (topic, partition) → next offset to read, for every partition the store has read.
    pub fn next_offsets(&self) -> Result<Vec<(String, u32, u64)>> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(OFFSETS)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let key = key.value();
                let payload = unseal(layout::offsets_row(key), value.value(), "offsets", || {
                    format!("{key:?}")
                })?;
                let next = decode_u64("offsets", payload)?;
                rows.push((key.0.to_string(), key.1, next));
            }
            Ok(rows)
        })
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetterRow>> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(DEAD_LETTERS)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let key = key.value();
                let row = layout::dead_letter_row(key);
                let describe = || format!("{key:?}");
                let payload = unseal(row, value.value(), "dead_letters", describe)?;
                let (topic, partition, offset) = key;
                rows.push(DeadLetterRow {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    reason: String::from_utf8_lossy(payload).into_owned(),
                });
            }
            Ok(rows)
        })
    }
}

fn online_row(key: (&str, &str, &str), (valid_from_ms, stored): (u64, &[u8])) -> Result<OnlineRow> {
    let row = layout::online_row(key, valid_from_ms);
    let json = unseal(row, stored, "online", || format!("{key:?}"))?;
    Ok(OnlineRow {
        feature: key.2.to_string(),
        valid_from_ms,
        value_json: json.to_vec(),
    })
}
