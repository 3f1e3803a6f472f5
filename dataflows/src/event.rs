//! The event schema as the dataflows see it: only the fields `docs/events.md` lists, with the
//! viewer already pseudonymized. Nothing here can hold a raw account id, email, ip or device id.
//!
//! Durations and positions are integer milliseconds so that events are totally ordered data
//! (differential needs `Ord`) and sums are exact.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Event time and logical time, in milliseconds since the Unix epoch.
pub type TimeMs = u64;

/// A pseudonymous viewer id: the first 128 bits of the HMAC, shown as `v_` and 32 hex chars.
///
/// Kept as a number inside the dataflow: comparing and hashing 16 bytes is much cheaper than
/// a 34-byte string, and viewer ids are the hottest keys of every viewer feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewerId(pub u128);

impl std::fmt::Display for ViewerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v_{:032x}", self.0)
    }
}

impl ViewerId {
    /// The pseudonym `text` shows (`v_` and 32 lowercase hex digits, as displayed), or `None`
    /// for any other text.
    pub fn parse(text: &str) -> Option<ViewerId> {
        let hex = text.strip_prefix("v_")?;
        let lower = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let n = (hex.len() == 32 && lower).then(|| u128::from_str_radix(hex, 16).ok())??;
        Some(ViewerId(n))
    }
}
/// Whose value it is: a viewer or a title, by id. Outputs carry the ids themselves (16 bytes
/// or a shared string) and are rendered as text only where a row is written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityId {
    Viewer(ViewerId),
    Title(TitleId),
}

impl std::fmt::Display for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityId::Viewer(viewer) => viewer.fmt(f),
            EntityId::Title(title) => f.write_str(title),
        }
    }
}

impl From<ViewerId> for EntityId {
    fn from(viewer: ViewerId) -> EntityId {
        EntityId::Viewer(viewer)
    }
}

impl From<TitleId> for EntityId {
    fn from(title: TitleId) -> EntityId {
        EntityId::Title(title)
    }
}

/// A title id. Shared: every feature's operators copy the records they read, and a shared id
/// makes that copy a reference count rather than an allocation.
pub type TitleId = Arc<str>;

/// One decoded viewing event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    pub viewer: ViewerId,
    pub ts_ms: TimeMs,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    PlayStart {
        title: TitleId,
        position_ms: Option<u64>,
    },
    Pause {
        title: TitleId,
        position_ms: Option<u64>,
    },
    Resume {
        title: TitleId,
        position_ms: Option<u64>,
    },
    Complete {
        title: TitleId,
        position_ms: Option<u64>,
    },
    Heartbeat {
        title: TitleId,
        position_ms: u64,
        interval_ms: u64,
    },
    Seek {
        title: TitleId,
        position_ms: u64,
        to_ms: u64,
    },
    Impression {
        title: TitleId,
        row: String,
        rank: i64,
    },
    Click {
        title: TitleId,
        row: Option<String>,
    },
    Search {
        query: String,
        title: Option<TitleId>,
    },
}

impl EventKind {
    /// Every event type's wire name; an event's place here is its [`EventKind::index`].
    pub const TYPE_NAMES: [&'static str; 9] = [
        "play_start",
        "pause",
        "resume",
        "complete",
        "heartbeat",
        "seek",
        "impression",
        "click",
        "search",
    ];

    /// The event type's place in [`EventKind::TYPE_NAMES`].
    pub fn index(&self) -> usize {
        match self {
            EventKind::PlayStart { .. } => 0,
            EventKind::Pause { .. } => 1,
            EventKind::Resume { .. } => 2,
            EventKind::Complete { .. } => 3,
            EventKind::Heartbeat { .. } => 4,
            EventKind::Seek { .. } => 5,
            EventKind::Impression { .. } => 6,
            EventKind::Click { .. } => 7,
            EventKind::Search { .. } => 8,
        }
    }

    /// The wire name of this event type.
    pub fn type_name(&self) -> &'static str {
        Self::TYPE_NAMES[self.index()]
    }

    /// The title the event is about, if any.
    pub fn title(&self) -> Option<&TitleId> {
        match self {
            EventKind::PlayStart { title, .. }
            | EventKind::Pause { title, .. }
            | EventKind::Resume { title, .. }
            | EventKind::Complete { title, .. }
            | EventKind::Heartbeat { title, .. }
            | EventKind::Seek { title, .. }
            | EventKind::Impression { title, .. }
            | EventKind::Click { title, .. } => Some(title),
            EventKind::Search { title, .. } => title.as_ref(),
        }
    }
}

/// Reference data from the `titles` topic; the latest record per `title_id` wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Title {
    pub title_id: TitleId,
    pub genres: Vec<String>,
    pub rating: Option<String>,
    pub duration_s: Option<u64>,
    pub kind: TitleKind,
    pub series_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TitleKind {
    Episode,
    Movie,
}

#[cfg(test)]
mod tests {
    use super::ViewerId;

    #[test]
    fn a_pseudonym_parses_back_from_its_text_and_nothing_else_does() {
        for n in [0, 1, u128::MAX, 0x5bdc_c146_bf60_754e_6a04_2426_0895_75c7] {
            assert_eq!(ViewerId::parse(&ViewerId(n).to_string()), Some(ViewerId(n)));
        }
        let good = ViewerId(7).to_string();
        for bad in [
            "",
            "v_",
            "u_00000000000000000000000000000007",
            "v_0000000000000000000000000000007",
            "v_000000000000000000000000000000007",
            "v_0000000000000000000000000000000A",
            "v_+0000000000000000000000000000007",
            "v_0000000000000000000000000000000g",
        ] {
            assert_eq!(ViewerId::parse(bad), None, "{bad:?} (a good one: {good})");
        }
    }
}
