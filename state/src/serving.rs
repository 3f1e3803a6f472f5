//! The in-process reader: what a model server embeds to read current feature values, over the
//! writer's own [`Store`] or a [`crate::ReadOnlyStore`] in another process.
//!
//! A [`Reader`] follows the writer's commits without reopening the file: each [`View`] reads
//! one redb read transaction on the newest commit, so it never sees half of one. Views taken
//! while no commit lands share one transaction (the store's commit counter, [`crate::commits`],
//! says when one has): beginning a transaction is most of a one-entity read. Take a view per
//! request (one entity, or a batch read together), and drop it before doing slow work: a live
//! read transaction keeps the pages of its commit from being reused.
//!
//! The feature catalog is append-only (an index never changes meaning), so the reader keeps it
//! across views and reloads it only when a row names an index it has not seen.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableDatabase};

use crate::catalog::Catalog;
use crate::commits::Watched;
use crate::layout::{self, CATALOG, META, ONLINE};
use crate::{META_FRONTIER, ReadOnlyStore, Result, Store, StoreError, guard, read};

/// Meta key of the tick the online values are as of (`frontier_ms - tick_ms`).
pub const META_AS_OF: &str = "as_of_ms";

/// How long one read transaction may be shared between views. While the commit counter stands
/// still a transaction is as new as a fresh one, but it keeps its commit's pages from being
/// reused: a reader idle beside a busy writer must not grow the file, so a shared transaction
/// is let go this long after it began (by the next view, or by the reader's sweeper thread).
const SHARE_FOR: Duration = Duration::from_millis(50);

enum Db {
    Writer(Arc<Store>),
    ReadOnly(ReadOnlyStore, Watched),
}

/// A long-lived handle for reading current values; cheap to share between threads.
pub struct Reader {
    db: Db,
    path: Arc<Path>,
    catalog: RwLock<Arc<Catalog>>,
    /// The newest read transaction, shared by views while no commit lands after it.
    shared: Arc<Mutex<Option<Arc<Txn>>>>,
    sweeper: std::sync::Once,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("path", &self.path).finish()
    }
}

/// One current feature of one entity: its catalog index, the tick it is valid from, and its
/// value as JSON, `None` when the feature went back to its default at that tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentValue {
    pub feature: u16,
    pub valid_from_ms: u64,
    pub value_json: Option<Vec<u8>>,
}

impl Reader {
    /// Opens the store in `dir` read-only (see [`ReadOnlyStore::open`]).
    pub fn open(dir: &Path) -> Result<Reader> {
        let store = ReadOnlyStore::open(dir)?;
        let path = store.path.clone();
        Ok(Reader::new(Db::ReadOnly(store, Watched::open(dir)), path))
    }

    /// Reads through the writer's own handle, in the writing process.
    pub fn of_store(store: Arc<Store>) -> Reader {
        let path = store.path.clone();
        Reader::new(Db::Writer(store), path)
    }

    fn new(db: Db, path: Arc<Path>) -> Reader {
        Reader {
            db,
            path,
            catalog: RwLock::default(),
            shared: Arc::default(),
            sweeper: std::sync::Once::new(),
        }
    }

    /// The store file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A consistent view of the newest commit.
    pub fn view(&self) -> Result<View<'_>> {
        let txn = self.newest()?;
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(View {
            txn,
            catalog,
            reader: self,
        })
    }

    /// The commit counter now: `None` when it cannot be read, and then nothing is shared.
    fn counter(&self) -> Option<u64> {
        match &self.db {
            Db::Writer(store) => Some(store.published.get()),
            Db::ReadOnly(_, watched) => watched.get(),
        }
    }

    /// A read transaction on the newest commit: the shared one while the counter has not
    /// moved since it began, else a new one (then shared in its place).
    fn newest(&self) -> Result<Arc<Txn>> {
        // Read before the transaction begins: a commit landing in between is then seen by the
        // transaction and counted again by the next look, never missed.
        let counter = self.counter();
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(txn) = shared.as_ref().filter(|t| t.current(counter)) {
            return Ok(txn.clone());
        }
        *shared = None;
        drop(shared);
        let txn = Arc::new(self.begin(counter)?);
        if counter.is_some() {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            // Another thread may have shared a newer one meanwhile; either is current.
            *shared = Some(txn.clone());
            drop(shared);
            self.sweeper
                .call_once(|| sweep(Arc::downgrade(&self.shared)));
        }
        Ok(txn)
    }

    fn begin(&self, counter: Option<u64>) -> Result<Txn> {
        guard::reading(&self.path, || {
            let (txn, keep): (_, crate::read::Keep) = match &self.db {
                Db::Writer(store) => {
                    let db = store.db();
                    (db.begin_read()?, db)
                }
                Db::ReadOnly(store, _) => store.begin_read()?,
            };
            let (as_of_ms, frontier_ms, replay_started_ms) = freshness(&txn)?;
            Ok(Txn {
                online: txn.open_table(ONLINE)?,
                txn,
                as_of_ms,
                frontier_ms,
                replay_started_ms,
                counter,
                began: Instant::now(),
                _db: keep,
            })
        })
    }
}

/// Lets go of the shared transaction once it is [`SHARE_FOR`] old, so that a reader nobody
/// calls does not hold a commit's pages; ends with the reader.
fn sweep(shared: Weak<Mutex<Option<Arc<Txn>>>>) {
    let spawned = std::thread::Builder::new()
        .name("rewind-reader-sweep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SHARE_FOR);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
                if shared
                    .as_ref()
                    .is_some_and(|t| t.began.elapsed() >= SHARE_FOR)
                {
                    *shared = None;
                }
            }
        });
    // Without the thread, the next view lets an old transaction go instead.
    drop(spawned);
}

/// (as of, frontier, the start of an unfinished replay) of one commit.
type Freshness = (Option<u64>, Option<u64>, Option<u64>);

fn freshness(txn: &ReadTransaction) -> Result<Freshness> {
    let meta = txn.open_table(META)?;
    let read = |key: &str| read::meta_u64_of(&meta, key);
    Ok((
        read(META_AS_OF)?,
        read(META_FRONTIER)?,
        read(crate::META_REPLAYING)?,
    ))
}

/// One read transaction and what every view of it reads first.
struct Txn {
    online: redb::ReadOnlyTable<(&'static str, &'static [u8]), &'static [u8]>,
    txn: ReadTransaction,
    as_of_ms: Option<u64>,
    frontier_ms: Option<u64>,
    replay_started_ms: Option<u64>,
    /// The commit counter read before it began.
    counter: Option<u64>,
    began: Instant,
    /// Last: dropped after the transaction that reads it.
    _db: crate::read::Keep,
}

impl Txn {
    /// Still the newest commit, and young enough to share.
    fn current(&self, counter: Option<u64>) -> bool {
        counter.is_some() && self.counter == counter && self.began.elapsed() < SHARE_FOR
    }
}

/// One commit of the store, for reading current values.
pub struct View<'r> {
    txn: Arc<Txn>,
    catalog: Arc<Catalog>,
    reader: &'r Reader,
}

impl View<'_> {
    /// The tick the values are as of: they reflect exactly the events before it. `None` before
    /// the store's first commit of output.
    pub fn as_of_ms(&self) -> Option<u64> {
        self.txn.as_of_ms
    }

    /// The output frontier: every tick strictly below it is final.
    pub fn frontier_ms(&self) -> Option<u64> {
        self.txn.frontier_ms
    }

    /// When the replay building this store started, while it has not finished: its values
    /// are a consistent prefix of the log, not yet the whole of it.
    pub fn replay_started_ms(&self) -> Option<u64> {
        self.txn.replay_started_ms
    }

    /// One meta entry of this view's commit (see `docs/store.md`).
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        guard::reading(&self.reader.path, || {
            read::with_meta(&self.txn.txn.open_table(META)?, key, |p| Ok(p.to_vec()))
        })
    }

    /// The store's suppression list as of this view: each erased viewer's keyed hash, with
    /// its erasure's time and the tick it landed at.
    pub fn erasures(&self) -> Result<Vec<crate::ErasureRecord>> {
        guard::reading(&self.reader.path, || read::erasures(&self.txn.txn))
    }

    /// How many erasures the store has applied, as of this view.
    pub fn erasures_applied(&self) -> Result<u64> {
        Ok(self.meta_u64(crate::erase::META_ERASURES)?.unwrap_or(0))
    }

    /// One meta entry holding a u64 (little-endian), as [`crate::Snapshot::meta_u64`].
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        self.meta(key)?
            .map(|b| crate::decode_u64(key, &b))
            .transpose()
    }

    /// What the feature indexes of [`CurrentValue`]s mean, as of this view.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Every feature the entity's online row holds, in index order, those back at their default
    /// included (with `value_json: None`); `None` when the store has no row for the entity.
    pub fn entity(&mut self, kind: &str, id: &str) -> Result<Option<Vec<CurrentValue>>> {
        let path = self.reader.path.clone();
        let features = guard::reading(&path, || {
            let entity = layout::entity_key(id);
            let Some(stored) = self.txn.online.get((kind, entity.as_slice()))? else {
                return Ok(None);
            };
            read::online_features(kind, &entity, stored.value()).map(Some)
        })?;
        let Some(features) = features else {
            return Ok(None);
        };
        let unknown = |catalog: &Catalog| {
            features
                .iter()
                .any(|f| usize::from(f.feature) >= catalog.len())
        };
        if unknown(&self.catalog) {
            self.reload_catalog()?;
            if unknown(&self.catalog) {
                return Err(StoreError::Malformed {
                    table: "online",
                    key: format!("({kind:?}, {id:?}): a feature the catalog lacks"),
                }
                .at(&self.reader.path));
            }
        }
        let values = features.into_iter().map(|f| CurrentValue {
            feature: f.feature,
            valid_from_ms: f.head.tick_ms,
            value_json: f.value,
        });
        Ok(Some(values.collect()))
    }

    /// The rows of many entities of one kind, in the order given, read in this one view.
    pub fn entities<'i>(
        &mut self,
        kind: &str,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<Vec<Option<Vec<CurrentValue>>>> {
        ids.into_iter().map(|id| self.entity(kind, id)).collect()
    }

    /// A row named a feature the cached catalog lacks: the writer added one since. Reload it
    /// from this view's commit, which holds every index its rows use, and share it.
    fn reload_catalog(&mut self) -> Result<()> {
        let path = self.reader.path.clone();
        let catalog = guard::reading(&path, || Catalog::load(&self.txn.txn.open_table(CATALOG)?))?;
        let catalog = Arc::new(catalog);
        *self
            .reader
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner()) = catalog.clone();
        self.catalog = catalog;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::change;
    use crate::{Change, Commit};

    fn commit(store: &Store, frontier_ms: u64, changes: Vec<Change>) {
        let commit = Commit {
            frontier_ms,
            changes,
            counters: vec![(META_AS_OF, frontier_ms - 1000)],
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }

    fn values(view: &mut View<'_>, id: &str) -> Option<Vec<(String, u64, Option<String>)>> {
        let rows = view.entity("viewer", id).unwrap()?;
        let named = rows.into_iter().map(|v| {
            let (_, name) = view.catalog().feature(v.feature).unwrap();
            let value = v.value_json.map(|j| String::from_utf8(j).unwrap());
            (name.to_string(), v.valid_from_ms, value)
        });
        Some(named.collect())
    }

    #[test]
    fn a_reader_follows_commits_and_learns_new_features_without_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let reader = Reader::of_store(store.clone());
        let mut before = reader.view().unwrap();
        assert_eq!((before.as_of_ms(), before.frontier_ms()), (None, None));
        assert_eq!(values(&mut before, "v_1"), None);

        commit(
            &store,
            2000,
            vec![change("viewer.a", "v_1", 1000, Some("5"))],
        );
        // An older view keeps its commit.
        assert_eq!(values(&mut before, "v_1"), None);
        let mut view = reader.view().unwrap();
        assert_eq!(
            (view.as_of_ms(), view.frontier_ms()),
            (Some(1000), Some(2000))
        );
        let a = ("viewer.a".to_string(), 1000, Some("5".to_string()));
        assert_eq!(values(&mut view, "v_1"), Some(vec![a.clone()]));
        drop(view);

        // A feature the cached catalog lacks, and one back at its default.
        commit(
            &store,
            3000,
            vec![
                change("viewer.a", "v_1", 2000, None),
                change("viewer.b", "v_1", 2000, Some("[1]")),
            ],
        );
        let mut view = reader.view().unwrap();
        let expected = vec![
            ("viewer.a".to_string(), 2000, None),
            ("viewer.b".to_string(), 2000, Some("[1]".to_string())),
        ];
        assert_eq!(values(&mut view, "v_1"), Some(expected));
        assert_eq!(reader.catalog.read().unwrap().len(), 2);
    }

    #[test]
    fn a_read_only_reader_sees_what_the_writer_commits_and_reads_batches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        commit(
            &store,
            2000,
            vec![change("viewer.a", "v_1", 1000, Some("5"))],
        );
        let reader = Reader::open(dir.path()).unwrap();
        commit(
            &store,
            3000,
            vec![change("viewer.a", "v_2", 2000, Some("7"))],
        );
        let mut view = reader.view().unwrap();
        assert_eq!(view.frontier_ms(), Some(3000));
        let rows = view.entities("viewer", ["v_2", "nobody", "v_1"]).unwrap();
        let first = |r: &Option<Vec<CurrentValue>>| r.as_ref().map(|f| f[0].value_json.clone());
        let got: Vec<_> = rows.iter().map(first).collect();
        assert_eq!(
            got,
            vec![Some(Some(b"7".to_vec())), None, Some(Some(b"5".to_vec()))]
        );
    }

    /// Views share one read transaction while nothing lands, and a commit, a meta write or a
    /// scrub that lands between two views is seen by the second, in this process and in
    /// another's read-only handle alike.
    #[test]
    fn views_share_a_transaction_until_something_lands() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let v1 = "v_00000000000000000000000000000001";
        commit(&store, 2000, vec![change("viewer.a", v1, 1000, Some("5"))]);
        let readers = [
            Reader::of_store(store.clone()),
            Reader::open(dir.path()).unwrap(),
        ];
        for reader in &readers {
            let (a, b) = (reader.view().unwrap(), reader.view().unwrap());
            assert!(
                Arc::ptr_eq(&a.txn, &b.txn),
                "nothing landed: one transaction"
            );
        }
        let value = |reader: &Reader| {
            let mut view = reader.view().unwrap();
            let rows = view.entity("viewer", v1).unwrap();
            rows.map(|r| r[0].value_json.clone())
        };

        commit(&store, 3000, vec![change("viewer.a", v1, 2000, Some("6"))]);
        for reader in &readers {
            assert_eq!(value(reader), Some(Some(b"6".to_vec())));
        }

        store.put_meta("note", b"x").unwrap();
        for reader in &readers {
            assert_eq!(
                reader.view().unwrap().meta("note").unwrap(),
                Some(b"x".to_vec())
            );
        }

        // An erasure deletes the rows and puts a fresh file in place.
        let erasure = crate::Erasure {
            entity_kind: "viewer",
            entity_id: v1.into(),
            ts_ms: 2500,
            tick_ms: 3000,
            token: [7; 32],
        };
        let commit = Commit {
            frontier_ms: 4000,
            erasures: vec![erasure],
            ..Commit::default()
        };
        assert!(store.commit(&commit).unwrap().erased.online_rows > 0);
        for reader in &readers {
            assert_eq!(value(reader), None, "the erased rows are gone");
        }
    }

    /// A shared transaction is let go once it is old even when nobody reads: it would keep
    /// its commit's pages from the writer.
    #[test]
    fn an_idle_reader_lets_its_transaction_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let reader = Reader::of_store(store);
        drop(reader.view().unwrap());
        assert!(reader.shared.lock().unwrap().is_some());
        let deadline = Instant::now() + Duration::from_secs(10);
        while reader.shared.lock().unwrap().is_some() {
            assert!(Instant::now() < deadline, "still held after 10 s");
            std::thread::sleep(SHARE_FOR / 5);
        }
    }

    #[test]
    fn a_missing_store_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = Reader::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    }
}
