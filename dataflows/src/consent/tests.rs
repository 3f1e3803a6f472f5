//! Consent against a naive model: random grants and revocations at out-of-order ticks, and
//! features gated by them; the dataflow's output accumulated at every tick must equal the
//! model recomputed from scratch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use proptest::prelude::*;
use timely::dataflow::operators::capture::{Capture, Extract};

use super::*;
use crate::prelude::*;
use crate::{Event, EventKind, Sources, Title, build_all};

const TICK: u64 = 1000;
const LAST_TICK: u64 = 16;
const PURPOSES: [Purpose; 2] = [Purpose::Personalization, Purpose::Analytics];

/// A consent record placed at a tick.
type Placed = (Consent, u64);

fn rules(max_age_ms: u64) -> ConsentRules {
    ConsentRules {
        purposes: PURPOSES.to_vec(),
        max_age_ms,
    }
}

/// Runs `features` over `events` and `consent` to completion; returns each feature's output as
/// `(feature index, entity, value json)` updates.
fn run(
    features: Vec<Feature>,
    events: Vec<(Event, u64)>,
    consent: Vec<Placed>,
    max_age_ms: u64,
) -> Vec<((u16, String, String), u64, isize)> {
    let (send, recv) = std::sync::mpsc::channel();
    let send = Arc::new(Mutex::new(send));
    timely::execute_directly(move |worker| {
        let send = send.lock().unwrap().clone();
        let (mut events_in, mut consent_in) = worker.dataflow::<u64, _, _>(|scope| {
            let (events_in, events) = scope.new_collection::<Event, isize>();
            let (_titles_in, titles) = scope.new_collection::<Title, isize>();
            let (consent_in, consent) = scope.new_collection::<Consent, isize>();
            let sources = Sources::new(events, titles).with_consent(consent, rules(max_age_ms));
            build_all(&sources, &features)
                .map(|((id, entity), value)| (id, entity.to_string(), value.to_json()))
                .inner
                .capture_into(send);
            (events_in, consent_in)
        });
        for (event, time) in events {
            events_in.update_at(event, time, 1);
        }
        for (record, time) in consent {
            consent_in.update_at(record, time, 1);
        }
    });
    recv.extract()
        .into_iter()
        .flat_map(|(_, batch)| batch)
        .collect()
}

/// Feature `id`'s values accumulated as of `t`, each at most once.
fn as_of(out: &[((u16, String, String), u64, isize)], id: u16, t: u64) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<(String, String), isize> = BTreeMap::new();
    for ((feature, entity, value), time, diff) in out {
        if *feature == id && *time <= t {
            *counts.entry((entity.clone(), value.clone())).or_default() += diff;
        }
    }
    let mut values = BTreeMap::new();
    for ((entity, value), count) in counts {
        assert!(
            count == 0 || count == 1,
            "{entity}: {value} x{count} at {t}"
        );
        if count == 1 {
            assert!(values.insert(entity, value).is_none(), "two values at {t}");
        }
    }
    values
}

/// The rule restated: the latest record in force (placed at or before `t`, less than
/// `max_age` before it), by (tick, ts, revocation last), is a grant.
fn consents(consent: &[Placed], max_age_ms: u64, viewer: ViewerId, purpose: u8, t: u64) -> bool {
    let latest = consent
        .iter()
        .filter(|(c, _)| c.viewer == viewer && c.purpose == purpose)
        .filter(|(_, tick)| *tick <= t && t < tick + max_age_ms)
        .max_by_key(|(c, tick)| (*tick, c.ts_ms, !c.granted));
    latest.is_some_and(|(c, _)| c.granted)
}

fn consent_strategy() -> impl Strategy<Value = Placed> {
    (
        0u128..3,
        0u8..2,
        any::<bool>(),
        1u64..=LAST_TICK - 2,
        0u64..3,
    )
        .prop_map(|(viewer, purpose, granted, tick, ts)| {
            let record = Consent {
                viewer: ViewerId(viewer),
                purpose,
                granted,
                ts_ms: tick * TICK - TICK + ts * 100,
            };
            (record, tick * TICK)
        })
}

fn play_strategy() -> impl Strategy<Value = (Event, u64)> {
    (0u128..3, 0usize..2, 1u64..=LAST_TICK - 2).prop_map(|(viewer, title, tick)| {
        let event = Event {
            viewer: ViewerId(viewer),
            ts_ms: tick * TICK - 1,
            kind: EventKind::PlayStart {
                title: ["a", "b"][title].into(),
                position_ms: None,
            },
        };
        (event, tick * TICK)
    })
}

fn in_window(events: &[(Event, u64)], window: u64, t: u64) -> impl Iterator<Item = &Event> {
    events
        .iter()
        .filter(move |(_, time)| *time <= t && t < time + window)
        .map(|(e, _)| e)
}

fn feature(name: &'static str, purposes: &[Purpose], aggregation: Aggregation) -> Feature {
    Feature::new(name)
        .describe("x")
        .purposes(purposes)
        .aggregate(aggregation)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// In force exactly while the latest record of the last `max_age` is a grant: revocation
    /// at its tick, expiry at exactly the grant's tick plus `max_age`, renewal by a later grant.
    #[test]
    fn consent_in_force_matches_the_rule(
        consent in proptest::collection::vec(consent_strategy(), 0..30),
        age in 1u64..6,
    ) {
        let max_age_ms = age * TICK;
        // A feature per purpose: plays, gated by that purpose alone.
        let features = vec![
            feature("viewer.p", &[Purpose::Personalization], play_starts().by_viewer().count().over(100 * TICK)),
            feature("viewer.a", &[Purpose::Analytics], play_starts().by_viewer().count().over(100 * TICK)),
        ];
        let plays: Vec<_> = (0..3).map(|v| (Event {
            viewer: ViewerId(v),
            ts_ms: 0,
            kind: EventKind::PlayStart { title: "a".into(), position_ms: None },
        }, TICK)).collect();
        let out = run(features, plays, consent.clone(), max_age_ms);
        for tick in 0..=LAST_TICK + 6 {
            let t = tick * TICK;
            for purpose in 0..2u8 {
                let want: BTreeMap<String, String> = (0..3)
                    .map(ViewerId)
                    .filter(|v| consents(&consent, max_age_ms, *v, purpose, t))
                    .map(|v| (v.to_string(), "1".to_string()))
                    .collect();
                prop_assert_eq!(as_of(&out, u16::from(purpose), t), want, "purpose {} at {}", purpose, t);
            }
            // The consent in force as recorded for reads (the output after the features'):
            // each viewer's consented purposes by name, ascending; none at all, no row.
            let recorded: BTreeMap<String, String> = (0..3)
                .map(ViewerId)
                .filter_map(|v| {
                    let mut names: Vec<String> = (0..2u8)
                        .filter(|p| consents(&consent, max_age_ms, v, *p, t))
                        .map(|p| PURPOSES[usize::from(p)].as_str().to_string())
                        .collect();
                    names.sort();
                    (!names.is_empty()).then(|| (v.to_string(), crate::Value::list(names).to_json()))
                })
                .collect();
            prop_assert_eq!(as_of(&out, 2, t), recorded, "recorded consent at {}", t);
        }
    }

    /// A viewer feature serving both purposes: a viewer's value while consenting to both, the
    /// default otherwise; a title feature counts only viewers consenting at each time; a
    /// feature serving no gated purpose is untouched.
    #[test]
    fn gated_features_match_the_model(
        consent in proptest::collection::vec(consent_strategy(), 0..30),
        plays in proptest::collection::vec(play_strategy(), 0..40),
        w in 1u64..6,
        age in 1u64..8,
    ) {
        let (window, max_age_ms) = (w * TICK, age * TICK);
        let features = vec![
            feature("viewer.both", &PURPOSES, play_starts().by_viewer().count().over(window)),
            feature("title.viewers", &[Purpose::Analytics], play_starts().by_title().count_distinct(|p| p.viewer).over(window)),
            feature("title.plays", &[Purpose::Ads], play_starts().by_title().count().over(window)),
        ];
        let out = run(features, plays.clone(), consent.clone(), max_age_ms);
        for tick in 0..=LAST_TICK + 6 {
            let t = tick * TICK;
            let ok = |v: ViewerId, p: u8| consents(&consent, max_age_ms, v, p, t);
            let mut both: BTreeMap<String, i64> = BTreeMap::new();
            let mut viewers: BTreeMap<String, BTreeSet<ViewerId>> = BTreeMap::new();
            let mut all: BTreeMap<String, i64> = BTreeMap::new();
            for e in in_window(&plays, window, t) {
                let title = e.kind.title().unwrap().to_string();
                if ok(e.viewer, 0) && ok(e.viewer, 1) {
                    *both.entry(e.viewer.to_string()).or_default() += 1;
                }
                if ok(e.viewer, 1) {
                    viewers.entry(title.clone()).or_default().insert(e.viewer);
                }
                *all.entry(title).or_default() += 1;
            }
            let render = |m: BTreeMap<String, i64>| -> BTreeMap<String, String> {
                m.into_iter().map(|(k, n)| (k, n.to_string())).collect()
            };
            let counted = viewers.into_iter().map(|(k, vs)| (k, vs.len() as i64)).collect();
            prop_assert_eq!(as_of(&out, 0, t), render(both), "viewer.both at {}", t);
            prop_assert_eq!(as_of(&out, 1, t), render(counted), "title.viewers at {}", t);
            prop_assert_eq!(as_of(&out, 2, t), render(all), "title.plays at {}", t);
        }
    }
}

#[test]
fn a_revocation_wins_a_grant_of_the_same_tick_and_ts() {
    let viewer = ViewerId(1);
    let record = |granted, ts_ms| Consent {
        viewer,
        purpose: 0,
        granted,
        ts_ms,
    };
    let consent = vec![
        (record(true, 500), TICK),
        (record(false, 500), TICK),
        (record(true, 2500), 3 * TICK),
        (record(false, 2400), 3 * TICK),
    ];
    let features = vec![feature(
        "viewer.p",
        &[Purpose::Personalization],
        play_starts().by_viewer().count().over(100 * TICK),
    )];
    let play = Event {
        viewer,
        ts_ms: 0,
        kind: EventKind::PlayStart {
            title: "a".into(),
            position_ms: None,
        },
    };
    let out = run(features, vec![(play, TICK)], consent, 10 * TICK);
    assert_eq!(as_of(&out, 0, TICK), BTreeMap::new());
    // The grant's ts is after the revocation's in the same tick: it is the latest.
    let one = BTreeMap::from([(viewer.to_string(), "1".to_string())]);
    assert_eq!(as_of(&out, 0, 3 * TICK), one);
    assert_eq!(as_of(&out, 0, 12 * TICK), one);
    assert_eq!(as_of(&out, 0, 13 * TICK), BTreeMap::new());
}

#[test]
fn rules_refuse_what_they_cannot_enforce() {
    let custom: for<'s> fn(&Sources<'s>) -> Output<'s> =
        |s| s.titles.clone().map(|t| (t.title_id.into(), Value::Int(1)));
    let features = vec![
        Feature::new("title.custom")
            .describe("x")
            .purposes(&[Purpose::Analytics])
            .custom(ValueType::Int, Window::Sliding(TICK), custom),
        Feature::new("title.ads_only")
            .describe("x")
            .purposes(&[Purpose::Ads])
            .custom(ValueType::Int, Window::Sliding(TICK), custom),
    ];
    let text = |rules: ConsentRules| {
        let errors = rules.check(&features, TICK);
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    };
    let errors = text(rules(MAX_AGE_LIMIT_MS + TICK));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("730 days, the VPPA limit"), "{errors:?}");
    assert!(errors[1].contains("\"title.custom\" is a custom computation"));
    assert!(text(rules(1500))[0].contains("1500 ms is not a positive whole number"));
    assert_eq!(text(rules(MAX_AGE_LIMIT_MS)).len(), 1);
    let ads = ConsentRules {
        purposes: vec![Purpose::Personalization],
        max_age_ms: TICK,
    };
    assert!(text(ads).is_empty());
}
