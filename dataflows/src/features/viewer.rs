//! What a viewer watched and started recently. Feeds the home-screen ranker.

use differential_dataflow::operators::CountTotal;

use crate::event::EventKind;
use crate::window::{hours, sliding};
use crate::{Entity, FeatureDef, Output, Sources, Value, ValueType, Window};

/// The viewer features, in catalog order.
pub fn features() -> Vec<FeatureDef> {
    vec![
        FeatureDef {
            name: "viewer.watch_seconds_1h",
            entity: Entity::Viewer,
            value_type: ValueType::Float,
            window: Window::Sliding(hours(1)),
            description: "seconds of playback (sum of heartbeat interval_s) in the last hour",
            build: watch_seconds_1h,
        },
        FeatureDef {
            name: "viewer.plays_24h",
            entity: Entity::Viewer,
            value_type: ValueType::Int,
            window: Window::Sliding(hours(24)),
            description: "number of play_start events in the last 24 hours",
            build: plays_24h,
        },
    ]
}

/// Sum of heartbeat `interval_s`: abelian, so the interval rides as the update's diff and the
/// window costs one running total per viewer.
fn watch_seconds_1h<'s>(sources: &Sources<'s>) -> Output<'s> {
    let heartbeats = sources.events.clone().flat_map(|e| match e.kind {
        EventKind::Heartbeat { interval_ms, .. } => Some((e.viewer, interval_ms)),
        _ => None,
    });
    sliding(heartbeats, hours(1))
        .explode(|(viewer, interval_ms)| Some((viewer, interval_ms as isize)))
        .count_total()
        .map(|(viewer, total_ms)| (viewer.to_string(), Value::seconds_from_ms(total_ms as i64)))
}

/// Count of `play_start`: abelian, one running total per viewer.
fn plays_24h<'s>(sources: &Sources<'s>) -> Output<'s> {
    let plays = sources.events.clone().flat_map(|e| match e.kind {
        EventKind::PlayStart { .. } => Some(e.viewer),
        _ => None,
    });
    sliding(plays, hours(24))
        .count_total()
        .map(|(viewer, n)| (viewer.to_string(), Value::Int(n as i64)))
}
