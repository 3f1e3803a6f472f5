//! `rewind snapshot --served`: label rows joined to exactly the values that were served.
//!
//! Two rules, chosen by the labels' columns:
//! - **By request id** (a `request_id` column): the row logged for that request; with a
//!   `viewer_id` or `title_id` column too, the row of that entity in the request (a batch
//!   serves many), without one the request must have served exactly one entity.
//! - **By entity and time** (a `viewer_id` or `title_id` column and `ts`, no `request_id`):
//!   the latest response served for that entity at or before `ts` (serving wall time, ms;
//!   among responses served in the same ms, the last logged) whose values are as of `ts` or
//!   earlier. Everything in a response was read from the store before it was served, so a
//!   response served at or before `ts` holds nothing that arrived after `ts`; and its as-of at
//!   or before `ts` means it holds no event stamped at or after `ts` either, even where event
//!   time runs ahead of wall time (a replay, the embedded generator). So the rule cannot leak
//!   the future. A `ts` after now is refused, since a response could still be served before
//!   it.
//!
//! A label row that matches nothing (an unknown or purged request id, an entity never served
//! before `ts`) keeps its label columns and gets nulls, and is counted in the [`Report`].
//! Columns: the labels unchanged, then one column per served feature (null where the response
//! did not carry it), then `served_request_id` and `served_at_ms`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use rewind_dataflows::{Entity, Feature, ValueType};

use super::file::{LogReader, LogRow};
use crate::privacy::Pseudonymizer;
use crate::snapshot::{self, FeatureColumn, SnapshotError};

/// The columns the join adds after the features.
pub const REQUEST_COLUMN: &str = "served_request_id";
pub const SERVED_AT_COLUMN: &str = "served_at_ms";

/// What to join.
pub struct ServedRequest<'a> {
    /// Feature names; all of the entity's when empty.
    pub features: Vec<String>,
    /// Pseudonymize a `viewer_id` column of raw account ids with this key.
    pub raw_ids: Option<&'a Pseudonymizer>,
    /// Wall time of the cut, ms: later label times are refused.
    pub now_ms: u64,
    /// Rows served before this are past the retention and never joined.
    pub not_before_ms: u64,
}

/// How the join went, for the user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub by_request_id: bool,
    pub matched: usize,
    pub unmatched: usize,
    /// A few request ids that matched nothing.
    pub unknown_request_ids: Vec<String>,
    /// Responses the servers served but could not log (their queue was full).
    pub dropped: u64,
}

/// The labels joined to the served values.
pub fn cut_served(
    log: &LogReader,
    labels: &RecordBatch,
    request: &ServedRequest<'_>,
) -> Result<(RecordBatch, Report), SnapshotError> {
    snapshot::unique_columns(labels)?;
    let schema = labels.schema();
    let entity = entity_column(labels)?;
    if request.raw_ids.is_some() && entity.is_some_and(|(e, _)| e == Entity::Title) {
        return Err(SnapshotError::RawTitleIds);
    }
    let ids = entity
        .map(|(_, i)| snapshot::entity_ids(labels.column(i), request.raw_ids))
        .transpose()?;
    let mut report = Report {
        dropped: log.dropped_total()?,
        ..Report::default()
    };
    let matches = match schema.index_of("request_id") {
        Ok(i) => {
            report.by_request_id = true;
            by_request(log, labels.column(i), entity, ids.as_deref(), request)?
        }
        Err(_) => {
            let (kind, _) = entity.ok_or(SnapshotError::NoJoinKey)?;
            let ts = schema
                .index_of("ts")
                .map_err(|_| SnapshotError::MissingColumn("`ts`"))?;
            let ids = ids.as_deref().unwrap_or_default();
            by_entity_time(log, kind, ids, labels.column(ts), request)?
        }
    };
    report.matched = matches.rows.iter().filter(|m| m.is_some()).count();
    report.unmatched = matches.rows.len() - report.matched;
    report.unknown_request_ids = matches.unknown;
    let kind = entity
        .map(|(e, _)| e)
        .or(matches.kind)
        .unwrap_or(Entity::Viewer);
    let features = snapshot::select_features(kind, &request.features)?;
    let batch = assemble(labels, &features, &matches.rows)?;
    Ok((batch, report))
}

/// The matched row of each label row, and the entity kind they are about.
struct Matches {
    rows: Vec<Option<LogRow>>,
    kind: Option<Entity>,
    unknown: Vec<String>,
}

fn entity_column(labels: &RecordBatch) -> Result<Option<(Entity, usize)>, SnapshotError> {
    let schema = labels.schema();
    match (
        schema.index_of("viewer_id").ok(),
        schema.index_of("title_id").ok(),
    ) {
        (Some(_), Some(_)) => Err(SnapshotError::AmbiguousEntity),
        (Some(i), None) => Ok(Some((Entity::Viewer, i))),
        (None, Some(i)) => Ok(Some((Entity::Title, i))),
        (None, None) => Ok(None),
    }
}

fn entity_of(kind: &str) -> Option<Entity> {
    match kind {
        "viewer" => Some(Entity::Viewer),
        "title" => Some(Entity::Title),
        _ => None,
    }
}

/// Label row → the logged row of its request (and entity).
fn by_request(
    log: &LogReader,
    column: &ArrayRef,
    entity: Option<(Entity, usize)>,
    ids: Option<&[String]>,
    request: &ServedRequest<'_>,
) -> Result<Matches, SnapshotError> {
    let request_ids =
        arrow_cast::cast(column, &DataType::Utf8).map_err(|e| SnapshotError::BadRow {
            row: 0,
            detail: format!("request_id: {e}"),
        })?;
    let request_ids = request_ids.as_string::<i32>();
    let logged = log.rows(request.not_before_ms)?;
    let mut of_request: HashMap<&str, Vec<&LogRow>> = HashMap::new();
    for row in &logged {
        of_request
            .entry(row.request_id.as_str())
            .or_default()
            .push(row);
    }
    let mut matches = Matches {
        rows: Vec::with_capacity(request_ids.len()),
        kind: entity.map(|(e, _)| e),
        unknown: Vec::new(),
    };
    for r in 0..request_ids.len() {
        let request_id = match request_ids.is_null(r) {
            true => "",
            false => request_ids.value(r),
        };
        let served = of_request.get(request_id).map_or(&[][..], Vec::as_slice);
        let found = pick(r, request_id, served, entity.map(|(e, _)| e), ids)?;
        if let Some(row) = found {
            check_kind(r, row, &mut matches.kind)?;
        } else if matches.unknown.len() < 5 && served.is_empty() {
            matches.unknown.push(request_id.to_string());
        }
        matches.rows.push(found.cloned());
    }
    Ok(matches)
}

/// The one row of `served` (one request's rows) that label row `r` is about.
fn pick<'a>(
    r: usize,
    request_id: &str,
    served: &[&'a LogRow],
    entity: Option<Entity>,
    ids: Option<&[String]>,
) -> Result<Option<&'a LogRow>, SnapshotError> {
    let candidates: Vec<&LogRow> = match (entity, ids) {
        (Some(kind), Some(ids)) => served
            .iter()
            .copied()
            .filter(|row| row.kind == kind.as_str() && row.id == ids[r])
            .collect(),
        _ => {
            if served.len() > 1 {
                return Err(SnapshotError::AmbiguousRequest {
                    row: r + 1,
                    request_id: request_id.to_string(),
                    entities: served.len(),
                });
            }
            served.to_vec()
        }
    };
    match candidates.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(SnapshotError::RequestIdReused {
            row: r + 1,
            request_id: request_id.to_string(),
            times: many.len(),
        }),
    }
}

fn check_kind(r: usize, row: &LogRow, kind: &mut Option<Entity>) -> Result<(), SnapshotError> {
    let found = entity_of(&row.kind);
    match (*kind, found) {
        (None, Some(found)) => *kind = Some(found),
        (Some(first), found) if found != Some(first) => {
            return Err(SnapshotError::MixedEntities {
                row: r + 1,
                first: first.as_str().to_string(),
                found: row.kind.clone(),
            });
        }
        _ => {}
    }
    Ok(())
}

/// Label row → the latest row of its entity served at or before its `ts`.
fn by_entity_time(
    log: &LogReader,
    kind: Entity,
    ids: &[String],
    ts: &ArrayRef,
    request: &ServedRequest<'_>,
) -> Result<Matches, SnapshotError> {
    let times = snapshot::label_times(ts)?;
    let mut rows = Vec::with_capacity(times.len());
    for (r, (id, ts_ms)) in ids.iter().zip(&times).enumerate() {
        if *ts_ms < 0 {
            return Err(SnapshotError::BeforeEpoch {
                row: r + 1,
                ts_ms: *ts_ms,
            });
        }
        if *ts_ms as u64 > request.now_ms {
            return Err(SnapshotError::FutureLabel {
                row: r + 1,
                ts_ms: *ts_ms,
                now_ms: request.now_ms,
            });
        }
        rows.push(log.latest(kind.as_str(), id, *ts_ms as u64, request.not_before_ms)?);
    }
    Ok(Matches {
        rows,
        kind: Some(kind),
        unknown: Vec::new(),
    })
}

/// The labels, then the served feature columns, then the request id and served time.
fn assemble(
    labels: &RecordBatch,
    features: &[Feature],
    rows: &[Option<LogRow>],
) -> Result<RecordBatch, SnapshotError> {
    let schema = labels.schema();
    for name in features
        .iter()
        .map(|f| f.name)
        .chain([REQUEST_COLUMN, SERVED_AT_COLUMN])
    {
        if schema.index_of(name).is_ok() {
            return Err(SnapshotError::ColumnNamedLikeFeature {
                name: name.to_string(),
            });
        }
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays: Vec<ArrayRef> = labels.columns().to_vec();
    for feature in features {
        let array = feature_column(feature, rows)?;
        fields.push(Field::new(feature.name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let mut request_ids = StringBuilder::new();
    let mut served_at = Int64Builder::new();
    for row in rows {
        request_ids.append_option(row.as_ref().map(|r| r.request_id.as_str()));
        served_at.append_option(row.as_ref().map(|r| r.served_at_ms as i64));
    }
    fields.push(Field::new(REQUEST_COLUMN, DataType::Utf8, true));
    arrays.push(Arc::new(request_ids.finish()));
    fields.push(Field::new(SERVED_AT_COLUMN, DataType::Int64, true));
    arrays.push(Arc::new(served_at.finish()));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| SnapshotError::BadRow {
        row: 0,
        detail: e.to_string(),
    })
}

/// One feature's column: the served value of each matched row, null where there is none.
fn feature_column(feature: &Feature, rows: &[Option<LogRow>]) -> Result<ArrayRef, SnapshotError> {
    let mut column = FeatureColumn::new(feature);
    for (r, row) in rows.iter().enumerate() {
        let bad = |detail: String| SnapshotError::BadRow { row: r + 1, detail };
        let served = row
            .as_ref()
            .and_then(|row| row.values.iter().find(|v| &*v.feature == feature.name));
        let Some(served) = served else {
            column.push_null().map_err(bad)?;
            continue;
        };
        let value = snapshot::parse_value(served.json.as_bytes())
            .map_err(|e| bad(format!("served value of {}: {e}", feature.name)))?;
        if !fits(feature.value_type(), &value) {
            return Err(bad(format!(
                "the served value {} of {} is not of its type {:?}",
                served.json,
                feature.name,
                feature.value_type()
            )));
        }
        match value.is_null() {
            true => column.push_null(),
            false => column.push(Some(&value)),
        }
        .map_err(bad)?;
    }
    Ok(column.finish())
}

/// Whether `value` is one the feature's column can hold exactly: a column never turns a
/// served value into another (an integer feature served as `1.5` is an error, not `0`).
fn fits(value_type: ValueType, value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (value_type, value) {
        (_, Value::Null) => true,
        (ValueType::Int, v) => v.is_i64(),
        (ValueType::Float | ValueType::Ratio, v) => v.is_number(),
        (ValueType::Map, Value::Object(map)) => map.values().all(Value::is_number),
        (ValueType::List, Value::Array(items)) => items.iter().all(Value::is_string),
        _ => false,
    }
}
