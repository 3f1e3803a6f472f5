//! Erasure: an entity (a viewer) leaves no trace in the store but the record that it was
//! erased.
//!
//! A commit's [`crate::Erasure`]s are applied in its write transaction, before its changes:
//! - the entity's online row is deleted;
//! - every history entry of the entity is deleted: each feature's chain is walked back from
//!   the online row's head along the previous-change pointers, and the blocks holding the
//!   entries are rewritten without them (re-keyed or removed, as the retention purge does it:
//!   [`crate::retention::drop_entries`]). Other entries keep their ticks, so no other chain
//!   moves, and every other key's point-in-time reads stay exactly what they were;
//! - the commit's own changes of the entity at ticks before the erasure's tick are dropped, and
//!   so, for each feature, are its returns to the default before its first value: after the
//!   deletion the entity has no history, so a return to the default changes nothing. (This keeps
//!   a live store equal to a replay that filtered the entity's old events from the start.)
//! - the erasure is recorded in the *suppression list* (the `erasures` table): the caller's keyed
//!   hash of the pseudonym, the erasure's time `E` and its tick `T_e`, never the pseudonym. It is
//!   the store's proof that the erasure happened, and the retention never purges it: it holds no
//!   viewing data. An erasure is known by its entity and its `E`: one whose entity the list
//!   holds with the same or a later `E` is a repeat (a restarted run hands the erasures of its
//!   log again, maybe at another tick): it is skipped, whatever its tick, so it deletes nothing
//!   the entity wrote since. A later `E` is a new erasure; the list keeps the latest.
//!
//! Deleted rows still lie in the file's free pages (redb reuses pages, it does not zero them),
//! so a commit that erased anything is followed by a scrub ([`crate::Store::scrub`]): the store
//! is copied, row by row, into a fresh file that never held the erased bytes, which then
//! replaces the old one (see `docs/store.md`, "Erasure").

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redb::{ReadableTable, Table, WriteTransaction};

use crate::codec;
use crate::layout::{self, ERASURES, HISTORY, META, ONLINE};
use crate::{Erasure, META_FRONTIER, Result, StoreError};

/// Meta key: how many erasures the store has applied (repeats not counted), `u64` LE.
pub const META_ERASURES: &str = "erasures_total";
/// Meta key: the latest erasure applied: its `E` then its `T_e`, two `u64` LE.
pub const META_LATEST_ERASURE: &str = "latest_erasure";
/// Meta key present while a commit erased rows whose bytes the file may still hold in its free
/// pages: the next scrub (at once, or when a writer opens the store after a crash) clears it.
pub const META_SCRUB_PENDING: &str = "scrub_pending";

/// What one commit's erasures removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Erasures applied (repeats excluded).
    pub erasures: u64,
    /// Erasures the suppression list already held (skipped).
    pub repeats: u64,
    /// Online rows deleted (an erasure of an entity the store never held deletes none).
    pub online_rows: u64,
    pub history_entries: u64,
    pub blocks_rewritten: u64,
    pub blocks_removed: u64,
    /// The commit's own changes of erased entities that were dropped.
    pub changes_dropped: u64,
    /// The scrub that followed (see [`crate::Store::scrub`]).
    pub scrub: Scrubbed,
}

impl Erased {
    pub fn add(&mut self, other: &Erased) {
        self.erasures += other.erasures;
        self.repeats += other.repeats;
        self.online_rows += other.online_rows;
        self.history_entries += other.history_entries;
        self.blocks_rewritten += other.blocks_rewritten;
        self.blocks_removed += other.blocks_removed;
        self.changes_dropped += other.changes_dropped;
        if other.scrub != Scrubbed::default() {
            // The sizes of the latest scrub, the time of all.
            let elapsed = self.scrub.elapsed + other.scrub.elapsed;
            self.scrub = Scrubbed {
                elapsed,
                ..other.scrub
            };
        }
    }
}

/// One entry of the suppression list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasureRecord {
    /// The keyed hash of the erased pseudonym.
    pub token: [u8; 32],
    /// `E`: the erasure's time.
    pub ts_ms: u64,
    /// `T_e`: the tick it landed at.
    pub tick_ms: u64,
}

impl ErasureRecord {
    pub(crate) fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.ts_ms.to_le_bytes());
        out[8..].copy_from_slice(&self.tick_ms.to_le_bytes());
        out
    }

    pub(crate) fn decode(token: [u8; 32], payload: &[u8]) -> Option<ErasureRecord> {
        let (ts, tick) = (payload.get(..8)?, payload.get(8..16)?);
        (payload.len() == 16).then(|| ErasureRecord {
            token,
            ts_ms: u64::from_le_bytes(ts.try_into().expect("8 bytes")),
            tick_ms: u64::from_le_bytes(tick.try_into().expect("8 bytes")),
        })
    }
}

/// What a scrub did: the file's size before and after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrubbed {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub elapsed: std::time::Duration,
}

/// The entities a commit erases, by (kind, entity key bytes): the tick before which their
/// changes in this commit are dropped.
#[derive(Debug, Default)]
pub(crate) struct Erasing {
    /// Entity key bytes → (kind, tick) of each kind erased under those bytes.
    before: HashMap<Vec<u8>, Vec<(&'static str, u64)>>,
}

impl Erasing {
    pub(crate) fn is_empty(&self) -> bool {
        self.before.is_empty()
    }

    /// The tick before which the commit's changes of (`kind`, `entity`) are dropped, when the
    /// commit erases it.
    pub(crate) fn erased_before(&self, kind: &str, entity: &[u8]) -> Option<u64> {
        let kinds = self.before.get(entity)?;
        kinds.iter().find(|(k, _)| *k == kind).map(|(_, t)| *t)
    }

    fn add(&mut self, kind: &'static str, entity: Vec<u8>, tick_ms: u64) {
        let kinds = self.before.entry(entity).or_default();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, t)) => *t = (*t).max(tick_ms),
            None => kinds.push((kind, tick_ms)),
        }
    }
}

/// Applies `erasures` in `txn` (before the commit's changes), returning what they removed and
/// the entities whose changes the commit must filter.
pub(crate) fn apply(
    txn: &WriteTransaction,
    erasures: &[Erasure],
    new_frontier_ms: u64,
    erased: &mut Erased,
) -> Result<Erasing> {
    let mut erasing = Erasing::default();
    if erasures.is_empty() {
        return Ok(erasing);
    }
    let (frontier, retained_from) = {
        let meta = txn.open_table(META)?;
        let read = |k| crate::read::meta_u64_of(&meta, k);
        (
            read(META_FRONTIER)?.unwrap_or(0),
            read(crate::retention::META_RETAINED_FROM)?.unwrap_or(0),
        )
    };
    for e in erasures {
        if is_repeat(txn, e)? {
            erased.repeats += 1;
            continue;
        }
        if e.tick_ms < frontier || e.tick_ms > new_frontier_ms.max(frontier) {
            return Err(StoreError::ErasureTick {
                tick_ms: e.tick_ms,
                frontier_ms: frontier,
                new_frontier_ms,
            });
        }
        let entity = codec::entity_key(e.entity_id.as_ref());
        erase_entity(txn, e.entity_kind, &entity, retained_from, erased)?;
        record(txn, e)?;
        erased.erasures += 1;
        erasing.add(e.entity_kind, entity, e.tick_ms);
    }
    // Only deleted rows leave bytes in free pages: an erasure of an entity the store never
    // held (or a repeat) needs no scrub.
    if erased.online_rows > 0 {
        let sealed = layout::meta_row(META_SCRUB_PENDING).seal(&1u64.to_le_bytes());
        txn.open_table(META)?
            .insert(META_SCRUB_PENDING, sealed.as_slice())?;
    }
    Ok(erasing)
}

/// Whether the suppression list holds this erasure already (its entity, at the same `E`), or
/// a later one of its entity.
fn is_repeat(txn: &WriteTransaction, e: &Erasure) -> Result<bool> {
    let table = txn.open_table(ERASURES)?;
    let held = read_record(&table, e.token)?;
    Ok(held.is_some_and(|r| r.ts_ms >= e.ts_ms))
}

pub(crate) fn read_record(
    table: &impl ReadableTable<[u8; 32], &'static [u8]>,
    token: [u8; 32],
) -> Result<Option<ErasureRecord>> {
    let Some(stored) = table.get(token)? else {
        return Ok(None);
    };
    let bad = || StoreError::Malformed {
        table: "erasures",
        key: hex(&token),
    };
    let payload = layout::erasure_row(&token)
        .open(stored.value())
        .ok_or_else(|| StoreError::Unsealed {
            table: "erasures",
            key: hex(&token),
        })?;
    ErasureRecord::decode(token, payload)
        .map(Some)
        .ok_or_else(bad)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Records `e` in the suppression list and the meta counters.
fn record(txn: &WriteTransaction, e: &Erasure) -> Result<()> {
    let rec = ErasureRecord {
        token: e.token,
        ts_ms: e.ts_ms,
        tick_ms: e.tick_ms,
    };
    let sealed = layout::erasure_row(&e.token).seal(&rec.encode());
    txn.open_table(ERASURES)?
        .insert(e.token, sealed.as_slice())?;
    let mut meta = txn.open_table(META)?;
    let total = crate::read::meta_u64_of(&meta, META_ERASURES)?.unwrap_or(0) + 1;
    let sealed = layout::meta_row(META_ERASURES).seal(&total.to_le_bytes());
    meta.insert(META_ERASURES, sealed.as_slice())?;
    let sealed = layout::meta_row(META_LATEST_ERASURE).seal(&rec.encode());
    meta.insert(META_LATEST_ERASURE, sealed.as_slice())?;
    Ok(())
}

/// Deletes the online row of (`kind`, `entity`) and every history entry its chains reach.
fn erase_entity(
    txn: &WriteTransaction,
    kind: &str,
    entity: &[u8],
    retained_from: u64,
    erased: &mut Erased,
) -> Result<()> {
    let features = {
        let mut online = txn.open_table(ONLINE)?;
        let Some(stored) = online.remove((kind, entity))? else {
            return Ok(());
        };
        crate::read::online_features(kind, entity, stored.value())?
    };
    erased.online_rows += 1;
    let mut history = txn.open_table(HISTORY)?;
    let mut doomed: BTreeMap<u64, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for f in &features {
        let mut key = Vec::with_capacity(20);
        key.extend_from_slice(&f.feature.to_be_bytes());
        key.extend_from_slice(entity);
        let mut at = Some(f.head.tick_ms);
        while let Some(tick_ms) = at {
            let prev = prev_of(&history, tick_ms, &key)?;
            doomed.entry(tick_ms).or_default().insert(key.clone());
            // The change kept at the retention horizon points to purged ones: stop there.
            at = prev.filter(|_| tick_ms > retained_from);
        }
    }
    for (tick_ms, keys) in doomed {
        let dropped = crate::retention::drop_entries(&mut history, tick_ms, &keys)?;
        erased.history_entries += dropped.entries;
        erased.blocks_rewritten += dropped.rewritten;
        erased.blocks_removed += dropped.removed;
    }
    Ok(())
}

/// The previous-change tick of `key`'s entry at `tick_ms`, which its chain says is there.
fn prev_of(
    history: &Table<'_, (u64, &'static [u8]), &'static [u8]>,
    tick_ms: u64,
    key: &[u8],
) -> Result<Option<u64>> {
    let range = (tick_ms, &[][..])..=(tick_ms, key);
    if let Some(block) = history.range::<(u64, &[u8])>(range)?.next_back() {
        let (block_key, stored) = block?;
        let first_key = block_key.value().1;
        let payload = crate::retention::open_block(tick_ms, first_key, stored.value())?;
        for entry in codec::BlockEntries::new(payload, tick_ms) {
            let entry = entry.map_err(|_| crate::retention::malformed(tick_ms, first_key))?;
            if entry.key == key {
                return Ok(entry.prev_ms);
            }
        }
    }
    // Not the id: an error about an erasure must not print what it erases.
    let feature = u16::from_be_bytes([key[0], key[1]]);
    Err(StoreError::Malformed {
        table: "history",
        key: format!(
            "(tick {tick_ms}, feature #{feature}): a change its chain points to is missing"
        ),
    })
}

#[cfg(test)]
mod tests;
