//! Where the server's reader comes from, and whether there is one yet.
//!
//! `rewind serve` may start before `rewind run` creates the store: until the file appears (and
//! while it cannot be opened) every read answers 503 with the reason, and a watcher thread opens
//! it as soon as it can. The watcher also notices the file being replaced (an embedded run moves
//! a dead log's store aside and starts a fresh one) and follows the new file. In
//! `rewind run --serve` the reader goes through the engine's own store handle once it is open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rewind_state::{Reader, StoreError};

use crate::engine::Shared;

/// How often a missing or replaced store is looked for: a new store is served within this.
const POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
enum State {
    Ready(Arc<Reader>),
    Waiting(String),
}

/// The current reader, or why there is none.
pub struct Slot {
    state: RwLock<State>,
    stop: AtomicBool,
}

impl Slot {
    fn new(reason: String) -> Arc<Slot> {
        Arc::new(Slot {
            state: RwLock::new(State::Waiting(reason)),
            stop: AtomicBool::new(false),
        })
    }

    pub fn reader(&self) -> Result<Arc<Reader>, String> {
        match &*self.state.read().unwrap_or_else(|p| p.into_inner()) {
            State::Ready(reader) => Ok(reader.clone()),
            State::Waiting(reason) => Err(reason.clone()),
        }
    }

    fn set(&self, state: State) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Serves the store in `dir`, opened read-only, once it exists.
///
/// The first attempt to open it is made before this returns, so the first request is answered
/// from what the directory holds (a store, or why there is none), never from a watcher thread
/// that has not run yet: on a busy machine that could take a while.
pub fn of_dir(dir: PathBuf) -> Arc<Slot> {
    let slot = Slot::new(format!("opening the store in {}", dir.display()));
    let file = dir.join(rewind_state::FILE_NAME);
    let opened = try_open(&slot, &dir, file_id(&file));
    let watched = slot.clone();
    std::thread::Builder::new()
        .name("rewind-serve-store".into())
        .spawn(move || watch_dir(&watched, &dir, opened))
        .expect("spawning the store watcher");
    slot
}

fn watch_dir(slot: &Slot, dir: &Path, mut opened: Option<FileId>) {
    let file = dir.join(rewind_state::FILE_NAME);
    while !slot.stopping() {
        std::thread::sleep(POLL);
        let now = file_id(&file);
        if now.is_none() || now != opened {
            opened = try_open(slot, dir, now);
        }
    }
}

/// Opens the store in `dir` into `slot`, or says in it why not; the file opened, if any.
fn try_open(slot: &Slot, dir: &Path, now: Option<FileId>) -> Option<FileId> {
    match Reader::open(dir) {
        Ok(reader) => {
            slot.set(State::Ready(Arc::new(reader)));
            now
        }
        Err(e) => {
            slot.set(State::Waiting(waiting_reason(dir, &e)));
            None
        }
    }
}

fn waiting_reason(dir: &Path, e: &StoreError) -> String {
    match e {
        StoreError::Missing { .. } => format!(
            "no store in {} yet: waiting for `rewind run --store {}` to create it",
            dir.display(),
            dir.display()
        ),
        other => format!("the store cannot be opened: {other}"),
    }
}

/// Which file a path names, so a replaced file is told from the one opened (the metrics of
/// `rewind serve` follow the store directory the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId(u64, u64);

#[cfg(unix)]
pub(crate) fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| FileId(m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub(crate) fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|_| FileId(0, 0))
}

/// Serves the store the engine of this process writes, once it has opened it.
pub fn of_engine(shared: Arc<Shared>) -> Arc<Slot> {
    let slot = Slot::new("the run is opening its store".into());
    let watched = slot.clone();
    std::thread::Builder::new()
        .name("rewind-serve-store".into())
        .spawn(move || {
            while !watched.stopping() {
                if let Some(store) = shared.store() {
                    return watched.set(State::Ready(Arc::new(Reader::of_store(store))));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .expect("spawning the store watcher");
    slot
}
