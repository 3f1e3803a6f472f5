//! Reading the store: from the writer's own process ([`crate::Store::snapshot`]) or from another
//! process that opened the file read-only ([`ReadOnlyStore`]). Every read goes through a
//! [`Snapshot`], one redb read transaction, so a reader never sees half a commit. Every row read
//! is checked against its seal, and every read runs inside the guard that turns a damaged file
//! into [`StoreError::Damaged`].
//!
//! Three ways into history: [`HistoryLookup`] for one key at one time (O(log n) blocks along the
//! key's jump pointers), [`HistorySweep`] for everything in time order (training snapshots,
//! verification), and [`Snapshot::history`], every row sorted by key, for tests and tools.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use redb::{ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableError};

use crate::catalog::{Catalog, CatalogCache};
use crate::codec::{self, BlockEntries, BlockEntry, EntityRef, OnlineFeature};
use crate::layout::{
    self, CATALOG, Crc, DEAD_LETTERS, HISTORY, META, META_FORMAT, OFFSETS, ONLINE,
};
use crate::{
    FILE_NAME, FORMAT_VERSION, META_FRONTIER, Result, StoreError, decode_u64, guard, open,
};

/// What keeps a store file's handle open while a snapshot or view of it lives: a scrub may
/// replace the handle meanwhile, and its read transactions need the file.
pub(crate) type Keep = Arc<dyn std::any::Any + Send + Sync>;

/// A read-only handle on a store another process may be writing. It follows the writer's
/// commits, and the writer's scrub when it replaces the file (see [`crate::Store::scrub`]).
pub struct ReadOnlyStore {
    db: std::sync::RwLock<Arc<ReadOnlyDatabase>>,
    pub(crate) path: Arc<Path>,
    catalog: Arc<CatalogCache>,
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
        let store = ReadOnlyStore {
            db: std::sync::RwLock::new(Arc::new(db)),
            path,
            catalog: Arc::default(),
        };
        store.snapshot()?.check_format()?;
        Ok(store)
    }

    /// A consistent view of the newest commit; take a new one to follow the writer.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let (txn, db) = self.begin_read()?;
        Ok(Snapshot::new(
            txn,
            self.path.clone(),
            self.catalog.clone(),
            db,
        ))
    }

    /// A read transaction on the newest commit, and the handle it reads. When a scrub replaced
    /// the file this handle reads, the path is opened again: the new file holds the same store.
    pub(crate) fn begin_read(&self) -> Result<(ReadTransaction, Keep)> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        let txn = guard::reading(&self.path, || Ok(db.begin_read()?))?;
        if !guard::reading(&self.path, || crate::scrub::replaced(&txn))? {
            return Ok((txn, db));
        }
        drop(txn);
        let fresh = Arc::new(open::reader(&self.path)?);
        let txn = guard::reading(&self.path, || Ok(fresh.begin_read()?))?;
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok((txn, fresh))
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

/// Meta entry `key` of `table` (of a read or a write transaction), its seal checked, handed
/// to `f` without a copy; `None` when the entry is absent.
/// The suppression list `txn` sees, in token order.
pub(crate) fn erasures(txn: &ReadTransaction) -> Result<Vec<crate::ErasureRecord>> {
    let table = match txn.open_table(layout::ERASURES) {
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        table => table?,
    };
    let mut rows = Vec::new();
    for entry in table.iter()? {
        let (key, _) = entry?;
        rows.extend(crate::erase::read_record(&table, key.value())?);
    }
    Ok(rows)
}

pub(crate) fn with_meta<R>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    f: impl FnOnce(&[u8]) -> Result<R>,
) -> Result<Option<R>> {
    let Some(stored) = table.get(key)? else {
        return Ok(None);
    };
    f(unseal(
        layout::meta_row(key),
        stored.value(),
        "meta",
        || format!("{key:?}"),
    )?)
    .map(Some)
}

/// A `u64` meta entry of `table`.
pub(crate) fn meta_u64_of(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>> {
    with_meta(table, key, |payload| decode_u64(key, payload))
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

/// An entity's online row, decoded; `kind` and `entity` name it in errors.
pub(crate) fn online_features(
    kind: &str,
    entity: &[u8],
    stored: &[u8],
) -> Result<Vec<OnlineFeature>> {
    let key = || online_key(kind, entity);
    let payload = unseal(layout::online_row(kind, entity), stored, "online", key)?;
    codec::take_online(payload).ok_or_else(|| StoreError::Malformed {
        table: "online",
        key: key(),
    })
}

fn online_key(kind: &str, entity: &[u8]) -> String {
    match codec::take_entity(&mut &entity[..]) {
        Some(id) => format!("({kind:?}, \"{id}\")"),
        None => format!("({kind:?}, {entity:?})"),
    }
}

/// A history block's key as people read it.
fn block_key(tick_ms: u64, first_key: &[u8]) -> String {
    match codec::take_key(&mut &first_key[..]) {
        Some((feature, id, _)) => format!("(tick {tick_ms}, feature #{feature}, \"{id}\")"),
        None => format!("(tick {tick_ms}, {first_key:?})"),
    }
}

type HistoryTable = redb::ReadOnlyTable<(u64, &'static [u8]), &'static [u8]>;
type OnlineTable = redb::ReadOnlyTable<(&'static str, &'static [u8]), &'static [u8]>;

/// One sealed history block: the changes of one tick (or part of them), in key order.
pub struct HistoryBlock {
    pub tick_ms: u64,
    stored: redb::AccessGuard<'static, &'static [u8]>,
    key: String,
}

impl HistoryBlock {
    fn open(
        tick_ms: u64,
        first_key: &[u8],
        stored: redb::AccessGuard<'static, &'static [u8]>,
    ) -> Result<HistoryBlock> {
        let key = block_key(tick_ms, first_key);
        let row = layout::history_block(tick_ms, first_key);
        unseal(row, stored.value(), "history", || key.clone())?;
        Ok(HistoryBlock {
            tick_ms,
            stored,
            key,
        })
    }

    /// The block's changes in key order; an entry that does not decode is damage.
    pub fn entries(&self) -> impl Iterator<Item = Result<BlockEntry<'_>>> {
        let stored = self.stored.value();
        let payload = &stored[..stored.len() - layout::SEAL_BYTES];
        BlockEntries::new(payload, self.tick_ms).map(|e| {
            e.map_err(|_| StoreError::Malformed {
                table: "history",
                key: self.key.clone(),
            })
        })
    }
}

/// Every history block from a tick on, in time order: a training snapshot's sweep.
pub struct HistorySweep {
    range: redb::Range<'static, (u64, &'static [u8]), &'static [u8]>,
    until_ms: u64,
    path: Arc<Path>,
}

impl HistorySweep {
    /// The next block at or before the sweep's last tick, its seal checked.
    pub fn next_block(&mut self) -> Result<Option<HistoryBlock>> {
        guard::reading(&self.path, || {
            let Some(entry) = self.range.next() else {
                return Ok(None);
            };
            let (key, stored) = entry?;
            let (tick_ms, first_key) = key.value();
            // The seal first, also of the block that ends the sweep: a flipped bit that made
            // a tick later must be damage found, not the sweep's silent end.
            let block = HistoryBlock::open(tick_ms, first_key, stored)?;
            if tick_ms > self.until_ms {
                return Ok(None);
            }
            Ok(Some(block))
        })
    }
}

/// Point-in-time lookups in one snapshot's history.
pub struct HistoryLookup {
    online: OnlineTable,
    history: HistoryTable,
    catalog: Arc<Catalog>,
    /// The store's retention horizon: history before it was purged.
    retained_from_ms: u64,
    path: Arc<Path>,
}

/// One change found in history: its tick, its value, and its previous change's tick.
struct Found {
    tick_ms: u64,
    prev_ms: Option<u64>,
    jump_ms: Option<u64>,
    value: Option<Vec<u8>>,
}

impl HistoryLookup {
    /// Every row of (`feature`, `entity_id`) with `valid_from <= until_ms` that the store
    /// still holds (the first is the value as of its retention horizon), oldest first:
    /// `(valid_from, value)`, `None` for a tombstone. One walk answers many lookups.
    pub fn rows(
        &self,
        feature: &str,
        entity_id: &str,
        until_ms: u64,
    ) -> Result<Vec<(u64, Option<Vec<u8>>)>> {
        self.check_retained(until_ms)?;
        guard::reading(&self.path, || {
            let mut rows = Vec::new();
            for (kind, index) in self.indexes(feature) {
                let key = history_key(index, entity_id);
                let mut at = self.latest(&kind, &key, until_ms)?.map(|f| f.tick_ms);
                while let Some(tick_ms) = at {
                    let found = self.entry(tick_ms, &key)?;
                    rows.push((tick_ms, found.value));
                    // The changes before the one valid at the horizon were purged.
                    at = found.prev_ms.filter(|_| tick_ms > self.retained_from_ms);
                }
            }
            // Oldest first; stable, so a kind's own order holds where two kinds share a name.
            rows.reverse();
            rows.sort_by_key(|r| r.0);
            Ok(rows)
        })
    }

    /// The latest history row of (`feature`, `entity_id`) with `valid_from <= as_of_ms`;
    /// `None` means the default (no row, or a tombstone).
    /// A time before the store's retention horizon is [`StoreError::Purged`].
    pub fn as_of(&self, feature: &str, entity_id: &str, as_of_ms: u64) -> Result<Option<Vec<u8>>> {
        self.check_retained(as_of_ms)?;
        guard::reading(&self.path, || {
            for (kind, index) in self.indexes(feature) {
                let key = history_key(index, entity_id);
                if let Some(found) = self.latest(&kind, &key, as_of_ms)? {
                    return Ok(found.value);
                }
            }
            Ok(None)
        })
    }

    /// The store's retention horizon: every point-in-time read at or after it is exact.
    pub fn retained_from_ms(&self) -> u64 {
        self.retained_from_ms
    }

    /// Refuses a time whose history was purged, rather than answer from what is left of it.
    fn check_retained(&self, as_of_ms: u64) -> Result<()> {
        match as_of_ms < self.retained_from_ms {
            true => Err(StoreError::Purged {
                as_of_ms,
                retained_from_ms: self.retained_from_ms,
            }),
            false => Ok(()),
        }
    }

    /// The catalog entries named `feature` (one, unless two entity kinds share a name).
    fn indexes(&self, feature: &str) -> Vec<(String, u16)> {
        // Over usize: a full catalog holds 65,536 entries, and `len() as u16` would be 0.
        (0..self.catalog.len())
            .filter_map(|i| {
                let i = u16::try_from(i).ok()?;
                let (kind, name) = self.catalog.feature(i)?;
                (name == feature).then(|| (kind.to_string(), i))
            })
            .collect()
    }

    /// The latest change of `key` at or before `t`: from the key's online head, back along the
    /// jump pointers (Myers' rule: take the jump while it is still after `t`, else step back
    /// one change), O(log n) blocks.
    fn latest(&self, kind: &str, key: &[u8], t: u64) -> Result<Option<Found>> {
        let entity = &key[2..];
        let feature = u16::from_be_bytes([key[0], key[1]]);
        let Some(stored) = self.online.get((kind, entity))? else {
            return Ok(None);
        };
        let features = online_features(kind, entity, stored.value())?;
        let Some(head) = features.into_iter().find(|f| f.feature == feature) else {
            return Ok(None);
        };
        if head.head.tick_ms <= t {
            let found = Found {
                tick_ms: head.head.tick_ms,
                prev_ms: None,
                jump_ms: None,
                value: head.value,
            };
            return Ok(Some(found));
        }
        let mut at = head.head.tick_ms;
        loop {
            let found = self.entry(at, key)?;
            if at <= t {
                return Ok(Some(found));
            }
            at = match (found.jump_ms, found.prev_ms) {
                (Some(jump), _) if jump > t => jump,
                (_, Some(prev)) => prev,
                (_, None) => return Ok(None),
            };
        }
    }

    fn entry(&self, tick_ms: u64, key: &[u8]) -> Result<Found> {
        self.with_entry(tick_ms, key, |e| Found {
            tick_ms,
            prev_ms: e.prev_ms,
            jump_ms: e.jump_ms,
            value: e.value.map(<[u8]>::to_vec),
        })
    }

    /// `read` of `key`'s change at `tick_ms`, which its chain says is there.
    fn with_entry<T>(
        &self,
        tick_ms: u64,
        key: &[u8],
        read: impl FnOnce(&BlockEntry<'_>) -> T,
    ) -> Result<T> {
        let range = (tick_ms, &[][..])..=(tick_ms, key);
        if let Some(block) = self.history.range::<(u64, &[u8])>(range)?.next_back() {
            let (block_key, stored) = block?;
            let block = HistoryBlock::open(tick_ms, block_key.value().1, stored)?;
            for entry in block.entries() {
                let entry = entry?;
                if entry.key == key {
                    return Ok(read(&entry));
                }
            }
        }
        Err(StoreError::Malformed {
            table: "history",
            key: format!(
                "{}: a change its chain points to is missing",
                block_key(tick_ms, key)
            ),
        })
    }
}

fn history_key(feature: u16, entity_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(20);
    codec::put_key(&mut key, feature, EntityRef::new(entity_id));
    key
}

/// A consistent view of one commit of the store.
pub struct Snapshot {
    txn: ReadTransaction,
    path: Arc<Path>,
    catalog: OnceLock<Arc<Catalog>>,
    cache: Arc<CatalogCache>,
    /// Last: dropped after the transaction that reads it.
    _db: Keep,
}

impl Snapshot {
    pub(crate) fn new(
        txn: ReadTransaction,
        path: Arc<Path>,
        cache: Arc<CatalogCache>,
        db: Keep,
    ) -> Snapshot {
        Snapshot {
            txn,
            path,
            catalog: OnceLock::new(),
            cache,
            _db: db,
        }
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

    /// The feature catalog: what the feature indexes in history blocks mean.
    pub fn catalog(&self) -> Result<&Catalog> {
        if let Some(catalog) = self.catalog.get() {
            return Ok(catalog);
        }
        let catalog = guard::reading(&self.path, || {
            self.cache.get(&self.txn.open_table(CATALOG)?)
        })?;
        Ok(self.catalog.get_or_init(|| catalog))
    }

    /// The output frontier: every tick strictly below it is final. `None` before the first
    /// commit of output.
    pub fn frontier_ms(&self) -> Result<Option<u64>> {
        self.meta_u64(META_FRONTIER)
    }

    /// The retention horizon: history before it was purged, so reads as of an earlier time
    /// are refused ([`StoreError::Purged`]); 0 for a store that never purged.
    pub fn retained_from_ms(&self) -> Result<u64> {
        Ok(self
            .meta_u64(crate::retention::META_RETAINED_FROM)?
            .unwrap_or(0))
    }

    /// The retention the store was last written with, if any.
    pub fn retention_ms(&self) -> Result<Option<u64>> {
        self.meta_u64(crate::retention::META_RETENTION)
    }

    /// Every dead letter's landing time: (time, topic, partition, offset), oldest first. A
    /// store written before dead letters had times has none until a writer opens it.
    pub fn dead_letter_times(&self) -> Result<Vec<(u64, String, u32, u64)>> {
        guard::reading(&self.path, || {
            let table = match self.txn.open_table(layout::DEAD_LETTER_TIMES) {
                Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                table => table?,
            };
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let key = key.value();
                let row = layout::dead_letter_time_row(key);
                unseal(row, value.value(), "dead_letter_times", || {
                    format!("{key:?}")
                })?;
                rows.push((key.0, key.1.to_string(), key.2, key.3));
            }
            Ok(rows)
        })
    }

    /// How many erasures the store has applied (repeats of one already applied not counted).
    pub fn erasures_applied(&self) -> Result<u64> {
        Ok(self.meta_u64(crate::erase::META_ERASURES)?.unwrap_or(0))
    }

    /// The latest erasure applied: (`E`, its time; `T_e`, the tick it landed at).
    pub fn latest_erasure(&self) -> Result<Option<(u64, u64)>> {
        let key = crate::erase::META_LATEST_ERASURE;
        let Some(payload) = self.meta(key)? else {
            return Ok(None);
        };
        let record = crate::erase::ErasureRecord::decode([0; 32], &payload)
            .ok_or_else(|| StoreError::BadMeta { key: key.into() })?;
        Ok(Some((record.ts_ms, record.tick_ms)))
    }

    /// The suppression list's entry for `token`, if the store erased that entity.
    pub fn erasure(&self, token: [u8; 32]) -> Result<Option<crate::ErasureRecord>> {
        guard::reading(&self.path, || match self.txn.open_table(layout::ERASURES) {
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            table => crate::erase::read_record(&table?, token),
        })
    }

    /// The whole suppression list, in token order (an older store without one has none).
    pub fn erasures(&self) -> Result<Vec<crate::ErasureRecord>> {
        guard::reading(&self.path, || erasures(&self.txn))
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        guard::reading(&self.path, || {
            with_meta(&self.txn.open_table(META)?, key, |p| Ok(p.to_vec()))
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

    /// The current values of one entity, in feature order: one read.
    pub fn online(&self, entity_kind: &str, entity_id: &str) -> Result<Vec<OnlineRow>> {
        let catalog = self.catalog()?;
        guard::reading(&self.path, || {
            let table = self.txn.open_table(ONLINE)?;
            let entity = layout::entity_key(entity_id);
            let Some(stored) = table.get((entity_kind, entity.as_slice()))? else {
                return Ok(Vec::new());
            };
            let features = online_features(entity_kind, &entity, stored.value())?;
            online_rows(catalog, entity_kind, &entity, features)
        })
    }

    /// Every current value: (entity kind, entity id, row), in that order.
    pub fn online_all(&self) -> Result<Vec<(String, String, OnlineRow)>> {
        let catalog = self.catalog()?;
        let mut all = guard::reading(&self.path, || {
            let table = self.txn.open_table(ONLINE)?;
            let mut all = Vec::new();
            for entry in table.iter()? {
                let (key, stored) = entry?;
                let (kind, entity) = key.value();
                let features = online_features(kind, entity, stored.value())?;
                let id =
                    codec::take_entity(&mut &entity[..]).ok_or_else(|| StoreError::Malformed {
                        table: "online",
                        key: online_key(kind, entity),
                    })?;
                let id = id.to_string();
                for row in online_rows(catalog, kind, entity, features)? {
                    all.push((kind.to_string(), id.clone(), row));
                }
            }
            Ok(all)
        })?;
        all.sort_unstable_by(|a, b| (&a.0, &a.1, &a.2.feature).cmp(&(&b.0, &b.1, &b.2.feature)));
        Ok(all)
    }

    /// The value of `feature` for `entity_id` as of tick `as_of_ms`: the latest history row with
    /// `valid_from <= as_of_ms`. `None` means the default (no row, or a tombstone).
    pub fn as_of(&self, feature: &str, entity_id: &str, as_of_ms: u64) -> Result<Option<Vec<u8>>> {
        self.history_lookup()?.as_of(feature, entity_id, as_of_ms)
    }

    /// The tables opened once, for many point-in-time lookups.
    pub fn history_lookup(&self) -> Result<HistoryLookup> {
        self.catalog()?;
        let catalog = self.catalog.get().expect("loaded just above").clone();
        let retained_from_ms = self.retained_from_ms()?;
        guard::reading(&self.path, || {
            Ok(HistoryLookup {
                online: self.txn.open_table(ONLINE)?,
                history: self.txn.open_table(HISTORY)?,
                catalog,
                retained_from_ms,
                path: self.path.clone(),
            })
        })
    }

    /// Every history block with a tick in `from_ms..=until_ms`, in time order.
    pub fn sweep(&self, from_ms: u64, until_ms: u64) -> Result<HistorySweep> {
        guard::reading(&self.path, || {
            let table = self.txn.open_table(HISTORY)?;
            let range = table.range::<(u64, &[u8])>((from_ms, &[][..])..)?;
            Ok(HistorySweep {
                range,
                until_ms,
                path: self.path.clone(),
            })
        })
    }

    /// Every history row, in (feature, entity, valid_from) order.
    pub fn history(&self) -> Result<Vec<HistoryRow>> {
        let catalog = self.catalog()?;
        let mut sweep = self.sweep(0, u64::MAX)?;
        let mut rows = Vec::new();
        while let Some(block) = sweep.next_block()? {
            for entry in block.entries() {
                let entry = entry?;
                let (_, feature) =
                    catalog
                        .feature(entry.feature)
                        .ok_or_else(|| StoreError::Malformed {
                            table: "history",
                            key: format!("{}: a feature the catalog lacks", block.key),
                        })?;
                rows.push(HistoryRow {
                    feature: feature.to_string(),
                    entity_id: entry.entity.to_string(),
                    valid_from_ms: block.tick_ms,
                    value_json: entry.value.map(<[u8]>::to_vec),
                });
            }
        }
        rows.sort_unstable();
        Ok(rows)
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

/// The features of one online row that hold a value (not back at their default), by name.
fn online_rows(
    catalog: &Catalog,
    kind: &str,
    entity: &[u8],
    features: Vec<OnlineFeature>,
) -> Result<Vec<OnlineRow>> {
    let mut rows = Vec::with_capacity(features.len());
    for f in features {
        let Some(value) = f.value else { continue };
        let (_, name) = catalog
            .feature(f.feature)
            .ok_or_else(|| StoreError::Malformed {
                table: "online",
                key: format!("{}: a feature the catalog lacks", online_key(kind, entity)),
            })?;
        rows.push(OnlineRow {
            feature: name.to_string(),
            valid_from_ms: f.head.tick_ms,
            value_json: value,
        });
    }
    rows.sort_unstable_by(|a, b| a.feature.cmp(&b.feature));
    Ok(rows)
}
