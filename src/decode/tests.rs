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

/// Strings are borrowed from the record where they can be: escaped ones must still decode to
/// the same text, and `null` still counts as missing.
#[test]
fn escaped_strings_decode_as_their_text_and_null_is_missing() {
    let plain = format!(
        r#"{{"event_id":"e","type":"impression","user_id":"u1","ts":{TS},"title_id":"t1","row":"a/b","rank":1}}"#
    );
    let escaped = format!(
        r#"{{"event_id":"\u0065","type":"impr\u0065ssion","user_id":"u\u0031","ts":{TS},"title_id":"t\u0031","row":"a\/b","rank":1}}"#
    );
    assert_eq!(decode(&plain).unwrap(), decode(&escaped).unwrap());
    let null_user =
        format!(r#"{{"event_id":"e","type":"click","user_id":null,"ts":{TS},"title_id":"t"}}"#);
    assert_eq!(decode(&null_user), Err(DeadReason::Missing("user_id")));
    let number_user =
        format!(r#"{{"event_id":"e","type":"click","user_id":7,"ts":{TS},"title_id":"t"}}"#);
    assert_eq!(
        decode(&number_user),
        Err(DeadReason::WrongType {
            field: "user_id",
            expected: "a string"
        })
    );
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

/// Every string of the schema has a bound: an event within it decodes, one byte more is a
/// dead letter whose reason names the field and the limit.
#[test]
fn every_string_of_an_event_is_bounded() {
    let at = |field: &str, len: usize| {
        let body = match field {
            "row" => format!(
                r#""type":"impression","title_id":"t","rank":1,"row":"{}""#,
                "r".repeat(len)
            ),
            "query" => format!(r#""type":"search","query":"{}""#, "q".repeat(len)),
            _ => r#""type":"click","title_id":"t""#.to_string(),
        };
        let mut fields = serde_json::Map::new();
        let event: serde_json::Value = serde_json::from_str(&format!(
            r#"{{"event_id":"e","user_id":"u","ts":{TS},{body}}}"#
        ))
        .unwrap();
        fields.extend(event.as_object().unwrap().clone());
        if !matches!(field, "row" | "query") {
            fields.insert(field.into(), "x".repeat(len).into());
        }
        decode(&serde_json::Value::Object(fields).to_string())
    };
    let limits = [
        ("event_id", MAX_ID_BYTES),
        ("user_id", MAX_ID_BYTES),
        ("title_id", MAX_ID_BYTES),
        ("row", MAX_ROW_BYTES),
        ("query", MAX_QUERY_BYTES),
    ];
    for (field, limit) in limits {
        at(field, limit).unwrap_or_else(|e| panic!("{field} at its limit: {e}"));
        let reason = at(field, limit + 1).unwrap_err();
        assert_eq!(
            reason,
            DeadReason::TooLong {
                field,
                limit_bytes: limit
            }
        );
        let text = reason.to_string();
        assert!(
            text.contains(field) && text.contains(&limit.to_string()),
            "{text}"
        );
    }
    // The optional title of a click's row and of a search are bounded too.
    let json = format!(
        r#"{{"event_id":"e","user_id":"u","ts":{TS},"type":"search","query":"q","title_id":"{}"}}"#,
        "t".repeat(MAX_ID_BYTES + 1)
    );
    assert!(matches!(
        decode(&json),
        Err(DeadReason::TooLong {
            field: "title_id",
            ..
        })
    ));
}

/// 40 play_starts with 500 KB title ids once made a 326 MB store: a payload that size is
/// far past anything the schema needs.
#[test]
fn a_payload_far_larger_than_the_schema_needs_is_a_dead_letter() {
    let json = format!(
        r#"{{"event_id":"e","user_id":"u","ts":{TS},"type":"play_start","title_id":"t","pad":"{}"}}"#,
        " ".repeat(500_000)
    );
    assert!(matches!(decode(&json), Err(DeadReason::Oversized { .. })));
}

#[test]
fn every_string_of_a_title_is_bounded() {
    let title = |extra: &str| {
        let json = format!(r#"{{"kind":"movie",{extra}}}"#);
        decode_title(Some(json.as_bytes()))
    };
    let long = |n: usize| format!(r#""{}""#, "g".repeat(n));
    let genres = |n: usize, len: usize| vec![long(len); n].join(",");
    let ok = format!(
        r#""title_id":{},"series_id":{},"rating":{},"genres":[{}]"#,
        long(MAX_ID_BYTES),
        long(MAX_ID_BYTES),
        long(MAX_RATING_BYTES),
        (0..MAX_GENRES)
            .map(|i| format!(r#""{i:0width$}""#, width = MAX_GENRE_BYTES))
            .collect::<Vec<_>>()
            .join(",")
    );
    let decoded = title(&ok).unwrap();
    assert_eq!(decoded.genres.len(), MAX_GENRES);
    let cases = [
        (
            format!(r#""title_id":{}"#, long(MAX_ID_BYTES + 1)),
            DeadReason::TooLong {
                field: "title_id",
                limit_bytes: MAX_ID_BYTES,
            },
        ),
        (
            format!(r#""title_id":"t","series_id":{}"#, long(MAX_ID_BYTES + 1)),
            DeadReason::TooLong {
                field: "series_id",
                limit_bytes: MAX_ID_BYTES,
            },
        ),
        (
            format!(r#""title_id":"t","rating":{}"#, long(MAX_RATING_BYTES + 1)),
            DeadReason::TooLong {
                field: "rating",
                limit_bytes: MAX_RATING_BYTES,
            },
        ),
        (
            format!(
                r#""title_id":"t","genres":[{}]"#,
                genres(1, MAX_GENRE_BYTES + 1)
            ),
            DeadReason::TooLong {
                field: "genres",
                limit_bytes: MAX_GENRE_BYTES,
            },
        ),
        (
            format!(r#""title_id":"t","genres":[{}]"#, genres(MAX_GENRES + 1, 1)),
            DeadReason::TooMany {
                field: "genres",
                limit: MAX_GENRES,
            },
        ),
    ];
    for (extra, reason) in cases {
        assert_eq!(title(&extra).unwrap_err(), reason, "{extra:.80}");
        let text = reason.to_string();
        assert!(text.contains("genres") || text.contains("_id") || text.contains("rating"));
    }
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

fn consent(json: &str) -> Result<ConsentRecord, DeadReason> {
    let known = Purpose::BUILT_IN;
    decode_consent(Some(json.as_bytes()), &door(), &known)
}

#[test]
fn a_consent_record_decodes_with_a_pseudonymous_viewer() {
    let json = format!(
        r#"{{"user_id":"u42","purpose":"analytics","granted":false,"ts":{TS},"email":"a@b.c"}}"#
    );
    let record = consent(&json).unwrap();
    assert_eq!(
        record,
        ConsentRecord {
            viewer: door().viewer_id("u42"),
            purpose: Purpose::Analytics,
            granted: false,
            ts_ms: TS,
        }
    );
    let debug = format!("{record:?}");
    assert!(
        !debug.contains("u42") && !debug.contains("a@b.c"),
        "{debug}"
    );
}

#[test]
fn each_kind_of_bad_consent_record_gets_its_reason() {
    let long = "u".repeat(MAX_ID_BYTES + 1);
    let cases = [
        ("".to_string(), "empty payload"),
        ("{".to_string(), "bad JSON: syntax error"),
        ("[1]".to_string(), "bad JSON: not a JSON object"),
        (
            format!(r#"{{"purpose":"ads","granted":true,"ts":{TS}}}"#),
            "missing required field `user_id`",
        ),
        (
            format!(r#"{{"user_id":"u","granted":true,"ts":{TS}}}"#),
            "missing required field `purpose`",
        ),
        (
            format!(r#"{{"user_id":"u","purpose":"ads","ts":{TS}}}"#),
            "missing required field `granted`",
        ),
        (
            r#"{"user_id":"u","purpose":"ads","granted":true}"#.to_string(),
            "missing required field `ts`",
        ),
        (
            format!(r#"{{"user_id":"u","purpose":"marketing","granted":true,"ts":{TS}}}"#),
            "unknown `purpose` (known: personalization, analytics, ads)",
        ),
        (
            format!(r#"{{"user_id":"u","purpose":"ads","granted":"yes","ts":{TS}}}"#),
            "field `granted` is not true or false",
        ),
        (
            format!(r#"{{"user_id":"u","purpose":7,"granted":true,"ts":{TS}}}"#),
            "field `purpose` is not a string",
        ),
        (
            format!(r#"{{"user_id":9,"purpose":"ads","granted":true,"ts":{TS}}}"#),
            "field `user_id` is not a string",
        ),
        (
            r#"{"user_id":"u","purpose":"ads","granted":true,"ts":"now"}"#.to_string(),
            "field `ts` is not an integer of milliseconds",
        ),
        (
            r#"{"user_id":"u","purpose":"ads","granted":true,"ts":4102444800000}"#.to_string(),
            "`ts` is not a plausible time",
        ),
        (
            format!(r#"{{"user_id":"{long}","purpose":"ads","granted":true,"ts":{TS}}}"#),
            "field `user_id` exceeds the 256-byte limit",
        ),
        (
            format!(
                r#"{{"user_id":"u","purpose":"{}","granted":true,"ts":{TS}}}"#,
                "p".repeat(100_000)
            ),
            "exceeds the 65536-byte limit",
        ),
    ];
    for (json, want) in cases {
        let reason = consent(&json).unwrap_err().to_string();
        assert!(reason.contains(want), "{json:.80}: {reason}");
    }
}

#[test]
fn a_purpose_the_library_declares_is_known() {
    let known = [Purpose::Personalization, Purpose::Named("fraud_review")];
    let json = format!(r#"{{"user_id":"u","purpose":"fraud_review","granted":true,"ts":{TS}}}"#);
    let record = decode_consent(Some(json.as_bytes()), &door(), &known).unwrap();
    assert_eq!(record.purpose, Purpose::Named("fraud_review"));
}

proptest! {
    #[test]
    fn arbitrary_consent_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_consent(Some(&bytes), &door(), &Purpose::BUILT_IN);
    }
}

fn erasure(json: &str) -> Result<ErasureRecord, DeadReason> {
    decode_erasure(Some(json.as_bytes()), &door())
}

#[test]
fn an_erasure_record_keeps_the_pseudonym_and_the_time_only() {
    let json = format!(r#"{{"user_id":"u42","ts":{TS},"email":"a@b.c","reason":"gdpr"}}"#);
    let record = erasure(&json).unwrap();
    let want = ErasureRecord {
        viewer: door().viewer_id("u42"),
        ts_ms: TS,
    };
    assert_eq!(record, want);
    let debug = format!("{record:?}");
    assert!(
        !debug.contains("u42") && !debug.contains("a@b.c"),
        "{debug}"
    );
}

#[test]
fn each_kind_of_bad_erasure_record_gets_its_reason() {
    let long = "u".repeat(MAX_ID_BYTES + 1);
    let cases = [
        ("".to_string(), "empty payload"),
        ("{".to_string(), "bad JSON: syntax error"),
        ("[1]".to_string(), "bad JSON: not a JSON object"),
        (
            format!(r#"{{"ts":{TS}}}"#),
            "missing required field `user_id`",
        ),
        (
            r#"{"user_id":"u"}"#.to_string(),
            "missing required field `ts`",
        ),
        (
            format!(r#"{{"user_id":9,"ts":{TS}}}"#),
            "field `user_id` is not a string",
        ),
        (
            r#"{"user_id":"u","ts":"now"}"#.to_string(),
            "field `ts` is not an integer of milliseconds",
        ),
        (
            r#"{"user_id":"u","ts":-5}"#.to_string(),
            "field `ts` is not an integer",
        ),
        (
            r#"{"user_id":"u","ts":4102444800000}"#.to_string(),
            "`ts` is not a plausible time",
        ),
        (
            r#"{"user_id":"u","ts":12}"#.to_string(),
            "`ts` is not a plausible time",
        ),
        (
            format!(r#"{{"user_id":"{long}","ts":{TS}}}"#),
            "field `user_id` exceeds the 256-byte limit",
        ),
        (
            format!(
                r#"{{"user_id":"u","ts":{TS},"pad":"{}"}}"#,
                "p".repeat(100_000)
            ),
            "exceeds the 65536-byte limit",
        ),
    ];
    for (json, want) in cases {
        let reason = erasure(&json).unwrap_err().to_string();
        assert!(reason.contains(want), "{json:.80}: {reason}");
    }
}

proptest! {
    #[test]
    fn arbitrary_erasure_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_erasure(Some(&bytes), &door());
    }
}
