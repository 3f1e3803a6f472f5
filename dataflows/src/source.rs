//! Where features start: the event stream by type, as typed records, optionally enriched with
//! the titles reference data.
//!
//! A [`Select`] is a recipe, not a collection: it is turned into a differential collection
//! inside each worker's dataflow, already restricted to the window the aggregation asks for.
//! Fields are reached through closures over these typed records, so a misspelt field fails to
//! compile.

use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::Sources;
use crate::event::{Event, EventKind, TimeMs, Title, TitleId, ViewerId};
use crate::window::sliding;

/// Records that belong to a viewer, at a time of their own: an erasure forgets a viewer's
/// records by it.
pub trait HasViewer {
    fn viewer(&self) -> ViewerId;
    /// Event time, ms since the epoch.
    fn ts_ms(&self) -> TimeMs;
}

/// Records that may name a title.
pub trait HasTitle {
    fn title_id(&self) -> Option<&TitleId>;
}

macro_rules! record {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name {
            pub viewer: ViewerId,
            /// Event time, ms since the epoch.
            pub ts_ms: TimeMs,
            $(pub $field: $ty),*
        }

        impl HasViewer for $name {
            fn viewer(&self) -> ViewerId {
                self.viewer
            }

            fn ts_ms(&self) -> TimeMs {
                self.ts_ms
            }
        }
    };
}

record!(
    /// A `heartbeat`: `interval_ms` of playback up to `position_ms`.
    Heartbeat { title: TitleId, position_ms: u64, interval_ms: u64 }
);
record!(
    /// A `play_start`, `pause`, `resume` or `complete`.
    Playback { title: TitleId, position_ms: Option<u64> }
);
record!(
    /// A `seek` from `position_ms` to `to_ms`.
    Seek { title: TitleId, position_ms: u64, to_ms: u64 }
);
record!(
    /// An `impression`: `title` shown in `row` at `rank`.
    Impression { title: TitleId, row: String, rank: i64 }
);
record!(
    /// A `click` on a title.
    Click { title: TitleId, row: Option<String> }
);
record!(
    /// A `search`, with the result chosen if any.
    Search { query: String, title: Option<TitleId> }
);

macro_rules! has_title {
    ($($name:ident),*) => {$(
        impl HasTitle for $name {
            fn title_id(&self) -> Option<&TitleId> {
                Some(&self.title)
            }
        }
    )*};
}
has_title!(Heartbeat, Playback, Seek, Impression, Click);

impl HasTitle for Search {
    fn title_id(&self) -> Option<&TitleId> {
        self.title.as_ref()
    }
}

impl<T: HasViewer> HasViewer for (T, Title) {
    fn viewer(&self) -> ViewerId {
        self.0.viewer()
    }

    fn ts_ms(&self) -> TimeMs {
        self.0.ts_ms()
    }
}

impl<T> HasTitle for (T, Title) {
    fn title_id(&self) -> Option<&TitleId> {
        Some(&self.1.title_id)
    }
}

/// Data that can flow through a feature's dataflow.
pub trait Record: differential_dataflow::ExchangeData + std::hash::Hash {}
impl<T: differential_dataflow::ExchangeData + std::hash::Hash> Record for T {}

/// How a [`Select`] becomes a collection, restricted to a window when one is given.
pub(crate) trait Stream<T>: Send + Sync {
    fn collection<'s>(
        &self,
        sources: &Sources<'s>,
        window_ms: Option<u64>,
    ) -> VecCollection<'s, TimeMs, T>;

    /// Whether each record stands alone (no joins): then a window may be applied after the
    /// records are keyed and projected, which keeps the delayed retractions small.
    fn record_by_record(&self) -> bool;
}

/// A stream of typed records, before keying and aggregation.
pub struct Select<T> {
    pub(crate) stream: Arc<dyn Stream<T>>,
}

impl<T> Clone for Select<T> {
    fn clone(&self) -> Self {
        Select {
            stream: self.stream.clone(),
        }
    }
}

struct Pick<T> {
    /// The event type, by [`EventKind::index`].
    type_index: usize,
    pick: fn(&Event) -> Option<T>,
}

impl<T: Record> Stream<T> for Pick<T> {
    fn collection<'s>(
        &self,
        sources: &Sources<'s>,
        window_ms: Option<u64>,
    ) -> VecCollection<'s, TimeMs, T> {
        let pick = self.pick;
        let picked = sources
            .events_of(self.type_index)
            .flat_map(move |e| pick(&e));
        match window_ms {
            Some(w) => sliding(picked, w),
            None => picked,
        }
    }

    fn record_by_record(&self) -> bool {
        true
    }
}

type Predicate<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

struct Filter<T> {
    inner: Arc<dyn Stream<T>>,
    keep: Predicate<T>,
}

impl<T: Record> Stream<T> for Filter<T> {
    fn collection<'s>(
        &self,
        sources: &Sources<'s>,
        window_ms: Option<u64>,
    ) -> VecCollection<'s, TimeMs, T> {
        let keep = self.keep.clone();
        self.inner
            .collection(sources, window_ms)
            .filter(move |t| keep(t))
    }

    fn record_by_record(&self) -> bool {
        self.inner.record_by_record()
    }
}

/// Joins each record with its title's current metadata. The window applies to the records
/// before the join, so a value as of `T` sees the records in its window with the title
/// metadata in force at `T`.
struct Enrich<T> {
    inner: Arc<dyn Stream<T>>,
    title_of: TitleOf<T>,
}

type TitleOf<T> = Arc<dyn Fn(&T) -> Option<TitleId> + Send + Sync>;

impl<T: Record> Stream<(T, Title)> for Enrich<T> {
    fn collection<'s>(
        &self,
        sources: &Sources<'s>,
        window_ms: Option<u64>,
    ) -> VecCollection<'s, TimeMs, (T, Title)> {
        let title_of = self.title_of.clone();
        let keyed = self
            .inner
            .collection(sources, window_ms)
            .flat_map(move |t| title_of(&t).map(|id| (id, t)));
        let titles = sources.titles.clone().map(|t| (t.title_id.clone(), t));
        keyed.join(titles).map(|(_, pair)| pair)
    }

    fn record_by_record(&self) -> bool {
        false
    }
}

impl<T: Record> Select<T> {
    fn pick(type_name: &str, pick: fn(&Event) -> Option<T>) -> Select<T> {
        let type_index = EventKind::TYPE_NAMES
            .iter()
            .position(|t| *t == type_name)
            .expect("a type of the schema");
        Select {
            stream: Arc::new(Pick { type_index, pick }),
        }
    }

    /// Keeps the records `keep` accepts.
    pub fn filter(self, keep: impl Fn(&T) -> bool + Send + Sync + 'static) -> Select<T> {
        Select {
            stream: Arc::new(Filter {
                inner: self.stream,
                keep: Arc::new(keep),
            }),
        }
    }

    /// Pairs each record with its title's metadata as of each time; records whose title has
    /// no metadata drop out.
    pub fn enrich(self) -> Select<(T, Title)>
    where
        T: HasTitle,
    {
        let title_of = Arc::new(|t: &T| t.title_id().cloned());
        Select {
            stream: Arc::new(Enrich {
                inner: self.stream,
                title_of,
            }),
        }
    }
}

/// Every `heartbeat`.
pub fn heartbeats() -> Select<Heartbeat> {
    Select::pick("heartbeat", |e| match &e.kind {
        EventKind::Heartbeat {
            title,
            position_ms,
            interval_ms,
        } => Some(Heartbeat {
            viewer: e.viewer,
            ts_ms: e.ts_ms,
            title: title.clone(),
            position_ms: *position_ms,
            interval_ms: *interval_ms,
        }),
        _ => None,
    })
}

macro_rules! playback {
    ($(#[$doc:meta])* $fn:ident, $variant:ident, $type_name:literal) => {
        $(#[$doc])*
        pub fn $fn() -> Select<Playback> {
            Select::pick($type_name, |e| match &e.kind {
                EventKind::$variant { title, position_ms } => Some(Playback {
                    viewer: e.viewer,
                    ts_ms: e.ts_ms,
                    title: title.clone(),
                    position_ms: *position_ms,
                }),
                _ => None,
            })
        }
    };
}
playback!(
    /// Every `play_start`.
    play_starts, PlayStart, "play_start"
);
playback!(
    /// Every `pause`.
    pauses, Pause, "pause"
);
playback!(
    /// Every `resume`.
    resumes, Resume, "resume"
);
playback!(
    /// Every `complete`.
    completes, Complete, "complete"
);

/// Every `seek`.
pub fn seeks() -> Select<Seek> {
    Select::pick("seek", |e| match &e.kind {
        EventKind::Seek {
            title,
            position_ms,
            to_ms,
        } => Some(Seek {
            viewer: e.viewer,
            ts_ms: e.ts_ms,
            title: title.clone(),
            position_ms: *position_ms,
            to_ms: *to_ms,
        }),
        _ => None,
    })
}

/// Every `impression`.
pub fn impressions() -> Select<Impression> {
    Select::pick("impression", |e| match &e.kind {
        EventKind::Impression { title, row, rank } => Some(Impression {
            viewer: e.viewer,
            ts_ms: e.ts_ms,
            title: title.clone(),
            row: row.clone(),
            rank: *rank,
        }),
        _ => None,
    })
}

/// Every `click`.
pub fn clicks() -> Select<Click> {
    Select::pick("click", |e| match &e.kind {
        EventKind::Click { title, row } => Some(Click {
            viewer: e.viewer,
            ts_ms: e.ts_ms,
            title: title.clone(),
            row: row.clone(),
        }),
        _ => None,
    })
}

/// Every `search`.
pub fn searches() -> Select<Search> {
    Select::pick("search", |e| match &e.kind {
        EventKind::Search { query, title } => Some(Search {
            viewer: e.viewer,
            ts_ms: e.ts_ms,
            query: query.clone(),
            title: title.clone(),
        }),
        _ => None,
    })
}
