//! Training snapshots: point-in-time-correct feature values for a table of labels.
//!
//! Each label row names an entity and a time `ts`; it gets every requested feature as of
//! `floor_tick(ts)`: the latest history row with `valid_from <= floor_tick(ts)`, or the
//! feature's default. An event at `ts` becomes visible only at the first tick boundary after
//! it, so no row sees the event it labels, nor anything later. A row past the store's
//! frontier is refused: its values are not final yet.
//!
//! Labels are CSV or Parquet; the training set is CSV or Parquet (maps and lists as Parquet
//! map and list columns). Every label column passes through unchanged and in order, the
//! feature columns follow, and no two columns share a name. A `ts` of a type that is not a
//! time is refused, never cast: a cast would read a bool or a day count as ms.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use arrow_array::builder::{Float64Builder, Int64Builder, ListBuilder, MapBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, ListArray, MapArray, RecordBatch, StringArray,
    StructArray, UInt32Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use rewind_dataflows::window::floor_tick;
use rewind_dataflows::{Entity, Feature, ValueType};
use rewind_state::{EntityRef, Snapshot, StoreError};

use crate::privacy::Pseudonymizer;
use crate::purpose::{CONSENT_FEATURE, PurposeError, ReadPurpose};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading labels {path}: {detail}")]
    ReadLabels { path: PathBuf, detail: String },
    #[error("labels have no {0} column; they need `viewer_id` or `title_id`, and `ts`")]
    MissingColumn(&'static str),
    #[error("labels have both `viewer_id` and `title_id`: keep the one the features are about")]
    AmbiguousEntity,
    #[error("label row {row}: {detail}")]
    BadRow { row: usize, detail: String },
    #[error(
        "the `ts` column is of type {data_type}, not a time; give Int64 ms since the epoch, a \
         Timestamp of any unit and zone, Date32 or Date64 (as of midnight UTC), or text (ms \
         since the epoch or RFC 3339)"
    )]
    TsType { data_type: DataType },
    #[error(
        "label row {row}: ts {ts_ms} is before the Unix epoch; give ms since \
         1970-01-01T00:00:00Z or RFC 3339"
    )]
    BeforeEpoch { row: usize, ts_ms: i64 },
    #[error(
        "labels have two columns named {name:?} (columns {first} and {second}); rename or drop \
         one: a training set's column names must be unique"
    )]
    DuplicateColumn {
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "label column {name:?} has the name of a requested feature; rename the column, or leave \
         the feature out with --features"
    )]
    ColumnNamedLikeFeature { name: String },
    #[error(
        "label column {name:?} has the name of the consent column --purpose adds; rename the \
         column"
    )]
    ColumnNamedLikeConsent { name: String },
    #[error(transparent)]
    Purpose(#[from] crate::purpose::PurposeError),
    #[error("feature {name:?} is requested twice; name each feature once")]
    DuplicateFeature { name: String },
    #[error(
        "label row {row}: ts {ts_ms} is at or past the store's frontier {frontier_ms} (values \
         are final before it); cut snapshots only for earlier times, or let the store catch up"
    )]
    PastFrontier {
        row: usize,
        ts_ms: i64,
        frontier_ms: u64,
    },
    #[error(
        "label row {row}: ts {ts_ms} is before the store's retention horizon {retained_from_ms} \
         ({horizon}): history before it was purged, so no value as of then exists; drop the \
         labels older than the retention"
    )]
    BeforeRetention {
        row: usize,
        ts_ms: i64,
        retained_from_ms: u64,
        horizon: String,
    },
    #[error("no {entity} feature {name:?}; known: {known}")]
    UnknownFeature {
        entity: &'static str,
        name: String,
        known: String,
    },
    #[error("--raw-ids pseudonymizes viewer ids; title ids are not personal data")]
    RawTitleIds,
    #[error("the store has no output yet: run it before cutting snapshots")]
    EmptyStore,
    #[error("output {path}: the extension must be .parquet or .csv")]
    OutFormat { path: PathBuf },
    #[error("writing {path}: {detail}")]
    Write { path: PathBuf, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ServedLog(#[from] crate::served::ServedLogError),
    #[error(
        "label row {row}: request {request_id:?} served {entities} entities; add a `viewer_id` \
         or `title_id` column to say which one the label is about"
    )]
    AmbiguousRequest {
        row: usize,
        request_id: String,
        entities: usize,
    },
    #[error(
        "label row {row}: request id {request_id:?} was served {times} times for this entity, \
         with values that may differ; request ids must be unique to join by them (leave the \
         `request_id` column out to join by entity and time)"
    )]
    RequestIdReused {
        row: usize,
        request_id: String,
        times: usize,
    },
    #[error(
        "label rows name responses about both viewers and titles (row {row} is about a \
         {found}, earlier rows about a {first}); add a `viewer_id` or `title_id` column, or \
         split the labels"
    )]
    MixedEntities {
        row: usize,
        first: String,
        found: String,
    },
    #[error(
        "label row {row}: ts {ts_ms} is after now ({now_ms}); a response could still be served \
         before it, so its served values are not final"
    )]
    FutureLabel { row: usize, ts_ms: i64, now_ms: u64 },
    #[error(
        "labels need a `request_id` column (join by request id) or a `viewer_id` or \
         `title_id` column and `ts` (join by entity and time)"
    )]
    NoJoinKey,
}

/// Labels, read into one Arrow batch (CSV columns as strings).
pub fn read_labels(path: &Path) -> Result<RecordBatch, SnapshotError> {
    let err = |detail: String| SnapshotError::ReadLabels {
        path: path.to_path_buf(),
        detail,
    };
    match extension(path).as_str() {
        "parquet" => {
            let file = File::open(path).map_err(|e| err(e.to_string()))?;
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|b| b.build())
                    .map_err(|e| err(e.to_string()))?;
            let schema = arrow_array::RecordBatchReader::schema(&reader);
            let batches: Vec<RecordBatch> = reader
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?;
            arrow_select_concat(&schema, &batches).map_err(err)
        }
        "csv" => read_csv(path).map_err(err),
        _ => Err(err("the extension must be .csv or .parquet".into())),
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn arrow_select_concat(
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<RecordBatch, String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for i in 0..schema.fields().len() {
        let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
        let column = if parts.is_empty() {
            arrow_array::new_empty_array(schema.field(i).data_type())
        } else {
            arrow_select::concat::concat(&parts).map_err(|e| e.to_string())?
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

fn read_csv(path: &Path) -> Result<RecordBatch, String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(String::from)
        .collect();
    let mut columns: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("row {}: {e}", row + 1))?;
        for (column, cell) in columns.iter_mut().zip(record.iter()) {
            column.push(cell.to_string());
        }
    }
    let fields: Vec<Field> = headers
        .iter()
        .map(|h| Field::new(h, DataType::Utf8, false))
        .collect();
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(StringArray::from(c)) as ArrayRef)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
}

/// What to cut.
pub struct Request<'a> {
    /// Feature names; all of the labels' entity when empty.
    pub features: Vec<String>,
    /// Pseudonymize a `viewer_id` column of raw account ids with this key.
    pub raw_ids: Option<&'a Pseudonymizer>,
    /// Read for this purpose ([`crate::purpose`]): only features declared for it (all of them
    /// when `features` is empty; a named one that is not is refused), and, for viewer labels,
    /// the defaults where the viewer did not consent to it at the row's time, with a
    /// `consent_<purpose>` column saying which rows those are.
    pub purpose: Option<&'a str>,
}

/// The labels with every requested feature as of each row's `ts`.
pub fn cut(
    snap: &Snapshot,
    labels: &RecordBatch,
    request: &Request<'_>,
    progress: impl FnMut(usize, usize),
) -> Result<RecordBatch, SnapshotError> {
    cut_in_parts(snap, labels, request, None, progress)
}

/// [`cut`], its sweep split among `parts` threads (by default as many as the rows and the
/// cores suit).
fn cut_in_parts(
    snap: &Snapshot,
    labels: &RecordBatch,
    request: &Request<'_>,
    parts: Option<usize>,
    mut progress: impl FnMut(usize, usize),
) -> Result<RecordBatch, SnapshotError> {
    unique_columns(labels)?;
    let (entity, id_index) = entity_column(labels)?;
    if request.raw_ids.is_some() && entity == Entity::Title {
        return Err(SnapshotError::RawTitleIds);
    }
    let purpose = request.purpose.map(ReadPurpose::find).transpose()?;
    let mut features = select_features(entity, &request.features)?;
    if let Some(purpose) = purpose {
        match request.features.is_empty() {
            true => {
                features.retain(|f| f.purposes.contains(&purpose));
                if features.is_empty() {
                    return Err(PurposeError::NothingDeclared {
                        entity: entity.as_str(),
                        purpose: purpose.as_str(),
                    }
                    .into());
                }
            }
            false => {
                for f in &features {
                    ReadPurpose::check(purpose, f)?;
                }
            }
        }
    }
    // Viewer labels read for a purpose say, per row, whether the viewer consented then.
    let consent = match (purpose, entity) {
        (Some(purpose), Entity::Viewer) => {
            let meta = snap.meta(crate::purpose::META_CONSENT)?;
            let read = ReadPurpose::in_store(purpose, meta.as_deref());
            let column = format!("consent_{}", read.name());
            if labels.schema().index_of(&column).is_ok() {
                return Err(SnapshotError::ColumnNamedLikeConsent { name: column });
            }
            Some((read, column))
        }
        _ => None,
    };
    if let Some(f) = features
        .iter()
        .find(|f| labels.schema().index_of(f.name).is_ok())
    {
        return Err(SnapshotError::ColumnNamedLikeFeature {
            name: f.name.to_string(),
        });
    }
    let ids = entity_ids(labels.column(id_index), request.raw_ids)?;
    let ts_index = labels
        .schema()
        .index_of("ts")
        .map_err(|_| SnapshotError::MissingColumn("`ts`"))?;
    let times = label_times(labels.column(ts_index))?;
    let frontier_ms = snap.frontier_ms()?.ok_or(SnapshotError::EmptyStore)?;
    let tick_ms = snap.meta_u64("tick_ms")?.ok_or(SnapshotError::EmptyStore)?;
    for (row, ts_ms) in times.iter().enumerate() {
        let row = row + 1;
        if *ts_ms < 0 {
            return Err(SnapshotError::BeforeEpoch { row, ts_ms: *ts_ms });
        }
        if *ts_ms as u64 >= frontier_ms {
            return Err(SnapshotError::PastFrontier {
                row,
                ts_ms: *ts_ms,
                frontier_ms,
            });
        }
    }
    let as_of: Vec<u64> = times
        .iter()
        .map(|ts| floor_tick(*ts as u64, tick_ms))
        .collect();
    // A label older than the retention would read what is left after the purge: the value as
    // of the horizon for some keys, the default for others. Refused, never guessed.
    let retained_from_ms = snap.retained_from_ms()?;
    if let Some(row) = as_of.iter().position(|t| *t < retained_from_ms) {
        return Err(SnapshotError::BeforeRetention {
            row: row + 1,
            ts_ms: times[row],
            retained_from_ms,
            horizon: crate::utc::format_ms(retained_from_ms),
        });
    }
    let mut columns: Vec<(&str, &str, ValueType)> = features
        .iter()
        .map(|f| {
            (
                f.entity().map_or("", Entity::as_str),
                f.name,
                f.value_type(),
            )
        })
        .collect();
    let gated = consent.as_ref().filter(|(read, _)| read.gated);
    if gated.is_some() {
        // The purposes a viewer consents to: a list.
        columns.push((Entity::Viewer.as_str(), CONSENT_FEATURE, ValueType::List));
    }
    // Rows, and each column's distinct values with its default, are counted in u32.
    if ids.len() >= u32::MAX as usize {
        return Err(SnapshotError::BadRow {
            row: u32::MAX as usize,
            detail: format!(
                "one cut takes fewer than {} label rows; split the labels",
                u32::MAX
            ),
        });
    }
    let parts = parts.unwrap_or_else(|| parts_for(ids.len()));
    let mut cells = sweep_cells(snap, &columns, &ids, &as_of, parts, &mut progress)?;
    let consented = match gated {
        Some((read, _)) => cells.withhold_unconsented(read, features.len()),
        None => vec![true; ids.len()],
    };
    let columns = cells.columns(features.len(), parts)?;
    let batch = assemble(
        labels,
        id_index,
        ids,
        entity,
        request.raw_ids.is_some(),
        features,
        columns,
    )?;
    match consent {
        Some((_, column)) => with_consent_column(batch, &column, consented),
        None => Ok(batch),
    }
}

/// `batch` with a non-null boolean column `name` last.
fn with_consent_column(
    batch: RecordBatch,
    name: &str,
    consented: Vec<bool>,
) -> Result<RecordBatch, SnapshotError> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(name, DataType::Boolean, false));
    let mut arrays = batch.columns().to_vec();
    arrays.push(Arc::new(BooleanArray::from(consented)));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays);
    batch.map_err(|e| SnapshotError::BadRow {
        row: 0,
        detail: e.to_string(),
    })
}

/// Every (label row, feature) cell: per feature, the distinct values label rows took (each
/// sweep part's default first among its own, so index 0 is a default), and per label row an
/// index into them.
struct Cells {
    distinct: Vec<ArrayRef>,
    at: Vec<Vec<u32>>,
}

impl Cells {
    /// With the recorded consent in force as the last of the cells' columns (after the
    /// `features` feature columns): each row whose viewer did not consent to `read`'s purpose
    /// at the row's time takes every feature's default. Returns, per row, whether it consented.
    fn withhold_unconsented(&mut self, read: &ReadPurpose, features: usize) -> Vec<bool> {
        let lists = self.distinct[features].as_list::<i32>();
        let grants: Vec<bool> = (0..lists.len())
            .map(|i| {
                let purposes = lists.value(i);
                let purposes = purposes.as_string::<i32>();
                purposes.iter().any(|p| p == Some(read.name()))
            })
            .collect();
        let consented: Vec<bool> = self.at[features]
            .iter()
            .map(|at| grants[*at as usize])
            .collect();
        // Index 0 is a default in every column (the first part's).
        for column in &mut self.at[..features] {
            for (at, consented) in column.iter_mut().zip(&consented) {
                *at *= u32::from(*consented);
            }
        }
        consented
    }

    /// The first `features` columns: each one's distinct values gathered by row, on up to
    /// `threads` threads (a gather writes a whole column, so they run side by side).
    fn columns(self, features: usize, threads: usize) -> Result<Vec<ArrayRef>, SnapshotError> {
        let gather = |f: usize| {
            gather(self.distinct[f].as_ref(), &self.at[f]).map_err(|e| SnapshotError::BadRow {
                row: 0,
                detail: e.to_string(),
            })
        };
        match threads {
            0 | 1 => (0..features).map(gather).collect(),
            _ => on_threads(features, threads, gather, || {})
                .into_iter()
                .collect(),
        }
    }
}

/// Rows `at` of `distinct`, in that order: what arrow's `take` gives. A list's or a map's
/// items lie together in its child arrays, so they are copied a row at a time here; `take`
/// goes item by item, and was most of a large cut's gathering.
fn gather(distinct: &dyn Array, at: &[u32]) -> Result<ArrayRef, ArrowError> {
    let whole = |arrays: &[&dyn Array]| arrays.iter().all(|a| a.null_count() == 0);
    match distinct.data_type() {
        DataType::List(field) => {
            let list = distinct.as_list::<i32>();
            if let (true, Some(items)) = (
                whole(&[distinct, list.values()]),
                list.values().as_string_opt::<i32>(),
            ) {
                let offsets = item_offsets(list.value_offsets(), at)?;
                let items = gather_strings(items, list.value_offsets(), at)?;
                return Ok(Arc::new(ListArray::try_new(
                    field.clone(),
                    offsets,
                    Arc::new(items),
                    None,
                )?));
            }
        }
        DataType::Map(field, sorted) => {
            let map = distinct.as_map();
            if let (true, Some(keys), Some(values)) = (
                whole(&[distinct, map.keys(), map.values()]),
                map.keys().as_string_opt::<i32>(),
                map.values().as_primitive_opt::<Float64Type>(),
            ) {
                let ranges = map.value_offsets();
                let offsets = item_offsets(ranges, at)?;
                let keys = gather_strings(keys, ranges, at)?;
                let mut shares = Vec::with_capacity(offsets.last() as usize);
                for &i in at {
                    let i = i as usize;
                    shares.extend_from_slice(
                        &values.values()[ranges[i] as usize..ranges[i + 1] as usize],
                    );
                }
                let entries = StructArray::try_new(
                    map.entries().fields().clone(),
                    vec![Arc::new(keys), Arc::new(Float64Array::from(shares))],
                    None,
                )?;
                return Ok(Arc::new(MapArray::try_new(
                    field.clone(),
                    offsets,
                    entries,
                    None,
                    *sorted,
                )?));
            }
        }
        _ => {}
    }
    let indices = UInt32Array::from_iter_values(at.iter().copied());
    arrow_select::take::take(distinct, &indices, None)
}

/// The offsets of rows `at` of a list whose row `i` holds items `ranges[i]..ranges[i + 1]`.
fn item_offsets(ranges: &[i32], at: &[u32]) -> Result<OffsetBuffer<i32>, ArrowError> {
    let mut offsets = Vec::with_capacity(at.len() + 1);
    let mut end = 0i32;
    offsets.push(end);
    for &i in at {
        let i = i as usize;
        end = end
            .checked_add(ranges[i + 1] - ranges[i])
            .ok_or_else(|| ArrowError::OffsetOverflowError(end as usize))?;
        offsets.push(end);
    }
    Ok(OffsetBuffer::new(offsets.into()))
}

/// The items of rows `at` of a list of strings whose row `i` holds items
/// `ranges[i]..ranges[i + 1]` of `strings`: each row's bytes copied in one piece.
fn gather_strings(
    strings: &StringArray,
    ranges: &[i32],
    at: &[u32],
) -> Result<StringArray, ArrowError> {
    let (ends, bytes) = (strings.value_offsets(), strings.values());
    let mut offsets = vec![0i32];
    let mut data: Vec<u8> = Vec::new();
    for &i in at {
        let (first, last) = (ranges[i as usize] as usize, ranges[i as usize + 1] as usize);
        let (from, to) = (ends[first] as usize, ends[last] as usize);
        let shift = i32::try_from(data.len())
            .ok()
            .and_then(|len| len.checked_sub(ends[first]))
            .ok_or(ArrowError::OffsetOverflowError(data.len()))?;
        for end in &ends[first + 1..=last] {
            offsets.push(
                end.checked_add(shift)
                    .ok_or(ArrowError::OffsetOverflowError(data.len()))?,
            );
        }
        data.extend_from_slice(&bytes[from..to]);
    }
    StringArray::try_new(OffsetBuffer::new(offsets.into()), data.into(), None)
}

/// The current value of one (entity, feature) as the sweep passes, and its index among the
/// distinct values once a label row has needed it.
#[derive(Default)]
struct Slot {
    /// The value's JSON, when not at the default (the buffer is kept for the next value).
    json: Vec<u8>,
    default: bool,
    parsed: Option<u32>,
}

/// The label entities, by the ids the store keeps.
struct Entities {
    pseudonyms: HashMap<u128, usize, BuildHasherDefault<PseudonymHasher>>,
    names: HashMap<String, usize>,
    /// Entity of each label row.
    of_row: Vec<usize>,
}

impl Entities {
    fn new(ids: &[String]) -> Entities {
        let mut entities = Entities {
            pseudonyms: HashMap::default(),
            names: HashMap::new(),
            of_row: Vec::with_capacity(ids.len()),
        };
        for id in ids {
            let next = entities.pseudonyms.len() + entities.names.len();
            let e = match EntityRef::new(id) {
                EntityRef::Pseudonym(n) => *entities.pseudonyms.entry(n).or_insert(next),
                EntityRef::Name(name) => match entities.names.get(name) {
                    Some(e) => *e,
                    None => *entities.names.entry(name.to_string()).or_insert(next),
                },
            };
            entities.of_row.push(e);
        }
        entities
    }

    fn len(&self) -> usize {
        self.pseudonyms.len() + self.names.len()
    }

    fn get(&self, id: EntityRef<'_>) -> Option<usize> {
        match id {
            EntityRef::Pseudonym(n) => self.pseudonyms.get(&n).copied(),
            EntityRef::Name(name) => self.names.get(name).copied(),
        }
    }
}

/// Pseudonyms are the leading bits of an HMAC: uniformly spread already, so their low 64 bits
/// are as good a hash as any, at no cost (the sweep looks one up per history entry).
#[derive(Default)]
struct PseudonymHasher(u64);

impl Hasher for PseudonymHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Label rows a sweep takes per thread, at least: each thread decodes all of history again, so
/// a small snapshot stays on one.
const ROWS_PER_PART: usize = 20_000;
/// Threads a sweep splits into, at most.
const MAX_PARTS: usize = 4;

/// How many threads sweep `rows` label rows.
fn parts_for(rows: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cores.min(MAX_PARTS).min(rows / ROWS_PER_PART).max(1)
}

/// One time-ordered sweep of history for all label rows: rows sorted by their as-of tick,
/// history blocks applied in tick order keeping the latest value of each requested (entity,
/// feature), and each row's cells taken as the sweep passes its tick. Each stored value is
/// parsed at most once.
///
/// The entities are split among `parts` threads (entity `e` to part `e % parts`): each sweeps
/// history up to its rows' last tick but keeps and takes only its own entities, so the
/// per-entry and per-row work, which is most of a large snapshot, is shared out. `columns`
/// are the (entity kind, feature, value type) cut.
fn sweep_cells(
    snap: &Snapshot,
    columns: &[(&str, &str, ValueType)],
    ids: &[String],
    as_of: &[u64],
    parts: usize,
    progress: &mut impl FnMut(usize, usize),
) -> Result<Cells, SnapshotError> {
    let catalog = snap.catalog()?;
    // Store feature index → requested column.
    let mut column_of: Vec<Option<usize>> = vec![None; catalog.len()];
    for (f, (kind, name, _)) in columns.iter().enumerate() {
        if let Some(index) = catalog.index(kind, name) {
            column_of[usize::from(index)] = Some(f);
        }
    }
    let types: Vec<ValueType> = columns.iter().map(|(_, _, t)| *t).collect();
    let entities = Entities::new(ids);
    let parts = parts.clamp(1, entities.len().max(1));
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); parts];
    for (row, e) in entities.of_row.iter().enumerate() {
        rows_of[e % parts].push(row);
    }
    let total = ids.len();
    let shared = Shared {
        taken: AtomicUsize::new(0),
        failed_at: AtomicU64::new(u64::MAX),
    };
    let sweep = |p: usize| {
        let mut part =
            Part::new(p, parts, &types, rows_of[p].len()).map_err(|e| Box::new(((0, 0, 0), e)))?;
        let swept = part.sweep(snap, &column_of, &entities, &rows_of[p], as_of, &shared);
        if let Err(failed) = &swept {
            shared.failed_at.fetch_min(failed.0.0, Ordering::Relaxed);
        }
        swept.map(|()| part)
    };
    let mut told = 0;
    let done = on_threads(parts, parts, sweep, || {
        let now = shared.taken.load(Ordering::Relaxed);
        if now / 100_000 > told / 100_000 {
            progress(now, total);
            told = now;
        }
    });
    let (mut swept, mut failed) = (Vec::with_capacity(parts), Vec::new());
    for part in done {
        match part {
            Ok(part) => swept.push(part),
            Err(f) => failed.push(f),
        }
    }
    if let Some(first) = failed.into_iter().min_by_key(|f| f.0) {
        return Err(first.1);
    }
    progress(total, total);
    merge(swept, &entities.of_row)
}

/// What the parts of a sweep share: how many rows they have taken in all, and the earliest
/// tick at which one failed (`u64::MAX` while none has).
struct Shared {
    taken: AtomicUsize,
    failed_at: AtomicU64,
}

/// Where one sweep over all entities would meet an error: `(tick, 0, _)` reading the blocks
/// of a tick, `(as-of tick, 1, label row)` taking a row. A split sweep returns the first, so
/// which error a cut gives does not depend on the number of cores.
type At = (u64, u8, usize);

/// An error and where the sweep met it (boxed: errors are rare, results frequent).
type Failed = Box<(At, SnapshotError)>;

/// `job(i)` for each `i < jobs`, in order of `i`, on up to `threads` threads of their own,
/// while the caller calls `wait` every 100 ms until they are done. Jobs a thread the OS
/// refuses would have taken go to the threads it gave, or to the caller when it gave none.
fn on_threads<T: Send>(
    jobs: usize,
    threads: usize,
    job: impl Fn(usize) -> T + Sync,
    mut wait: impl FnMut(),
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<T>>> =
        (0..jobs).map(|_| std::sync::Mutex::new(None)).collect();
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(result) = results.get(i) else {
                break;
            };
            let out = job(i);
            *result.lock().unwrap_or_else(|p| p.into_inner()) = Some(out);
        }
    };
    std::thread::scope(|scope| {
        let (finished, finishing) = std::sync::mpsc::channel();
        let mut running = 0;
        for _ in 0..threads.clamp(1, jobs.max(1)) {
            let (work, finished) = (&work, finished.clone());
            let thread = std::thread::Builder::new().name("rewind-sweep".into());
            let spawned = thread.spawn_scoped(scope, move || {
                work();
                let _ = finished.send(());
            });
            match spawned {
                Ok(_) => running += 1,
                Err(_) => break,
            }
        }
        drop(finished);
        if running == 0 {
            work();
        }
        // A thread that panics never says it finished: the channel closes when the last
        // one ends, and the scope passes the panic on.
        while running > 0 {
            match finishing.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(()) => running -= 1,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => wait(),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    results
        .into_iter()
        .map(|r| {
            let r = r.into_inner().unwrap_or_else(|p| p.into_inner());
            r.expect("every job ran: the threads take them until none is left")
        })
        .collect()
}

/// The parts' cells as one: each feature's distinct values end to end, and each row's index
/// moved past the parts before its own.
fn merge(parts: Vec<Part>, of_row: &[usize]) -> Result<Cells, SnapshotError> {
    let width = parts[0].width;
    let mut base = vec![vec![0u32; width]];
    for part in &parts[..parts.len() - 1] {
        let before = base.last().expect("the first part's");
        base.push(before.iter().zip(&part.count).map(|(b, n)| b + n).collect());
    }
    let mut at: Vec<Vec<u32>> = (0..width)
        .map(|_| Vec::with_capacity(of_row.len()))
        .collect();
    let mut next = vec![0; parts.len()];
    for e in of_row {
        let p = e % parts.len();
        let cells = &parts[p].at[next[p] * width..][..width];
        next[p] += 1;
        for f in 0..width {
            at[f].push(base[p][f] + cells[f]);
        }
    }
    let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); width];
    for part in parts {
        for (f, column) in part.distinct.into_iter().enumerate() {
            columns[f].push(column.finish());
        }
    }
    let distinct = columns
        .into_iter()
        .map(|mut arrays| match arrays.len() {
            1 => Ok(arrays.remove(0)),
            _ => {
                let arrays: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                // Fails only past arrow's offsets (2 GiB of one column's distinct text).
                arrow_select::concat::concat(&arrays).map_err(|e| SnapshotError::BadRow {
                    row: 0,
                    detail: e.to_string(),
                })
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Cells { distinct, at })
}

/// One thread's share of a sweep: the entities `e` with `e % of == id`, and their label rows.
struct Part {
    id: usize,
    of: usize,
    width: usize,
    /// Per column, the distinct values its rows took, the default first.
    distinct: Vec<FeatureColumn>,
    /// Per column, the number of values in `distinct`.
    count: Vec<u32>,
    /// The part's rows' cells, row-major, the rows in label order.
    at: Vec<u32>,
}

impl Part {
    /// Part `id` of `of`, with `rows` label rows, cutting columns of `types`.
    fn new(id: usize, of: usize, types: &[ValueType], rows: usize) -> Result<Part, SnapshotError> {
        let mut part = Part {
            id,
            of,
            width: types.len(),
            distinct: types.iter().map(|t| FeatureColumn::of(*t)).collect(),
            count: vec![1; types.len()],
            at: vec![0; rows * types.len()],
        };
        for column in &mut part.distinct {
            column
                .push(None)
                .map_err(|detail| SnapshotError::BadRow { row: 0, detail })?;
        }
        Ok(part)
    }

    /// Sweeps history for the part's entities and takes its `rows`; stops early, at no loss,
    /// once past a tick where another part failed.
    fn sweep(
        &mut self,
        snap: &Snapshot,
        column_of: &[Option<usize>],
        entities: &Entities,
        rows: &[usize],
        as_of: &[u64],
        shared: &Shared,
    ) -> Result<(), Failed> {
        let width = self.width;
        let own = entities.len().saturating_sub(self.id).div_ceil(self.of);
        let mut slots: Vec<Slot> = (0..own * width)
            .map(|_| Slot {
                default: true,
                ..Slot::default()
            })
            .collect();
        // (as-of tick, the part's row, its entity): read in this order, so a row's entity is
        // not one more random lookup. `cut` has checked that rows number within a u32.
        let mut order: Vec<(u64, u32, u32)> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                (
                    as_of[*row],
                    i as u32,
                    (entities.of_row[*row] / self.of) as u32,
                )
            })
            .collect();
        order.sort_unstable();
        let mut taken = 0;
        let mut take_until = |tick: Option<u64>, slots: &mut [Slot], part: &mut Part| {
            let start = taken;
            while let Some(&(row_as_of, i, entity)) = order.get(taken) {
                if tick.is_some_and(|t| row_as_of >= t) {
                    break;
                }
                let i = i as usize;
                part.take_row(rows, i, entity as usize, slots)
                    .map_err(|e| Box::new(((row_as_of, 1, rows[i]), e)))?;
                taken += 1;
            }
            shared.taken.fetch_add(taken - start, Ordering::Relaxed);
            Ok(())
        };
        let until = rows.iter().map(|row| as_of[*row]).max().unwrap_or(0);
        let mut sweep = snap
            .sweep(0, until)
            .map_err(|e| Box::new(((0, 0, 0), e.into())))?;
        let mut last = 0;
        while let Some(block) = sweep
            .next_block()
            .map_err(|e| Box::new(((last, 0, 1), e.into())))?
        {
            take_until(Some(block.tick_ms), &mut slots, self)?;
            // Every row and block before this tick is done: nothing left can fail before the
            // part that already has.
            if block.tick_ms > shared.failed_at.load(Ordering::Relaxed) {
                return Ok(());
            }
            last = block.tick_ms;
            for entry in block.entries() {
                let entry = entry.map_err(|e| Box::new(((block.tick_ms, 0, 0), e.into())))?;
                let column = column_of.get(usize::from(entry.feature)).copied().flatten();
                let Some(f) = column else {
                    continue;
                };
                let Some(e) = entities
                    .get(entry.entity)
                    .filter(|e| e % self.of == self.id)
                else {
                    continue;
                };
                let slot = &mut slots[e / self.of * width + f];
                slot.json.clear();
                slot.json.extend_from_slice(entry.value.unwrap_or_default());
                slot.default = entry.value.is_none();
                slot.parsed = None;
            }
        }
        take_until(None, &mut slots, self)
    }

    /// Takes the part's `i`th label row from its entity's current slots.
    fn take_row(
        &mut self,
        rows: &[usize],
        i: usize,
        entity: usize,
        slots: &mut [Slot],
    ) -> Result<(), SnapshotError> {
        let width = self.width;
        let bad = |detail: String| SnapshotError::BadRow {
            row: rows[i] + 1,
            detail,
        };
        for f in 0..width {
            let slot = &mut slots[entity * width + f];
            if slot.default {
                continue;
            }
            let at = match slot.parsed {
                Some(at) => at,
                None => {
                    let value =
                        parse_value(&slot.json).map_err(|e| bad(format!("stored value: {e}")))?;
                    self.distinct[f].push(Some(&value)).map_err(bad)?;
                    let at = self.count[f];
                    self.count[f] += 1;
                    slot.parsed = Some(at);
                    at
                }
            };
            self.at[i * width + f] = at;
        }
        Ok(())
    }
}

/// A stored JSON value. Integers (counts) are most cells: they are read without building a
/// generic document, into the same `serde_json::Value` a full parse gives; everything else,
/// floats included, is parsed by serde_json, so every cell is exactly what it was before.
pub(crate) fn parse_value(json: &[u8]) -> serde_json::Result<serde_json::Value> {
    let digits = match json {
        [b'-', rest @ ..] => rest,
        all => all,
    };
    // "-0" is the float -0.0 to serde_json; a leading zero is not JSON.
    let plain = matches!(digits, [b'1'..=b'9', ..] | [b'0']) && json != b"-0";
    if plain && digits.iter().all(u8::is_ascii_digit) {
        let text = std::str::from_utf8(json).unwrap_or_default();
        if let Ok(i) = text.parse::<i64>() {
            return Ok(i.into());
        }
    }
    serde_json::from_slice(json)
}

fn assemble(
    labels: &RecordBatch,
    id_index: usize,
    ids: Vec<String>,
    entity: Entity,
    replaced: bool,
    features: Vec<Feature>,
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, SnapshotError> {
    let schema = labels.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays: Vec<ArrayRef> = labels.columns().to_vec();
    if replaced {
        // The pseudonyms replace the raw ids: a training set never holds a raw account id.
        fields[id_index] = Field::new(format!("{}_id", entity.as_str()), DataType::Utf8, false);
        arrays[id_index] = Arc::new(StringArray::from(ids));
    }
    for (feature, array) in features.iter().zip(columns) {
        fields.push(Field::new(
            feature.name,
            array.data_type().clone(),
            array.null_count() > 0 || feature.value_type() == ValueType::Ratio,
        ));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays);
    batch.map_err(|e| SnapshotError::BadRow {
        row: 0,
        detail: e.to_string(),
    })
}

/// Readers of the training set look columns up by name: pyarrow datasets refuse a file with
/// two columns of one name, and a lookup would silently take either.
pub(crate) fn unique_columns(labels: &RecordBatch) -> Result<(), SnapshotError> {
    let schema = labels.schema();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if let Some(first) = seen.insert(field.name(), i) {
            return Err(SnapshotError::DuplicateColumn {
                name: field.name().clone(),
                first: first + 1,
                second: i + 1,
            });
        }
    }
    Ok(())
}

fn entity_column(labels: &RecordBatch) -> Result<(Entity, usize), SnapshotError> {
    let schema = labels.schema();
    match (
        schema.index_of("viewer_id").ok(),
        schema.index_of("title_id").ok(),
    ) {
        (Some(_), Some(_)) => Err(SnapshotError::AmbiguousEntity),
        (Some(i), None) => Ok((Entity::Viewer, i)),
        (None, Some(i)) => Ok((Entity::Title, i)),
        (None, None) => Err(SnapshotError::MissingColumn("entity id")),
    }
}

pub(crate) fn select_features(
    entity: Entity,
    names: &[String],
) -> Result<Vec<Feature>, SnapshotError> {
    let library: Vec<Feature> = rewind_dataflows::library()
        .into_iter()
        .filter(|f| f.entity() == Some(entity))
        .collect();
    if names.is_empty() {
        return Ok(library);
    }
    let mut twice = names
        .iter()
        .enumerate()
        .filter(|(i, n)| names[..*i].contains(n));
    if let Some((_, name)) = twice.next() {
        return Err(SnapshotError::DuplicateFeature { name: name.clone() });
    }
    names
        .iter()
        .map(|name| {
            library
                .iter()
                .find(|f| f.name == name)
                .cloned()
                .ok_or_else(|| SnapshotError::UnknownFeature {
                    entity: entity.as_str(),
                    name: name.clone(),
                    known: library
                        .iter()
                        .map(|f| f.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// A warning when the labels' viewer ids look like the wrong kind for `raw_ids`: raw account
/// ids never match a pseudonym in the store (nor pseudonyms, pseudonymized again), so every
/// feature would quietly come back as its default.
pub fn id_warning(labels: &RecordBatch, raw_ids: bool) -> Option<String> {
    let column = labels.column_by_name("viewer_id")?;
    let strings = arrow_cast::cast(column, &DataType::Utf8).ok()?;
    let strings = strings.as_string::<i32>();
    let ids: std::collections::BTreeSet<&str> = strings.iter().flatten().collect();
    let pseudonyms = ids.iter().filter(|id| looks_like_pseudonym(id)).count();
    let n = ids.len();
    match raw_ids {
        false if n > 0 && pseudonyms == 0 => Some(format!(
            "none of the {n} viewer ids looks like a pseudonym (v_ + 32 hex); pass --raw-ids if \
             they are raw account ids"
        )),
        true if n > 0 && pseudonyms == n => Some(format!(
            "all {n} viewer ids already look like pseudonyms (v_ + 32 hex), and --raw-ids \
             pseudonymizes them again; leave it out if they are pseudonyms"
        )),
        _ => None,
    }
}

/// The shape `privacy` gives every viewer id: `v_` and 32 lowercase hex digits.
fn looks_like_pseudonym(id: &str) -> bool {
    rewind_dataflows::ViewerId::parse(id).is_some()
}

pub(crate) fn entity_ids(
    column: &ArrayRef,
    door: Option<&Pseudonymizer>,
) -> Result<Vec<String>, SnapshotError> {
    let strings = arrow_cast::cast(column, &DataType::Utf8).map_err(|e| SnapshotError::BadRow {
        row: 0,
        detail: format!("entity ids: {e}"),
    })?;
    let strings = strings.as_string::<i32>();
    let mut ids = Vec::with_capacity(strings.len());
    for row in 0..strings.len() {
        if strings.is_null(row) {
            return Err(SnapshotError::BadRow {
                row: row + 1,
                detail: "entity id is empty".into(),
            });
        }
        let id = strings.value(row);
        ids.push(door.map_or_else(|| id.to_string(), |d| d.viewer_id(id).to_string()));
    }
    Ok(ids)
}

const MS_PER_DAY: i64 = 86_400_000;

/// `ts` as ms since the epoch, from text (ms or RFC 3339) or a column of a time type. Other
/// types are refused rather than cast: a cast takes a bool, a time of day or a count of days
/// for ms, and every feature silently comes back as its default.
pub(crate) fn label_times(column: &ArrayRef) -> Result<Vec<i64>, SnapshotError> {
    use DataType::{Date32, Date64, Int64, LargeUtf8, Timestamp, Utf8, Utf8View};
    let to_ms: fn(i64) -> Option<i64> = match column.data_type() {
        Utf8 | LargeUtf8 | Utf8View => return text_times(column),
        DataType::Dictionary(_, values) if matches!(**values, Utf8 | LargeUtf8 | Utf8View) => {
            return text_times(column);
        }
        Int64 | DataType::UInt64 | Date64 | Timestamp(TimeUnit::Millisecond, _) => Some,
        // A timestamp's value is an instant in UTC whatever its zone; the zone only says how
        // to show it. One without a zone is taken as UTC too.
        Timestamp(TimeUnit::Second, _) => |s| s.checked_mul(1000),
        Timestamp(TimeUnit::Microsecond, _) => |us| Some(us.div_euclid(1000)),
        Timestamp(TimeUnit::Nanosecond, _) => |ns| Some(ns.div_euclid(1_000_000)),
        // A date is as of the midnight (UTC) that starts it: nothing of that day leaks in.
        Date32 => |days| days.checked_mul(MS_PER_DAY),
        other => {
            return Err(SnapshotError::TsType {
                data_type: other.clone(),
            });
        }
    };
    let raw = arrow_cast::cast(column, &Int64).map_err(|e| SnapshotError::BadRow {
        row: 0,
        detail: format!("ts: {e}"),
    })?;
    let raw = raw.as_primitive::<Int64Type>();
    (0..raw.len())
        .map(|row| {
            let bad = |detail: String| SnapshotError::BadRow {
                row: row + 1,
                detail,
            };
            if column.is_null(row) {
                return Err(bad("ts is empty".into()));
            }
            // A value the cast could not take (a UInt64 past i64) is null only in `raw`.
            let value = raw.is_valid(row).then(|| raw.value(row));
            value.and_then(to_ms).ok_or_else(|| {
                let shown = value.map_or_else(String::new, |v| format!(" {v}"));
                bad(format!("ts{shown} is out of range for ms since the epoch"))
            })
        })
        .collect()
}

fn text_times(column: &ArrayRef) -> Result<Vec<i64>, SnapshotError> {
    let bad = |row: usize, detail: String| SnapshotError::BadRow {
        row: row + 1,
        detail,
    };
    let strings = arrow_cast::cast(column, &DataType::Utf8).map_err(|e| bad(0, e.to_string()))?;
    let strings = strings.as_string::<i32>();
    (0..strings.len())
        .map(|row| {
            if strings.is_null(row) {
                return Err(bad(row, "ts is empty".into()));
            }
            let text = strings.value(row).trim();
            parse_ts(text).ok_or_else(|| {
                bad(
                    row,
                    format!("ts {text:?} is neither ms since the epoch nor RFC 3339"),
                )
            })
        })
        .collect()
}

fn parse_ts(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    // RFC 3339 needs a date, a time and an offset, all ASCII; Arrow's parser also takes looser
    // forms. Checking ASCII first also keeps the byte slicing on character boundaries.
    let looks_rfc3339 = text.is_ascii()
        && text.len() >= 20
        && (text.ends_with('Z') || text[19..].contains(['+', '-']));
    if !looks_rfc3339 {
        return None;
    }
    arrow_cast::parse::string_to_timestamp_nanos(text)
        .ok()
        .map(|ns| ns.div_euclid(1_000_000))
}

/// Builds one feature's column, defaults included.
pub(crate) enum FeatureColumn {
    Int(Int64Builder),
    Float(Float64Builder, bool),
    Map(MapBuilder<StringBuilder, Float64Builder>),
    List(ListBuilder<StringBuilder>),
}

impl FeatureColumn {
    pub(crate) fn new(feature: &Feature) -> FeatureColumn {
        FeatureColumn::of(feature.value_type())
    }

    fn of(value_type: ValueType) -> FeatureColumn {
        match value_type {
            ValueType::Int => FeatureColumn::Int(Int64Builder::new()),
            ValueType::Float => FeatureColumn::Float(Float64Builder::new(), false),
            ValueType::Ratio => FeatureColumn::Float(Float64Builder::new(), true),
            ValueType::Map => FeatureColumn::Map(MapBuilder::new(
                None,
                StringBuilder::new(),
                Float64Builder::new(),
            )),
            ValueType::List => FeatureColumn::List(ListBuilder::new(StringBuilder::new())),
        }
    }

    /// Appends a value (parsed from history) or the default.
    pub(crate) fn push(&mut self, value: Option<&serde_json::Value>) -> Result<(), String> {
        match (self, value) {
            (FeatureColumn::Int(b), v) => b.append_value(v.and_then(|v| v.as_i64()).unwrap_or(0)),
            (FeatureColumn::Float(b, nullable), v) => match v.and_then(|v| v.as_f64()) {
                Some(f) => b.append_value(f),
                None if *nullable => b.append_null(),
                None => b.append_value(0.0),
            },
            (FeatureColumn::Map(b), v) => {
                for (key, share) in v.as_ref().and_then(|v| v.as_object()).into_iter().flatten() {
                    b.keys().append_value(key);
                    b.values().append_value(share.as_f64().unwrap_or(f64::NAN));
                }
                b.append(true).map_err(|e| e.to_string())?;
            }
            (FeatureColumn::List(b), v) => {
                for item in v.as_ref().and_then(|v| v.as_array()).into_iter().flatten() {
                    b.values().append_value(item.as_str().unwrap_or_default());
                }
                b.append(true);
            }
        }
        Ok(())
    }

    /// Appends a null: a cell with no value at all (a label row no served response matched).
    pub(crate) fn push_null(&mut self) -> Result<(), String> {
        match self {
            FeatureColumn::Int(b) => b.append_null(),
            FeatureColumn::Float(b, _) => b.append_null(),
            FeatureColumn::Map(b) => b.append(false).map_err(|e| e.to_string())?,
            FeatureColumn::List(b) => b.append(false),
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            FeatureColumn::Int(mut b) => Arc::new(b.finish()),
            FeatureColumn::Float(mut b, _) => Arc::new(b.finish()),
            FeatureColumn::Map(mut b) => Arc::new(b.finish()),
            FeatureColumn::List(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Writes the training set by extension, all or nothing: into a temporary file beside `path`,
/// renamed into place once complete.
pub fn write(batch: &RecordBatch, path: &Path) -> Result<(), SnapshotError> {
    let format = extension(path);
    if format != "parquet" && format != "csv" {
        return Err(SnapshotError::OutFormat {
            path: path.to_path_buf(),
        });
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    remove_dead_partials(path, name);
    let tmp = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    write_tmp(batch, &tmp, &format, path).map_err(|detail| {
        let _ = std::fs::remove_file(&tmp);
        SnapshotError::Write {
            path: path.to_path_buf(),
            detail,
        }
    })
}

/// Writes `tmp` under an exclusive lock held until it is renamed to `path`. The lock says
/// "my writer is alive": the OS drops it when the process ends however it ends (kill -9
/// included), which is what lets [`remove_dead_partials`] tell a dead run's leftovers from a
/// live run's work in progress.
fn write_tmp(batch: &RecordBatch, tmp: &Path, format: &str, path: &Path) -> Result<(), String> {
    let file = File::create(tmp).map_err(|e| e.to_string())?;
    file.lock().map_err(|e| e.to_string())?;
    // The writers get a second handle on the same open file, so closing theirs keeps the lock.
    let handle = file.try_clone().map_err(|e| e.to_string())?;
    match format {
        "parquet" => write_parquet(batch, handle)?,
        _ => write_csv(batch, handle)?,
    }
    file.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(tmp, path).map_err(|e| e.to_string())
}

/// Removes the temporary files of earlier runs for the same output that died before renaming
/// theirs (killed, crashed, power lost): nothing else would ever remove them. A file whose
/// lock can be taken has no live writer. Best effort: a file that cannot be read or removed
/// stays, and the run goes on. (A run that lists a live run's file in the instant between its
/// creation and its lock removes it; that run then fails to rename and says so.)
fn remove_dead_partials(path: &Path, name: &str) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let pid = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".partial"));
        if !pid.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let unlocked = File::open(entry.path()).is_ok_and(|f| f.try_lock().is_ok());
        if unlocked {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn write_parquet(batch: &RecordBatch, file: File) -> Result<(), String> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props))
        .map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}

fn write_csv(batch: &RecordBatch, file: File) -> Result<(), String> {
    let mut writer = csv::Writer::from_writer(file);
    let schema = batch.schema();
    writer
        .write_record(schema.fields().iter().map(|f| f.name()))
        .map_err(|e| e.to_string())?;
    let options = arrow_cast::display::FormatOptions::default();
    let formatters: Vec<Cell<'_>> = batch
        .columns()
        .iter()
        .map(|c| Cell::new(c, &options))
        .collect::<Result<_, _>>()?;
    for row in 0..batch.num_rows() {
        let record: Vec<String> = formatters.iter().map(|f| f.text(row)).collect();
        writer.write_record(&record).map_err(|e| e.to_string())?;
    }
    writer.flush().map_err(|e| e.to_string())
}

/// One column's cells as CSV text: maps and lists as JSON, everything else as Arrow shows it.
enum Cell<'a> {
    Json(&'a ArrayRef),
    Plain(arrow_cast::display::ArrayFormatter<'a>),
}

impl<'a> Cell<'a> {
    fn new(
        column: &'a ArrayRef,
        options: &'a arrow_cast::display::FormatOptions<'a>,
    ) -> Result<Cell<'a>, String> {
        match column.data_type() {
            DataType::Map(_, _) | DataType::List(_) => Ok(Cell::Json(column)),
            _ => arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), options)
                .map(Cell::Plain)
                .map_err(|e| e.to_string()),
        }
    }

    fn text(&self, row: usize) -> String {
        match self {
            Cell::Plain(f) => f.value(row).to_string(),
            Cell::Json(column) => json_cell(column, row),
        }
    }
}

fn json_cell(column: &ArrayRef, row: usize) -> String {
    use serde_json::{Map, Value, json};
    match column.data_type() {
        DataType::Map(_, _) => {
            let entries = column.as_map().value(row);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries
                .column(1)
                .as_primitive::<arrow_array::types::Float64Type>();
            let map: Map<String, Value> = (0..keys.len())
                .map(|i| (keys.value(i).to_string(), json!(values.value(i))))
                .collect();
            Value::Object(map).to_string()
        }
        _ => {
            let items = column.as_list::<i32>().value(row);
            let items = items.as_string::<i32>();
            let list: Vec<&str> = (0..items.len()).map(|i| items.value(i)).collect();
            json!(list).to_string()
        }
    }
}

#[cfg(test)]
mod tests;
