use proptest::prelude::*;

use super::*;

fn door() -> Pseudonymizer {
    Pseudonymizer::new(b"a test key of enough bytes")
}

fn decode(json: &str) -> Result<Event, DeadReason> {
    decode_event(Some(json.as_bytes()), &door())
}

const TS: u64 = 1_767_225_600_000;

#[test]
fn a_heartbeat_decodes_to_a_pseudonymous_event_without_pii() {
    let json = format!(
        r#"{{"event_id":"e1","type":"heartbeat","user_id":"u42","ts":{TS},"title_id":"tt1",
            "position_s":12.5,"interval_s":10,"email":"a@b.c","ip":"10.0.0.1","device_id":"d9"}}"#
    );
    let event = decode(&json).unwrap();
    assert_eq!(event.viewer, door().viewer_id("u42"));
    assert_eq!(event.ts_ms, TS);
    let kind = EventKind::Heartbeat {
        title: "tt1".into(),
        position_ms: 12_500,
        interval_ms: 10_000,
    };
    assert_eq!(event.kind, kind);
    let debug = format!("{event:?}");
    for pii in ["u42", "a@b.c", "10.0.0.1", "d9"] {
        assert!(!debug.contains(pii), "{pii} leaked into {debug}");
    }
}

#[test]
fn every_event_type_decodes() {
    let cases = [
        r#""type":"play_start","title_id":"t""#,
        r#""type":"pause","title_id":"t","position_s":3"#,
        r#""type":"resume","title_id":"t""#,
        r#""type":"complete","title_id":"t","position_s":60"#,
        r#""type":"seek","title_id":"t","position_s":3,"to_s":90"#,
        r#""type":"impression","title_id":"t","row":"trending","rank":2"#,
        r#""type":"click","title_id":"t""#,
        r#""type":"search","query":"space""#,
    ];
    for case in cases {
        let json = format!(r#"{{"event_id":"e","user_id":"u","ts":{TS},{case}}}"#);
        let event = decode(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert!(case.contains(event.kind.type_name()));
    }
}

#[test]
fn each_kind_of_bad_record_gets_its_reason() {
    let good = |extra: &str| format!(r#"{{"event_id":"e","user_id":"u","ts":{TS}{extra}}}"#);
    let cases: Vec<(String, DeadReason)> = vec![
        (
            "{not json".into(),
            DeadReason::BadJson("syntax error at column 2".into()),
        ),
        (
            "[1,2]".into(),
            DeadReason::BadJson("not a JSON object".into()),
        ),
        (
            good(r#","type":"heartbeat","title_id":"t","position_s":1"#),
            DeadReason::Missing("interval_s"),
        ),
        (
            good(r#","type":"warp","title_id":"t""#),
            DeadReason::UnknownType,
        ),
        (good(r#","type":"click""#), DeadReason::Missing("title_id")),
        (
            r#"{"event_id":"e","user_id":12345,"ts":1767225600000,"type":"click","title_id":"t"}"#
                .into(),
            DeadReason::WrongType {
                field: "user_id",
                expected: "a string",
            },
        ),
        (
            r#"{"event_id":"e","user_id":"u","ts":"yesterday","type":"click","title_id":"t"}"#
                .into(),
            DeadReason::WrongType {
                field: "ts",
                expected: "an integer of milliseconds",
            },
        ),
        (
            r#"{"event_id":"e","user_id":"u","ts":17,"type":"click","title_id":"t"}"#.into(),
            DeadReason::ImplausibleTs,
        ),
        (
            good(r#","type":"heartbeat","title_id":"t","position_s":1,"interval_s":-10"#),
            DeadReason::OutOfRange("interval_s"),
        ),
    ];
    for (json, reason) in cases {
        assert_eq!(decode(&json).unwrap_err(), reason, "{json}");
    }
    assert_eq!(decode_event(None, &door()).unwrap_err(), DeadReason::Empty);
    let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    let err = decode_event(Some(&huge), &door()).unwrap_err();
    assert_eq!(
        err,
        DeadReason::Oversized {
            bytes: MAX_PAYLOAD_BYTES + 1
        }
    );
}

#[test]
fn a_reason_never_quotes_the_record() {
    let json = r#"{"event_id":"e","user_id":["secret@mail"],"ts":1767225600000,"type":"click"}"#;
    let reason = decode(json).unwrap_err().to_string();
    assert!(!reason.contains("secret"), "{reason}");
}

#[test]
fn titles_decode_and_dedupe_genres() {
    let json = r#"{"title_id":"tt1","genres":["drama","comedy","drama"],"rating":7.5,
                   "duration_s":5400,"kind":"movie"}"#;
    let title = decode_title(Some(json.as_bytes())).unwrap();
    assert_eq!(
        title.genres,
        vec!["comedy".to_string(), "drama".to_string()]
    );
    assert_eq!(title.rating.as_deref(), Some("7.5"));
    let bad = r#"{"title_id":"tt1","kind":"podcast"}"#;
    let reason = decode_title(Some(bad.as_bytes())).unwrap_err();
    assert_eq!(
        reason,
        DeadReason::WrongType {
            field: "kind",
            expected: "\"episode\" or \"movie\""
        }
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_event(Some(&bytes), &door());
        let _ = decode_title(Some(&bytes));
    }

    #[test]
    fn mutated_events_never_panic(cut in 0usize..120, byte in any::<u8>()) {
        let json = format!(
            r#"{{"event_id":"e1","type":"heartbeat","user_id":"u42","ts":{TS},"title_id":"t","position_s":1,"interval_s":10}}"#
        );
        let mut bytes = json.into_bytes();
        let at = cut.min(bytes.len() - 1);
        bytes[at] = byte;
        let _ = decode_event(Some(&bytes), &door());
    }
}
