//! The sweep's pieces against plain references: point lookups for the cells, arrow's `take`
//! for the gathering, and one thread for the split.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder, MapBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rewind_dataflows::window::floor_tick;
use rewind_dataflows::{ValueType, library};
use rewind_state::{Change, Commit, ReadOnlyStore, Store};
use serde_json::Value;

use super::{CONSENT_FEATURE, Request, cut_in_parts, gather, json_cell, parse_value};
use crate::purpose::{META_CONSENT, ReadPurpose};

#[test]
fn integers_read_fast_are_what_a_full_parse_gives() {
    let cases = [
        "0",
        "-0",
        "7",
        "-12",
        "1.5",
        "-0.25",
        "1e3",
        "2.5E-3",
        "1.0",
        "3600.0",
        "9223372036854775807",
        "18446744073709551616",
        "1e400",
        "null",
        "{\"a\":0.5}",
        "[\"x\"]",
        "-",
        "1-2",
        "..",
    ];
    for case in cases {
        let fast = parse_value(case.as_bytes()).ok();
        let full: Option<serde_json::Value> = serde_json::from_str(case).ok();
        assert_eq!(fast, full, "{case}");
    }
}
/// Lists, maps and scalars, some with nulls (which `gather` leaves to `take`), whole and
/// sliced (their offsets then start past zero).
fn arrays(rng: &mut StdRng) -> Vec<ArrayRef> {
    let word = |rng: &mut StdRng| "abcdefgh"[..rng.random_range(0..8)].to_string();
    let mut lists = ListBuilder::new(StringBuilder::new());
    let mut nulled = ListBuilder::new(StringBuilder::new());
    let mut maps = MapBuilder::new(None, StringBuilder::new(), Float64Builder::new());
    for row in 0..60 {
        for _ in 0..rng.random_range(0..5) {
            lists.values().append_value(word(rng));
            nulled.values().append_value(word(rng));
            maps.keys().append_value(word(rng));
            maps.values().append_value(rng.random_range(0.0..1.0));
        }
        lists.append(true);
        nulled.append(row % 7 != 3);
        maps.append(true).unwrap();
    }
    let floats: Float64Array = (0..60)
        .map(|i| (i % 5 != 0).then_some(i as f64 / 4.0))
        .collect();
    let ints = Int64Array::from_iter_values(0..60);
    let whole: Vec<ArrayRef> = vec![
        Arc::new(lists.finish()),
        Arc::new(nulled.finish()),
        Arc::new(maps.finish()),
        Arc::new(floats),
        Arc::new(ints),
    ];
    let sliced: Vec<ArrayRef> = whole.iter().map(|a| a.slice(7, 45)).collect();
    whole.into_iter().chain(sliced).collect()
}

#[test]
fn gathering_lists_and_maps_a_row_at_a_time_gives_what_take_gives() {
    let mut rng = StdRng::seed_from_u64(3);
    for array in arrays(&mut rng) {
        let at: Vec<u32> = (0..400)
            .map(|_| rng.random_range(0..array.len() as u32))
            .collect();
        let got = gather(array.as_ref(), &at).unwrap();
        let want = arrow_select::take::take(array.as_ref(), &UInt32Array::from(at), None).unwrap();
        assert_eq!(got.to_data(), want.to_data(), "{}", array.data_type());
        assert_eq!(got.data_type(), array.data_type());
        assert_eq!(gather(array.as_ref(), &[]).unwrap().len(), 0);
    }
}

const TICK: u64 = 1_000;
const TICKS: u64 = 80;
const PURPOSE: &str = "personalization";

/// A stored value of `value_type`, or `None` (back to the default) one time in eight.
fn value(rng: &mut StdRng, value_type: ValueType) -> Option<Vec<u8>> {
    if rng.random_ratio(1, 8) {
        return None;
    }
    let json = match value_type {
        ValueType::Int => Value::from(rng.random_range(1..500)),
        ValueType::Float | ValueType::Ratio => Value::from(rng.random_range(1..9999) as f64 / 8.0),
        ValueType::Map => {
            let genres = ["drama", "comedy", "news", "kids"];
            let share = |rng: &mut StdRng| Value::from(rng.random_range(1..8) as f64 / 8.0);
            let map = genres[..rng.random_range(1..4)]
                .iter()
                .map(|g| (g.to_string(), share(rng)))
                .collect();
            Value::Object(map)
        }
        ValueType::List => {
            let titles =
                (0..rng.random_range(1..10)).map(|_| format!("tt{:06}", rng.random_range(0..300)));
            Value::from(titles.collect::<Vec<_>>())
        }
    };
    Some(json.to_string().into_bytes())
}

/// Every viewer feature, and the recorded consent, as (name, value type).
fn columns() -> Vec<(&'static str, ValueType)> {
    let features = library()
        .into_iter()
        .filter(|f| f.name.starts_with("viewer."));
    let mut columns: Vec<_> = features.map(|f| (f.name, f.value_type())).collect();
    columns.push((CONSENT_FEATURE, ValueType::List));
    columns
}

/// A store of `ids` whose every viewer feature and consent change at random over `TICKS`
/// ticks, gating `PURPOSE` by consent.
fn store(ids: &[String], rng: &mut StdRng) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_meta("tick_ms", &TICK.to_le_bytes()).unwrap();
    let gating = format!("purposes={PURPOSE}");
    store.put_meta(META_CONSENT, gating.as_bytes()).unwrap();
    let consents = [&[PURPOSE][..], &["ads"], &["ads", PURPOSE]];
    for tick in 1..=TICKS {
        // Every tenth tick changes every key, with long lists: more than a block holds.
        let big = tick % 10 == 5;
        let mut changes = Vec::new();
        for id in ids {
            for (feature, value_type) in columns() {
                if !big && !rng.random_ratio(1, 4) {
                    continue;
                }
                let value = match feature == CONSENT_FEATURE {
                    true => rng.random_ratio(3, 4).then(|| {
                        let purposes = consents[rng.random_range(0..consents.len())];
                        Value::from(purposes.to_vec()).to_string().into_bytes()
                    }),
                    false if big && value_type == ValueType::List => {
                        let titles: Vec<String> = (0..60).map(|t| format!("tt{t:06}")).collect();
                        Some(Value::from(titles).to_string().into_bytes())
                    }
                    false => value(rng, value_type),
                };
                changes.push(Change {
                    entity_kind: "viewer",
                    feature,
                    entity_id: id.clone().into(),
                    tick_ms: tick * TICK,
                    value,
                });
            }
        }
        let commit = Commit {
            frontier_ms: (tick + 1) * TICK,
            changes,
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }
    dir
}

/// A cell as JSON, numbers as floats (an Int64 cell and a stored `3` compare equal).
fn cell(column: &ArrayRef, row: usize) -> Value {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    let value = match column.data_type() {
        _ if column.is_null(row) => Value::Null,
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).into(),
        DataType::Float64 => column.as_primitive::<Float64Type>().value(row).into(),
        _ => serde_json::from_str(&json_cell(column, row)).unwrap(),
    };
    floats(value)
}

fn floats(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Array(items) => Value::Array(items.into_iter().map(floats).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

#[test]
fn a_cut_split_among_threads_reads_what_point_lookups_read() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut ids: Vec<String> = (0..45)
        .map(|_| format!("v_{:032x}", rng.random::<u128>()))
        .collect();
    ids.extend((0..3).map(|i| format!("named-{i}")));
    let dir = store(&ids, &mut rng);
    // Label rows of the stored viewers and of one the store never saw, at times from before
    // the first tick to just before the frontier.
    let never = "v_0000000000000000000000000000000f".to_string();
    let rows: Vec<(String, i64)> = (0..3000)
        .map(|_| {
            let id = match rng.random_ratio(1, 50) {
                true => never.clone(),
                false => ids[rng.random_range(0..ids.len())].clone(),
            };
            (id, rng.random_range(0..(TICKS + 1) * TICK) as i64)
        })
        .collect();
    let labels = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("viewer_id", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap();
    let snap = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    let mut plain = Request {
        features: Vec::new(),
        raw_ids: None,
        purpose: None,
    };
    let cut = |request: &Request<'_>, parts| {
        cut_in_parts(&snap, &labels, request, Some(parts), |_, _| {}).unwrap()
    };
    let mut blocks = std::collections::BTreeMap::new();
    let mut sweep = snap.sweep(0, u64::MAX).unwrap();
    while let Some(block) = sweep.next_block().unwrap() {
        *blocks.entry(block.tick_ms).or_insert(0) += 1;
    }
    let split = blocks.values().filter(|n| **n > 1).count();
    assert!(split >= 4, "only {split} ticks span several blocks");

    let all = cut(&plain, 1);
    for parts in [2, 3, 5, 64] {
        assert_eq!(cut(&plain, parts), all, "{parts} parts");
    }
    let mut told = Vec::new();
    let told_all = cut_in_parts(&snap, &labels, &plain, Some(3), |done, total| {
        told.push((done, total))
    });
    assert_eq!(told_all.unwrap(), all);
    assert!(told.is_sorted(), "{told:?}");
    assert_eq!(told.last(), Some(&(rows.len(), rows.len())));

    let mut seen = 0;
    for (row, (id, ts)) in rows.iter().enumerate() {
        let tick = floor_tick(*ts as u64, TICK);
        for feature in library().iter().filter(|f| f.name.starts_with("viewer.")) {
            let stored = snap.as_of(feature.name, id, tick).unwrap();
            seen += usize::from(stored.is_some());
            let json = stored.unwrap_or_else(|| feature.default_json().as_bytes().to_vec());
            let want = floats(parse_value(&json).unwrap());
            let got = cell(all.column_by_name(feature.name).unwrap(), row);
            assert_eq!(got, want, "row {row} ({id} at {ts}): {}", feature.name);
        }
    }
    assert!(
        seen > rows.len(),
        "only {seen} cells had a value: the check is too weak"
    );

    // For a purpose gated by consent: a row takes the defaults unless its viewer consented
    // then, and says so; the rest is what the plain cut read.
    plain.purpose = Some(PURPOSE);
    let gated = cut(&plain, 1);
    for parts in [2, 3, 5] {
        assert_eq!(cut(&plain, parts), gated, "{parts} parts, for a purpose");
    }
    let read = ReadPurpose::in_store(
        ReadPurpose::find(PURPOSE).unwrap(),
        Some(format!("purposes={PURPOSE}").as_bytes()),
    );
    let said = gated
        .column_by_name(&format!("consent_{PURPOSE}"))
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::BooleanArray>()
        .unwrap()
        .clone();
    let mut consented = 0;
    for (row, (id, ts)) in rows.iter().enumerate() {
        let record = snap
            .as_of(CONSENT_FEATURE, id, floor_tick(*ts as u64, TICK))
            .unwrap();
        let allowed = read.allows(record.as_deref());
        consented += usize::from(allowed);
        assert_eq!(said.value(row), allowed, "row {row}");
        for field in gated.schema().fields().iter().skip(2) {
            let Some(feature) = library().into_iter().find(|f| f.name == field.name()) else {
                continue;
            };
            let want = match allowed {
                true => cell(all.column_by_name(feature.name).unwrap(), row),
                false => floats(serde_json::from_str(feature.default_json()).unwrap()),
            };
            let got = cell(gated.column_by_name(feature.name).unwrap(), row);
            assert_eq!(got, want, "row {row}: {}", feature.name);
        }
    }
    assert!(
        consented > 100 && consented < rows.len() - 100,
        "{consented} consented"
    );
}

#[test]
fn a_split_cut_names_the_row_one_thread_would_have_failed_on() {
    let mut rng = StdRng::seed_from_u64(5);
    let ids: Vec<String> = (0..30)
        .map(|_| format!("v_{:032x}", rng.random::<u128>()))
        .collect();
    let dir = store(&ids, &mut rng);
    // Values no JSON parser takes, for a few viewers, in the last ticks.
    let bad = [
        (0, TICKS + 3),
        (7, TICKS + 1),
        (19, TICKS + 2),
        (23, TICKS + 1),
    ];
    let store = Store::open(dir.path()).unwrap();
    for tick in TICKS + 1..=TICKS + 3 {
        let changes = bad
            .iter()
            .filter(|(_, t)| *t == tick)
            .map(|(v, _)| Change {
                entity_kind: "viewer",
                feature: "viewer.plays_24h",
                entity_id: ids[*v].clone().into(),
                tick_ms: tick * TICK,
                value: Some(b"{torn".to_vec()),
            })
            .collect();
        let commit = Commit {
            frontier_ms: (tick + 1) * TICK,
            changes,
            ..Commit::default()
        };
        store.commit(&commit).unwrap();
    }
    drop(store);
    let rows: Vec<(usize, i64)> = (0..4000)
        .map(|_| {
            let ts = rng.random_range((TICKS - 5) * TICK..(TICKS + 4) * TICK);
            (rng.random_range(0..ids.len()), ts as i64)
        })
        .collect();
    // The first row in sweep order (as-of tick, then row) whose viewer holds a bad value.
    let first = (0..rows.len())
        .filter(|r| {
            let (v, ts) = rows[*r];
            let tick = floor_tick(ts as u64, TICK);
            bad.iter().any(|(b, t)| *b == v && tick >= t * TICK)
        })
        .min_by_key(|r| (floor_tick(rows[*r].1 as u64, TICK), *r))
        .expect("a row that reads a bad value");
    let labels = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("viewer_id", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ])),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &ids[r.0]),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap();
    let snap = ReadOnlyStore::open(dir.path()).unwrap().snapshot().unwrap();
    let request = Request {
        features: Vec::new(),
        raw_ids: None,
        purpose: None,
    };
    for parts in [1, 2, 3, 5, 30] {
        let err = cut_in_parts(&snap, &labels, &request, Some(parts), |_, _| {}).unwrap_err();
        let said = err.to_string();
        assert!(
            said.starts_with(&format!("label row {}: stored value", first + 1)),
            "{parts} parts: {said}"
        );
    }
}
