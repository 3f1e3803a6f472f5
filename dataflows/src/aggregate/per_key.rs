//! Per-key state over event time: what the aggregations reduce their windows with, in place of
//! differential's `reduce`, `count_total` and `distinct_total`.
//!
//! Those operators keep their input (and `reduce` its output too) in arrangements: batches
//! built, merged and replayed through cursors, so they can answer at any partially ordered
//! time. Feature time is event time, totally ordered, and every aggregation here can take its
//! input one update at a time. So each worker keeps, for each key it owns, a small state that
//! updates apply to in time order ([`KeyState`]) and the value it last emitted. When a time
//! completes (the input frontier passes it), the updates of that time are consolidated, each
//! key they touch is updated once, and where the key's value changed the old value is
//! retracted and the new one inserted at that time. Those are the updates, at the times, that a
//! `reduce` of the same input makes: a key's value as of `T` is a function of the multiset of
//! its input as of `T`, and each state here is exactly that multiset, summed.
//!
//! The cost of an update is that of the state's own step (an addition, a map insert), not a
//! replay of everything the key holds; and nothing is kept but the states.

use std::any::Any;
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::fmt::Display;
use std::sync::Arc;

use differential_dataflow::VecCollection;
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::hashable::Hashable;

use crate::event::TimeMs;
use crate::source::Record;
use crate::value::{F64, Value};

/// What a key keeps of its input: the multiset of its data, or as much of it as its value needs.
pub(crate) trait KeyState<D>: 'static {
    /// What the key reads as.
    type Value: Clone + PartialEq + 'static;

    /// Adds `diff` copies of `datum` (removes them when negative). Updates of one time may come
    /// in any order: the state after them all is what counts.
    fn update(&mut self, datum: D, diff: isize);

    /// The key's value, `None` at the default (the key is then absent from the output).
    fn value(&self) -> Option<Self::Value>;

    /// Whether the state holds nothing, so the key can be forgotten.
    fn is_empty(&self) -> bool;
}

/// One key's state and the value last emitted for it.
struct Keyed<S: KeyState<D>, D> {
    state: S,
    emitted: Option<S::Value>,
}

/// One pending input update: a key's record and its diff.
type Update<K, D> = ((K, D), isize);

/// Each key's value, from its `(key, datum)` updates, as `(key, value)` updates at the times
/// the value changes. `init` makes the state of a key seen for the first time.
pub(crate) fn per_key<'s, K, D, S>(
    collection: VecCollection<'s, TimeMs, (K, D)>,
    name: &str,
    init: impl Fn() -> S + 'static,
) -> VecCollection<'s, TimeMs, (K, S::Value)>
where
    K: Record,
    D: Record,
    S: KeyState<D>,
    S::Value: Record,
{
    use differential_dataflow::AsCollection;
    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::Capability;
    use timely::dataflow::operators::generic::Operator;

    // A key's updates all meet at one worker, as an arrangement by key would place them.
    let exchange = Exchange::new(|update: &((K, D), TimeMs, isize)| (update.0).0.hashed());
    let stream = collection
        .inner
        .unary_frontier(exchange, name, move |_, _| {
            let mut pending: BTreeMap<TimeMs, Vec<Update<K, D>>> = BTreeMap::new();
            // A capability at the earliest pending time: the values of that time go out with
            // it, and downstream cannot complete the time before they do.
            let mut held: Option<Capability<TimeMs>> = None;
            let mut keys: foldhash::HashMap<K, Keyed<S, D>> = foldhash::HashMap::default();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let mut earliest = TimeMs::MAX;
                    for (update, time, diff) in data.drain(..) {
                        earliest = earliest.min(time);
                        pending.entry(time).or_default().push((update, diff));
                    }
                    if !pending.is_empty() && held.as_ref().is_none_or(|h| *h.time() > earliest) {
                        held = Some(cap.delayed(&earliest, output.output_index()));
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    // Complete once nothing at or before it can arrive.
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (time, updates) = entry.remove_entry();
                    let cap = held
                        .as_ref()
                        .expect("a capability covers every pending time");
                    let mut session = output.session(cap);
                    settle(&mut keys, &init, updates, |key, value, diff| {
                        session.give(((key, value), time, diff));
                    });
                }
                match pending.keys().next() {
                    Some(next) => held
                        .as_mut()
                        .expect("a capability covers every pending time")
                        .downgrade(next),
                    None => held = None,
                }
            }
        });
    stream.as_collection()
}

/// Applies one time's updates to the keys' states and emits each changed value: the old one
/// retracted, the new one inserted.
fn settle<K: Record, D: Record, S: KeyState<D>>(
    keys: &mut foldhash::HashMap<K, Keyed<S, D>>,
    init: &impl Fn() -> S,
    mut updates: Vec<((K, D), isize)>,
    mut emit: impl FnMut(K, S::Value, isize),
) {
    // Consolidated, a time's updates come grouped by key, and cancelling ones are gone.
    consolidate(&mut updates);
    let mut updates = updates.into_iter().peekable();
    while let Some(((key, datum), diff)) = updates.next() {
        let keyed = keys.entry(key.clone()).or_insert_with(|| Keyed {
            state: init(),
            emitted: None,
        });
        keyed.state.update(datum, diff);
        while let Some(((_, datum), diff)) = updates.next_if(|((k, _), _)| *k == key) {
            keyed.state.update(datum, diff);
        }
        let value = keyed.state.value();
        if value != keyed.emitted {
            if let Some(old) = keyed.emitted.take() {
                emit(key.clone(), old, -1);
            }
            if let Some(new) = &value {
                emit(key.clone(), new.clone(), 1);
            }
            keyed.emitted = value;
        }
        if keyed.emitted.is_none() && keyed.state.is_empty() {
            keys.remove(&key);
        }
    }
}

/// The sum of the diffs: a count, or a sum of weights riding as diffs. Abelian.
#[derive(Default)]
pub(crate) struct Sum(i64);

impl KeyState<()> for Sum {
    type Value = i64;

    fn update(&mut self, _: (), diff: isize) {
        self.0 += diff as i64;
    }

    fn value(&self) -> Option<i64> {
        (self.0 != 0).then_some(self.0)
    }

    fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// The number of distinct data held: those with a count other than zero, as differential's
/// `distinct_total` has it.
pub(crate) struct DistinctCount<V> {
    counts: foldhash::HashMap<V, isize>,
}

impl<V> Default for DistinctCount<V> {
    fn default() -> Self {
        DistinctCount {
            counts: foldhash::HashMap::default(),
        }
    }
}

impl<V: Record> KeyState<V> for DistinctCount<V> {
    type Value = i64;

    fn update(&mut self, datum: V, diff: isize) {
        match self.counts.entry(datum) {
            Entry::Occupied(mut held) => {
                *held.get_mut() += diff;
                if *held.get() == 0 {
                    held.remove();
                }
            }
            Entry::Vacant(new) if diff != 0 => {
                new.insert(diff);
            }
            Entry::Vacant(_) => {}
        }
    }

    fn value(&self) -> Option<i64> {
        let distinct = self.counts.len();
        (distinct > 0).then_some(distinct as i64)
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Up to `k` distinct values by the latest time each was seen, newest first (ties: values
/// ascending), from `(value, time)` data.
pub(crate) struct LastK<V> {
    k: usize,
    /// Each value's times with their counts: the latest is the largest held.
    times: foldhash::HashMap<V, BTreeMap<u64, isize>>,
    /// Each value by its latest time, newest first.
    newest: BTreeSet<(Reverse<u64>, V)>,
}

impl<V> LastK<V> {
    pub(crate) fn new(k: usize) -> LastK<V> {
        LastK {
            k,
            times: foldhash::HashMap::default(),
            newest: BTreeSet::new(),
        }
    }
}

impl<V: Record + Display> KeyState<(V, u64)> for LastK<V> {
    type Value = Value;

    fn update(&mut self, (value, time): (V, u64), diff: isize) {
        let times = self.times.entry(value.clone()).or_default();
        let before = times.last_key_value().map(|(t, _)| *t);
        let count = times.entry(time).or_insert(0);
        *count += diff;
        if *count == 0 {
            times.remove(&time);
        }
        let after = times.last_key_value().map(|(t, _)| *t);
        if times.is_empty() {
            self.times.remove(&value);
        }
        if before != after {
            if let Some(before) = before {
                self.newest.remove(&(Reverse(before), value.clone()));
            }
            if let Some(after) = after {
                self.newest.insert((Reverse(after), value));
            }
        }
    }

    fn value(&self) -> Option<Value> {
        if self.newest.is_empty() {
            return None;
        }
        let newest = self.newest.iter().take(self.k);
        Some(Value::List(newest.map(|(_, v)| label(v)).collect()))
    }

    fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// Each share key's part of the summed weight, from share keys with their weights as diffs.
/// The sums are abelian; the map is rebuilt from them when they change.
pub(crate) struct Shares<S> {
    totals: Totals<S>,
    sum: i64,
}

impl<S> Default for Shares<S> {
    fn default() -> Self {
        Shares {
            totals: Totals::Few(Vec::new()),
            sum: 0,
        }
    }
}

/// A key's sums per share key, in share-key order. A viewer has a handful of genres: a vector
/// scanned for the key is cheaper than a tree that compares strings at every level, and the
/// shared strings `share_by_title` hands out are equal by pointer before any byte is read. A
/// key with many share keys moves to a tree for good, so no update costs more than a log.
enum Totals<S> {
    Few(Vec<(S, i64)>),
    Many(BTreeMap<S, i64>),
}

/// Share keys a vector holds before it becomes a tree.
const FEW_SHARES: usize = 32;

impl<S: Ord> Totals<S> {
    fn add(&mut self, share: S, diff: i64) {
        let few = match self {
            Totals::Few(few) => few,
            Totals::Many(many) => return add(many, share, diff),
        };
        match few.iter().position(|(s, _)| *s == share) {
            Some(i) => {
                few[i].1 += diff;
                if few[i].1 == 0 {
                    few.remove(i);
                }
            }
            None if diff == 0 => {}
            None if few.len() < FEW_SHARES => {
                let at = few.partition_point(|(s, _)| *s < share);
                few.insert(at, (share, diff));
            }
            None => {
                let mut many: BTreeMap<S, i64> = std::mem::take(few).into_iter().collect();
                many.insert(share, diff);
                *self = Totals::Many(many);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Totals::Few(few) => few.is_empty(),
            Totals::Many(many) => many.is_empty(),
        }
    }
}

impl<S: Record + Display> KeyState<S> for Shares<S> {
    type Value = Value;

    fn update(&mut self, share: S, diff: isize) {
        self.sum += diff as i64;
        self.totals.add(share, diff as i64);
    }

    fn value(&self) -> Option<Value> {
        if self.sum <= 0 {
            return None;
        }
        let sum = self.sum as f64;
        let share = |(k, t): (&S, &i64)| (label(k), F64::new(*t as f64 / sum));
        Some(Value::Map(match &self.totals {
            Totals::Few(few) => few.iter().map(|(k, t)| share((k, t))).collect(),
            Totals::Many(many) => many.iter().map(share).collect(),
        }))
    }

    fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }
}

/// `v` as a value's text: a shared string is shared again (the titles and genres are),
/// anything else is rendered.
fn label<V: Display + 'static>(v: &V) -> Arc<str> {
    match (v as &dyn Any).downcast_ref::<Arc<str>>() {
        Some(shared) => shared.clone(),
        None => Arc::from(v.to_string()),
    }
}

/// Adds `diff` to `key`'s count, which leaves the map at zero.
fn add<K: Ord>(counts: &mut BTreeMap<K, i64>, key: K, diff: i64) {
    match counts.entry(key) {
        btree_map::Entry::Occupied(mut held) => {
            *held.get_mut() += diff;
            if *held.get() == 0 {
                held.remove();
            }
        }
        btree_map::Entry::Vacant(new) if diff != 0 => {
            new.insert(diff);
        }
        btree_map::Entry::Vacant(_) => {}
    }
}

/// `numerator / denominator` from the two values of a key, `(is_denominator, value)`; none
/// without a denominator or where it is zero.
#[derive(Default)]
pub(crate) struct Quotient {
    parts: BTreeMap<(bool, Value), i64>,
}

impl KeyState<(bool, Value)> for Quotient {
    type Value = Value;

    fn update(&mut self, part: (bool, Value), diff: isize) {
        add(&mut self.parts, part, diff as i64);
    }

    fn value(&self) -> Option<Value> {
        let number = |v: &Value| match v {
            Value::Int(i) => *i as f64,
            Value::Float(f) => f.get(),
            _ => f64::NAN,
        };
        let (mut num, mut den) = (0.0, 0.0);
        for (is_den, v) in self.parts.keys() {
            if *is_den {
                den = number(v)
            } else {
                num = number(v)
            }
        }
        (den != 0.0).then(|| Value::Float(F64::new(num / den)))
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}
