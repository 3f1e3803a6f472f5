//! A read-only handle on a store directory that another process writes, for scrapes: opened on
//! the first scrape that finds the file, kept while it answers, and opened again when the file
//! is replaced (an embedded run moves a dead log's store aside and starts a fresh one) or a
//! read fails.

use std::path::PathBuf;
use std::sync::Mutex;

use rewind_state::{ReadOnlyStore, Snapshot, StoreError};

use crate::serve::slot::{FileId, file_id};

pub struct StoreFollower {
    dir: PathBuf,
    file: PathBuf,
    open: Mutex<Option<(FileId, ReadOnlyStore)>>,
}

impl StoreFollower {
    pub fn new(dir: PathBuf) -> StoreFollower {
        let file = dir.join(rewind_state::FILE_NAME);
        StoreFollower {
            dir,
            file,
            open: Mutex::new(None),
        }
    }

    /// The newest commit of the store in the directory. The lock is held for one scrape's
    /// read, which takes microseconds; only scrapes take it.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = file_id(&self.file);
        if open.as_ref().map(|o| o.0) != now {
            *open = None;
        }
        let store = match (open.as_ref(), now) {
            (Some((_, store)), _) => store,
            (None, Some(id)) => {
                // The id as of before the open: a file replaced meanwhile is opened again on
                // the next scrape.
                &open.insert((id, ReadOnlyStore::open(&self.dir)?)).1
            }
            (None, None) => {
                return Err(StoreError::Missing {
                    path: self.file.clone(),
                });
            }
        };
        let snapshot = store.snapshot();
        if snapshot.is_err() {
            *open = None;
        }
        snapshot
    }
}
