//! The scrub: after an erasure, no byte of what it deleted may remain in the store's files.
//!
//! redb never zeroes a page it frees: a deleted row lives on in the file's free pages until the
//! page is reused, and a reused page may keep old bytes past its new contents. Compaction
//! (`Database::compact`) moves live pages down and truncates the file, but it copies whole
//! pages, stale tails included, and leaves holes the buddy allocator cannot fill: it makes the
//! file smaller, not clean. So the scrub copies the store, row by row, into a fresh file (which
//! never held a deleted byte: it only ever received live rows), and renames it over the old one.
//!
//! With readers in other processes (`rewind serve`, `rewind get`, any [`crate::ReadOnlyStore`]):
//! - The fresh file is opened for writing *before* it is renamed into place, so redb's writer
//!   lock is held on it from the moment the store's path names it: no second writer can slip in.
//! - A reader that holds the old file keeps reading it (its pages stay valid: the old file is
//!   only unlinked, never changed under it) until its read transaction ends. Once the rename is
//!   done, a last commit to the old file marks it replaced ([`META_REPLACED`]); a reader's next
//!   snapshot or view sees the mark and reopens the path, so readers follow within one read.
//!   The old file's bytes are gone from the directory at the rename, and from the disk when the
//!   last reader lets go of it.
//! - A crash before the rename leaves the store as the erasure's commit left it, with
//!   [`crate::erase::META_SCRUB_PENDING`] set: the next writer to open it scrubs first. A
//!   half-written fresh file is removed then (it only ever held live rows).

use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, TableError,
    Value, WriteTransaction,
};

use crate::erase::{META_SCRUB_PENDING, Scrubbed};
use crate::layout::{
    CATALOG, DEAD_LETTER_TIMES, DEAD_LETTERS, ERASURES, HISTORY, META, OFFSETS, ONLINE,
};
use crate::{FILE_NAME, Result, StoreError, open};

/// The fresh file's page cache: the copy streams through it, so it bounds the scrub's memory
/// rather than speeding it up (redb's default is 1 GiB).
const SCRUB_CACHE_BYTES: usize = 64 << 20;

/// Meta key written to a store file once a scrub has replaced it: a reader holding it reopens
/// the path.
pub const META_REPLACED: &str = "replaced";

/// The fresh file a scrub by this process builds.
fn temp_path(path: &Path) -> PathBuf {
    path.with_file_name(format!("{FILE_NAME}.{}.scrub", std::process::id()))
}

/// Removes fresh files that scrubs left behind (a crash before their rename). Only the writer,
/// holding the store's lock, calls this, so no live scrub owns one.
pub(crate) fn remove_leftovers(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!("{FILE_NAME}.")) && name.ends_with(".scrub") {
            std::fs::remove_file(entry.path()).map_err(|source| StoreError::Create {
                path: entry.path(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Copies the newest commit of `old` into a fresh file at `path`'s side, renames it over
/// `path`, marks `old` replaced, and returns the fresh file opened for writing.
pub(crate) fn rewrite(old: &Database, path: &Path) -> Result<(Database, Scrubbed)> {
    let fresh = copy_fresh(&old.begin_read()?, path)?;
    install(fresh, old, path)
}

/// A fresh file holding a copy of one commit of the store, beside it, not yet in its place.
pub(crate) struct Fresh {
    pub(crate) db: Database,
    temp: PathBuf,
    started: Instant,
    bytes_before: u64,
}

/// Copies the commit `from` reads into a fresh file at `path`'s side. Needs no lock of the
/// store: a writer may go on committing to the old file meanwhile (see
/// [`crate::Store::commit`] for how those commits reach the fresh file).
pub(crate) fn copy_fresh(from: &ReadTransaction, path: &Path) -> Result<Fresh> {
    let started = Instant::now();
    let bytes_before = file_len(path);
    let temp = temp_path(path);
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(StoreError::Create {
                path: temp,
                source: e,
            });
        }
        _ => {}
    }
    let mut fresh = open::builder()
        .set_cache_size(SCRUB_CACHE_BYTES)
        .create(&temp)
        .map_err(|e| open::opening(&temp, e, ""))?;
    let copied = copy_all(from, &fresh).and_then(|()| {
        // No reader can hold the fresh file yet: compaction is safe, and packs the leaves the
        // copy's splits left half full.
        match fresh.compact() {
            Ok(_) => Ok(()),
            Err(redb::CompactionError::Storage(e)) => Err(StoreError::Storage(e)),
            // Savepoints and transactions: this process has none on a file it just made.
            Err(other) => Err(StoreError::Storage(redb::StorageError::Io(
                std::io::Error::other(other.to_string()),
            ))),
        }
    });
    if let Err(e) = copied {
        drop(fresh);
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(Fresh {
        db: fresh,
        temp,
        started,
        bytes_before,
    })
}

impl Fresh {
    /// Gives up this copy: the store stays as it is, its `scrub_pending` still set.
    pub(crate) fn discard(self) {
        drop(self.db);
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Renames `fresh` over `path`, marks `old` replaced, and returns the fresh file opened for
/// writing. The caller holds the commit lock: `fresh` must hold every commit `old` does.
pub(crate) fn install(fresh: Fresh, old: &Database, path: &Path) -> Result<(Database, Scrubbed)> {
    let Fresh {
        db: fresh,
        temp,
        started,
        bytes_before,
    } = fresh;
    let creating = |source| StoreError::Create {
        path: temp.clone(),
        source,
    };
    let placed = std::fs::metadata(path)
        .and_then(|meta| std::fs::set_permissions(&temp, meta.permissions()))
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = placed {
        drop(fresh);
        let _ = std::fs::remove_file(&temp);
        return Err(creating(e));
    }
    // From here the fresh file is the store, whatever fails: the writer must go on with it. A
    // rename the disk lost in a crash brings back the old file, whose `scrub_pending` makes the
    // next writer scrub again.
    let _ = open::sync_dir(path);
    // Readers follow by the mark. If it cannot be written (a full disk), a reader keeps its
    // consistent view of the old file until it reopens the path (`rewind serve` notices the
    // new file by its inode); the erased bytes are gone from the directory either way.
    let _ = mark_replaced(old);
    let scrubbed = Scrubbed {
        bytes_before,
        bytes_after: file_len(path),
        elapsed: started.elapsed(),
    };
    Ok((fresh, scrubbed))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn mark_replaced(old: &Database) -> Result<()> {
    let txn = old.begin_write()?;
    let sealed = crate::layout::meta_row(META_REPLACED).seal(&1u64.to_le_bytes());
    txn.open_table(META)?
        .insert(META_REPLACED, sealed.as_slice())?;
    txn.commit()?;
    Ok(())
}

/// Whether the file `txn` reads was replaced by a scrub.
pub(crate) fn replaced(txn: &ReadTransaction) -> Result<bool> {
    match txn.open_table(META) {
        Ok(meta) => Ok(meta.get(META_REPLACED)?.is_some()),
        Err(TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Every table of the store, row by row, in key order (what a B-tree fills fastest). The
/// values are copied sealed, as they are: a seal covers the table, key and payload, all kept.
fn copy_all(from: &ReadTransaction, fresh: &Database) -> Result<()> {
    let mut txn = fresh.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)
        .expect("no savepoints are ever taken");
    copy(from, &txn, ONLINE)?;
    copy(from, &txn, HISTORY)?;
    copy(from, &txn, CATALOG)?;
    copy(from, &txn, OFFSETS)?;
    copy(from, &txn, DEAD_LETTERS)?;
    copy(from, &txn, DEAD_LETTER_TIMES)?;
    copy(from, &txn, ERASURES)?;
    {
        let old = from.open_table(META)?;
        let mut new = txn.open_table(META)?;
        for row in old.iter()? {
            let (key, value) = row?;
            if ![META_SCRUB_PENDING, META_REPLACED].contains(&key.value()) {
                new.insert(key.value(), value.value())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn copy<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<()> {
    let mut new = to.open_table(table)?;
    let old = match from.open_table(table) {
        Ok(old) => old,
        // A table an older store lacks is created empty (as its first writer would).
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for row in old.iter()? {
        let (key, value) = row?;
        new.insert(key.value(), value.value())?;
    }
    Ok(())
}
