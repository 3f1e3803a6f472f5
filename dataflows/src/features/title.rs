//! How titles are doing right now. Feeds trending rows.

use differential_dataflow::operators::{CountTotal, ThresholdTotal};

use crate::event::EventKind;
use crate::window::{hours, sliding};
use crate::{Entity, FeatureDef, Output, Sources, Value, ValueType, Window};

/// The title features, in catalog order.
pub fn features() -> Vec<FeatureDef> {
    vec![FeatureDef {
        name: "title.plays_1h",
        entity: Entity::Title,
        value_type: ValueType::Int,
        window: Window::Sliding(hours(1)),
        description: "number of distinct viewers with a play_start in the last hour",
        build: plays_1h,
    }]
}

/// Distinct viewers: not abelian in the viewer, so the windowed (title, viewer) pairs are kept
/// and made distinct before the per-title count.
fn plays_1h<'s>(sources: &Sources<'s>) -> Output<'s> {
    let plays = sources.events.clone().flat_map(|e| match e.kind {
        EventKind::PlayStart { title, .. } => Some((title, e.viewer)),
        _ => None,
    });
    sliding(plays, hours(1))
        .distinct_total()
        .map(|(title, _viewer)| title)
        .count_total()
        .map(|(title, n)| (title, Value::Int(n as i64)))
}
