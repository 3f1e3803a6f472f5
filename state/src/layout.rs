//! The file's tables and how their values are sealed, for this crate and for tools that read
//! or plant rows in the file directly (`docs/store.md` describes the same layout in prose).
//!
//! Every value is its payload followed by [`SEAL_BYTES`] of checksum over the table name, the
//! key and the payload; a history tombstone is an empty payload.

use redb::TableDefinition;

pub use crate::seal::{Crc, SEAL_BYTES};

pub const ONLINE: TableDefinition<(&str, &str, &str), (u64, &[u8])> =
    TableDefinition::new("online");
pub const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("history");
pub const OFFSETS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("offsets");
pub const DEAD_LETTERS: TableDefinition<(&str, u32, u64), &[u8]> =
    TableDefinition::new("dead_letters");
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Meta key of the [`crate::FORMAT_VERSION`] a file was created with.
pub const META_FORMAT: &str = "format";

/// An online row's seal covers its valid_from tick too, which sits beside the value.
pub fn online_row((kind, id, feature): (&str, &str, &str), valid_from_ms: u64) -> Crc {
    Crc::row("online")
        .part(kind.as_bytes())
        .part(id.as_bytes())
        .part(feature.as_bytes())
        .int(valid_from_ms)
}

pub fn history_row((feature, id, valid_from_ms): (&str, &str, u64)) -> Crc {
    Crc::row("history")
        .part(feature.as_bytes())
        .part(id.as_bytes())
        .int(valid_from_ms)
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

pub fn meta_row(key: &str) -> Crc {
    Crc::row("meta").part(key.as_bytes())
}
