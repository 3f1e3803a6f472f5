//! Consent as a collection in time: which viewers consent to which purposes, tick by tick, and
//! the gate that keeps a feature's values to the viewers who consent to its purposes.
//!
//! A consent record `(viewer, purpose, granted, ts)` takes effect at the tick the engine places
//! it at (its own, the first after its `ts`, unless read after the input's time passed it). As of `T`, a viewer consents to a purpose when its latest
//! record in force is a grant. The records in force are those of the last `max_age` (a window,
//! exact like every other: a grant leaves it exactly `max_age` after its tick), and the latest
//! is the one with the largest (tick, `ts`), a revocation winning a tie. So:
//! - a grant holds from its tick until a revocation's tick, or until `max_age` after it;
//! - a later grant renews it (it is the latest, for another `max_age`);
//! - a revocation ends it at its tick, whatever grants came before.
//!
//! Gating happens at value time: a viewer's values for a feature are what the feature computes
//! from their events while they consent to every purpose the feature serves that needs consent,
//! and the feature's default otherwise. Revocation therefore takes a viewer to the defaults at
//! its tick, history shows exactly that, and a snapshot as of an earlier time still sees what
//! was consented then. A title feature counts, as of each time, only the viewers consenting
//! then: its windowed records are gated by their viewer before they are aggregated.
//!
//! The consent in force is also an output of its own, [`CONSENT_FEATURE`]: per viewer, the
//! gated purposes consented as of each tick. The store keeps it as it keeps any feature
//! (history and online), so a read that names a purpose can tell, as of any time, whether the
//! viewer consented then; retention purges it like any history.

use std::collections::BTreeMap;

use differential_dataflow::VecCollection;
use differential_dataflow::operators::CountTotal;
use serde::{Deserialize, Serialize};

use crate::erasure::{Erased, forget};
use crate::event::{TimeMs, ViewerId};
use crate::feature::{DefinitionError, Feature, Purpose};
use crate::window::{DAY_MS, sliding};
use crate::{Entity, EntityId, Output, Value};

/// The store's name for the consent in force: a viewer's gated purposes consented, as a list
/// of purpose names in ascending order, and absent (the empty list) when none. Written only
/// with consent configured, so a store without it stays as it was. The dot in the feature
/// part keeps it apart from every library feature (`Feature::check` allows none there).
pub const CONSENT_FEATURE: &str = "viewer.consent.purposes";

/// VPPA (18 U.S.C. § 2710(b)(2)(B)(ii)): consent lasts at most two years. The longest a grant
/// may hold, and the default.
pub const MAX_AGE_LIMIT_MS: u64 = 730 * DAY_MS;

/// Which purposes need consent, and how long a grant holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRules {
    /// The purposes gated by consent; a consent record's purpose is its index here.
    pub purposes: Vec<Purpose>,
    /// A grant holds at most this long after its tick ([`MAX_AGE_LIMIT_MS`] at most).
    pub max_age_ms: u64,
}

impl ConsentRules {
    /// The index of `purpose` among the gated purposes, if consent gates it.
    pub fn index(&self, purpose: Purpose) -> Option<u8> {
        let at = self.purposes.iter().position(|p| *p == purpose)?;
        u8::try_from(at).ok()
    }

    /// The gated purposes `feature` serves, by index: its values need consent to all of them.
    pub fn gated_purposes(&self, feature: &Feature) -> Vec<u8> {
        let mut gated: Vec<u8> = feature
            .purposes
            .iter()
            .filter_map(|p| self.index(*p))
            .collect();
        gated.sort_unstable();
        gated.dedup();
        gated
    }

    /// What the rules cannot enforce for `features`: a max age past the limit or not in whole
    /// ticks, too many purposes, and custom title computations serving a gated purpose (their
    /// viewers are out of the gate's reach).
    pub fn check(&self, features: &[Feature], tick_ms: u64) -> Vec<DefinitionError> {
        let mut errors = Vec::new();
        let (max_age_ms, tick_ms) = (self.max_age_ms, tick_ms.max(1));
        if max_age_ms == 0 || max_age_ms > MAX_AGE_LIMIT_MS || !max_age_ms.is_multiple_of(tick_ms) {
            errors.push(DefinitionError::ConsentMaxAge {
                max_age_ms,
                tick_ms,
            });
        }
        if self.purposes.len() > usize::from(u8::MAX) {
            errors.push(DefinitionError::TooManyPurposes {
                count: self.purposes.len(),
            });
        }
        for feature in features {
            let gated = !self.gated_purposes(feature).is_empty();
            if gated && feature.entity() != Some(Entity::Viewer) && !feature.keyed() {
                errors.push(DefinitionError::UngatedCustom {
                    name: feature.name.to_string(),
                });
            }
        }
        errors
    }
}

/// One decoded consent record: `purpose` is an index into [`ConsentRules::purposes`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Consent {
    pub viewer: ViewerId,
    pub purpose: u8,
    pub granted: bool,
    /// The record's own time, ms since the epoch: it orders records of one tick.
    pub ts_ms: TimeMs,
}

/// `(viewer, purpose index)` for every consent in force, at each time: at most one each. With
/// `erased`, an erased viewer's records from before the erasure are forgotten from its tick
/// on, as their events are ([`crate::erasure`]).
pub fn in_force<'s>(
    records: VecCollection<'s, TimeMs, Consent>,
    max_age_ms: u64,
    erased: Option<&Erased<'s>>,
) -> VecCollection<'s, TimeMs, (ViewerId, u8)> {
    use differential_dataflow::AsCollection;
    use timely::dataflow::operators::vec::Map;
    // The record's tick rides in the data, so the reduce can tell the latest record.
    let timed = records
        .inner
        .map(|(c, tick, diff)| {
            let order = (tick, c.ts_ms, !c.granted);
            (((c.viewer, c.purpose), order), tick, diff)
        })
        .as_collection();
    let windowed = sliding(timed, max_age_ms);
    let windowed = match erased {
        None => windowed,
        Some(erased) => {
            // The record's `ts` rides in its order: (tick, ts, revoked).
            let by_viewer = windowed.map(|(key, order)| (key.0, (order.1, (key, order))));
            forget(by_viewer, erased)
        }
    };
    windowed
        .reduce(|_, records, out| {
            // Sorted ascending: the last is the latest, a revocation after a grant of its ts.
            let (_, _, revoked) = *records[records.len() - 1].0;
            if !revoked {
                out.push(((), 1));
            }
        })
        .map(|(key, ())| key)
}

/// The consent in force, and the gates built from it, in one worker's dataflow.
///
/// Erasure forgets an erased viewer's consent records from before the erasure, as it forgets
/// their events: the viewer's own values after it (viewer features, and [`CONSENT_FEATURE`],
/// which would otherwise restate the pseudonym in the store) need a grant given after it.
/// Title features keep their aggregates over the consent in force then ([`crate::erasure`]),
/// so that a replay, which knows every erasure from the start, counts what the live run did.
#[derive(Clone)]
pub struct Consenting<'s> {
    records: VecCollection<'s, TimeMs, Consent>,
    /// Every consent in force: what title features are gated by.
    in_force: VecCollection<'s, TimeMs, (ViewerId, u8)>,
    /// `in_force` less what erasures forgot: what viewers' own values are gated by.
    kept: VecCollection<'s, TimeMs, (ViewerId, u8)>,
    rules: ConsentRules,
    /// One gate per set of gated purposes and kind of feature (viewer or not), shared by the
    /// features that need it.
    gates: BTreeMap<(Vec<u8>, bool), VecCollection<'s, TimeMs, ViewerId>>,
}

impl<'s> Consenting<'s> {
    pub fn new(records: VecCollection<'s, TimeMs, Consent>, rules: ConsentRules) -> Consenting<'s> {
        let in_force = in_force(records.clone(), rules.max_age_ms, None);
        Consenting {
            records,
            kept: in_force.clone(),
            in_force,
            rules,
            gates: BTreeMap::new(),
        }
    }

    /// Forgets, for the viewers' own values, what `erased` viewers consented to before their
    /// erasure.
    pub fn forgetting(mut self, erased: &Erased<'s>) -> Consenting<'s> {
        self.kept = in_force(self.records.clone(), self.rules.max_age_ms, Some(erased));
        self.gates.clear();
        self
    }

    /// `(viewer, purpose index)` for every consent in force and not forgotten, at each time.
    pub fn in_force(&self) -> VecCollection<'s, TimeMs, (ViewerId, u8)> {
        self.kept.clone()
    }

    /// [`CONSENT_FEATURE`]'s values: per viewer, the names of the purposes consented at each
    /// time, ascending; a viewer consenting to none (or erased since) is absent (the default).
    pub fn purposes_in_force(&self) -> Output<'s> {
        let names: Vec<&'static str> = self.rules.purposes.iter().map(|p| p.as_str()).collect();
        self.kept
            .clone()
            .reduce(move |_, purposes, out| {
                let mut consented: Vec<&str> = purposes
                    .iter()
                    .map(|(p, _)| names[usize::from(**p)])
                    .collect();
                consented.sort_unstable();
                out.push((Value::list(consented), 1));
            })
            .map(|(viewer, value)| (EntityId::Viewer(viewer), value))
    }

    /// The viewers consenting, at each time, to every gated purpose `feature` serves; `None`
    /// when it serves none.
    pub fn gate(&mut self, feature: &Feature) -> Option<VecCollection<'s, TimeMs, ViewerId>> {
        let gated = self.rules.gated_purposes(feature);
        if gated.is_empty() {
            return None;
        }
        let viewer = feature.entity() == Some(Entity::Viewer);
        let in_force = if viewer { &self.kept } else { &self.in_force }.clone();
        let gate = self
            .gates
            .entry((gated.clone(), viewer))
            .or_insert_with(|| {
                let needed = gated.len() as isize;
                let viewers = in_force
                    .filter(move |(_, p)| gated.binary_search(p).is_ok())
                    .map(|(viewer, _)| viewer);
                if needed == 1 {
                    return viewers;
                }
                // At most one row per (viewer, purpose): a count of them all is consent to all.
                viewers
                    .count_total()
                    .filter(move |(_, n)| *n == needed)
                    .map(|(viewer, _)| viewer)
            });
        Some(gate.clone())
    }
}

/// A viewer feature's values, kept only while their viewer is in `gate`: outside it the
/// viewer reads the default. The same as gating the viewer's records (the value is computed
/// from that viewer's records alone), for one arrangement of values instead of one of records.
pub(crate) fn gate_values<'s>(
    values: Output<'s>,
    gate: VecCollection<'s, TimeMs, ViewerId>,
) -> Output<'s> {
    // A viewer feature yields viewers only (`Feature::check` holds it to its entity).
    let viewers = values.flat_map(|(entity, value)| match entity {
        EntityId::Viewer(viewer) => Some((viewer, value)),
        EntityId::Title(_) => None,
    });
    viewers
        .semijoin(gate)
        .map(|(viewer, value)| (viewer.into(), value))
}

#[cfg(test)]
mod tests;
