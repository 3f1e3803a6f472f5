//! Retention: the purge that keeps no row older than the store's retention, run inside the
//! commit that advances the frontier, so a reader sees the store before a purge or after it,
//! never half of one.
//!
//! The store's *horizon* is `frontier - retention` (it never moves back). A history change at
//! tick `t` of key `k` is valid until `k`'s next change at `t'`; it goes once `t' <= horizon`.
//! The latest change of each key at or before the horizon stays: it is still the value as of
//! the horizon, so every point-in-time read at or after the horizon is exactly what it was.
//! Reads before it are refused ([`crate::StoreError::Purged`]).
//!
//! How a commit finds its work without rescanning history: the entry that makes `(t, k)`
//! purgeable is its successor `(t', k)`, which points back to `t` (its previous change). So
//! when the horizon moves from `h0` to `h1`, the blocks at ticks in `(h0, h1]` name, through
//! their entries' previous-change pointers, every entry that became purgeable, and nothing
//! else: each block is read once more in its life, when the horizon passes it. The blocks
//! those entries live in are rewritten without them (re-keyed when their first entry goes,
//! removed when empty). Other entries keep their ticks, so no other chain moves.
//!
//! A dead letter has no event time of its own: it gets its partition's event-time frontier
//! when it was read (the time the records around it had reached), or, when its partition had
//! no time yet, the frontier of the commit that lands it. `dead_letter_times` keeps it keyed
//! by (that time, topic, partition, offset), so the ones past the horizon are a range at the
//! front of that table.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, Table, TableError, WriteTransaction};

use crate::codec::{self, BlockEntries};
use crate::layout::{self, DEAD_LETTER_TIMES, DEAD_LETTERS, HISTORY, META};
use crate::{META_FRONTIER, Result, StoreError};

/// The longest retention a store may have: 365 days, the limit VPPA (18 U.S.C. § 2710(e))
/// sets for destroying viewing records.
pub const MAX_RETENTION_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// Meta key: the retention the store was last written with, in ms (`u64` LE).
pub const META_RETENTION: &str = "retention_ms";
/// Meta key: the store's horizon, in ms (`u64` LE). History before it was purged: reads as of
/// a time before it are refused, reads at or after it are exact.
pub const META_RETAINED_FROM: &str = "retained_from_ms";

/// What one commit's purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub history_entries: u64,
    pub blocks_rewritten: u64,
    pub blocks_removed: u64,
    pub dead_letters: u64,
    /// What the commit's erasures removed (see [`crate::erase`]).
    pub erased: crate::Erased,
    /// Time spent purging (inside the commit's transaction, before its fsync).
    pub elapsed: std::time::Duration,
}

impl Purged {
    /// Sums another commit's purge into this one.
    pub fn add(&mut self, other: &Purged) {
        self.history_entries += other.history_entries;
        self.blocks_rewritten += other.blocks_rewritten;
        self.blocks_removed += other.blocks_removed;
        self.dead_letters += other.dead_letters;
        self.erased.add(&other.erased);
        self.elapsed += other.elapsed;
    }
}

/// The stored value of a `u64` meta entry, if any.
fn meta_u64(txn: &WriteTransaction, key: &str) -> Result<Option<u64>> {
    crate::read::meta_u64_of(&txn.open_table(META)?, key)
}

fn put_meta_u64(txn: &WriteTransaction, key: &str, value: u64) -> Result<()> {
    let sealed = layout::meta_row(key).seal(&value.to_le_bytes());
    txn.open_table(META)?.insert(key, sealed.as_slice())?;
    Ok(())
}

/// Records the time of the dead letter at `key`.
pub(crate) fn stamp_dead_letter(
    txn: &WriteTransaction,
    time_ms: u64,
    (topic, partition, offset): (&str, u32, u64),
) -> Result<()> {
    let key = (time_ms, topic, partition, offset);
    let sealed = layout::dead_letter_time_row(key).seal(&[]);
    txn.open_table(DEAD_LETTER_TIMES)?
        .insert(key, sealed.as_slice())?;
    Ok(())
}

/// Purges, in `txn`, everything that is older than `retention_ms` once the frontier is
/// `frontier_ms`, and records the retention and the new horizon.
pub(crate) fn purge(txn: &WriteTransaction, frontier_ms: u64, retention_ms: u64) -> Result<Purged> {
    let started = std::time::Instant::now();
    let from = meta_u64(txn, META_RETAINED_FROM)?;
    let old = from.unwrap_or(0);
    let horizon = frontier_ms.saturating_sub(retention_ms).max(old);
    put_meta_u64(txn, META_RETENTION, retention_ms)?;
    put_meta_u64(txn, META_RETAINED_FROM, horizon)?;
    let mut purged = Purged::default();
    // A store's first purge also covers tick 0; later ones start just past the old horizon,
    // whose blocks an earlier purge already read.
    let start = match from {
        Some(h) => h.saturating_add(1),
        None => 0,
    };
    if horizon >= start {
        purge_history(txn, start, horizon, &mut purged)?;
    }
    purge_dead_letters(txn, horizon, &mut purged)?;
    purged.elapsed = started.elapsed();
    Ok(purged)
}

/// Removes every history entry whose successor lies at a tick in `from..=until`.
fn purge_history(txn: &WriteTransaction, from: u64, until: u64, purged: &mut Purged) -> Result<()> {
    let mut history = txn.open_table(HISTORY)?;
    // By tick, the keys whose change at that tick has a successor at or before `until`.
    let mut doomed: BTreeMap<u64, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for block in history.range::<(u64, &[u8])>((from, &[][..])..)? {
        let (key, stored) = block?;
        let (tick_ms, first_key) = key.value();
        if tick_ms > until {
            break;
        }
        let payload = open_block(tick_ms, first_key, stored.value())?;
        for entry in BlockEntries::new(payload, tick_ms) {
            let entry = entry.map_err(|_| malformed(tick_ms, first_key))?;
            if let Some(prev) = entry.prev_ms {
                doomed.entry(prev).or_default().insert(entry.key.to_vec());
            }
        }
    }
    for (tick_ms, keys) in doomed {
        let dropped = drop_entries(&mut history, tick_ms, &keys)?;
        purged.history_entries += dropped.entries;
        purged.blocks_rewritten += dropped.rewritten;
        purged.blocks_removed += dropped.removed;
    }
    Ok(())
}

/// What [`drop_entries`] did to one tick's blocks.
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    pub entries: u64,
    pub rewritten: u64,
    pub removed: u64,
}

/// Rewrites the blocks of `tick_ms` without the entries of `keys` (resealed, re-keyed when
/// their first entry goes: a block is keyed by its first key; removed when nothing is left).
/// The entries that stay keep their tick, so no other chain moves. Every key must be there: a
/// chain pointed to each, and one that is missing is a broken chain, which a purge or an
/// erasure must not paper over.
pub(crate) fn drop_entries(
    history: &mut Table<'_, (u64, &'static [u8]), &'static [u8]>,
    tick_ms: u64,
    keys: &BTreeSet<Vec<u8>>,
) -> Result<Dropped> {
    let mut blocks = Vec::new();
    let range = (tick_ms, &[][..])..(tick_ms.saturating_add(1), &[][..]);
    for block in history.range::<(u64, &[u8])>(range)? {
        let (key, stored) = block?;
        let first_key = key.value().1.to_vec();
        let payload = open_block(tick_ms, &first_key, stored.value())?.to_vec();
        blocks.push((first_key, payload));
    }
    let mut dropped = Dropped::default();
    for (first_key, payload) in blocks {
        let mut kept = Vec::with_capacity(payload.len());
        let mut kept_first: Option<Vec<u8>> = None;
        let mut gone = 0;
        for entry in BlockEntries::new(&payload, tick_ms) {
            let entry = entry.map_err(|_| malformed(tick_ms, &first_key))?;
            if keys.contains(entry.key) {
                gone += 1;
                continue;
            }
            kept_first.get_or_insert_with(|| entry.key.to_vec());
            let pointers = (entry.prev_ms, entry.jump_ms);
            codec::put_entry(&mut kept, entry.key, tick_ms, pointers, entry.value);
        }
        if gone == 0 {
            continue;
        }
        dropped.entries += gone;
        history.remove((tick_ms, first_key.as_slice()))?;
        match kept_first {
            None => dropped.removed += 1,
            Some(first) => {
                let sealed = layout::history_block(tick_ms, &first).seal(&kept);
                history.insert((tick_ms, first.as_slice()), sealed.as_slice())?;
                dropped.rewritten += 1;
            }
        }
    }
    if dropped.entries != keys.len() as u64 {
        return Err(StoreError::Malformed {
            table: "history",
            key: format!("(tick {tick_ms}): a change its chain points to is missing"),
        });
    }
    Ok(dropped)
}

pub(crate) fn open_block<'a>(tick_ms: u64, first_key: &[u8], stored: &'a [u8]) -> Result<&'a [u8]> {
    layout::history_block(tick_ms, first_key)
        .open(stored)
        .ok_or_else(|| StoreError::Unsealed {
            table: "history",
            key: format!("(tick {tick_ms}, {first_key:?})"),
        })
}

pub(crate) fn malformed(tick_ms: u64, first_key: &[u8]) -> StoreError {
    StoreError::Malformed {
        table: "history",
        key: format!("(tick {tick_ms}, {first_key:?})"),
    }
}

/// Removes the dead letters that landed before `horizon`.
fn purge_dead_letters(txn: &WriteTransaction, horizon: u64, purged: &mut Purged) -> Result<()> {
    let mut times = txn.open_table(DEAD_LETTER_TIMES)?;
    let mut dead = txn.open_table(DEAD_LETTERS)?;
    let gone: Vec<(u64, String, u32, u64)> = times
        .range::<(u64, &str, u32, u64)>(..(horizon, "", 0, 0))?
        .map(|row| {
            let (key, _) = row?;
            let (t, topic, partition, offset) = key.value();
            Ok((t, topic.to_string(), partition, offset))
        })
        .collect::<Result<_>>()?;
    for (t, topic, partition, offset) in &gone {
        times.remove((*t, topic.as_str(), *partition, *offset))?;
        dead.remove((topic.as_str(), *partition, *offset))?;
    }
    purged.dead_letters += gone.len() as u64;
    Ok(())
}

/// Gives a store written before dead letters had times its `dead_letter_times` table, each
/// dead letter stamped with the store's frontier (the earliest time this store can vouch
/// for: it purges them one retention from now, never before the data around them).
pub(crate) fn upgrade(db: &redb::Database) -> Result<()> {
    {
        let read = redb::ReadableDatabase::begin_read(db)?;
        match read.open_table(DEAD_LETTER_TIMES) {
            Ok(_) => return Ok(()),
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let txn = db.begin_write()?;
    let frontier = meta_u64(&txn, META_FRONTIER)?.unwrap_or(0);
    let keys: Vec<(String, u32, u64)> = {
        let dead = txn.open_table(DEAD_LETTERS)?;
        dead.iter()?
            .map(|row| {
                let (key, _) = row?;
                let (topic, partition, offset) = key.value();
                Ok((topic.to_string(), partition, offset))
            })
            .collect::<Result<_>>()?
    };
    txn.open_table(DEAD_LETTER_TIMES)?;
    for (topic, partition, offset) in &keys {
        stamp_dead_letter(&txn, frontier, (topic, *partition, *offset))?;
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests;
