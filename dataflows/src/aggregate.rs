//! Aggregations: a [`Select`] keyed by an entity, reduced over a window.
//!
//! Each reduces its windowed records per entity with a state of its own ([`per_key`]): the
//! records update it in time order, and the entity's value is read back from it when a time
//! completes. What each keeps:
//! - [`Keyed::count`] and [`Keyed::sum`] are abelian: each record is an insert at its tick
//!   and a retraction one window later, its weight riding as the update's diff, and the state
//!   is one running total per key (plus the pending retractions).
//! - [`Keyed::count_distinct`] and [`Keyed::last_distinct`] need the values themselves: they
//!   keep the windowed values per key (with their times, for the last-k) and update the count
//!   or the order of the latest times as each comes and goes.
//! - [`Keyed::share_by`] and [`Keyed::share_by_title`] sum the weight per (key, share key) as
//!   the diff, and rebuild a key's map from those sums when they change.
//! - [`ratio`] combines two finished aggregations per key: cheap, one pair per key.

use std::fmt::Display;
use std::sync::Arc;

use differential_dataflow::VecCollection;

use crate::event::{TimeMs, Title, TitleId, ViewerId};
use crate::source::{HasTitle, HasViewer, Record, Select};
use crate::value::{Value, ValueType};
use crate::window::{RETENTION_MS, sliding};
use crate::{Entity, EntityId, Output, Sources, Window};
use per_key::{DistinctCount, LastK, Quotient, Shares, Sum, per_key};

/// Builds a feature's output collection in a worker's dataflow: the escape hatch. Any
/// differential computation over [`Sources`] that yields at most one `(entity id, value)` per
/// entity, with defaults absent, can be a feature.
pub trait Compute: Send + Sync {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s>;
}

impl Compute for for<'s> fn(&Sources<'s>) -> Output<'s> {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        self(sources)
    }
}

/// Entity keys: what an aggregation groups by.
pub trait EntityKey: Record + Into<EntityId> {}
impl<K: Record + Into<EntityId>> EntityKey for K {}

type KeyFn<T, K> = Arc<dyn Fn(&T) -> Option<K> + Send + Sync>;

/// A [`Select`] grouped by an entity.
pub struct Keyed<T, K> {
    select: Select<T>,
    entity: Entity,
    key: KeyFn<T, K>,
}

impl<T: Record + HasViewer> Select<T> {
    /// Groups by the record's viewer.
    pub fn by_viewer(self) -> Keyed<T, ViewerId> {
        Keyed {
            select: self,
            entity: Entity::Viewer,
            key: Arc::new(|t: &T| Some(t.viewer())),
        }
    }
}

impl<T: Record + HasTitle> Select<T> {
    /// Groups by the record's title; records without one drop out.
    pub fn by_title(self) -> Keyed<T, TitleId> {
        Keyed {
            select: self,
            entity: Entity::Title,
            key: Arc::new(|t: &T| t.title_id().cloned()),
        }
    }
}

/// An aggregation that still needs its window.
pub struct Unwindowed {
    entity: Entity,
    value_type: ValueType,
    abelian: bool,
    make: Box<dyn FnOnce(u64) -> Arc<dyn Compute>>,
}

impl Unwindowed {
    /// Over the last `window_ms`: `T - window <= ts < T` as of `T`.
    pub fn over(self, window_ms: u64) -> Aggregation {
        self.windowed(Window::Sliding(window_ms))
    }

    /// Over everything within the retention limit.
    pub fn within_retention(self) -> Aggregation {
        self.windowed(Window::Retention)
    }

    fn windowed(self, window: Window) -> Aggregation {
        Aggregation {
            entity: self.entity,
            value_type: self.value_type,
            window,
            abelian: self.abelian,
            compute: (self.make)(window.millis()),
        }
    }
}

/// A finished aggregation: what a feature computes.
#[derive(Clone)]
pub struct Aggregation {
    pub(crate) entity: Entity,
    pub(crate) value_type: ValueType,
    pub(crate) window: Window,
    pub(crate) abelian: bool,
    pub(crate) compute: Arc<dyn Compute>,
}

impl<T: Record + HasViewer, K: EntityKey> Keyed<T, K> {
    fn unwindowed<C: Compute + 'static>(
        self,
        value_type: ValueType,
        abelian: bool,
        make: impl FnOnce(Select<T>, KeyFn<T, K>, u64) -> C + 'static,
    ) -> Unwindowed {
        let (select, key) = (self.select, self.key);
        Unwindowed {
            entity: self.entity,
            value_type,
            abelian,
            make: Box::new(move |window_ms| Arc::new(make(select, key, window_ms))),
        }
    }

    /// Number of records in the window. Abelian.
    pub fn count(self) -> Unwindowed {
        self.unwindowed(ValueType::Int, true, |select, key, window_ms| Total {
            select,
            key,
            weight: Arc::new(|_: &T| 1),
            window_ms,
            render: |n| Value::Int(n),
        })
    }

    /// Sum of an integer field over the window. Abelian.
    pub fn sum(self, field: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Unwindowed {
        self.unwindowed(ValueType::Int, true, move |select, key, window_ms| Total {
            select,
            key,
            weight: Arc::new(field),
            window_ms,
            render: |n| Value::Int(n),
        })
    }

    /// Sum of a duration field in milliseconds, shown in seconds. Abelian, and exact: the sum
    /// is kept in integer milliseconds.
    pub fn sum_seconds(self, millis: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Unwindowed {
        self.unwindowed(ValueType::Float, true, move |select, key, window_ms| {
            Total {
                select,
                key,
                weight: Arc::new(move |t: &T| millis(t) as i64),
                window_ms,
                render: Value::seconds_from_ms,
            }
        })
    }

    /// Number of distinct values of `field` in the window. Keeps the distinct pairs.
    pub fn count_distinct<V: Record>(
        self,
        field: impl Fn(&T) -> V + Send + Sync + 'static,
    ) -> Unwindowed {
        self.unwindowed(ValueType::Int, false, move |select, key, window_ms| {
            Distinct {
                select,
                key,
                field: Arc::new(field),
                window_ms,
            }
        })
    }

    /// Up to `k` distinct values of `field`, by the latest `time` each was seen, newest first
    /// (ties: values ascending). Keeps the latest time per (key, value).
    pub fn last_distinct<V: Record + Display>(
        self,
        k: usize,
        field: impl Fn(&T) -> V + Send + Sync + 'static,
        time: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Unwindowed {
        self.unwindowed(ValueType::List, false, move |select, key, window_ms| {
            LastDistinct {
                select,
                key,
                field: Arc::new(field),
                time: Arc::new(time),
                k,
                window_ms,
            }
        })
    }

    /// Map of share key → share of the summed `weight`; a record's weight counts in full for
    /// each of its keys, and the shares sum to 1. Sums per (entity, share key) are abelian;
    /// the map is rebuilt from them per entity.
    pub fn share_by(
        self,
        keys: impl Fn(&T) -> Vec<String> + Send + Sync + 'static,
        weight: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Unwindowed {
        self.unwindowed(ValueType::Map, false, move |select, key, window_ms| {
            ShareBy {
                select,
                key,
                keys: Arc::new(keys),
                weight: Arc::new(weight),
                window_ms,
            }
        })
    }

    /// As [`Keyed::share_by`], with the share keys read from the record's title, as the
    /// titles reference data has it at each time: e.g. a viewer's watch time per genre.
    ///
    /// Cheaper than `enrich()` then `share_by`: each record shrinks to (title, entity) with
    /// its weight before the window, so the window and the join with titles hold one summed
    /// row per (title, entity) rather than every record.
    pub fn share_by_title(
        self,
        keys: impl Fn(&Title) -> Vec<String> + Send + Sync + 'static,
        weight: impl Fn(&T) -> u64 + Send + Sync + 'static,
    ) -> Unwindowed
    where
        T: HasTitle,
    {
        self.unwindowed(ValueType::Map, false, move |select, key, window_ms| {
            ShareByTitle {
                select,
                key,
                keys: Arc::new(keys),
                weight: Arc::new(weight),
                window_ms,
            }
        })
    }
}

/// `numerator / denominator` per entity, both finished aggregations of numbers; null (absent)
/// where the denominator is absent or zero.
pub fn ratio(numerator: Aggregation, denominator: Aggregation) -> Aggregation {
    let window = numerator.window.max(denominator.window);
    Aggregation {
        entity: numerator.entity,
        value_type: ValueType::Ratio,
        window,
        abelian: numerator.abelian && denominator.abelian,
        compute: Arc::new(Ratio {
            numerator: numerator.compute,
            denominator: denominator.compute,
        }),
    }
}

/// The select's records turned into weighted data by `f` and restricted to the window; with a
/// consent gate ([`crate::consent`]), only the records of viewers in the gate at each time;
/// with erasures ([`crate::erasure`]), without the records erased viewers sent before their
/// erasure.
///
/// A window commutes with record-by-record steps, so where the select has no join the window
/// goes last: the retraction delayed by a window length then holds the small keyed datum, not
/// the whole record. Behind a join the window must come first (a value as of `T` pairs the
/// windowed records with the metadata in force at `T`). The gate and the erasures come after
/// the window: a record takes part as of `T` while it is in the window, its viewer consents at
/// `T`, and no erasure in force at `T` reaches back past it.
fn keyed_window<'s, T, D, I>(
    select: &Select<T>,
    sources: &Sources<'s>,
    window_ms: u64,
    mut f: impl FnMut(T) -> I + 'static,
) -> VecCollection<'s, TimeMs, D>
where
    T: Record + HasViewer,
    D: Record,
    I: IntoIterator<Item = (D, isize)>,
{
    let (gate, erased) = (&sources.gate, &sources.erased);
    if let (None, Some(erased)) = (gate, erased) {
        let timed = windowed(select, sources, window_ms, move |t: T| {
            let (viewer, ts) = (t.viewer(), t.ts_ms());
            f(t).into_iter().map(move |(d, w)| ((viewer, (ts, d)), w))
        });
        return crate::erasure::forget(timed, erased);
    }
    let Some(gate) = gate else {
        return windowed(select, sources, window_ms, f);
    };
    let by_viewer = match erased {
        None => windowed(select, sources, window_ms, move |t: T| {
            let viewer = t.viewer();
            f(t).into_iter().map(move |(d, w)| ((viewer, d), w))
        }),
        Some(erased) => {
            let timed = windowed(select, sources, window_ms, move |t: T| {
                let (viewer, ts) = (t.viewer(), t.ts_ms());
                f(t).into_iter()
                    .map(move |(d, w)| ((viewer, (ts, (viewer, d))), w))
            });
            crate::erasure::forget(timed, erased)
        }
    };
    by_viewer.semijoin(gate.clone()).map(|(_, d)| d)
}

fn windowed<'s, T, D, I>(
    select: &Select<T>,
    sources: &Sources<'s>,
    window_ms: u64,
    f: impl FnMut(T) -> I + 'static,
) -> VecCollection<'s, TimeMs, D>
where
    T: Record,
    D: Record,
    I: IntoIterator<Item = (D, isize)>,
{
    if select.stream.record_by_record() {
        sliding(
            select.stream.collection(sources, None).explode(f),
            window_ms,
        )
    } else {
        select
            .stream
            .collection(sources, Some(window_ms))
            .explode(f)
    }
}

struct Total<T, K> {
    select: Select<T>,
    key: KeyFn<T, K>,
    weight: Arc<dyn Fn(&T) -> i64 + Send + Sync>,
    window_ms: u64,
    render: fn(i64) -> Value,
}

impl<T: Record + HasViewer, K: EntityKey> Compute for Total<T, K> {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        let (key, weight, render) = (self.key.clone(), self.weight.clone(), self.render);
        let weighted = keyed_window(&self.select, sources, self.window_ms, move |t| {
            key(&t).map(|k| ((k, ()), weight(&t) as isize))
        });
        per_key(weighted, "Sum", Sum::default).map(move |(k, total)| (k.into(), render(total)))
    }
}

struct Distinct<T, K, V> {
    select: Select<T>,
    key: KeyFn<T, K>,
    field: Arc<dyn Fn(&T) -> V + Send + Sync>,
    window_ms: u64,
}

impl<T: Record + HasViewer, K: EntityKey, V: Record> Compute for Distinct<T, K, V> {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        let (key, field) = (self.key.clone(), self.field.clone());
        let pairs = keyed_window(&self.select, sources, self.window_ms, move |t| {
            key(&t).map(|k| ((k, field(&t)), 1))
        });
        per_key(pairs, "CountDistinct", DistinctCount::default)
            .map(|(k, n)| (k.into(), Value::Int(n)))
    }
}

struct LastDistinct<T, K, V> {
    select: Select<T>,
    key: KeyFn<T, K>,
    field: Arc<dyn Fn(&T) -> V + Send + Sync>,
    time: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    k: usize,
    window_ms: u64,
}

impl<T: Record + HasViewer, K: EntityKey, V: Record + Display> Compute for LastDistinct<T, K, V> {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        let (key, field, time, k) = (
            self.key.clone(),
            self.field.clone(),
            self.time.clone(),
            self.k,
        );
        let seen = keyed_window(&self.select, sources, self.window_ms, move |t| {
            key(&t).map(|key| ((key, (field(&t), time(&t))), 1))
        });
        per_key(seen, "LastDistinct", move || LastK::new(k)).map(|(key, value)| (key.into(), value))
    }
}

type KeysFn<T> = Arc<dyn Fn(&T) -> Vec<String> + Send + Sync>;

struct ShareBy<T, K> {
    select: Select<T>,
    key: KeyFn<T, K>,
    keys: KeysFn<T>,
    weight: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    window_ms: u64,
}

impl<T: Record + HasViewer, K: EntityKey> Compute for ShareBy<T, K> {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        let (key, keys, weight) = (self.key.clone(), self.keys.clone(), self.weight.clone());
        let weighted = keyed_window(&self.select, sources, self.window_ms, move |t| {
            let w = weight(&t) as isize;
            let entity = key(&t);
            let shares = entity.map(|e| keys(&t).into_iter().map(move |s| ((e.clone(), s), w)));
            shares.into_iter().flatten()
        });
        share_per_entity(weighted)
    }
}

type TitleKeysFn = Arc<dyn Fn(&Title) -> Vec<String> + Send + Sync>;

struct ShareByTitle<T, K> {
    select: Select<T>,
    key: KeyFn<T, K>,
    keys: TitleKeysFn,
    weight: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
    window_ms: u64,
}

impl<T: Record + HasTitle + HasViewer, K: EntityKey> Compute for ShareByTitle<T, K> {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        let (key, keys, weight) = (self.key.clone(), self.keys.clone(), self.weight.clone());
        // The weight rides as the diff: equal (title, entity) rows of a tick consolidate, and
        // the arrangements compact to one row per pair.
        let weighted = keyed_window(&self.select, sources, self.window_ms, move |t| {
            let pair = key(&t).zip(t.title_id().cloned());
            pair.map(|(entity, title)| ((title, entity), weight(&t) as isize))
        });
        // Shared share keys: the join copies one per (title, entity) change. One string per
        // distinct key read here, so that equal keys are equal by pointer in the per-entity
        // states and in the maps they emit. It keeps every key the run's titles named: a
        // catalog's genres, bounded by the titles' own limits.
        let mut seen: foldhash::HashSet<Arc<str>> = foldhash::HashSet::default();
        let title_keys = sources.titles.clone().flat_map(move |title| {
            let id = title.title_id.clone();
            let mut shared = |k: String| match seen.get(k.as_str()) {
                Some(held) => held.clone(),
                None => {
                    let new = Arc::<str>::from(k);
                    seen.insert(new.clone());
                    new
                }
            };
            let keys = keys(&title).into_iter().map(&mut shared);
            keys.map(|k| (id.clone(), k)).collect::<Vec<_>>()
        });
        let per_key = weighted.join_map(title_keys, |_, entity, share| {
            (entity.clone(), share.clone())
        });
        share_per_entity(per_key)
    }
}

/// Each entity's map of share key → share of its summed weight, from `((entity, share key),
/// weight)` rows whose weight is the diff: per entity, the sums per share key, and the map
/// rebuilt from them when they change.
fn share_per_entity<'s, K: EntityKey, S: Record + Display>(
    weighted: VecCollection<'s, TimeMs, (K, S)>,
) -> Output<'s> {
    per_key(weighted, "Shares", Shares::default).map(|(entity, value)| (entity.into(), value))
}

struct Ratio {
    numerator: Arc<dyn Compute>,
    denominator: Arc<dyn Compute>,
}

impl Compute for Ratio {
    fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        let numerator = self
            .numerator
            .compute(sources)
            .map(|(k, v)| (k, (false, v)));
        let denominator = self
            .denominator
            .compute(sources)
            .map(|(k, v)| (k, (true, v)));
        per_key(numerator.concat(denominator), "Ratio", Quotient::default)
    }
}

impl Window {
    /// The window's length in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            Window::Sliding(ms) => ms,
            Window::Retention => RETENTION_MS,
        }
    }
}

mod per_key;
#[cfg(test)]
mod tests;
