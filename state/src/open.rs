//! Opening the file, for writing or for reading, and saying exactly why an open failed.
//!
//! - Only a missing file starts a fresh store, and a fresh store appears complete (tables and
//!   format version) or not at all: it is built under a temporary name and linked into place.
//!   So an empty file is never rewind's own half-made store, and is refused, not initialised.
//! - redb marks the file while a writer has it open. After a writer died (kill -9, power loss,
//!   a full disk) the mark stays, and redb's read-only open refuses the file until a writer
//!   repairs it. A reader that finds no writer holding the file repairs it itself, by opening
//!   it for writing once (redb's own repair), so reading never waits for a writer to return.

use std::path::Path;
use std::time::{Duration, Instant};

use redb::{Builder, ConcurrencyMode, Database, DatabaseError, ReadOnlyDatabase, StorageError};

use crate::layout::{
    self, CATALOG, DEAD_LETTER_TIMES, DEAD_LETTERS, ERASURES, HISTORY, META, META_FORMAT, OFFSETS,
    ONLINE,
};
use crate::{FILE_NAME, FORMAT_VERSION, Result, StoreError, guard};

/// How long a reader waits for a writer that is repairing the file as it opens it.
const REPAIR_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    builder
}

/// Creates a complete, empty store at `path`, unless another process does so first.
pub(crate) fn create_fresh(path: &Path) -> Result<()> {
    let temp = path.with_file_name(format!("{FILE_NAME}.{}.new", std::process::id()));
    let failed = |source| StoreError::Create {
        path: path.to_path_buf(),
        source,
    };
    let opened = |source| opening(&temp, source, "");
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let db = builder().create(&temp).map_err(opened)?;
    initialise(&db)?;
    db.close().map_err(opened)?;
    // A link, unlike a rename, never replaces a store another process created meanwhile.
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => sync_dir(path).map_err(failed),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(failed(e)),
    }
}

fn initialise(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    txn.open_table(ONLINE)?;
    txn.open_table(HISTORY)?;
    txn.open_table(CATALOG)?;
    txn.open_table(OFFSETS)?;
    txn.open_table(DEAD_LETTERS)?;
    txn.open_table(DEAD_LETTER_TIMES)?;
    txn.open_table(ERASURES)?;
    let format = layout::meta_row(META_FORMAT).seal(&FORMAT_VERSION.to_le_bytes());
    txn.open_table(META)?
        .insert(META_FORMAT, format.as_slice())?;
    txn.commit()?;
    Ok(())
}

/// Makes the new directory entry durable, as redb's commit made the file's contents.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Opens the store file for writing, checking every page against redb's checksums.
pub(crate) fn writer(path: &Path) -> Result<Database> {
    refuse_empty(path)?;
    guard::reading(path, || {
        builder()
            .set_check_integrity_on_open(true)
            .open(path)
            .map_err(|e| opening(path, e, " (a `rewind run`, or a reader repairing it)"))
    })
}

/// Opens the store file read-only, repairing it first if a writer died with it open.
pub(crate) fn reader(path: &Path) -> Result<ReadOnlyDatabase> {
    refuse_empty(path)?;
    let started = Instant::now();
    loop {
        match guard::reading(path, || Ok(builder().open_read_only(path)))? {
            Ok(db) => return Ok(db),
            Err(DatabaseError::RepairAborted) => {}
            Err(e) => return Err(opening(path, e, "")),
        }
        match guard::reading(path, || Ok(builder().open(path)))? {
            // The close records the clean state the repair reached.
            Ok(db) => db.close().map_err(|e| opening(path, e, ""))?,
            // A writer holds the file and is repairing it as it opens: it will soon let
            // readers in.
            Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < REPAIR_WAIT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Busy {
                    path: path.to_path_buf(),
                    doing: " (repairing the file after an unclean stop)",
                });
            }
            Err(reason @ DatabaseError::Storage(StorageError::Io(_))) => {
                let dir = path.parent().unwrap_or(Path::new(".")).display();
                return Err(StoreError::NeedsRepair {
                    path: path.to_path_buf(),
                    dir: dir.to_string(),
                    reason,
                });
            }
            Err(e) => return Err(opening(path, e, "")),
        }
    }
}

/// redb initialises an empty file as a fresh database; rewind never made one (see
/// [`create_fresh`]), so an empty file is someone else's, or what is left of a lost one.
fn refuse_empty(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            detail: "the file is empty".into(),
        }),
        _ => Ok(()),
    }
}

/// What a failed open of the file at `path` means, in the user's words.
pub(crate) fn opening(path: &Path, source: DatabaseError, writer: &'static str) -> StoreError {
    let path = path.to_path_buf();
    match source {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Busy {
            path,
            doing: writer,
        },
        // redb's word for a file that does not start with its magic number.
        DatabaseError::Storage(StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::NotAStore {
                path,
                detail: e.to_string(),
            }
        }
        DatabaseError::Storage(StorageError::Corrupted(detail)) => {
            StoreError::Damaged { path, detail }
        }
        source => StoreError::Open { path, source },
    }
}
