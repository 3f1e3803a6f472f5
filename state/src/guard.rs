//! The edge of redb's trust in the file. redb checks its page checksums only when a writer
//! repairs or fully checks a file; a plain read trusts the bytes, and on a damaged page it may
//! panic (an offset past the end of a page, a key that is not UTF-8). A reader beside a live
//! writer cannot run that check (it needs the writer's lock and a pass over the whole file), so
//! every read of the store runs here: a panic inside becomes [`StoreError::Damaged`] naming the
//! file, and its message is kept out of the process's stderr.
//!
//! The values themselves carry seals (see `seal.rs`), so damage that does not upset redb's page
//! structure is caught by the read that returns it; this guard is for the rest.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use crate::{Result, StoreError};

thread_local! {
    /// Set while this thread reads the store: a panic then is damage, reported as an error.
    static READING: Cell<bool> = const { Cell::new(false) };
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs one read of the store file at `path`, turning redb's corruption errors and panics into
/// [`StoreError::Damaged`]. After one, drop the handle that read it: redb's state may be torn.
pub(crate) fn reading<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    install_hook();
    let outer = READING.with(|r| r.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(read));
    READING.with(|r| r.set(outer));
    match result {
        Ok(result) => result.map_err(|e| e.at(path)),
        Err(payload) => {
            let detail = CAUGHT
                .with(|c| c.borrow_mut().take())
                .unwrap_or_else(|| message(payload.as_ref()));
            Err(StoreError::Damaged {
                path: path.to_path_buf(),
                detail: format!("redb cannot read its pages ({detail})"),
            })
        }
    }
}

/// Chains a hook that stays silent for panics inside [`reading`] and defers to the hook that was
/// there before for every other panic, so the process's own panics print as they always did.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !READING.with(Cell::get) {
                return previous(info);
            }
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("{}{at}", message(info.payload()));
            CAUGHT.with(|c| *c.borrow_mut() = Some(text));
        }));
    });
}

fn message(payload: &(dyn Any + Send)) -> String {
    match payload.downcast_ref::<&str>() {
        Some(s) => s.to_string(),
        None => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a panic with no message".into()),
    }
}
