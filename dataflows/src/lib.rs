//! rewind's feature definitions: the event schema, the definition API, and the built-in
//! feature library.
//!
//! An ML engineer adds a feature by writing one [`Feature`] in `features/`: a name, a
//! description, the purposes it may serve, and an aggregation built from a source
//! ([`source`]), an entity key, an aggregation ([`aggregate`]) and a window:
//!
//! ```
//! use rewind_dataflows::prelude::*;
//!
//! let searches = Feature::new("viewer.searches_1h")
//!     .describe("number of searches in the last hour")
//!     .purposes(&[Purpose::Personalization])
//!     .aggregate(searches().by_viewer().count().over(hours(1)));
//! assert!(validate(&[searches], 1000).is_ok());
//! ```
//!
//! Each feature compiles to a differential collection of `(entity id, value)` over event time
//! in milliseconds. The engine binds sources to topics, runs every feature in one dataflow per
//! worker, and writes each change to the store; definitions do no I/O. Every definition keeps:
//! - at most one value per entity at any time;
//! - an entity at its feature's default (0, null, empty) is absent from the collection;
//! - nothing at or after `T` affects the value as of `T` (windows use [`window::sliding`]).

pub mod aggregate;
pub mod consent;
pub mod erasure;
pub mod event;
pub mod feature;
pub mod features;
pub mod services;
pub mod source;
pub mod value;
pub mod window;

use differential_dataflow::VecCollection;

pub use consent::{Consent, ConsentRules, Consenting};
pub use erasure::Erasure;
pub use event::{EntityId, Event, EventKind, TimeMs, Title, TitleKind, ViewerId};
pub use feature::{DefinitionError, DefinitionErrors, Feature, Purpose, validate};
pub use services::{FeatureService, services};
pub use value::{F64, Value, ValueType};

/// The tutorial's code blocks run as doctests, so the tutorial cannot drift from the API.
#[doc = include_str!("../../docs/writing-features.md")]
#[cfg(doctest)]
pub struct WritingFeaturesTutorial;

/// Everything a feature definition needs, in one import.
pub mod prelude {
    pub use crate::aggregate::{Aggregation, Compute, ratio};
    pub use crate::feature::{Feature, Purpose, validate};
    pub use crate::source::{
        clicks, completes, heartbeats, impressions, pauses, play_starts, resumes, searches, seeks,
    };
    pub use crate::value::{Value, ValueType};
    pub use crate::window::{days, hours, minutes};
    pub use crate::{Entity, EntityId, Output, Sources, Window};
}

/// The decoded inputs every feature is built from.
#[derive(Clone)]
pub struct Sources<'scope> {
    /// Viewing events, each at the tick it becomes visible.
    pub events: VecCollection<'scope, TimeMs, Event>,
    /// The current record of each title (the latest wins).
    pub titles: VecCollection<'scope, TimeMs, Title>,
    /// `events` split by type, once: each feature's source reads only its own type, instead
    /// of every feature copying and filtering every event.
    by_type: Vec<VecCollection<'scope, TimeMs, Event>>,
    /// The consent in force, when purposes need consent ([`Sources::with_consent`]).
    consent: Option<Consenting<'scope>>,
    /// While one feature is built: the viewers whose records it may aggregate, at each time.
    pub(crate) gate: Option<VecCollection<'scope, TimeMs, ViewerId>>,
    /// The erased viewers and how far back ([`Sources::with_erasures`]); `None` while a title
    /// feature is built, as erasure leaves title aggregates alone.
    pub(crate) erased: Option<erasure::Erased<'scope>>,
    /// Calls of [`Sources::forget_erased`], shared by every copy: tells a custom viewer
    /// feature that passed its records through it from one that did not.
    forgets: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<'scope> Sources<'scope> {
    pub fn new(
        events: VecCollection<'scope, TimeMs, Event>,
        titles: VecCollection<'scope, TimeMs, Title>,
    ) -> Sources<'scope> {
        use differential_dataflow::AsCollection;
        use timely::dataflow::operators::vec::Partition;
        let types = EventKind::TYPE_NAMES.len() as u64;
        let by_type = events
            .inner
            .clone()
            .partition(types, |update| (update.0.kind.index() as u64, update))
            .into_iter()
            .map(|stream| stream.as_collection())
            .collect();
        Sources {
            events,
            titles,
            by_type,
            consent: None,
            gate: None,
            erased: None,
            forgets: Default::default(),
        }
    }

    /// Keeps, from the tick each of `erasures` lands at, the records its viewer sent before
    /// it out of every viewer feature ([`erasure`]): without it, nothing is erased.
    pub fn with_erasures(
        mut self,
        erasures: VecCollection<'scope, TimeMs, Erasure>,
    ) -> Sources<'scope> {
        let erased = erasure::erased(erasures);
        self.consent = self.consent.map(|c| c.forgetting(&erased));
        self.erased = Some(erased);
        self
    }

    /// `records` of viewers, each with its event time, less those an erasure in force reaches
    /// back past: what a custom viewer feature ([`Feature::custom`]) passes its windowed
    /// records through, as the combinators do. Apply it after the window, not before. A custom
    /// viewer feature that never calls it has each erased viewer's values withheld from the
    /// erasure on, new records included ([`erasure::withhold`]).
    pub fn forget_erased<D: source::Record>(
        &self,
        records: VecCollection<'scope, TimeMs, (ViewerId, (TimeMs, D))>,
    ) -> VecCollection<'scope, TimeMs, D> {
        self.forgets.set(self.forgets.get() + 1);
        match &self.erased {
            Some(erased) => erasure::forget(records, erased),
            None => records.map(|(_, (_, d))| d),
        }
    }

    /// How often [`Sources::forget_erased`] was called on these sources or any copy.
    pub(crate) fn forgets(&self) -> usize {
        self.forgets.get()
    }

    /// These sources as a title feature sees them: erasure does not reach title aggregates.
    fn for_entity(&self, entity: Option<Entity>) -> Sources<'scope> {
        match entity {
            Some(Entity::Viewer) => self.clone(),
            _ => Sources {
                erased: None,
                ..self.clone()
            },
        }
    }

    /// Gates every feature serving a purpose of `rules` by the consent `records` give
    /// ([`consent`]): without it, nothing is gated.
    pub fn with_consent(
        mut self,
        records: VecCollection<'scope, TimeMs, Consent>,
        rules: ConsentRules,
    ) -> Sources<'scope> {
        let consent = Consenting::new(records, rules);
        self.consent = Some(match &self.erased {
            Some(erased) => consent.forgetting(erased),
            None => consent,
        });
        self
    }

    /// These sources with each feature's records gated by the viewers of `gate`.
    pub(crate) fn gated_by(
        &self,
        gate: VecCollection<'scope, TimeMs, ViewerId>,
    ) -> Sources<'scope> {
        Sources {
            gate: Some(gate),
            ..self.clone()
        }
    }

    /// The (viewer, purpose index) consents in force at each time, with consent configured.
    pub fn consent_in_force(&self) -> Option<VecCollection<'scope, TimeMs, (ViewerId, u8)>> {
        self.consent.as_ref().map(|c| c.in_force())
    }

    /// The events of one type ([`EventKind::index`]).
    pub fn events_of(&self, index: usize) -> VecCollection<'scope, TimeMs, Event> {
        self.by_type[index].clone()
    }
}

/// One feature's output: `(entity id, value)`.
pub type Output<'scope> = VecCollection<'scope, TimeMs, (EntityId, Value)>;

/// Every feature's output, keyed by `(feature index in the library, entity id)`.
pub type AllOutputs<'scope> = VecCollection<'scope, TimeMs, ((u16, EntityId), Value)>;

/// Whose feature it is: the entity its values are keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    Viewer,
    Title,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Viewer => "viewer",
            Entity::Title => "title",
        }
    }
}

/// The span of event time an aggregation looks at, as of `T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Window {
    /// The last `n` milliseconds: `T - n <= ts < T`.
    Sliding(u64),
    /// Everything within the retention limit ([`window::RETENTION_MS`]).
    Retention,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use window::{DAY_MS, HOUR_MS, MINUTE_MS};
        match *self {
            Window::Retention => write!(f, "retention"),
            Window::Sliding(ms) if ms % DAY_MS == 0 && ms > 2 * DAY_MS => {
                write!(f, "{}d", ms / DAY_MS)
            }
            Window::Sliding(ms) if ms % HOUR_MS == 0 => write!(f, "{}h", ms / HOUR_MS),
            Window::Sliding(ms) if ms % MINUTE_MS == 0 => write!(f, "{}m", ms / MINUTE_MS),
            Window::Sliding(ms) => write!(f, "{ms}ms"),
        }
    }
}

/// The built-in feature library, in a stable order (indices are feature ids in the dataflow).
pub fn library() -> Vec<Feature> {
    let mut features = features::viewer::features();
    features.extend(features::title::features());
    features
}

/// (name, entity kind) of each output index of [`build_all`] over `features`: the features in
/// order, then [`consent::CONSENT_FEATURE`] (output only with consent configured).
pub fn output_names(features: &[Feature]) -> Vec<(&'static str, &'static str)> {
    let named = features
        .iter()
        .map(|f| (f.name, f.entity().map_or("", Entity::as_str)));
    named
        .chain([(consent::CONSENT_FEATURE, Entity::Viewer.as_str())])
        .collect()
}

/// Builds every feature of `features` and concatenates their outputs; with consent
/// ([`Sources::with_consent`]), each feature is gated by the consent to its purposes, and the
/// consent in force is one more output; with erasures ([`Sources::with_erasures`]), each viewer
/// feature forgets what erased viewers did before their erasure.
pub fn build_all<'scope>(sources: &Sources<'scope>, features: &[Feature]) -> AllOutputs<'scope> {
    let mut consent = sources.consent.clone();
    let mut outputs = Vec::with_capacity(features.len());
    for (index, feature) in features.iter().enumerate() {
        let id = u16::try_from(index).expect("fewer than 65536 features");
        let gate = consent.as_mut().and_then(|c| c.gate(feature));
        let output = feature.compute_gated(&sources.for_entity(feature.entity()), gate);
        outputs.push(output.map(move |(entity, value)| ((id, entity), value)));
    }
    // The consent in force, recorded for reads that name a purpose: the output index after
    // the features' ([`output_names`]).
    if let Some(consent) = &consent {
        let id = u16::try_from(features.len()).expect("fewer than 65535 features");
        let in_force = consent.purposes_in_force();
        outputs.push(in_force.map(move |(entity, value)| ((id, entity), value)));
    }
    let scope = sources.events.scope();
    differential_dataflow::collection::concatenate(scope, outputs)
}
