//! Consent records as a live run reads them: a sparse topic's lone record takes effect.

use rewind::engine::ConsentConfig;
use rewind_dataflows::consent::CONSENT_FEATURE;
use rewind_dataflows::{ConsentRules, Purpose};

use crate::common;
use crate::erasure::{LiveRun, START_MS, control_log, plays};

/// The one record of a sparse consent topic: a live run applies it at its tick, though no
/// record after it in its partition ever vouches for its time.
#[test]
fn a_lone_consent_record_in_a_live_run_takes_effect() {
    let log = control_log(common::CONSENT);
    common::produce(
        &log.brokers,
        common::EVENTS,
        &plays(&["u1", "u2"], START_MS, 30),
    );
    let store = tempfile::tempdir().unwrap();
    let mut config = common::config(&log.brokers, store.path(), 2);
    config.consent = Some(ConsentConfig {
        topic: common::CONSENT.into(),
        rules: ConsentRules {
            purposes: vec![Purpose::Personalization, Purpose::Analytics],
            max_age_ms: rewind_dataflows::consent::MAX_AGE_LIMIT_MS,
        },
    });
    let run = LiveRun::start(config);
    run.wait_for(store.path(), "time moves", |snap| {
        snap.frontier_ms()
            .unwrap()
            .is_some_and(|f| f > START_MS + 10_000)
    });
    let ts = START_MS + 30_000;
    let grant = rewind::workload::Record {
        key: "u1".into(),
        json: format!(r#"{{"user_id":"u1","purpose":"analytics","granted":true,"ts":{ts}}}"#),
        ts_ms: ts,
        due_ms: 0,
    };
    common::produce(&log.brokers, common::CONSENT, &[grant]);
    common::produce(&log.brokers, common::EVENTS, &plays(&["u1", "u2"], ts, 30));
    let viewer = common::door().viewer_id("u1").to_string();
    run.wait_for(store.path(), "u1's grant in force", |snap| {
        let online = snap.online("viewer", &viewer).unwrap();
        online
            .iter()
            .any(|r| r.feature == CONSENT_FEATURE && r.value_json == br#"["analytics"]"#)
    });
    let snap = rewind_state::ReadOnlyStore::open(store.path())
        .unwrap()
        .snapshot()
        .unwrap();
    // At its own tick: the first tick after its ts.
    let row = snap.as_of(CONSENT_FEATURE, &viewer, ts + 1000).unwrap();
    assert_eq!(row.as_deref(), Some(&br#"["analytics"]"#[..]));
    assert_eq!(snap.as_of(CONSENT_FEATURE, &viewer, ts).unwrap(), None);
    assert_eq!(snap.dead_letters().unwrap(), vec![]);
}
