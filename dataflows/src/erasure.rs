//! Erasure as a collection in time: which viewers asked to be forgotten, and the filter that
//! keeps what they did before it out of every viewer feature.
//!
//! An erasure `(viewer, ts)` takes effect at the tick the engine places it at (`T_e`: the
//! input's time when it is read). Of several erasures of one viewer, the one with the largest `ts` (`E`)
//! holds. From `T_e` on, the viewer's records with `ts < E` take no part in any **viewer**
//! feature: those in a window retract at `T_e`, and those placed later (late events from
//! before the erasure) never enter. Records with `ts >= E` are new data, and count.
//!
//! The filter applies to each viewer feature's records after its window, never before: a
//! record retracted from the raw input at `T_e`, after its window had already let it go,
//! would be retracted twice. After the window it is one record in the window or none.
//!
//! Title features are not filtered: their aggregates over many viewers identify no one, and
//! keeping them is what makes a replay (which knows every erasure from the start) equal the
//! live store. An erased viewer's consent records from before the erasure are forgotten the
//! same way, for the viewer's own values and the consent in force the store records
//! ([`crate::consent::Consenting`]); title features stay gated by the consent in force then.

use differential_dataflow::VecCollection;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::ValSpine;
use serde::{Deserialize, Serialize};

use crate::Output;
use crate::event::{EntityId, TimeMs, ViewerId};
use crate::source::Record;

/// One decoded erasure record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Erasure {
    pub viewer: ViewerId,
    /// The record's own time, ms since the epoch: the viewer's records before it are erased.
    pub ts_ms: TimeMs,
}

/// `(viewer, E)`, arranged by viewer: the largest erasure `ts` of each erased viewer, at each
/// time. Shared by every viewer feature of a worker's dataflow.
pub type Erased<'s> = Arranged<'s, TraceAgent<ValSpine<ViewerId, TimeMs, TimeMs, isize>>>;

/// The largest erasure `ts` per viewer, at each time.
pub fn erased<'s>(erasures: VecCollection<'s, TimeMs, Erasure>) -> Erased<'s> {
    erasures
        .map(|e| (e.viewer, e.ts_ms))
        // Sorted ascending: the last is the largest.
        .reduce(|_, times, out| out.push((*times[times.len() - 1].0, 1)))
        .arrange_by_key()
}

/// `records` less those of erased viewers from before their erasure: a record `(viewer, ts,
/// d)` leaves at the later of its own time and its viewer's erasure's, when `ts < E`.
///
/// Costs one arrangement of the records by viewer (what a retraction at `T_e` must find),
/// which holds a record while it is in its window.
pub fn forget<'s, D: Record>(
    records: VecCollection<'s, TimeMs, (ViewerId, (TimeMs, D))>,
    erased: &Erased<'s>,
) -> VecCollection<'s, TimeMs, D> {
    let forgotten = records
        .clone()
        .join_core(erased.clone(), |_, (ts, d), erased_ts: &TimeMs| {
            (ts < erased_ts).then(|| d.clone())
        });
    records.map(|(_, (_, d))| d).concat(forgotten.negate())
}

/// A viewer feature's `output` less the values of each erased viewer, from the tick its
/// erasure lands at on, new data included: for a custom feature that never passed its records
/// through [`forget`], whose values cannot be told apart by the time of their records.
pub fn withhold<'s>(output: Output<'s>, erased: &Erased<'s>) -> Output<'s> {
    let withheld = output
        .clone()
        .flat_map(|(entity, value)| match entity {
            EntityId::Viewer(viewer) => Some((viewer, value)),
            EntityId::Title(_) => None,
        })
        .join_core(erased.clone(), |viewer, value, _| {
            Some((EntityId::Viewer(*viewer), value.clone()))
        });
    output.concat(withheld.negate())
}

#[cfg(test)]
mod tests;
