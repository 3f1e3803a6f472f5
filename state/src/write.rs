//! One commit's writes: history blocks appended after every tick already written, one
//! read-modify-write of each touched entity's online row, then offsets, dead letters and meta,
//! and last the retention purge ([`crate::retention`]) the new frontier makes due.
//!
//! Why this shape: a B-tree insert at a random key copies a leaf page, and a commit copies
//! each page it touches once. Time-major blocks touch only the tree's right edge, and packing an
//! entity's features in one row makes a commit touch one online row per entity, not one per
//! (entity, feature). Both are inserted in key order, leaf by leaf.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};

use crate::catalog::{self, Catalog};
use crate::codec::{self, Head, OnlineFeature};
use crate::erase::{self, Erased};
use crate::layout::{self, BLOCK_BYTES, DEAD_LETTERS, HISTORY, META, OFFSETS, ONLINE};
use crate::retention::{self, Purged};
use crate::{Commit, META_FRONTIER, Result, StoreError};

/// One change, keyed as history keeps it.
struct Row<'c> {
    tick_ms: u64,
    /// Feature index (big-endian), then the entity's bytes.
    key: &'c [u8],
    kind: &'c str,
    value: Option<&'c [u8]>,
}

impl Row<'_> {
    fn entity(&self) -> &[u8] {
        &self.key[2..]
    }

    fn feature(&self) -> u16 {
        u16::from_be_bytes([self.key[0], self.key[1]])
    }
}

/// Writes `commit` into `txn`, adding features new to `catalog` to it.
pub(crate) fn commit(
    txn: &WriteTransaction,
    catalog: &mut Catalog,
    commit: &Commit,
) -> Result<Purged> {
    let mut erased = Erased::default();
    let erasing = erase::apply(txn, &commit.erasures, commit.frontier_ms, &mut erased)?;
    let (keys, spans) = keys(txn, catalog, commit)?;
    let mut rows = rows(commit, &keys, &spans);
    if !erasing.is_empty() {
        erased.changes_dropped = drop_erased(&mut rows, &erasing);
    }
    let mut online = read_online(txn, &rows)?;
    let blocks = chain(&rows, &mut online)?;
    {
        let mut history = txn.open_table(HISTORY)?;
        if let (Some(first), Some((last, _))) = (rows.first(), history.last()?) {
            let last_ms = last.value().0;
            if first.tick_ms <= last_ms {
                return Err(StoreError::TickWritten {
                    tick_ms: first.tick_ms,
                    last_ms,
                });
            }
        }
        for (tick_ms, first_key, payload) in &blocks {
            let sealed = layout::history_block(*tick_ms, first_key).seal(payload);
            history.insert((*tick_ms, first_key.as_slice()), sealed.as_slice())?;
        }
    }
    write_online(txn, &online)?;
    write_positions(txn, commit)?;
    let mut purged = match commit.retention_ms {
        Some(retention_ms) => retention::purge(txn, commit.frontier_ms, retention_ms)?,
        None => Purged::default(),
    };
    purged.erased = erased;
    Ok(purged)
}

/// Drops the changes of erased entities before their erasure's tick, and then, per key, their
/// returns to the default before the key's first value: the erasure left the entity no history,
/// so such a change changes nothing. Returns how many were dropped.
fn drop_erased(rows: &mut Vec<Row<'_>>, erasing: &erase::Erasing) -> u64 {
    let before = rows.len();
    // Keys of erased entities that have had a value since the erasure. Rows are in (tick, key)
    // order, so a key's rows come in time order.
    let mut valued: std::collections::HashSet<&[u8]> = Default::default();
    rows.retain(|row| {
        let Some(tick_ms) = erasing.erased_before(row.kind, row.entity()) else {
            return true;
        };
        if row.tick_ms < tick_ms {
            return false;
        }
        match row.value {
            Some(_) => {
                valued.insert(row.key);
                true
            }
            None => valued.contains(row.key),
        }
    });
    (before - rows.len()) as u64
}

/// A commit's history keys in one buffer, and each change's (start, end) in it.
type Keys = (Vec<u8>, Vec<(usize, usize)>);

/// The history key of each change, one after another in one buffer (a commit has one per
/// change; an allocation each cost more than the rest of their making), and each change's span
/// in it. Features new to `catalog` are added to it.
fn keys(txn: &WriteTransaction, catalog: &mut Catalog, commit: &Commit) -> Result<Keys> {
    let mut added = Vec::new();
    let mut known: Vec<((&str, &str), u16)> = Vec::new();
    let mut keys = Vec::with_capacity(commit.changes.len() * 20);
    let mut spans = Vec::with_capacity(commit.changes.len());
    for c in &commit.changes {
        let names = (c.entity_kind, c.feature);
        // Names are most often the same static strings: their addresses decide at once.
        let same = |n: &(&str, &str)| {
            (std::ptr::eq(n.0, names.0) && std::ptr::eq(n.1, names.1)) || *n == names
        };
        let feature = match known.iter().find(|(n, _)| same(n)) {
            Some((_, index)) => *index,
            None => {
                let (index, row) = catalog
                    .index_or_add(c.entity_kind, c.feature)
                    .ok_or(StoreError::CatalogFull)?;
                added.extend(row.map(|r| (index, r)));
                known.push((names, index));
                index
            }
        };
        let start = keys.len();
        codec::put_key(&mut keys, feature, c.entity_id.as_ref());
        spans.push((start, keys.len()));
    }
    catalog::insert(txn, &added)?;
    Ok((keys, spans))
}

/// The changes as rows in (tick, key) order, one per key and tick (the last given wins).
fn rows<'c>(commit: &'c Commit, keys: &'c [u8], spans: &[(usize, usize)]) -> Vec<Row<'c>> {
    let mut rows: Vec<Row<'c>> = commit
        .changes
        .iter()
        .zip(spans)
        .map(|(c, (start, end))| Row {
            tick_ms: c.tick_ms,
            key: &keys[*start..*end],
            kind: c.entity_kind,
            value: c.value.as_deref(),
        })
        .collect();
    // Stable: of two changes of one key at one tick, the later stays last.
    rows.sort_by(|a, b| (a.tick_ms, a.key).cmp(&(b.tick_ms, b.key)));
    let mut deduped: Vec<Row<'c>> = Vec::with_capacity(rows.len());
    for row in rows {
        match deduped.last_mut() {
            Some(last) if last.tick_ms == row.tick_ms && last.key == row.key => *last = row,
            _ => deduped.push(row),
        }
    }
    deduped
}

/// (tick, first key, payload).
type Block = (u64, Vec<u8>, Vec<u8>);

/// The online rows of the entities a commit touches, in key order, and which one each change
/// touches (by index, as the changes are ordered).
struct OnlineRows<'r> {
    entities: Vec<(&'r str, &'r [u8], Vec<OnlineFeature>)>,
    of_row: Vec<usize>,
}

/// The online rows of every entity the rows touch, read in key order.
fn read_online<'r>(txn: &WriteTransaction, rows: &'r [Row<'_>]) -> Result<OnlineRows<'r>> {
    let mut index: foldhash::HashMap<(&'r str, &'r [u8]), usize> =
        HashMap::with_capacity_and_hasher(rows.len(), Default::default());
    let mut keys = Vec::new();
    let mut first: Vec<usize> = Vec::with_capacity(rows.len());
    for row in rows {
        let key = (row.kind, row.entity());
        let next = keys.len();
        let e = *index.entry(key).or_insert_with(|| {
            keys.push(key);
            next
        });
        first.push(e);
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
    let mut rank = vec![0; keys.len()];
    for (r, e) in order.iter().enumerate() {
        rank[*e] = r;
    }
    let table = txn.open_table(ONLINE)?;
    let mut entities = Vec::with_capacity(keys.len());
    for e in order {
        let (kind, entity) = keys[e];
        let features = match table.get((kind, entity))? {
            Some(stored) => crate::read::online_features(kind, entity, stored.value())?,
            None => Vec::new(),
        };
        entities.push((kind, entity, features));
    }
    let of_row = first.into_iter().map(|e| rank[e]).collect();
    Ok(OnlineRows { entities, of_row })
}

/// Links each row into its key's chain, updating the online rows; returns the history blocks
/// as (tick, first key, payload).
fn chain<'r>(rows: &'r [Row<'_>], online: &mut OnlineRows<'r>) -> Result<Vec<Block>> {
    let pointers = link(rows, online)?;
    let mut blocks = Vec::new();
    let mut block: Option<Block> = None;
    for (row, pointers) in rows.iter().zip(pointers) {
        if block
            .as_ref()
            .is_some_and(|(tick, _, _)| *tick != row.tick_ms)
        {
            blocks.extend(block.take());
        }
        let (_, first_key, payload) =
            block.get_or_insert_with(|| (row.tick_ms, row.key.to_vec(), Vec::new()));
        let before = payload.len();
        codec::put_entry(payload, row.key, row.tick_ms, pointers, row.value);
        // The entry goes to a block of its own when it would take this one's row past a page
        // run: that costs redb twice the space, written at every commit.
        if before > 0 && layout::history_row_bytes(first_key, payload) > BLOCK_BYTES {
            payload.truncate(before);
            blocks.extend(block.take());
            let mut payload = Vec::new();
            codec::put_entry(&mut payload, row.key, row.tick_ms, pointers, row.value);
            block = Some((row.tick_ms, row.key.to_vec(), payload));
        }
    }
    blocks.extend(block);
    Ok(blocks)
}

/// Each row's (previous, jump) pointers, advancing its key's head and value in the online
/// rows. A key's chain depends only on its own earlier changes, so the rows are linked entity
/// by entity (in tick order within each): an entity's online row is then fetched from memory
/// once, not once for every tick of the commit it changed at.
fn link(rows: &[Row<'_>], online: &mut OnlineRows<'_>) -> Result<Vec<(Option<u64>, Option<u64>)>> {
    // A counting sort of the rows by entity, stable so each key's rows stay in tick order.
    let mut start = vec![0usize; online.entities.len() + 1];
    for e in &online.of_row {
        start[*e + 1] += 1;
    }
    for e in 1..start.len() {
        start[e] += start[e - 1];
    }
    let mut by_entity = vec![0; rows.len()];
    for (i, e) in online.of_row.iter().enumerate() {
        by_entity[start[*e]] = i;
        start[*e] += 1;
    }
    let mut pointers = vec![(None, None); rows.len()];
    for i in by_entity {
        let row = &rows[i];
        let features = &mut online.entities[online.of_row[i]].2;
        let feature = row.feature();
        pointers[i] = match features.binary_search_by_key(&feature, |f| f.feature) {
            Ok(f) => {
                let f = &mut features[f];
                if f.head.tick_ms >= row.tick_ms {
                    return Err(StoreError::TickWritten {
                        tick_ms: row.tick_ms,
                        last_ms: f.head.tick_ms,
                    });
                }
                set_value(&mut f.value, row.value);
                f.head.advance(row.tick_ms)
            }
            Err(f) => {
                let entry = OnlineFeature {
                    feature,
                    value: row.value.map(<[u8]>::to_vec),
                    head: Head::first(row.tick_ms),
                };
                features.insert(f, entry);
                (None, None)
            }
        };
    }
    Ok(pointers)
}

/// Replaces an online value, in the allocation of the one it replaces when that is large
/// enough: a commit replaces one per change.
fn set_value(value: &mut Option<Vec<u8>>, new: Option<&[u8]>) {
    match (value.as_mut(), new) {
        (Some(old), Some(new)) => {
            old.clear();
            old.extend_from_slice(new);
        }
        (_, new) => *value = new.map(<[u8]>::to_vec),
    }
}

fn write_online(txn: &WriteTransaction, online: &OnlineRows<'_>) -> Result<()> {
    let mut table = txn.open_table(ONLINE)?;
    let mut payload = Vec::new();
    for (kind, entity, features) in &online.entities {
        payload.clear();
        codec::put_online(&mut payload, features);
        let sealed = layout::online_row(kind, entity).seal(&payload);
        table.insert((*kind, *entity), sealed.as_slice())?;
    }
    Ok(())
}

fn write_positions(txn: &WriteTransaction, commit: &Commit) -> Result<()> {
    let mut offsets = txn.open_table(OFFSETS)?;
    for (topic, partition, next) in &commit.next_offsets {
        let key = (topic.as_str(), *partition);
        let sealed = layout::offsets_row(key).seal(&next.to_le_bytes());
        offsets.insert(key, sealed.as_slice())?;
    }
    let mut dead = txn.open_table(DEAD_LETTERS)?;
    for d in &commit.dead_letters {
        let key = (d.topic.as_str(), d.partition, d.offset);
        // A restart reads the log again and finds the same dead letters: the first landing
        // keeps its time, so the purge finds each under one time only.
        if dead.get(key)?.is_some() {
            continue;
        }
        let sealed = layout::dead_letter_row(key).seal(d.reason.as_bytes());
        dead.insert(key, sealed.as_slice())?;
        let time_ms = d.time_ms.unwrap_or(commit.frontier_ms);
        retention::stamp_dead_letter(txn, time_ms, key)?;
    }
    let mut meta = txn.open_table(META)?;
    let counters = commit.counters.iter().map(|(k, v)| (*k, *v));
    for (key, value) in std::iter::once((META_FRONTIER, commit.frontier_ms)).chain(counters) {
        let sealed = layout::meta_row(key).seal(&value.to_le_bytes());
        meta.insert(key, sealed.as_slice())?;
    }
    Ok(())
}
