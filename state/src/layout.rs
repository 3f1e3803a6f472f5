//! The file's tables and how their values are sealed, for this crate and for tools that read
//! or plant rows in the file directly (`docs/store.md` describes the same layout in prose;
//! [`crate::codec`] the bytes inside history blocks and online rows).
//!
//! Every value is its payload followed by [`SEAL_BYTES`] of checksum over the table name, the
//! key and the payload.

use redb::TableDefinition;

pub use crate::seal::{Crc, SEAL_BYTES};

/// (entity kind, entity id bytes) → the entity's features, packed: one read per entity.
pub const ONLINE: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("online");
/// (tick, first key of the block) → a block of that tick's changes, sorted by key. Time-major
/// and append-only: a commit adds blocks after every one already written.
pub const HISTORY: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("history");
/// Feature index → (entity kind, feature name): what the indexes in blocks and rows mean.
/// Append-only: an index, once given, means the same feature for the life of the store.
pub const CATALOG: TableDefinition<u16, &[u8]> = TableDefinition::new("catalog");
pub const OFFSETS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("offsets");
pub const DEAD_LETTERS: TableDefinition<(&str, u32, u64), &[u8]> =
    TableDefinition::new("dead_letters");
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (time, topic, partition, offset) → sealed empty value: the event time each dead letter
/// belongs to (see [`crate::DeadLetter::time_ms`]), in time order for the retention purge.
pub const DEAD_LETTER_TIMES: TableDefinition<(u64, &str, u32, u64), &[u8]> =
    TableDefinition::new("dead_letter_times");

/// The suppression list: token (the caller's keyed hash of an erased pseudonym, never the
/// pseudonym) → sealed (`E`, `T_e`), two `u64` LE (see [`crate::erase`]). Never purged.
pub const ERASURES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("erasures");

/// Meta key of the [`crate::FORMAT_VERSION`] a file was created with.
pub const META_FORMAT: &str = "format";

/// A history block's B-tree row (its key, the sealed block, and the leaf page's own header;
/// see [`history_row_bytes`]) stays within this many bytes, unless it holds a single entry
/// larger than that: small enough that a point lookup checks and scans little, large enough
/// that a busy tick is a few B-tree rows, not thousands. A power of two, as redb sizes the page
/// runs it allocates: a row a byte over takes a run twice as large.
pub const BLOCK_BYTES: usize = 32 * 1024;

/// What the B-tree row of a block of `payload` keyed by `first_key` takes in its leaf page, at
/// most: the payload and its seal, the key (the tick, the first key and its length), and the
/// leaf's header and end offsets (redb's leaf layout: 4 bytes of header, 4 per key and per
/// value), rounded up generously.
pub fn history_row_bytes(first_key: &[u8], payload: &[u8]) -> usize {
    const LEAF_AND_KEY_OVERHEAD: usize = 64;
    payload.len() + SEAL_BYTES + first_key.len() + LEAF_AND_KEY_OVERHEAD
}

pub fn online_row(kind: &str, entity: &[u8]) -> Crc {
    Crc::row("online").part(kind.as_bytes()).part(entity)
}

pub fn history_block(tick_ms: u64, first_key: &[u8]) -> Crc {
    Crc::row("history").int(tick_ms).part(first_key)
}

pub fn catalog_row(index: u16) -> Crc {
    Crc::row("catalog").int(index.into())
}

pub fn offsets_row((topic, partition): (&str, u32)) -> Crc {
    Crc::row("offsets")
        .part(topic.as_bytes())
        .int(partition.into())
}

pub fn dead_letter_row((topic, partition, offset): (&str, u32, u64)) -> Crc {
    Crc::row("dead_letters")
        .part(topic.as_bytes())
        .int(partition.into())
        .int(offset)
}

pub fn dead_letter_time_row((time_ms, topic, partition, offset): (u64, &str, u32, u64)) -> Crc {
    Crc::row("dead_letter_times")
        .int(time_ms)
        .part(topic.as_bytes())
        .int(partition.into())
        .int(offset)
}

pub fn erasure_row(token: &[u8; 32]) -> Crc {
    Crc::row("erasures").part(token)
}

pub fn meta_row(key: &str) -> Crc {
    Crc::row("meta").part(key.as_bytes())
}

/// The bytes an online key holds for `entity_id` (a pseudonym packed, any other id as given).
pub fn entity_key(entity_id: &str) -> Vec<u8> {
    crate::codec::entity_key(crate::codec::EntityRef::new(entity_id))
}
