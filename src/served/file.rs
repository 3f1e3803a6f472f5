//! The served log on disk: redb files of the log's own beside the store, `served-N.redb`.
//!
//! `rewind.redb` has one writer, `rewind run`, and `rewind serve` is a reader of it, so the log
//! cannot live in it. Each logging process claims the first `served-N.redb` no other process
//! holds (redb locks a file its writer has open), creating it if need be: two servers of one
//! store write two files, and a restarted server takes its old file back. At most
//! [`MAX_SLOTS`] files.
//!
//! Tables (every value sealed with [`Crc`], like the store's):
//! - `responses`: (served_at_ms, seq) → one entity of one response: request id, as-of, entity
//!   kind and id, and every (feature, valid-from, JSON value). Time-major, so a commit appends
//!   at the tree's edge and a retention purge deletes a prefix.
//! - `by_entity`: (kind, id, served_at_ms, seq) → (): an entity's rows in time order, for the
//!   entity-and-time join and for erasure, which deletes them all in one transaction.
//! - `meta`: `format`, `next_seq`, `dropped_total` (u64 LE).

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{
    Builder, ConcurrencyMode, Database, DatabaseError, Durability, ReadOnlyDatabase,
    ReadableDatabase, ReadableTable, TableDefinition, TableError,
};
use rewind_state::layout::Crc;

use super::{Served, ServedLogError, ServedValue};

const RESPONSES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("responses");
const BY_ENTITY: TableDefinition<(&str, &str, u64, u64), ()> = TableDefinition::new("by_entity");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The layout this version writes and reads.
const FORMAT: u64 = 1;
const META_FORMAT: &str = "format";
const META_NEXT_SEQ: &str = "next_seq";
const META_DROPPED: &str = "dropped_total";

/// Most log files in one store directory: one per process logging at the same time.
pub const MAX_SLOTS: usize = 64;

/// Rows one purge transaction deletes at most, so a first purge of a large, old file does not
/// hold one huge transaction.
const PURGE_CHUNK: usize = 50_000;

fn builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    builder
}

/// The path of slot `n`.
pub fn slot_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("served-{n}.redb"))
}

/// The slot files that exist in `dir`, in slot order.
pub fn slot_paths(dir: &Path) -> Vec<PathBuf> {
    (0..MAX_SLOTS)
        .map(|n| slot_path(dir, n))
        .filter(|p| p.exists())
        .collect()
}

/// The error a redb failure on the file at `path` means.
fn classify(path: &Path, e: redb::Error) -> ServedLogError {
    let path = path.to_path_buf();
    match e {
        redb::Error::Corrupted(detail) => ServedLogError::Damaged { path, detail },
        redb::Error::TableTypeMismatch { table, .. } => ServedLogError::NotALog {
            path,
            detail: format!("table {table} is of another type"),
        },
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            ServedLogError::NotALog {
                path,
                detail: io.to_string(),
            }
        }
        source => ServedLogError::Redb { path, source },
    }
}

/// One log file, held for writing by this process.
pub struct LogFile {
    db: Database,
    path: PathBuf,
    next_seq: u64,
    dropped_base: u64,
    dropped_written: u64,
    sync: bool,
}

impl LogFile {
    /// Claims the first slot of `dir` no other process holds.
    pub fn claim(dir: &Path) -> Result<LogFile, ServedLogError> {
        std::fs::create_dir_all(dir).map_err(|source| ServedLogError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        for n in 0..MAX_SLOTS {
            if let Some(file) = LogFile::open_slot(&slot_path(dir, n))? {
                return Ok(file);
            }
        }
        Err(ServedLogError::AllBusy {
            dir: dir.to_path_buf(),
            slots: MAX_SLOTS,
        })
    }

    /// Opens (or creates) the file at `path` for writing; `None` when another process holds it.
    pub fn open_slot(path: &Path) -> Result<Option<LogFile>, ServedLogError> {
        let db = match builder().create(path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => return Ok(None),
            Err(e) => return Err(classify(path, e.into())),
        };
        let mut file = LogFile {
            db,
            path: path.to_path_buf(),
            next_seq: 0,
            dropped_base: 0,
            dropped_written: 0,
            sync: true,
        };
        file.initialise().map_err(|e| classify(path, e))?;
        Ok(Some(file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file of this process alone, whose appends do not wait for the disk: what
    /// `benches/served_log.rs` measures to tell the layout's own cost from the disk's. (redb
    /// allows commits that do not sync only where no other process may read the file.)
    pub fn open_unsynced(path: &Path) -> Result<LogFile, ServedLogError> {
        let db = Builder::new()
            .create(path)
            .map_err(|e| classify(path, e.into()))?;
        let mut file = LogFile {
            db,
            path: path.to_path_buf(),
            next_seq: 0,
            dropped_base: 0,
            dropped_written: 0,
            sync: false,
        };
        file.initialise().map_err(|e| classify(path, e))?;
        Ok(file)
    }

    /// Creates the tables of a fresh file, or checks an existing one and reads its counters.
    fn initialise(&mut self) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        let fresh = txn.list_tables()?.next().is_none();
        {
            let mut meta = txn.open_table(META)?;
            if fresh {
                put_u64(&mut meta, META_FORMAT, FORMAT)?;
            }
            match get_u64(&meta, META_FORMAT).map_err(Damage::into_redb)? {
                Some(FORMAT) => {}
                found => {
                    let found = found.map_or("none".into(), |f| f.to_string());
                    return Err(redb::Error::Corrupted(format!(
                        "served-log format {found}, and this rewind reads {FORMAT}"
                    )));
                }
            }
            let u64_of = |key| get_u64(&meta, key).map_err(Damage::into_redb);
            self.next_seq = u64_of(META_NEXT_SEQ)?.unwrap_or(0);
            self.dropped_base = u64_of(META_DROPPED)?.unwrap_or(0);
            self.dropped_written = 0;
        }
        txn.open_table(RESPONSES)?;
        txn.open_table(BY_ENTITY)?;
        txn.commit()?;
        Ok(())
    }

    /// Writes `batch` (and the count of responses dropped so far) in one durable transaction.
    pub fn append(&mut self, batch: &[Served], dropped: u64) -> Result<(), ServedLogError> {
        let path = self.path.clone();
        let mut seq = self.next_seq;
        let durability = match self.sync {
            true => Durability::Immediate,
            false => Durability::None,
        };
        let mut run = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(durability)
                .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
            {
                let mut responses = txn.open_table(RESPONSES)?;
                let mut by_entity = txn.open_table(BY_ENTITY)?;
                let mut payload = Vec::new();
                for served in batch {
                    for entity in &served.entities {
                        payload.clear();
                        encode(&mut payload, served, entity);
                        let key = (served.served_at_ms, seq);
                        let sealed = row_seal(key).seal(&payload);
                        responses.insert(key, sealed.as_slice())?;
                        by_entity.insert((&*entity.kind, entity.id.as_str(), key.0, seq), ())?;
                        seq += 1;
                    }
                }
                let mut meta = txn.open_table(META)?;
                put_u64(&mut meta, META_NEXT_SEQ, seq)?;
                if dropped != self.dropped_written {
                    put_u64(&mut meta, META_DROPPED, self.dropped_base + dropped)?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| classify(&path, e))?;
        self.next_seq = seq;
        self.dropped_written = dropped;
        Ok(())
    }

    /// Deletes every row served before `cutoff_ms`; returns how many.
    pub fn purge_before(&mut self, cutoff_ms: u64) -> Result<u64, ServedLogError> {
        let mut purged = 0;
        loop {
            let n = purge_chunk(&self.db, cutoff_ms).map_err(|e| classify(&self.path, e))?;
            purged += n as u64;
            if n < PURGE_CHUNK {
                return Ok(purged);
            }
        }
    }

    /// Deletes every row of one entity in one transaction; returns how many.
    pub fn erase(&mut self, kind: &str, id: &str) -> Result<u64, ServedLogError> {
        self.erase_as_of(kind, id, u64::MAX)
    }

    /// Deletes, in one transaction, the rows of one entity whose values are as of `as_of_ms`
    /// or earlier, and any of its rows that fails its seal (its time cannot be told); returns
    /// how many.
    pub fn erase_as_of(
        &mut self,
        kind: &str,
        id: &str,
        as_of_ms: u64,
    ) -> Result<u64, ServedLogError> {
        let run = || -> Result<u64, redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
            let mut n = 0;
            {
                let mut responses = txn.open_table(RESPONSES)?;
                let mut by_entity = txn.open_table(BY_ENTITY)?;
                let keys: Vec<(u64, u64)> = by_entity
                    .range((kind, id, 0, 0)..=(kind, id, u64::MAX, u64::MAX))?
                    .map(|entry| entry.map(|(key, _)| (key.value().2, key.value().3)))
                    .collect::<Result<_, _>>()?;
                for key in keys {
                    let doomed = match responses.get(key)? {
                        Some(stored) => row_seal(key)
                            .open(stored.value())
                            .and_then(|payload| payload.first_chunk::<8>())
                            .is_none_or(|of| u64::from_le_bytes(*of) <= as_of_ms),
                        None => true,
                    };
                    if doomed {
                        responses.remove(key)?;
                        by_entity.remove((kind, id, key.0, key.1))?;
                        n += 1;
                    }
                }
            }
            txn.commit()?;
            Ok(n)
        };
        run().map_err(|e| classify(&self.path, e))
    }

    /// Every viewer id the file holds a row of, once each, in order.
    pub fn viewer_ids(&self) -> Result<Vec<String>, ServedLogError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let run = || -> Result<Vec<String>, redb::Error> {
            let txn = self.db.begin_read()?;
            let by_entity = txn.open_table(BY_ENTITY)?;
            let mut ids: Vec<String> = Vec::new();
            loop {
                // One seek per viewer: past every row of the last one found.
                let next = match ids.last() {
                    None => by_entity.range::<(&str, &str, u64, u64)>((
                        Included(("viewer", "", 0, 0)),
                        Unbounded,
                    ))?,
                    Some(last) => by_entity.range::<(&str, &str, u64, u64)>((
                        Excluded(("viewer", last.as_str(), u64::MAX, u64::MAX)),
                        Unbounded,
                    ))?,
                }
                .next();
                match next.transpose()? {
                    Some((key, _)) if key.value().0 == "viewer" => {
                        ids.push(key.value().1.to_string())
                    }
                    _ => return Ok(ids),
                }
            }
        };
        run().map_err(|e| classify(&self.path, e))
    }

    /// Rewrites the file into a fresh one holding only its live rows, renamed over it, so that
    /// no byte of a deleted row (an erased viewer's, after [`LogFile::erase`]) remains: redb
    /// never zeroes the pages it frees. The fresh file is opened for writing before the rename,
    /// so the slot stays claimed throughout. Readers (`snapshot --served`) are short-lived and
    /// open the path anew.
    pub fn scrub(&mut self) -> Result<(), ServedLogError> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_else(|| "served".into());
        let temp = self
            .path
            .with_file_name(format!("{name}.{}.scrub", std::process::id()));
        let creating = |source| ServedLogError::Create {
            path: temp.clone(),
            source,
        };
        match std::fs::remove_file(&temp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(creating(e)),
            _ => {}
        }
        let fresh = builder()
            .create(&temp)
            .map_err(|e| classify(&temp, e.into()))?;
        if let Err(e) = copy_log(&self.db, &fresh) {
            drop(fresh);
            let _ = std::fs::remove_file(&temp);
            return Err(classify(&self.path, e));
        }
        std::fs::rename(&temp, &self.path).map_err(creating)?;
        // The old file goes with its handle: only this process wrote it.
        self.db = fresh;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(creating)?;
        }
        Ok(())
    }

    /// Closes the file cleanly, recording the final count of dropped responses.
    pub fn close(self) {
        if let Err(e) = self.db.close() {
            eprintln!(
                "rewind: closing the served log {}: {e}",
                self.path.display()
            );
        }
    }

    /// Records the count of dropped responses when it changed since the last commit.
    pub fn record_dropped(&mut self, dropped: u64) -> Result<(), ServedLogError> {
        if dropped == self.dropped_written {
            return Ok(());
        }
        self.append(&[], dropped)
    }
}

/// One purge transaction: up to [`PURGE_CHUNK`] of the oldest rows before `cutoff_ms`.
fn purge_chunk(db: &Database, cutoff_ms: u64) -> Result<usize, redb::Error> {
    let txn = db.begin_write()?;
    let mut n = 0;
    {
        let mut responses = txn.open_table(RESPONSES)?;
        let mut by_entity = txn.open_table(BY_ENTITY)?;
        let mut old = Vec::new();
        for entry in responses.range(..(cutoff_ms, 0))?.take(PURGE_CHUNK) {
            let (key, stored) = entry?;
            let key = key.value();
            // A damaged row is purged too: its index entry is found by the sweep below.
            let entity = row_seal(key)
                .open(stored.value())
                .and_then(decode_entity)
                .map(|(k, i)| (k.to_string(), i.to_string()));
            old.push((key, entity));
        }
        for (key, entity) in &old {
            responses.remove(*key)?;
            if let Some((kind, id)) = entity {
                by_entity.remove((kind.as_str(), id.as_str(), key.0, key.1))?;
            }
        }
        if old.iter().any(|(_, e)| e.is_none()) {
            by_entity.retain(|key, _| key.2 >= cutoff_ms)?;
        }
        n = n.max(old.len());
    }
    txn.commit()?;
    Ok(n)
}

/// Every row of the log's tables, copied in key order into `fresh` in one transaction.
fn copy_log(from: &Database, fresh: &Database) -> Result<(), redb::Error> {
    let read = from.begin_read()?;
    let mut txn = fresh.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| redb::Error::Io(std::io::Error::other(e.to_string())))?;
    {
        let mut to = txn.open_table(RESPONSES)?;
        for row in read.open_table(RESPONSES)?.iter()? {
            let (key, value) = row?;
            to.insert(key.value(), value.value())?;
        }
        let mut to = txn.open_table(BY_ENTITY)?;
        for row in read.open_table(BY_ENTITY)?.iter()? {
            let (key, _) = row?;
            to.insert(key.value(), ())?;
        }
        let mut to = txn.open_table(META)?;
        for row in read.open_table(META)?.iter()? {
            let (key, value) = row?;
            to.insert(key.value(), value.value())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Purges the slot files of `dir` that no process holds; returns the rows purged.
pub fn purge_idle(dir: &Path, cutoff_ms: u64) -> Result<u64, ServedLogError> {
    let mut purged = 0;
    for path in slot_paths(dir) {
        let db = match builder().open(&path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => continue,
            Err(e) => return Err(classify(&path, e.into())),
        };
        loop {
            let n = purge_chunk(&db, cutoff_ms).map_err(|e| classify(&path, e))?;
            purged += n as u64;
            if n < PURGE_CHUNK {
                break;
            }
        }
        db.close().map_err(|e| classify(&path, e.into()))?;
    }
    Ok(purged)
}

fn row_seal((served_at_ms, seq): (u64, u64)) -> Crc {
    Crc::row("responses").int(served_at_ms).int(seq)
}

fn put_u64(
    meta: &mut redb::Table<&str, &[u8]>,
    key: &str,
    value: u64,
) -> Result<(), redb::StorageError> {
    let sealed = Crc::row("meta")
        .part(key.as_bytes())
        .seal(&value.to_le_bytes());
    meta.insert(key, sealed.as_slice())?;
    Ok(())
}

/// A row that fails its seal or does not decode.
#[derive(Debug)]
struct Damage(String);

impl Damage {
    fn into_redb(self) -> redb::Error {
        redb::Error::Corrupted(self.0)
    }
}

impl From<redb::StorageError> for Damage {
    fn from(e: redb::StorageError) -> Damage {
        Damage(e.to_string())
    }
}

fn get_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, Damage> {
    let Some(stored) = meta.get(key)? else {
        return Ok(None);
    };
    let payload = Crc::row("meta")
        .part(key.as_bytes())
        .open(stored.value())
        .ok_or_else(|| Damage(format!("meta {key:?} fails its checksum")))?;
    let bytes: [u8; 8] = payload
        .try_into()
        .map_err(|_| Damage(format!("meta {key:?} is not a u64")))?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

// Row payload: as_of_ms u64 | request_id | kind | id | n u32 | n × (feature | valid_from u64,
// u64::MAX for none | json). Strings are a u32 LE length then UTF-8 bytes.

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode(out: &mut Vec<u8>, served: &Served, entity: &super::ServedEntity) {
    out.extend_from_slice(&served.as_of_ms.to_le_bytes());
    put_str(out, &served.request_id);
    put_str(out, &entity.kind);
    put_str(out, &entity.id);
    out.extend_from_slice(&(entity.values.len() as u32).to_le_bytes());
    for value in &entity.values {
        put_str(out, &value.feature);
        out.extend_from_slice(&value.valid_from_ms.unwrap_or(u64::MAX).to_le_bytes());
        put_str(out, &value.json);
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }

    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*head))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        if len > self.0.len() {
            return None;
        }
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(text).ok()
    }
}

/// The entity (kind, id) of a row payload.
fn decode_entity(payload: &[u8]) -> Option<(&str, &str)> {
    let mut c = Cursor(payload);
    c.u64()?;
    c.str()?;
    Some((c.str()?, c.str()?))
}

/// One logged row: one entity of one response.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub served_at_ms: u64,
    pub seq: u64,
    pub request_id: String,
    pub as_of_ms: u64,
    pub kind: String,
    pub id: String,
    pub values: Vec<ServedValue>,
}

fn decode(key: (u64, u64), payload: &[u8]) -> Option<LogRow> {
    let mut c = Cursor(payload);
    let as_of_ms = c.u64()?;
    let request_id = c.str()?.to_string();
    let kind = c.str()?.to_string();
    let id = c.str()?.to_string();
    let n = c.u32()? as usize;
    let mut values = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let feature = c.str()?.to_string().into();
        let valid_from_ms = c.u64()?;
        let json = c.str()?.to_string();
        values.push(ServedValue {
            feature,
            json,
            valid_from_ms: (valid_from_ms != u64::MAX).then_some(valid_from_ms),
        });
    }
    c.0.is_empty().then_some(LogRow {
        served_at_ms: key.0,
        seq: key.1,
        request_id,
        as_of_ms,
        kind,
        id,
        values,
    })
}

/// Every log file of a store directory, opened read-only (the processes writing them may run).
pub struct LogReader {
    files: Vec<(PathBuf, ReadOnlyDatabase)>,
}

/// How long a reader waits for a writer that repairs a file as it opens it.
const REPAIR_WAIT: Duration = Duration::from_secs(5);

/// Opens one file read-only, repairing it first when a process died writing it.
fn open_reader(path: &Path) -> Result<ReadOnlyDatabase, ServedLogError> {
    let started = std::time::Instant::now();
    loop {
        match builder().open_read_only(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::RepairAborted) => {}
            Err(e) => return Err(classify(path, e.into())),
        }
        match builder().open(path) {
            Ok(db) => db.close().map_err(|e| classify(path, e.into()))?,
            Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < REPAIR_WAIT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(classify(path, e.into())),
        }
    }
}

impl LogReader {
    /// Opens every `served-N.redb` of `dir`; none is an error saying how to make one.
    pub fn open(dir: &Path) -> Result<LogReader, ServedLogError> {
        let paths = slot_paths(dir);
        if paths.is_empty() {
            return Err(ServedLogError::NotALog {
                path: slot_path(dir, 0),
                detail: "there is no served log in the store directory: serve with \
                         `--log-served` first"
                    .into(),
            });
        }
        let mut files = Vec::new();
        for path in paths {
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                // A file a server created and died before initialising: it holds nothing.
                continue;
            }
            let db = open_reader(&path)?;
            check_format(&path, &db)?;
            files.push((path, db));
        }
        Ok(LogReader { files })
    }

    /// Responses that were served but never logged (the queue was full), over all files.
    pub fn dropped_total(&self) -> Result<u64, ServedLogError> {
        let mut total = 0;
        for (path, db) in &self.files {
            let read = || -> Result<Option<u64>, redb::Error> {
                let txn = db.begin_read()?;
                let meta = txn.open_table(META)?;
                get_u64(&meta, META_DROPPED).map_err(Damage::into_redb)
            };
            total += read().map_err(|e| classify(path, e))?.unwrap_or(0);
        }
        Ok(total)
    }

    /// Every row served at or after `not_before_ms`, over all files, in (served_at, file, seq)
    /// order.
    pub fn rows(&self, not_before_ms: u64) -> Result<Vec<LogRow>, ServedLogError> {
        let mut rows = Vec::new();
        for (path, db) in &self.files {
            let mut read = || -> Result<(), redb::Error> {
                let txn = db.begin_read()?;
                let responses = txn.open_table(RESPONSES)?;
                for entry in responses.range((not_before_ms, 0)..)? {
                    let (key, stored) = entry?;
                    rows.push(open_row(key.value(), stored.value())?);
                }
                Ok(())
            };
            read().map_err(|e| classify(path, e))?;
        }
        rows.sort_by_key(|r| r.served_at_ms);
        Ok(rows)
    }

    /// The latest row of one entity served at or before `at_ms` (and at or after
    /// `not_before_ms`) whose values are as of `at_ms` or earlier, over all files. The as-of
    /// condition matters only where event time runs ahead of wall time (a replay, the embedded
    /// generator): there a response served before `at_ms` could hold events after it.
    pub fn latest(
        &self,
        kind: &str,
        id: &str,
        at_ms: u64,
        not_before_ms: u64,
    ) -> Result<Option<LogRow>, ServedLogError> {
        let mut best: Option<LogRow> = None;
        for (path, db) in &self.files {
            let read = || -> Result<Option<LogRow>, redb::Error> {
                let txn = db.begin_read()?;
                let by_entity = txn.open_table(BY_ENTITY)?;
                let range = (kind, id, not_before_ms, 0)..=(kind, id, at_ms, u64::MAX);
                let responses = txn.open_table(RESPONSES)?;
                // Newest first; the store's as-of only grows, so the first row as of `at_ms`
                // or earlier is found within a few rows of the newest.
                for entry in by_entity.range(range)?.rev() {
                    let (_, _, served_at_ms, seq) = entry?.0.value();
                    let Some(stored) = responses.get((served_at_ms, seq))? else {
                        return Err(redb::Error::Corrupted(format!(
                            "by_entity names row ({served_at_ms}, {seq}), which is not there"
                        )));
                    };
                    let row = open_row((served_at_ms, seq), stored.value())?;
                    if row.as_of_ms <= at_ms {
                        return Ok(Some(row));
                    }
                }
                Ok(None)
            };
            let found = read().map_err(|e| classify(path, e))?;
            if let Some(row) = found
                && best
                    .as_ref()
                    .is_none_or(|b| row.served_at_ms >= b.served_at_ms)
            {
                best = Some(row);
            }
        }
        Ok(best)
    }
}

impl LogReader {
    /// How many rows of one entity, over all files, hold values as of `as_of_ms` or earlier
    /// (or fail their seal, so that their time cannot be told).
    pub fn count_as_of(&self, kind: &str, id: &str, as_of_ms: u64) -> Result<u64, ServedLogError> {
        let mut n = 0;
        for (path, db) in &self.files {
            let read = || -> Result<u64, redb::Error> {
                let txn = db.begin_read()?;
                let by_entity = txn.open_table(BY_ENTITY)?;
                let responses = txn.open_table(RESPONSES)?;
                let mut n = 0;
                let range = (kind, id, 0, 0)..=(kind, id, u64::MAX, u64::MAX);
                for entry in by_entity.range(range)? {
                    let (_, _, served_at_ms, seq) = entry?.0.value();
                    let key = (served_at_ms, seq);
                    // A row that fails its seal counts: an erasure deletes it too.
                    let of = responses.get(key)?.map(|s| open_row(key, s.value()));
                    let held = of.is_none_or(|row| !row.is_ok_and(|row| row.as_of_ms > as_of_ms));
                    n += u64::from(held);
                }
                Ok(n)
            };
            n += read().map_err(|e| classify(path, e))?;
        }
        Ok(n)
    }
}

fn open_row(key: (u64, u64), stored: &[u8]) -> Result<LogRow, redb::Error> {
    row_seal(key)
        .open(stored)
        .and_then(|payload| decode(key, payload))
        .ok_or_else(|| {
            redb::Error::Corrupted(format!(
                "table responses at key ({}, {}) fails its checksum or does not decode",
                key.0, key.1
            ))
        })
}

fn check_format(path: &Path, db: &ReadOnlyDatabase) -> Result<(), ServedLogError> {
    let read = || -> Result<Option<u64>, redb::Error> {
        let txn = db.begin_read()?;
        let meta = match txn.open_table(META) {
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            meta => meta?,
        };
        get_u64(&meta, META_FORMAT).map_err(Damage::into_redb)
    };
    match read().map_err(|e| classify(path, e))? {
        Some(FORMAT) => Ok(()),
        found => Err(ServedLogError::NotALog {
            path: path.to_path_buf(),
            detail: format!(
                "served-log format {}, and this rewind reads {FORMAT}",
                found.map_or("none".into(), |f| f.to_string())
            ),
        }),
    }
}
