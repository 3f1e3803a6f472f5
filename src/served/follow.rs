//! The log follows its store: an erasure the store applies deletes the viewer's served rows
//! here too, and a retention the store lowers purges here too.
//!
//! The store keeps only a keyed hash (a token) of each erased viewer, never its pseudonym, so
//! the log finds the viewer by hashing the pseudonyms it holds with the store's key: the
//! file's viewers once, at the first erasure seen, then each new viewer as its rows are
//! written. The viewer's rows whose values are as of the erasure's tick or earlier are deleted
//! and the file is scrubbed; rows served later reflect the store after the erasure, and stay.
//! A response still queued when the erasure is handled (served before it, written after) is
//! screened as it is written: its rows of the viewer as of the tick or earlier are not.
//! A problem (no key yet, a key that is not the store's) is reported once and retried at
//! every look, so an erasure is never skipped.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rewind_dataflows::ViewerId;
use rewind_state::{ErasureRecord, Reader};

use super::{Served, ServedLogError, Writer};
use crate::privacy::Pseudonymizer;

/// How often the store is looked at: an erased viewer's served rows go within this (and a
/// scrub of the log) of the store's commit.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// The store's reader, once there is one (a server may start before the store exists).
pub type ReaderFn = Box<dyn Fn() -> Option<Arc<Reader>> + Send>;

/// The key the served pseudonyms were made with: `Ok(None)` while there is none yet (a server
/// started before the run that creates the store's key).
pub type KeyFn = Box<dyn FnMut() -> Result<Option<Pseudonymizer>, String> + Send>;

pub(super) struct Following {
    reader: ReaderFn,
    key: KeyFn,
    door: Option<Pseudonymizer>,
    /// The reader last looked through: a replaced store is followed from scratch.
    store: Weak<Reader>,
    /// The store's count of erasures when all were last handled.
    handled_count: Option<u64>,
    /// Each erased viewer's token, with the tick its rows were erased through.
    handled: HashMap<[u8; 32], u64>,
    /// Every viewer of the file with its token: built at the first erasure, then kept up as
    /// rows are written; dropped with the key it was made with.
    tokens: Option<HashMap<u128, [u8; 32]>>,
    last: Option<Instant>,
    /// The problem last reported, so that a lasting one is said once.
    reported: Option<String>,
}

impl Following {
    pub(super) fn new(reader: ReaderFn, key: KeyFn) -> Following {
        Following {
            reader,
            key,
            door: None,
            store: Weak::new(),
            handled_count: None,
            handled: HashMap::new(),
            tokens: None,
            last: None,
            reported: None,
        }
    }

    /// Before `batch` is written: notes its viewers (once the file's are hashed), and takes
    /// out the rows of erased viewers as of their erasure's tick or earlier. Returns how many
    /// it took out.
    pub(super) fn screen(&mut self, batch: &mut [Served]) -> u64 {
        let (Some(tokens), Some(door)) = (&mut self.tokens, &self.door) else {
            return 0;
        };
        let mut dropped = 0;
        for served in batch.iter_mut() {
            let as_of_ms = served.as_of_ms;
            served.entities.retain(|entity| {
                let viewer = (entity.kind == "viewer")
                    .then(|| ViewerId::parse(&entity.id))
                    .flatten();
                let Some(viewer) = viewer else {
                    return true;
                };
                let token = tokens
                    .entry(viewer.0)
                    .or_insert_with(|| door.erasure_token(&viewer));
                let erased = self.handled.get(token).is_some_and(|t| as_of_ms <= *t);
                dropped += u64::from(erased);
                !erased
            });
        }
        dropped
    }

    /// The key, loaded when first needed, and checked against the store's fingerprint: a
    /// different key would find no erased viewer and report success.
    fn door(&mut self, fingerprint: Option<&[u8]>) -> Result<&Pseudonymizer, String> {
        if self.door.is_none() {
            self.door = (self.key)()?;
        }
        let Some(door) = &self.door else {
            return Err(
                "the store has erased viewers, and there is no pseudonym key to find \
                        them in the served log by: pass the store's key (--key-file or \
                        REWIND_PSEUDONYM_KEY)"
                    .into(),
            );
        };
        match fingerprint {
            Some(f) if f != door.fingerprint().as_bytes() => {
                let wrong = "the pseudonym key is not the one the store was built with, so its \
                             erased viewers cannot be found in the served log: serve with the \
                             store's key";
                // Tokens made with it find nothing: made again with the next key.
                self.door = None;
                self.tokens = None;
                Err(wrong.into())
            }
            _ => Ok(self.door.as_ref().expect("loaded above")),
        }
    }
}

impl Writer {
    /// Looks at the store when due (`now`: whether due or not); a problem is reported on
    /// stderr once, and retried.
    pub(super) fn follow_when_due(&mut self, now: bool) {
        let Some(following) = &mut self.follow else {
            return;
        };
        if !now && following.last.is_some_and(|at| at.elapsed() < FOLLOW_EVERY) {
            return;
        }
        following.last = Some(Instant::now());
        let outcome = self.follow_store();
        let following = self.follow.as_mut().expect("following");
        match outcome {
            Ok(()) => following.reported = None,
            Err(problem) if following.reported.as_ref() != Some(&problem) => {
                eprintln!(
                    "rewind: served log {}: {problem}; retrying",
                    self.file.path().display()
                );
                following.reported = Some(problem);
            }
            Err(_) => {}
        }
    }

    fn follow_store(&mut self) -> Result<(), String> {
        let following = self.follow.as_mut().expect("following");
        let Some(reader) = (following.reader)() else {
            return Ok(());
        };
        if !Weak::ptr_eq(&following.store, &Arc::downgrade(&reader)) {
            following.store = Arc::downgrade(&reader);
            following.handled_count = None;
        }
        let text = |e: rewind_state::StoreError| e.to_string();
        let view = reader.view().map_err(text)?;
        let recorded = view.meta_u64(super::META_RETENTION).map_err(text)?;
        let retention_ms = super::retention_of(recorded);
        let before = self
            .counters
            .retention_ms
            .swap(retention_ms, std::sync::atomic::Ordering::Relaxed);
        if retention_ms < before {
            // A shorter retention purges now, not at the next scheduled purge.
            self.last_purge = None;
        }
        let applied = view.erasures_applied().map_err(text)?;
        if following.handled_count == Some(applied) {
            return Ok(());
        }
        let fresh: Vec<ErasureRecord> = view
            .erasures()
            .map_err(text)?
            .into_iter()
            .filter(|r| following.handled.get(&r.token) != Some(&r.tick_ms))
            .collect();
        if !fresh.is_empty() {
            let fingerprint = view
                .meta(crate::engine::META_KEY_FINGERPRINT)
                .map_err(text)?;
            following.door(fingerprint.as_deref())?;
            self.erase_followed(&fresh).map_err(|e| e.to_string())?;
        }
        let following = self.follow.as_mut().expect("following");
        for record in fresh {
            following.handled.insert(record.token, record.tick_ms);
        }
        following.handled_count = Some(applied);
        Ok(())
    }

    /// Deletes the rows of the viewers `fresh` names through each erasure's tick, then
    /// scrubs the file if any went.
    fn erase_followed(&mut self, fresh: &[ErasureRecord]) -> Result<(), ServedLogError> {
        let following = self.follow.as_mut().expect("following");
        let door = following.door.as_ref().expect("checked by the caller");
        let tokens = match &mut following.tokens {
            Some(tokens) => tokens,
            unbuilt => {
                let mut tokens = HashMap::new();
                for id in self.file.viewer_ids()? {
                    if let Some(viewer) = ViewerId::parse(&id) {
                        tokens.insert(viewer.0, door.erasure_token(&viewer));
                    }
                }
                unbuilt.insert(tokens)
            }
        };
        let wanted: HashMap<&[u8; 32], u64> = fresh.iter().map(|r| (&r.token, r.tick_ms)).collect();
        let doomed: Vec<(ViewerId, u64)> = tokens
            .iter()
            .filter_map(|(viewer, token)| Some((ViewerId(*viewer), *wanted.get(token)?)))
            .collect();
        for (viewer, tick_ms) in doomed {
            let erased = self
                .file
                .erase_as_of("viewer", &viewer.to_string(), tick_ms)?;
            self.owe_scrub(erased);
        }
        self.pay_scrub()
    }
}
