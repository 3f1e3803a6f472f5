//! Erasure against a naive model: random events and erasures at out-of-order ticks; every
//! feature's output accumulated at every tick must equal the model recomputed from scratch,
//! in which a viewer feature as of `T` skips the events of a viewer erased by `T` whose `ts`
//! lies before the largest erasure in force, and a title feature skips nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use proptest::prelude::*;
use timely::dataflow::operators::capture::{Capture, Extract};

use super::*;
use crate::prelude::*;
use crate::{Event, EventKind, Sources, Title, build_all};

const TICK: u64 = 1000;
const LAST_TICK: u64 = 16;

type Out = Vec<((u16, String, String), u64, isize)>;

/// Runs `features` over `events` (and `erasures`, when given) to completion.
fn run(
    features: Vec<Feature>,
    events: Vec<(Event, u64)>,
    erasures: Option<Vec<(Erasure, u64)>>,
) -> Out {
    let (send, recv) = std::sync::mpsc::channel();
    let send = Arc::new(Mutex::new(send));
    timely::execute_directly(move |worker| {
        let send = send.lock().unwrap().clone();
        let with_erasures = erasures.is_some();
        let (mut events_in, mut erasures_in) = worker.dataflow::<u64, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (_titles_in, titles) = scope.new_collection::<Title, isize>();
            let (erasures_in, erasures) = scope.new_collection::<Erasure, isize>();
            let mut sources = Sources::new(events, titles);
            if with_erasures {
                sources = sources.with_erasures(erasures);
            }
            build_all(&sources, &features)
                .map(|((id, entity), value)| (id, entity.to_string(), value.to_json()))
                .inner
                .capture_into(send);
            (events_in, erasures_in)
        });
        for (event, time) in events {
            events_in.update_at(event, time, 1);
        }
        for (erasure, time) in erasures.into_iter().flatten() {
            erasures_in.update_at(erasure, time, 1);
        }
    });
    recv.extract()
        .into_iter()
        .flat_map(|(_, batch)| batch)
        .collect()
}

/// Every feature's values accumulated as of `t`, each at most once per entity.
fn as_of(out: &Out, t: u64) -> BTreeMap<(u16, String), String> {
    let mut counts: BTreeMap<(u16, String, String), isize> = BTreeMap::new();
    for (key, time, diff) in out {
        if *time <= t {
            *counts.entry(key.clone()).or_default() += diff;
        }
    }
    let mut values = BTreeMap::new();
    for ((feature, entity, value), count) in counts {
        assert!(
            count == 0 || count == 1,
            "{entity}: {value} x{count} at {t}"
        );
        if count == 1 {
            let before = values.insert((feature, entity), value);
            assert!(before.is_none(), "two values at {t}");
        }
    }
    values
}

fn features() -> Vec<Feature> {
    let purposes = &[Purpose::Personalization];
    vec![
        Feature::new("viewer.plays_3t")
            .describe("plays in the last three ticks")
            .purposes(purposes)
            .aggregate(play_starts().by_viewer().count().over(3 * TICK)),
        Feature::new("viewer.last_titles")
            .describe("titles by latest play")
            .purposes(purposes)
            .aggregate(
                play_starts()
                    .by_viewer()
                    .last_distinct(3, |p| p.title.clone(), |p| p.ts_ms)
                    .within_retention(),
            ),
        Feature::new("title.plays_3t")
            .describe("plays in the last three ticks")
            .purposes(purposes)
            .aggregate(play_starts().by_title().count().over(3 * TICK)),
    ]
}

fn play(viewer: u128, title: usize, ts_ms: u64) -> Event {
    Event {
        viewer: ViewerId(viewer),
        ts_ms,
        kind: EventKind::PlayStart {
            title: ["a", "b"][title].into(),
            position_ms: None,
        },
    }
}

/// Events and erasures at ticks; an event's `ts` lies in the tick before its placement, or,
/// for a late one, earlier still.
fn event_strategy() -> impl Strategy<Value = (Event, u64)> {
    (0u128..3, 0usize..2, 1u64..=LAST_TICK - 2, 0u64..3, 0u64..10).prop_map(
        |(viewer, title, tick, late, offset)| {
            let ts = (tick - late.min(tick - 1)) * TICK - TICK + offset * 100;
            (play(viewer, title, ts), tick * TICK)
        },
    )
}

fn erasure_strategy() -> impl Strategy<Value = (Erasure, u64)> {
    (0u128..3, 1u64..=LAST_TICK - 2, 0u64..10).prop_map(|(viewer, tick, offset)| {
        let erasure = Erasure {
            viewer: ViewerId(viewer),
            ts_ms: tick * TICK - TICK + offset * 100,
        };
        (erasure, tick * TICK)
    })
}

/// The model: the events each feature may use as of `t`, recomputed by the same dataflow
/// without erasures: viewer features from the events no erasure placed by `t` reaches.
fn model(
    events: &[(Event, u64)],
    erasures: &[(Erasure, u64)],
    t: u64,
) -> BTreeMap<(u16, String), String> {
    let erased_before = |e: &Event| {
        let largest = erasures
            .iter()
            .filter(|(x, tick)| x.viewer == e.viewer && *tick <= t)
            .map(|(x, _)| x.ts_ms)
            .max();
        largest.is_some_and(|largest| e.ts_ms < largest)
    };
    let kept: Vec<(Event, u64)> = events
        .iter()
        .filter(|(e, _)| !erased_before(e))
        .cloned()
        .collect();
    let viewers = as_of(&run(features(), kept, None), t);
    let titles = as_of(&run(features(), events.to_vec(), None), t);
    let mut values: BTreeMap<_, _> = viewers.into_iter().filter(|((f, _), _)| *f < 2).collect();
    values.extend(titles.into_iter().filter(|((f, _), _)| *f == 2));
    values
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn erasure_equals_the_model_at_every_tick(
        events in proptest::collection::vec(event_strategy(), 0..24),
        erasures in proptest::collection::vec(erasure_strategy(), 0..4),
    ) {
        let out = run(features(), events.clone(), Some(erasures.clone()));
        for tick in 0..=LAST_TICK + 4 {
            let t = tick * TICK;
            prop_assert_eq!(as_of(&out, t), model(&events, &erasures, t), "as of {}", t);
        }
    }
}

#[test]
fn without_erasures_the_output_is_what_it_was() {
    let events: Vec<(Event, u64)> = (0..12)
        .map(|i| {
            (
                play(i % 3, (i % 2) as usize, i as u64 * 700 + 50),
                (i as u64 * 700 / TICK + 1) * TICK,
            )
        })
        .collect();
    let mut with = run(features(), events.clone(), Some(Vec::new()));
    let mut without = run(features(), events, None);
    differential_dataflow::consolidation::consolidate_updates(&mut with);
    differential_dataflow::consolidation::consolidate_updates(&mut without);
    assert_eq!(with, without);
}

#[test]
fn an_erasure_retracts_in_window_records_at_its_tick_and_keeps_later_ones() {
    // Viewer 1 plays at ts 500 (tick 1000) and 2500 (tick 3000), and is erased at ts 2000
    // (tick 3000); then a late play from before the erasure lands at 5000, and one after it
    // at 6000.
    let events = vec![
        (play(1, 0, 500), 1000),
        (play(1, 1, 2500), 3000),
        (play(1, 0, 1500), 5000),
        (play(1, 0, 5500), 6000),
    ];
    let erasures = vec![(
        Erasure {
            viewer: ViewerId(1),
            ts_ms: 2000,
        },
        3000,
    )];
    let out = run(features(), events.clone(), Some(erasures.clone()));
    let plays = |t| as_of(&out, t).get(&(0, ViewerId(1).to_string())).cloned();
    assert_eq!(plays(2000).as_deref(), Some("1"));
    // From the erasure's tick: only the play after it.
    assert_eq!(plays(3000).as_deref(), Some("1"));
    assert_eq!(
        plays(5000).as_deref(),
        Some("1"),
        "the late play from before stays out"
    );
    assert_eq!(
        plays(6000).as_deref(),
        Some("1"),
        "the first play after left its window"
    );
    let titles = as_of(&out, 5000);
    assert_eq!(
        titles.get(&(2, "a".to_string())).map(String::as_str),
        Some("1"),
        "{titles:?}"
    );
    for t in 0..=10 {
        assert_eq!(as_of(&out, t * TICK), model(&events, &erasures, t * TICK));
    }
}

/// Plays per viewer in the last three ticks, by hand: with `forget`, through
/// [`Sources::forget_erased`]; without, ignoring erasure.
fn plays<'s>(sources: &Sources<'s>, forget: bool) -> crate::Output<'s> {
    use differential_dataflow::operators::CountTotal;
    let kind = EventKind::PlayStart {
        title: "".into(),
        position_ms: None,
    };
    let plays = sources.events_of(kind.index());
    let windowed = crate::window::sliding(plays.map(|e| (e.viewer, e.ts_ms)), 3 * TICK);
    let viewers = match forget {
        true => sources.forget_erased(windowed.map(|(v, ts)| (v, (ts, v)))),
        false => windowed.map(|(v, _)| v),
    };
    viewers
        .count_total()
        .map(|(viewer, n)| (viewer.into(), Value::Int(n as i64)))
}

fn custom_plays(forget: bool) -> Feature {
    fn ignoring<'s>(sources: &Sources<'s>) -> crate::Output<'s> {
        plays(sources, false)
    }
    fn forgetting<'s>(sources: &Sources<'s>) -> crate::Output<'s> {
        plays(sources, true)
    }
    let (name, hatch): (_, for<'s> fn(&Sources<'s>) -> crate::Output<'s>) = match forget {
        true => ("viewer.plays_forgetting", forgetting),
        false => ("viewer.plays_ignoring", ignoring),
    };
    Feature::new(name)
        .describe("plays in the last three ticks, by hand")
        .purposes(&[Purpose::Personalization])
        .custom(ValueType::Int, crate::Window::Sliding(3 * TICK), hatch)
}

#[test]
fn a_custom_viewer_feature_that_ignores_erasure_withholds_the_erased_viewer_from_the_erasure_on() {
    // Viewer 1 plays at ts 500 and is erased at ts 2000 (tick 3000), then plays again at ts
    // 3500; viewer 2 plays throughout.
    let events = vec![
        (play(1, 0, 500), 1000),
        (play(2, 0, 600), 1000),
        (play(2, 0, 2600), 3000),
        (play(1, 0, 3500), 4000),
        (play(2, 0, 3600), 4000),
    ];
    let erasures = vec![(
        Erasure {
            viewer: ViewerId(1),
            ts_ms: 2000,
        },
        3000,
    )];
    let features = vec![custom_plays(false), custom_plays(true)];
    let out = run(features, events, Some(erasures));
    let value = |feature: u16, viewer: u128, t: u64| {
        as_of(&out, t)
            .get(&(feature, ViewerId(viewer).to_string()))
            .cloned()
    };
    let (ignoring, forgetting) = (0, 1);
    for feature in [ignoring, forgetting] {
        assert_eq!(value(feature, 1, 2000).as_deref(), Some("1"), "before");
        assert_eq!(value(feature, 1, 3000), None, "from the erasure's tick");
        assert_eq!(
            value(feature, 2, 4000).as_deref(),
            Some("2"),
            "others keep theirs"
        );
    }
    // The play after the erasure: kept where the feature forgets by time, withheld where it
    // cannot.
    assert_eq!(value(forgetting, 1, 4000).as_deref(), Some("1"));
    assert_eq!(value(ignoring, 1, 4000), None);
    assert_eq!(value(ignoring, 1, 9000), None);
}
