//! The store's commit counter: how a [`crate::Reader`] learns that nothing has landed since
//! its last view without beginning a read transaction (which costs redb a file lock, a read of
//! the file's header and a lock byte per reader: most of a one-entity read).
//!
//! The writer bumps the counter after each write transaction it commits (and after a scrub
//! puts a fresh file in place), in memory for readers in its own process and in a small file
//! beside the store, `rewind.commits`, for readers in others. A reader notes the counter, then
//! begins its transaction; while the counter still reads the same, no commit has landed since,
//! so the transaction still shows the newest commit and can be shared. Between a commit and
//! its bump a reader may be handed the commit before: the same as a reader that began a moment
//! earlier.
//!
//! The counter never repeats a value across writers: a writer starts it past both what the
//! file holds and the clock, so a reader that kept a value from an earlier writer cannot mistake
//! a new writer's commits for none.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Result, StoreError};

/// The counter's file, in the store's directory.
pub const COMMITS_FILE: &str = "rewind.commits";

/// The writer's side: bumped after every commit.
#[derive(Debug)]
pub(crate) struct Published {
    value: AtomicU64,
    file: File,
}

impl Published {
    /// Opens (or creates) the counter of the store in `dir` and moves it past every value a
    /// reader can hold. Failing here fails the store's open: a writer that could not bump the
    /// file would leave readers of it on an old commit.
    pub(crate) fn open(dir: &Path) -> Result<Published> {
        let path = dir.join(COMMITS_FILE);
        let creating = |source| StoreError::Create {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(creating)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let start = read(&file).unwrap_or(0).max(now).saturating_add(1);
        let published = Published {
            value: AtomicU64::new(start),
            file,
        };
        published.write(start).map_err(creating)?;
        Ok(published)
    }

    /// Tells readers that a commit has landed.
    pub(crate) fn bump(&self, path: &Path) -> Result<()> {
        let value = self.value.fetch_add(1, Ordering::AcqRel) + 1;
        self.write(value).map_err(|source| StoreError::Create {
            path: path.with_file_name(COMMITS_FILE),
            source,
        })
    }

    /// The counter as this process last bumped it.
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    fn write(&self, value: u64) -> std::io::Result<()> {
        self.file.write_all_at(&value.to_le_bytes(), 0)
    }
}

/// A reader's side in another process: the counter's file, if the writer made one.
#[derive(Debug)]
pub(crate) struct Watched(Option<File>);

impl Watched {
    pub(crate) fn open(dir: &Path) -> Watched {
        Watched(File::open(dir.join(COMMITS_FILE)).ok())
    }

    /// The counter now; `None` when there is no file to read (a reader then never shares a
    /// transaction).
    pub(crate) fn get(&self) -> Option<u64> {
        self.0.as_ref().and_then(read)
    }
}

fn read(file: &File) -> Option<u64> {
    let mut bytes = [0; 8];
    file.read_exact_at(&mut bytes, 0).ok()?;
    Some(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_writer_starts_past_what_any_reader_saw() {
        let dir = tempfile::tempdir().unwrap();
        let first = Published::open(dir.path()).unwrap();
        first.bump(&dir.path().join("x")).unwrap();
        let watched = Watched::open(dir.path());
        let seen = watched.get().unwrap();
        assert_eq!(seen, first.get());
        drop(first);
        // Even a file set far ahead of the clock moves on.
        std::fs::write(dir.path().join(COMMITS_FILE), (u64::MAX / 2).to_le_bytes()).unwrap();
        let second = Published::open(dir.path()).unwrap();
        assert_eq!(second.get(), u64::MAX / 2 + 1);
        assert_eq!(watched.get(), Some(u64::MAX / 2 + 1));
    }

    #[test]
    fn no_file_means_nothing_to_share() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Watched::open(dir.path()).get(), None);
    }
}
