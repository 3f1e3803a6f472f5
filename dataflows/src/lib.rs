//! rewind's feature definitions: the event schema, windows, and the built-in feature library.
//!
//! A feature is a differential collection of `(entity id, value)` over event time in
//! milliseconds, built from [`Sources`]. The engine binds sources to topics, runs every
//! feature in one dataflow, and writes each change to the store; definitions do no I/O.
//!
//! Invariants every definition keeps:
//! - at most one value per entity at any time (the store keeps one current value per key);
//! - an entity at its feature's default (0, null, empty) is absent from the collection;
//! - nothing at or after `T` affects the value as of `T`: windows use [`window::sliding`].

pub mod event;
pub mod features;
pub mod value;
pub mod window;

use differential_dataflow::VecCollection;

pub use event::{Event, EventKind, TimeMs, Title, TitleKind};
pub use value::{F64, Value};

/// The decoded inputs every feature is built from.
#[derive(Clone)]
pub struct Sources<'scope> {
    /// Viewing events, each at the tick it becomes visible.
    pub events: VecCollection<'scope, TimeMs, Event>,
    /// The current record of each title (the latest wins).
    pub titles: VecCollection<'scope, TimeMs, Title>,
}

/// One feature's output: `(entity id, value)`.
pub type Output<'scope> = VecCollection<'scope, TimeMs, (String, Value)>;

/// Every feature's output, keyed by `(feature index in the library, entity id)`.
pub type AllOutputs<'scope> = VecCollection<'scope, TimeMs, ((u16, String), Value)>;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Int,
    Float,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last `n` milliseconds: `T - n <= ts < T`.
    Sliding(u64),
}

/// A feature: its catalog entry and how to build it.
#[derive(Clone)]
pub struct FeatureDef {
    /// `entity.name_window`, unique in the library.
    pub name: &'static str,
    pub entity: Entity,
    pub value_type: ValueType,
    pub window: Window,
    pub description: &'static str,
    pub build: for<'s> fn(&Sources<'s>) -> Output<'s>,
}

impl FeatureDef {
    /// The value an entity has when nothing falls in the window, as JSON.
    pub fn default_json(&self) -> &'static str {
        match self.value_type {
            ValueType::Int => "0",
            ValueType::Float => "0",
        }
    }
}

/// The built-in feature library, in a stable order (indices are feature ids in the dataflow).
pub fn library() -> Vec<FeatureDef> {
    let mut defs = features::viewer::features();
    defs.extend(features::title::features());
    defs
}

/// Builds every feature of `defs` and concatenates their outputs.
pub fn build_all<'scope>(sources: &Sources<'scope>, defs: &[FeatureDef]) -> AllOutputs<'scope> {
    let outputs = defs.iter().enumerate().map(|(index, def)| {
        let id = u16::try_from(index).expect("fewer than 65536 features");
        (def.build)(sources).map(move |(entity, value)| ((id, entity), value))
    });
    let scope = sources.events.scope();
    differential_dataflow::collection::concatenate(scope, outputs)
}
