//! Windows over event time, as differential collections.
//!
//! A window of length `W` as of `T` covers `T - W <= ts < T`. An event is visible from its tick
//! `t0` (the first boundary strictly after `ts`), so a windowed collection holds it from `t0`
//! and retracts it at `t0 + W`: one insert and one delayed retraction. Aggregations that are
//! abelian (count, sum) then need nothing but the running total per key; the windowed input is
//! never materialised.

use std::collections::BTreeMap;

use differential_dataflow::VecCollection;
use differential_dataflow::difference::Abelian;

use crate::event::TimeMs;

pub const SECOND_MS: u64 = 1000;
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// The retention limit: no viewing data older than this survives (at most 365
/// days). "Within retention" windows are this long.
pub const RETENTION_MS: u64 = 365 * DAY_MS;

/// Window lengths in milliseconds, for definitions that read like their names.
pub fn hours(n: u64) -> u64 {
    n * HOUR_MS
}

pub fn days(n: u64) -> u64 {
    n * DAY_MS
}

pub fn minutes(n: u64) -> u64 {
    n * MINUTE_MS
}

/// The first tick boundary strictly after `ts_ms`: when an event becomes visible.
pub fn visible_at(ts_ms: TimeMs, tick_ms: u64) -> TimeMs {
    (ts_ms / tick_ms + 1) * tick_ms
}

/// The tick boundary at or before `t_ms`.
pub fn floor_tick(t_ms: TimeMs, tick_ms: u64) -> TimeMs {
    t_ms - t_ms % tick_ms
}

/// `collection` restricted to a sliding window of `window_ms`: each update is retracted
/// `window_ms` after it took effect.
pub fn sliding<'scope, D, R>(
    collection: VecCollection<'scope, TimeMs, D, R>,
    window_ms: u64,
) -> VecCollection<'scope, TimeMs, D, R>
where
    D: differential_dataflow::Data,
    R: Abelian + differential_dataflow::ExchangeData,
{
    let expired = expire_after(collection.clone(), window_ms);
    collection.concat(expired)
}

/// Each update of `collection`, negated, at its time plus `window_ms` (saturating).
///
/// Unlike differential's `delay`, which sends the retraction downstream at once, this holds
/// the retractions back until the input frontier reaches their time. Sent early, a 90-day
/// retraction would wait in the next arrangement's batcher, which re-merges everything it
/// holds each time its frontier moves: the cost of every tick would grow with the window's
/// contents. Held here, in time order, a retraction costs one insert and one removal.
fn expire_after<'scope, D, R>(
    collection: VecCollection<'scope, TimeMs, D, R>,
    window_ms: u64,
) -> VecCollection<'scope, TimeMs, D, R>
where
    D: differential_dataflow::Data,
    R: Abelian + differential_dataflow::ExchangeData,
{
    use differential_dataflow::AsCollection;
    use differential_dataflow::consolidation::consolidate;
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::Capability;
    use timely::dataflow::operators::generic::Operator;

    let stream = collection
        .inner
        .unary_frontier(Pipeline, "Expire", move |_, _| {
            let mut pending: BTreeMap<TimeMs, Vec<(D, R)>> = BTreeMap::new();
            // A capability at the earliest pending time: it lets the retractions out later, and
            // keeps downstream from completing their times before they are out.
            let mut held: Option<Capability<TimeMs>> = None;
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let mut earliest = TimeMs::MAX;
                    for (datum, time, mut diff) in data.drain(..) {
                        let expiry = time.saturating_add(window_ms);
                        earliest = earliest.min(expiry);
                        diff.negate();
                        pending.entry(expiry).or_default().push((datum, diff));
                    }
                    if !pending.is_empty() && held.as_ref().is_none_or(|h| *h.time() > earliest) {
                        held = Some(cap.delayed(&earliest, output.output_index()));
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    // Due once nothing earlier can arrive: downstream then seals it right away.
                    if frontier.less_than(entry.key()) {
                        break;
                    }
                    let (time, mut updates) = entry.remove_entry();
                    consolidate(&mut updates);
                    let cap = held
                        .as_ref()
                        .expect("a capability covers every pending time");
                    let mut session = output.session(cap);
                    for (datum, diff) in updates {
                        session.give((datum, time, diff));
                    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// `t0` is the first boundary strictly after `ts`, and `floor_tick` the last at or
        /// before: an event is visible as of a boundary `T` exactly when `ts < T`.
        #[test]
        fn visibility_is_ts_before_t(ts in 0u64..10_000_000, k in 0u64..10_000, tick in 1u64..5000) {
            let t0 = visible_at(ts, tick);
            prop_assert!(t0 > ts && t0 - ts <= tick && t0.is_multiple_of(tick));
            let f = floor_tick(ts, tick);
            prop_assert!(f <= ts && ts < f + tick && f.is_multiple_of(tick));
            let boundary = k * tick;
            prop_assert_eq!(t0 <= boundary, ts < boundary);
        }

        /// Insert at `t0`, retract at `t0 + W`: the event is in the window as of a boundary
        /// `T` exactly when `T - W <= ts < T`.
        #[test]
        fn insert_and_delayed_retraction_is_the_window(
            ts in 0u64..10_000_000, k in 0u64..20_000, ticks in 1u64..50, tick in 1u64..2000,
        ) {
            let window = ticks * tick;
            let (t0, boundary) = (visible_at(ts, tick), k * tick);
            let held = t0 <= boundary && boundary < t0 + window;
            let covered = boundary as i128 - window as i128 <= ts as i128 && ts < boundary;
            prop_assert_eq!(held, covered);
        }
    }

    #[test]
    fn an_event_is_visible_from_the_first_boundary_strictly_after_it() {
        assert_eq!(visible_at(0, 1000), 1000);
        assert_eq!(visible_at(999, 1000), 1000);
        assert_eq!(visible_at(1000, 1000), 2000);
        assert_eq!(floor_tick(1999, 1000), 1000);
        assert_eq!(floor_tick(2000, 1000), 2000);
    }
}
