//! Decoding records into events: only the fields of the schema are read, and the raw account id
//! leaves this module only as a pseudonym.
//!
//! A record that cannot be decoded is not an error of the pipeline: [`decode_event`] returns a
//! [`DeadReason`], which names the problem but never quotes the record (it may carry personal
//! data; the log still holds it for whoever may read it).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use rewind_dataflows::event::TitleId;
use rewind_dataflows::{Event, EventKind, Purpose, Title, TitleKind, ViewerId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::privacy::Pseudonymizer;

/// Records larger than this are dead letters. The schema's fields at their limits (below) take
/// under 4 KiB; 64 KiB leaves producers room for the fields rewind skips, while one record
/// stays cheap to parse and a single producer cannot stall the pipeline.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 10;
/// Ids (`event_id`, `user_id`, `title_id`, `series_id`). Real ones are UUIDs (36 bytes) or
/// shorter; 256 leaves room for namespaced ids. A title id is kept in every window, history
/// row and interned table it enters, so its size multiplies: unbounded, 40 events with 500 KB
/// ids made a 326 MB store.
pub const MAX_ID_BYTES: usize = 256;
/// Row names are UI labels ("Because you watched ..."), a few dozen bytes.
pub const MAX_ROW_BYTES: usize = 256;
/// Search boxes send words, not documents: 1 KiB keeps every real query.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Genre names, even micro-genres ("Critically-acclaimed Emotional Underdog Movies"), are
/// short; each is a key of `genre_share_90d` for every viewer who watches the title.
pub const MAX_GENRE_BYTES: usize = 128;
/// A title is tagged with a handful of genres; 64 is past any real catalog.
pub const MAX_GENRES: usize = 64;
/// Ratings are short labels or numbers ("TV-MA", "7.5").
pub const MAX_RATING_BYTES: usize = 32;
/// 2000-01-01T00:00:00Z: no viewing event of this service is older.
pub const MIN_TS_MS: u64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z: a later `ts` is a producer bug, and would drag the watermark away.
pub const MAX_TS_MS: u64 = 4_102_444_800_000;
/// A heartbeat stands for at most an hour of playback; more is a producer bug that would
/// swamp every sum it enters.
const MAX_INTERVAL_S: f64 = 3600.0;
/// No title runs longer than a week; positions past it are corrupt.
const MAX_POSITION_S: f64 = 7.0 * 86_400.0;

/// Why a record is a dead letter. The text names fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadReason {
    Empty,
    Oversized {
        bytes: usize,
    },
    BadJson(String),
    Missing(&'static str),
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    UnknownType,
    /// A consent record's `purpose` is none the feature library knows: these are its names.
    UnknownPurpose {
        known: String,
    },
    ImplausibleTs,
    OutOfRange(&'static str),
    /// `ts` lay this far past the next event of its partition, which did not follow it there.
    AheadOfPartition {
        ahead_ms: u64,
    },
    /// A string (or, for `genres`, one of its strings) longer than its limit.
    TooLong {
        field: &'static str,
        limit_bytes: usize,
    },
    TooMany {
        field: &'static str,
        limit: usize,
    },
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadReason::Empty => write!(f, "empty payload"),
            DeadReason::Oversized { bytes } => {
                write!(
                    f,
                    "payload of {bytes} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit"
                )
            }
            DeadReason::BadJson(detail) => write!(f, "bad JSON: {detail}"),
            DeadReason::Missing(field) => write!(f, "missing required field `{field}`"),
            DeadReason::WrongType { field, expected } => {
                write!(f, "field `{field}` is not {expected}")
            }
            DeadReason::UnknownType => write!(f, "unknown event `type`"),
            DeadReason::UnknownPurpose { known } => {
                write!(f, "unknown `purpose` (known: {known})")
            }
            DeadReason::ImplausibleTs => {
                write!(
                    f,
                    "`ts` is not a plausible time (ms since epoch, years 2000 to 2099)"
                )
            }
            DeadReason::OutOfRange(field) => write!(f, "field `{field}` is out of range"),
            DeadReason::AheadOfPartition { ahead_ms } => write!(
                f,
                "`ts` is {} s ahead of the next event of its partition, which did not follow \
                 it: taken as a clock error, so it does not drag the watermark",
                ahead_ms / 1000
            ),
            DeadReason::TooLong {
                field: "genres",
                limit_bytes,
            } => write!(
                f,
                "a genre in `genres` exceeds the {limit_bytes}-byte limit"
            ),
            DeadReason::TooLong { field, limit_bytes } => {
                write!(f, "field `{field}` exceeds the {limit_bytes}-byte limit")
            }
            DeadReason::TooMany { field, limit } => {
                write!(
                    f,
                    "field `{field}` has more than {limit} entries, the limit"
                )
            }
        }
    }
}

/// The schema's fields and nothing else: serde skips every other key without decoding it.
/// Strings borrow from the record unless they hold escapes ([`borrowed`]).
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default, deserialize_with = "borrowed")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    user_id: Option<Cow<'a, str>>,
    ts: Option<u64>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    title_id: Option<Cow<'a, str>>,
    position_s: Option<f64>,
    interval_s: Option<f64>,
    to_s: Option<f64>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    row: Option<Cow<'a, str>>,
    rank: Option<i64>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    query: Option<Cow<'a, str>>,
}

/// An optional string that borrows from the record when it can. serde borrows a `Cow<str>`
/// only when it is a field's whole type, not inside an `Option`: there, every string was
/// copied (four allocations per event).
fn borrowed<'de, D>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    let value = Option::<Borrowed<'de>>::deserialize(deserializer)?;
    Ok(value.map(|Borrowed(text)| text))
}

/// Decodes one `events` record, pseudonymizing its viewer.
pub fn decode_event(payload: Option<&[u8]>, door: &Pseudonymizer) -> Result<Event, DeadReason> {
    let bytes = check_size(payload)?;
    let wire: WireEvent<'_> = serde_json::from_slice(bytes).map_err(|e| explain(bytes, &e))?;
    check_lengths(&[
        ("event_id", wire.event_id.as_deref(), MAX_ID_BYTES),
        ("user_id", wire.user_id.as_deref(), MAX_ID_BYTES),
        ("title_id", wire.title_id.as_deref(), MAX_ID_BYTES),
        ("row", wire.row.as_deref(), MAX_ROW_BYTES),
        ("query", wire.query.as_deref(), MAX_QUERY_BYTES),
    ])?;
    wire.event_id
        .as_ref()
        .ok_or(DeadReason::Missing("event_id"))?;
    let user_id = wire
        .user_id
        .as_deref()
        .ok_or(DeadReason::Missing("user_id"))?;
    let ts_ms = wire.ts.ok_or(DeadReason::Missing("ts"))?;
    if !(MIN_TS_MS..MAX_TS_MS).contains(&ts_ms) {
        return Err(DeadReason::ImplausibleTs);
    }
    let kind = event_kind(&wire)?;
    Ok(Event {
        viewer: door.viewer_id(user_id),
        ts_ms,
        kind,
    })
}

fn event_kind(wire: &WireEvent<'_>) -> Result<EventKind, DeadReason> {
    let name = wire.kind.as_deref().ok_or(DeadReason::Missing("type"))?;
    let title = || required_id(&wire.title_id, "title_id");
    let position = || millis(wire.position_s, "position_s", MAX_POSITION_S).transpose();
    let kind = match name {
        "play_start" => EventKind::PlayStart {
            title: title()?,
            position_ms: position()?,
        },
        "pause" => EventKind::Pause {
            title: title()?,
            position_ms: position()?,
        },
        "resume" => EventKind::Resume {
            title: title()?,
            position_ms: position()?,
        },
        "complete" => EventKind::Complete {
            title: title()?,
            position_ms: position()?,
        },
        "heartbeat" => EventKind::Heartbeat {
            title: title()?,
            position_ms: position()?.ok_or(DeadReason::Missing("position_s"))?,
            interval_ms: millis(wire.interval_s, "interval_s", MAX_INTERVAL_S)
                .ok_or(DeadReason::Missing("interval_s"))??,
        },
        "seek" => EventKind::Seek {
            title: title()?,
            position_ms: position()?.ok_or(DeadReason::Missing("position_s"))?,
            to_ms: millis(wire.to_s, "to_s", MAX_POSITION_S)
                .ok_or(DeadReason::Missing("to_s"))??,
        },
        "impression" => EventKind::Impression {
            title: title()?,
            row: required(&wire.row, "row")?,
            rank: wire.rank.ok_or(DeadReason::Missing("rank"))?,
        },
        "click" => EventKind::Click {
            title: title()?,
            row: wire.row.as_deref().map(Into::into),
        },
        "search" => EventKind::Search {
            query: required(&wire.query, "query")?,
            title: wire.title_id.as_deref().map(intern),
        },
        _ => return Err(DeadReason::UnknownType),
    };
    Ok(kind)
}

fn required_id(field: &Option<Cow<'_, str>>, name: &'static str) -> Result<TitleId, DeadReason> {
    field
        .as_deref()
        .map(intern)
        .ok_or(DeadReason::Missing(name))
}

/// Ids at most this many distinct are shared; past it the table starts over, so a producer
/// sending endless distinct ids costs allocations, never unbounded memory.
const MAX_INTERNED: usize = 1 << 20;

/// One shared copy per distinct title id per decoding thread: decoding an event allocates no
/// id, and the dataflow's copies of it are reference counts.
fn intern(id: &str) -> TitleId {
    thread_local! {
        static IDS: RefCell<HashSet<TitleId>> = RefCell::default();
    }
    IDS.with_borrow_mut(|ids| {
        if let Some(shared) = ids.get(id) {
            return shared.clone();
        }
        if ids.len() >= MAX_INTERNED {
            ids.clear();
        }
        let shared = TitleId::from(id);
        ids.insert(shared.clone());
        shared
    })
}

fn required(field: &Option<Cow<'_, str>>, name: &'static str) -> Result<String, DeadReason> {
    field
        .as_deref()
        .map(Into::into)
        .ok_or(DeadReason::Missing(name))
}

/// Seconds as exact milliseconds, if present; non-finite, negative or huge is out of range.
fn millis(seconds: Option<f64>, name: &'static str, max: f64) -> Option<Result<u64, DeadReason>> {
    let s = seconds?;
    if !s.is_finite() || !(0.0..=max).contains(&s) {
        return Some(Err(DeadReason::OutOfRange(name)));
    }
    Some(Ok((s * 1000.0).round() as u64))
}

/// Each `(field, value, limit)`: a value longer than its limit makes a dead letter.
fn check_lengths(fields: &[(&'static str, Option<&str>, usize)]) -> Result<(), DeadReason> {
    for &(field, value, limit_bytes) in fields {
        if value.is_some_and(|v| v.len() > limit_bytes) {
            return Err(DeadReason::TooLong { field, limit_bytes });
        }
    }
    Ok(())
}

fn check_size(payload: Option<&[u8]>) -> Result<&[u8], DeadReason> {
    let bytes = payload.filter(|b| !b.is_empty()).ok_or(DeadReason::Empty)?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(DeadReason::Oversized { bytes: bytes.len() });
    }
    Ok(bytes)
}

/// The expected JSON type of each field the decoders read.
const FIELD_TYPES: &[(&str, &str)] = &[
    ("event_id", "a string"),
    ("type", "a string"),
    ("user_id", "a string"),
    ("ts", "an integer of milliseconds"),
    ("title_id", "a string"),
    ("position_s", "a number"),
    ("interval_s", "a number"),
    ("to_s", "a number"),
    ("row", "a string"),
    ("rank", "an integer"),
    ("query", "a string"),
    ("genres", "a list of strings"),
    ("rating", "a string or number"),
    ("duration_s", "a non-negative integer"),
    ("kind", "\"episode\" or \"movie\""),
    ("series_id", "a string"),
    ("purpose", "a string"),
    ("granted", "true or false"),
];

/// Turns a serde error into a reason that names the field but quotes nothing: serde's own
/// messages quote the offending value, which may be personal data.
fn explain(bytes: &[u8], err: &serde_json::Error) -> DeadReason {
    use serde_json::error::Category;
    if let Err(e) = std::str::from_utf8(bytes) {
        return DeadReason::BadJson(format!("not UTF-8 (byte {})", e.valid_up_to()));
    }
    if !matches!(err.classify(), Category::Data) {
        return DeadReason::BadJson(format!("syntax error at column {}", err.column()));
    }
    let Ok(fields) = serde_json::from_slice::<BTreeMap<Cow<'_, str>, &RawValue>>(bytes) else {
        return DeadReason::BadJson("not a JSON object".into());
    };
    for (field, expected) in FIELD_TYPES {
        let Some(raw) = fields.get(*field) else {
            continue;
        };
        if !fits(field, raw.get()) {
            return DeadReason::WrongType { field, expected };
        }
    }
    DeadReason::BadJson("a field has the wrong type".into())
}

fn fits(field: &str, raw: &str) -> bool {
    fn is<T: for<'de> Deserialize<'de>>(raw: &str) -> bool {
        serde_json::from_str::<T>(raw).is_ok()
    }
    match field {
        "ts" | "duration_s" => is::<Option<u64>>(raw),
        "rank" => is::<Option<i64>>(raw),
        "position_s" | "interval_s" | "to_s" => is::<Option<f64>>(raw),
        "genres" => is::<Option<Vec<String>>>(raw),
        "granted" => is::<Option<bool>>(raw),
        "rating" => is::<Option<Rating>>(raw),
        "kind" => is::<Option<WireKind>>(raw),
        _ => is::<Option<String>>(raw),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Rating {
    Text(String),
    Number(serde_json::Number),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireKind {
    Episode,
    Movie,
}

#[derive(Deserialize)]
struct WireTitle {
    title_id: Option<String>,
    #[serde(default)]
    genres: Vec<String>,
    rating: Option<Rating>,
    duration_s: Option<u64>,
    kind: Option<WireKind>,
    series_id: Option<String>,
}

/// Decodes one `titles` record.
pub fn decode_title(payload: Option<&[u8]>) -> Result<Title, DeadReason> {
    let bytes = check_size(payload)?;
    let wire: WireTitle = serde_json::from_slice(bytes).map_err(|e| explain(bytes, &e))?;
    check_title_lengths(&wire)?;
    let kind = match wire.kind.ok_or(DeadReason::Missing("kind"))? {
        WireKind::Episode => TitleKind::Episode,
        WireKind::Movie => TitleKind::Movie,
    };
    let rating = wire.rating.map(|r| match r {
        Rating::Text(s) => s,
        Rating::Number(n) => n.to_string(),
    });
    let mut genres = wire.genres;
    // A genre listed twice must not count twice in a share.
    genres.sort();
    genres.dedup();
    Ok(Title {
        title_id: intern(&wire.title_id.ok_or(DeadReason::Missing("title_id"))?),
        genres,
        rating,
        duration_s: wire.duration_s,
        kind,
        series_id: wire.series_id,
    })
}

fn check_title_lengths(wire: &WireTitle) -> Result<(), DeadReason> {
    let rating = match &wire.rating {
        Some(Rating::Text(text)) => Some(text.as_str()),
        _ => None,
    };
    check_lengths(&[
        ("title_id", wire.title_id.as_deref(), MAX_ID_BYTES),
        ("series_id", wire.series_id.as_deref(), MAX_ID_BYTES),
        ("rating", rating, MAX_RATING_BYTES),
    ])?;
    if wire.genres.len() > MAX_GENRES {
        return Err(DeadReason::TooMany {
            field: "genres",
            limit: MAX_GENRES,
        });
    }
    let genres = wire
        .genres
        .iter()
        .map(|g| ("genres", Some(g.as_str()), MAX_GENRE_BYTES));
    check_lengths(&genres.collect::<Vec<_>>())
}

/// One decoded `consent` record: a viewer's grant or revocation of a purpose at `ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub viewer: ViewerId,
    pub purpose: Purpose,
    pub granted: bool,
    pub ts_ms: u64,
}

#[derive(Deserialize)]
struct WireConsent<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    purpose: Option<Cow<'a, str>>,
    granted: Option<bool>,
    ts: Option<u64>,
}

/// Decodes one `consent` record, pseudonymizing its viewer. `known` are the purposes the
/// feature library knows; any other is a dead letter, as a misspelt purpose must not pass for
/// consent to nothing.
pub fn decode_consent(
    payload: Option<&[u8]>,
    door: &Pseudonymizer,
    known: &[Purpose],
) -> Result<ConsentRecord, DeadReason> {
    let bytes = check_size(payload)?;
    let wire: WireConsent<'_> = serde_json::from_slice(bytes).map_err(|e| explain(bytes, &e))?;
    let (viewer, ts_ms) = viewer_at(wire.user_id.as_deref(), wire.ts, door)?;
    let name = wire.purpose.ok_or(DeadReason::Missing("purpose"))?;
    let granted = wire.granted.ok_or(DeadReason::Missing("granted"))?;
    let Some(purpose) = known.iter().copied().find(|p| p.as_str() == name) else {
        let names: Vec<&str> = known.iter().map(|p| p.as_str()).collect();
        let known = names.join(", ");
        return Err(DeadReason::UnknownPurpose { known });
    };
    Ok(ConsentRecord {
        viewer,
        purpose,
        granted,
        ts_ms,
    })
}

/// What every record about a viewer's rights (consent, erasure) carries: whose they are, as
/// the pseudonym, and when they were exercised, a plausible time.
fn viewer_at(
    user_id: Option<&str>,
    ts: Option<u64>,
    door: &Pseudonymizer,
) -> Result<(ViewerId, u64), DeadReason> {
    check_lengths(&[("user_id", user_id, MAX_ID_BYTES)])?;
    let user_id = user_id.ok_or(DeadReason::Missing("user_id"))?;
    let ts_ms = ts.ok_or(DeadReason::Missing("ts"))?;
    if !(MIN_TS_MS..MAX_TS_MS).contains(&ts_ms) {
        return Err(DeadReason::ImplausibleTs);
    }
    Ok((door.viewer_id(user_id), ts_ms))
}

/// One decoded `erasure` record: the viewer asked, at `ts`, that what they did before it be
/// forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    pub viewer: ViewerId,
    pub ts_ms: u64,
}

#[derive(Deserialize)]
struct WireErasure<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    user_id: Option<Cow<'a, str>>,
    ts: Option<u64>,
}

/// Decodes one `erasure` record, pseudonymizing its viewer: nothing else of it is kept. An
/// erasure of a viewer never seen is a record like any other (it then erases nothing).
pub fn decode_erasure(
    payload: Option<&[u8]>,
    door: &Pseudonymizer,
) -> Result<ErasureRecord, DeadReason> {
    let bytes = check_size(payload)?;
    let wire: WireErasure<'_> = serde_json::from_slice(bytes).map_err(|e| explain(bytes, &e))?;
    let (viewer, ts_ms) = viewer_at(wire.user_id.as_deref(), wire.ts, door)?;
    Ok(ErasureRecord { viewer, ts_ms })
}

#[cfg(test)]
mod tests;
