//! Each aggregation against a naive model: random events at out-of-order times, title
//! metadata that changes (a retraction and an insert), and the window's own retractions; the
//! dataflow's output accumulated at every tick must equal the model recomputed from scratch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use proptest::prelude::*;
use timely::dataflow::operators::capture::{Capture, Extract};

use crate::prelude::*;
use crate::{Event, EventKind, F64, Title, TitleKind, ViewerId};

const TICK: u64 = 1000;
const LAST_TICK: u64 = 16;

type Updates = Vec<((String, Value), u64, isize)>;

/// Runs `feature` over `events` and `titles` updates to completion; returns its output.
fn run(feature: Feature, events: Vec<(Event, u64)>, titles: Vec<(Title, u64, isize)>) -> Updates {
    let (send, recv) = std::sync::mpsc::channel();
    let send = Arc::new(Mutex::new(send));
    timely::execute_directly(move |worker| {
        let send = send.lock().unwrap().clone();
        let (mut events_in, mut titles_in) = worker.dataflow::<u64, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (titles_in, titles) = scope.new_collection::<Title, isize>();
            feature
                .compute(&Sources::new(events, titles))
                .inner
                .capture_into(send);
            (events_in, titles_in)
        });
        for (event, time) in events {
            events_in.update_at(event, time, 1);
        }
        for (title, time, diff) in titles {
            titles_in.update_at(title, time, diff);
        }
    });
    recv.extract()
        .into_iter()
        .flat_map(|(_, batch)| batch)
        .map(|((entity, value), time, diff)| ((entity.to_string(), value), time, diff))
        .collect()
}

/// The output accumulated as of `t`: one value per entity.
fn as_of(updates: &Updates, t: u64) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<(String, String), isize> = BTreeMap::new();
    for ((entity, value), time, diff) in updates {
        if *time <= t {
            *counts.entry((entity.clone(), value.to_json())).or_default() += diff;
        }
    }
    let mut values = BTreeMap::new();
    for ((entity, value), count) in counts {
        assert!(
            count == 0 || count == 1,
            "{entity} has {value} {count} times at {t}"
        );
        if count == 1 {
            assert!(
                values.insert(entity.clone(), value).is_none(),
                "{entity} has two values at {t}"
            );
        }
    }
    values
}

fn title_meta(id: &str, genres: &[&str]) -> Title {
    Title {
        title_id: id.into(),
        genres: genres.iter().map(|g| g.to_string()).collect(),
        rating: None,
        duration_s: None,
        kind: TitleKind::Movie,
        series_id: None,
    }
}

const TITLES: [&str; 3] = ["a", "b", "c"];

fn event_strategy() -> impl Strategy<Value = (Event, u64)> {
    (
        0u128..4,
        0usize..3,
        0u8..5,
        0u64..100,
        1u64..=LAST_TICK - 2,
        0u64..4,
    )
        .prop_map(|(viewer, title, kind, ts, tick, interval)| {
            let title: crate::event::TitleId = TITLES[title].into();
            let kind = match kind {
                0 => EventKind::Heartbeat {
                    title,
                    position_ms: 0,
                    interval_ms: interval * 5000,
                },
                1 => EventKind::PlayStart {
                    title,
                    position_ms: None,
                },
                2 => EventKind::Click { title, row: None },
                3 => EventKind::Impression {
                    title,
                    row: "r".into(),
                    rank: 1,
                },
                _ => EventKind::Search {
                    query: "q".into(),
                    title: None,
                },
            };
            (
                Event {
                    viewer: ViewerId(viewer),
                    ts_ms: ts * 10,
                    kind,
                },
                tick * TICK,
            )
        })
}

/// Title "a" is a drama, then (at `change`) a comedy and a drama; "b" is horror throughout.
fn titles(change: u64) -> Vec<(Title, u64, isize)> {
    vec![
        (title_meta("a", &["drama"]), TICK, 1),
        (title_meta("b", &["horror"]), TICK, 1),
        (title_meta("a", &["drama"]), change, -1),
        (title_meta("a", &["comedy", "drama"]), change, 1),
    ]
}

fn genres_at(title: &str, t: u64, change: u64) -> Vec<&'static str> {
    match title {
        "a" if t >= change => vec!["comedy", "drama"],
        "a" => vec!["drama"],
        "b" => vec!["horror"],
        _ => vec![],
    }
}

/// The events visible in a window of `window` as of `t`.
fn in_window(events: &[(Event, u64)], window: u64, t: u64) -> impl Iterator<Item = &Event> {
    events
        .iter()
        .filter(move |(_, time)| *time <= t && t < time + window)
        .map(|(e, _)| e)
}

/// Checks the dataflow against `model` at every tick, and one window past the last.
fn check(
    feature: Feature,
    events: Vec<(Event, u64)>,
    titles: Vec<(Title, u64, isize)>,
    model: impl Fn(u64) -> BTreeMap<String, String>,
) -> Result<(), TestCaseError> {
    let out = run(feature, events, titles);
    for tick in 0..=LAST_TICK + 6 {
        prop_assert_eq!(
            as_of(&out, tick * TICK),
            model(tick * TICK),
            "as of tick {}",
            tick
        );
    }
    Ok(())
}

fn render<K: ToString>(map: BTreeMap<K, Value>) -> BTreeMap<String, String> {
    map.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_json()))
        .collect()
}

fn by_viewer<T>(events: impl Iterator<Item = (ViewerId, T)>) -> BTreeMap<ViewerId, Vec<T>> {
    let mut map: BTreeMap<ViewerId, Vec<T>> = BTreeMap::new();
    for (viewer, t) in events {
        map.entry(viewer).or_default().push(t);
    }
    map
}

/// Each viewer's share of heartbeat seconds per genre as of `t`, title "a" changing genres
/// at `change`.
fn genre_shares(
    events: &[(Event, u64)],
    window: u64,
    change: u64,
    t: u64,
) -> BTreeMap<String, String> {
    let mut ms: BTreeMap<ViewerId, BTreeMap<&str, u64>> = BTreeMap::new();
    for e in in_window(events, window, t) {
        if let EventKind::Heartbeat {
            title, interval_ms, ..
        } = &e.kind
        {
            // A genre with no seconds has no share (and no entry).
            if *interval_ms == 0 {
                continue;
            }
            for genre in genres_at(title, t, change) {
                *ms.entry(e.viewer).or_default().entry(genre).or_default() += interval_ms;
            }
        }
    }
    let shares = ms.into_iter().filter_map(|(v, genres)| {
        let sum: u64 = genres.values().sum();
        let share = |m: &u64| F64::new(*m as f64 / sum as f64);
        let map = genres.iter().map(|(g, m)| (g.to_string(), share(m)));
        (sum > 0).then(|| (v, Value::map(map)))
    });
    render(shares.collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn count_matches_a_naive_count(events in proptest::collection::vec(event_strategy(), 0..60), w in 1u64..6) {
        let window = w * TICK;
        let feature = Feature::new("viewer.x").describe("x").purposes(&[Purpose::Analytics])
            .aggregate(play_starts().by_viewer().count().over(window));
        let model = |t| {
            let plays = in_window(&events, window, t).filter(|e| matches!(e.kind, EventKind::PlayStart { .. }));
            let grouped = by_viewer(plays.map(|e| (e.viewer, ())));
            render(grouped.into_iter().map(|(v, xs)| (v, Value::Int(xs.len() as i64))).collect())
        };
        check(feature, events.clone(), vec![], model)?;
    }

    #[test]
    fn sum_matches_a_naive_sum(events in proptest::collection::vec(event_strategy(), 0..60), w in 1u64..6) {
        let window = w * TICK;
        let feature = Feature::new("viewer.x").describe("x").purposes(&[Purpose::Analytics])
            .aggregate(heartbeats().by_viewer().sum_seconds(|h| h.interval_ms).over(window));
        let model = |t| {
            let mut sums: BTreeMap<ViewerId, u64> = BTreeMap::new();
            for e in in_window(&events, window, t) {
                if let EventKind::Heartbeat { interval_ms, .. } = e.kind {
                    *sums.entry(e.viewer).or_default() += interval_ms;
                }
            }
            render(sums.into_iter().filter(|(_, ms)| *ms > 0).map(|(v, ms)| (v, Value::seconds_from_ms(ms as i64))).collect())
        };
        check(feature, events.clone(), vec![], model)?;
    }

    #[test]
    fn count_distinct_matches_a_naive_set(events in proptest::collection::vec(event_strategy(), 0..60), w in 1u64..6) {
        let window = w * TICK;
        let feature = Feature::new("title.x").describe("x").purposes(&[Purpose::Analytics])
            .aggregate(play_starts().by_title().count_distinct(|p| p.viewer).over(window));
        let model = |t| {
            let mut viewers: BTreeMap<String, BTreeSet<ViewerId>> = BTreeMap::new();
            for e in in_window(&events, window, t) {
                if let EventKind::PlayStart { title, .. } = &e.kind {
                    viewers.entry(title.to_string()).or_default().insert(e.viewer);
                }
            }
            render(viewers.into_iter().map(|(k, vs)| (k, Value::Int(vs.len() as i64))).collect())
        };
        check(feature, events.clone(), vec![], model)?;
    }

    #[test]
    fn last_distinct_matches_a_naive_sort(events in proptest::collection::vec(event_strategy(), 0..60), w in 1u64..6) {
        let window = w * TICK;
        let feature = Feature::new("viewer.x").describe("x").purposes(&[Purpose::Analytics])
            .aggregate(play_starts().by_viewer().last_distinct(2, |p| p.title.clone(), |p| p.ts_ms).over(window));
        let model = |t| {
            let mut latest: BTreeMap<ViewerId, BTreeMap<String, u64>> = BTreeMap::new();
            for e in in_window(&events, window, t) {
                if let EventKind::PlayStart { title, .. } = &e.kind {
                    let seen = latest.entry(e.viewer).or_default().entry(title.to_string()).or_default();
                    *seen = (*seen).max(e.ts_ms);
                }
            }
            render(latest.into_iter().map(|(v, titles)| {
                let mut titles: Vec<(String, u64)> = titles.into_iter().collect();
                titles.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                (v, Value::list(titles.into_iter().take(2).map(|(t, _)| t)))
            }).collect())
        };
        check(feature, events.clone(), vec![], model)?;
    }

    #[test]
    fn share_by_with_changing_titles_matches_a_naive_share(
        events in proptest::collection::vec(event_strategy(), 0..60),
        w in 1u64..6,
        change in 2u64..LAST_TICK,
    ) {
        let window = w * TICK;
        let change = change * TICK;
        let feature = Feature::new("viewer.x").describe("x").purposes(&[Purpose::Analytics])
            .aggregate(heartbeats().enrich().by_viewer()
                .share_by(|(_, title)| title.genres.clone(), |(h, _)| h.interval_ms).over(window));
        let model = |t| genre_shares(&events, window, change, t);
        check(feature, events.clone(), titles(change), model)?;
    }

    #[test]
    fn share_by_title_with_changing_titles_matches_a_naive_share(
        events in proptest::collection::vec(event_strategy(), 0..60),
        w in 1u64..6,
        change in 2u64..LAST_TICK,
    ) {
        let window = w * TICK;
        let change = change * TICK;
        let feature = Feature::new("viewer.x").describe("x").purposes(&[Purpose::Analytics])
            .aggregate(heartbeats().by_viewer()
                .share_by_title(|title| title.genres.clone(), |h| h.interval_ms).over(window));
        let model = |t| genre_shares(&events, window, change, t);
        check(feature, events.clone(), titles(change), model)?;
    }

    #[test]
    fn ratio_matches_a_naive_ratio(events in proptest::collection::vec(event_strategy(), 0..60), w in 1u64..6) {
        let window = w * TICK;
        let feature = Feature::new("title.x").describe("x").purposes(&[Purpose::Analytics])
            .aggregate(ratio(clicks().by_title().count().over(window), impressions().by_title().count().over(window + TICK)));
        let model = |t| {
            let count = |window, is: fn(&EventKind) -> bool| {
                let mut n: BTreeMap<String, i64> = BTreeMap::new();
                for e in in_window(&events, window, t).filter(|e| is(&e.kind)) {
                    *n.entry(e.kind.title().unwrap().to_string()).or_default() += 1;
                }
                n
            };
            let clicks = count(window, |k| matches!(k, EventKind::Click { .. }));
            let shown = count(window + TICK, |k| matches!(k, EventKind::Impression { .. }));
            render(shown.into_iter().map(|(title, n)| {
                let c = clicks.get(&title).copied().unwrap_or(0);
                (title, Value::Float(F64::new(c as f64 / n as f64)))
            }).collect())
        };
        check(feature, events.clone(), vec![], model)?;
    }
}

/// The escape hatch: a hand-built collection registered as a feature runs like any other.
#[test]
fn a_custom_collection_is_a_feature() {
    use differential_dataflow::operators::CountTotal;

    fn searches<'s>(sources: &Sources<'s>) -> Output<'s> {
        let s = sources.events.clone().flat_map(|e| match e.kind {
            EventKind::Search { .. } => Some(e.viewer),
            _ => None,
        });
        crate::window::sliding(s, 2 * TICK)
            .count_total()
            .map(|(v, n)| (v.into(), Value::Int(n as i64)))
    }
    let hatch: for<'s> fn(&Sources<'s>) -> Output<'s> = searches;
    let feature = Feature::new("viewer.s")
        .describe("searches")
        .purposes(&[Purpose::Analytics])
        .custom(ValueType::Int, Window::Sliding(2 * TICK), hatch);
    assert!(validate(std::slice::from_ref(&feature), TICK).is_ok());
    let search = |viewer, tick| {
        let kind = EventKind::Search {
            query: "q".into(),
            title: None,
        };
        (
            Event {
                viewer: ViewerId(viewer),
                ts_ms: 0,
                kind,
            },
            tick * TICK,
        )
    };
    let out = run(
        feature,
        vec![search(1, 1), search(1, 2), search(2, 2)],
        vec![],
    );
    let viewer = |v| ViewerId(v).to_string();
    let at = |tick| as_of(&out, tick * TICK);
    assert_eq!(at(1), BTreeMap::from([(viewer(1), "1".to_string())]));
    assert_eq!(
        at(2),
        BTreeMap::from([(viewer(1), "2".into()), (viewer(2), "1".into())])
    );
    assert_eq!(
        at(3),
        BTreeMap::from([(viewer(1), "1".into()), (viewer(2), "1".into())])
    );
    assert_eq!(at(4), BTreeMap::new());
}

/// One update of a per-key test input: `((key, datum), time, diff)`.
type KeyedUpdates<D> = Vec<((u8, D), u64, isize)>;

/// Every output update of `build` over `input` on `workers` workers, consolidated per (datum,
/// time): what two computations must agree on to make the same updates at the same times.
fn per_key_run<D, O>(
    input: KeyedUpdates<D>,
    workers: usize,
    build: impl for<'s> Fn(
        differential_dataflow::VecCollection<'s, u64, (u8, D)>,
    ) -> differential_dataflow::VecCollection<'s, u64, O>
    + Send
    + Sync
    + 'static,
) -> Vec<(O, u64, isize)>
where
    D: crate::source::Record + Sync,
    O: crate::source::Record,
{
    let (send, recv) = std::sync::mpsc::channel();
    let send = Arc::new(Mutex::new(send));
    let input = Arc::new(input);
    timely::execute(timely::Config::process(workers), move |worker| {
        let send = send.lock().unwrap().clone();
        let mut updates = worker.dataflow::<u64, _, _>(|scope| {
            let (handle, collection) = scope.new_collection::<(u8, D), isize>();
            build(collection).inner.capture_into(send);
            handle
        });
        if worker.index() == 0 {
            for (datum, time, diff) in input.iter() {
                updates.update_at(datum.clone(), *time, *diff);
            }
        }
    })
    .unwrap();
    let mut out: Vec<(O, u64, isize)> = recv
        .extract()
        .into_iter()
        .flat_map(|(_, batch)| batch)
        .collect();
    differential_dataflow::consolidation::consolidate_updates(&mut out);
    out
}

fn keyed_strategy<D: std::fmt::Debug>(
    datum: impl Strategy<Value = D>,
) -> impl Strategy<Value = KeyedUpdates<D>> {
    let update = (
        0u8..4,
        datum,
        0u64..12,
        prop_oneof![Just(-1isize), Just(1), Just(2)],
    );
    proptest::collection::vec(update.prop_map(|(k, d, t, r)| ((k, d), t, r)), 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Each per-key state makes the updates, at the times, that the differential operators
    /// the aggregations used before make: one and two workers, diffs of any sign.
    #[test]
    fn per_key_states_match_differentials_reduces(
        sums in keyed_strategy(Just(())),
        pairs in keyed_strategy(0u8..5),
        plays in keyed_strategy((0u8..5, 0u64..6)),
        shares in keyed_strategy(prop_oneof![Just("x"), Just("y"), Just("z")]),
        workers in 1usize..=2,
    ) {
        use differential_dataflow::operators::{CountTotal, ThresholdTotal};
        use super::per_key::{DistinctCount, LastK, Shares, Sum, per_key};

        let new = per_key_run(sums.clone(), workers, |c| per_key(c, "Sum", Sum::default));
        let old = per_key_run(sums, workers, |c| {
            c.map(|(k, ())| k).count_total().map(|(k, n)| (k, n as i64))
        });
        prop_assert_eq!(new, old);

        let new = per_key_run(pairs.clone(), workers, |c| {
            per_key(c, "CountDistinct", DistinctCount::default)
        });
        let old = per_key_run(pairs, workers, |c| {
            c.distinct_total().map(|(k, _)| k).count_total().map(|(k, n)| (k, n as i64))
        });
        prop_assert_eq!(new, old);

        let new = per_key_run(plays.clone(), workers, |c| per_key(c, "Last", || LastK::new(2)));
        let old = per_key_run(plays, workers, |c| {
            c.map(|(k, (v, t))| ((k, v), t))
                .reduce(|_, times, out| out.push((*times[times.len() - 1].0, 1)))
                .map(|((k, v), latest)| (k, (latest, v)))
                .reduce(|_, seen, out| {
                    let mut seen: Vec<&(u64, u8)> = seen.iter().map(|(v, _)| *v).collect();
                    seen.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
                    let list = seen.into_iter().take(2).map(|(_, v)| v.to_string());
                    out.push((Value::list(list), 1))
                })
        });
        prop_assert_eq!(new, old);

        let shares: KeyedUpdates<String> = shares
            .into_iter()
            .map(|((k, s), t, r)| ((k, s.to_string()), t, r))
            .collect();
        let new = per_key_run(shares.clone(), workers, |c| per_key(c, "Shares", Shares::default));
        let old = per_key_run(shares, workers, |c| {
            c.reduce(|_, totals, out| {
                let sum: i64 = totals.iter().map(|(_, t)| *t as i64).sum();
                if sum > 0 {
                    let map = totals
                        .iter()
                        .map(|(k, t)| (k.to_string(), F64::new(*t as f64 / sum as f64)));
                    out.push((Value::map(map), 1));
                }
            })
        });
        prop_assert_eq!(new, old);
    }
}

/// A state with more share keys than its vector holds reads as a plain map does: the same
/// shares, in key order, after every update, whatever their order and sign.
#[test]
fn shares_over_many_keys_read_as_a_plain_map_does() {
    use super::per_key::{KeyState, Shares};
    let mut shares: Shares<String> = Shares::default();
    let mut model: BTreeMap<String, i64> = BTreeMap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for step in 0..6_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Few keys first, then more than a vector holds.
        let keys = if step < 2_000 { 20 } else { 80 };
        let key = format!("g{:03}", x % keys);
        let diff = (x >> 32) as i64 % 9 - 3;
        shares.update(key.clone(), diff as isize);
        *model.entry(key.clone()).or_default() += diff;
        model.retain(|_, t| *t != 0);
        let sum: i64 = model.values().sum();
        let want = (sum > 0).then(|| {
            let share = |t: &i64| F64::new(*t as f64 / sum as f64);
            Value::map(model.iter().map(|(k, t)| (k.as_str(), share(t))))
        });
        assert_eq!(shares.value(), want, "step {step}");
        assert_eq!(shares.is_empty(), model.is_empty(), "step {step}");
    }
}
