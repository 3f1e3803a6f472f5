//! A feature: its catalog entry (name, entity, type, window, purposes, description) and what
//! it computes, checked as a whole library at start-up.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::VecCollection;

use crate::aggregate::{Aggregation, Compute};
use crate::event::{TimeMs, ViewerId};
use crate::value::ValueType;
use crate::window::RETENTION_MS;
use crate::{Entity, Output, Sources, Window};

/// What a feature's values may be used for; the privacy work enforces consent per purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    Personalization,
    Analytics,
    Ads,
    /// A purpose the library declares beyond the built-in ones: a snake_case name.
    Named(&'static str),
}

impl Purpose {
    pub const BUILT_IN: [Purpose; 3] = [Purpose::Personalization, Purpose::Analytics, Purpose::Ads];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Personalization => "personalization",
            Purpose::Analytics => "analytics",
            Purpose::Ads => "ads",
            Purpose::Named(name) => name,
        }
    }

    /// The purpose called `name` among the built-in ones and those `features` declare.
    pub fn find(name: &str, features: &[Feature]) -> Option<Purpose> {
        let declared = features.iter().flat_map(|f| f.purposes.iter().copied());
        Purpose::BUILT_IN
            .into_iter()
            .chain(declared)
            .find(|p| p.as_str() == name)
    }

    /// Every purpose known: the built-in ones and those `features` declare, once each.
    pub fn known(features: &[Feature]) -> Vec<Purpose> {
        let mut known = Purpose::BUILT_IN.to_vec();
        for p in features.iter().flat_map(|f| f.purposes.iter().copied()) {
            if !known.contains(&p) {
                known.push(p);
            }
        }
        known
    }
}

/// One feature. Build it with [`Feature::new`], then [`Feature::describe`],
/// [`Feature::purposes`] and [`Feature::aggregate`] (or [`Feature::custom`]).
#[derive(Clone)]
pub struct Feature {
    /// `entity.name`, unique in the library; the prefix names the entity.
    pub name: &'static str,
    pub description: &'static str,
    pub purposes: Vec<Purpose>,
    body: Option<Body>,
}

#[derive(Clone)]
struct Body {
    /// The entity the computation groups by, when it says (custom computations don't).
    keyed_by: Option<Entity>,
    value_type: ValueType,
    window: Window,
    abelian: bool,
    compute: Arc<dyn Compute>,
}

impl Feature {
    pub fn new(name: &'static str) -> Feature {
        Feature {
            name,
            description: "",
            purposes: Vec::new(),
            body: None,
        }
    }

    /// One line: what the value means, as of `T`.
    pub fn describe(mut self, description: &'static str) -> Feature {
        self.description = description;
        self
    }

    /// What the feature may serve.
    pub fn purposes(mut self, purposes: &[Purpose]) -> Feature {
        self.purposes = purposes.to_vec();
        self
    }

    /// Computes the feature with an aggregation built from the combinators.
    pub fn aggregate(mut self, aggregation: Aggregation) -> Feature {
        self.body = Some(Body {
            keyed_by: Some(aggregation.entity),
            value_type: aggregation.value_type,
            window: aggregation.window,
            abelian: aggregation.abelian,
            compute: aggregation.compute,
        });
        self
    }

    /// Computes the feature with any differential computation over the sources: the escape
    /// hatch. It must yield at most one value per entity, with defaults absent, and use
    /// [`crate::window::sliding`] (or equivalent) so nothing at or after `T` reaches `T`.
    pub fn custom(
        mut self,
        value_type: ValueType,
        window: Window,
        compute: impl Compute + 'static,
    ) -> Feature {
        let compute = Arc::new(compute);
        self.body = Some(Body {
            keyed_by: None,
            value_type,
            window,
            abelian: false,
            compute,
        });
        self
    }

    /// The entity, from the name's prefix.
    pub fn entity(&self) -> Option<Entity> {
        match self.name.split_once('.')?.0 {
            "viewer" => Some(Entity::Viewer),
            "title" => Some(Entity::Title),
            _ => None,
        }
    }

    pub fn value_type(&self) -> ValueType {
        self.body.as_ref().map_or(ValueType::Int, |b| b.value_type)
    }

    pub fn window(&self) -> Option<Window> {
        self.body.as_ref().map(|b| b.window)
    }

    /// Whether the aggregation needs only running totals (count, sum), not the values.
    pub fn abelian(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.abelian)
    }

    /// The default value as JSON (what an entity with nothing in the window reads as).
    pub fn default_json(&self) -> &'static str {
        self.value_type().default_json()
    }

    /// Whether the computation is built from the combinators (then consent can gate the
    /// records of any entity), not a custom one.
    pub fn keyed(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.keyed_by.is_some())
    }

    /// This feature's output with only the viewers of `gate` taking part, at each time: a
    /// viewer feature keeps the values of those viewers, and others aggregate the records of
    /// those viewers alone ([`crate::consent`]).
    pub fn compute_gated<'s>(
        &self,
        sources: &Sources<'s>,
        gate: Option<VecCollection<'s, TimeMs, ViewerId>>,
    ) -> Output<'s> {
        match gate {
            None => self.compute(sources),
            Some(gate) if self.entity() == Some(Entity::Viewer) => {
                crate::consent::gate_values(self.compute(sources), gate)
            }
            Some(gate) => self.compute(&sources.gated_by(gate)),
        }
    }

    /// This feature's output collection in a worker's dataflow.
    ///
    /// Erasure reaches a custom viewer feature only through [`Sources::forget_erased`]: one
    /// whose computation never calls it has its erased viewers' values withheld from each
    /// erasure on, rather than keep what they did before it.
    pub fn compute<'s>(&self, sources: &Sources<'s>) -> Output<'s> {
        let body = self
            .body
            .as_ref()
            .expect("features are validated before they are built");
        let forgets = sources.forgets();
        let output = body.compute.compute(sources);
        let custom_viewer = body.keyed_by.is_none() && self.entity() == Some(Entity::Viewer);
        match &sources.erased {
            Some(erased) if custom_viewer && sources.forgets() == forgets => {
                crate::erasure::withhold(output, erased)
            }
            _ => output,
        }
    }
}

/// A mistake in a feature definition, found at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefinitionError {
    Duplicate {
        name: String,
    },
    BadName {
        name: String,
    },
    UnknownEntity {
        name: String,
        prefix: String,
    },
    WrongEntity {
        name: String,
        named: Entity,
        keyed_by: Entity,
    },
    WindowNotTicks {
        name: String,
        window_ms: u64,
        tick_ms: u64,
    },
    WindowPastRetention {
        name: String,
        window_ms: u64,
    },
    NoComputation {
        name: String,
    },
    NoDescription {
        name: String,
    },
    NoPurpose {
        name: String,
    },
    BadPurpose {
        name: String,
        purpose: String,
    },
    ConsentMaxAge {
        max_age_ms: u64,
        tick_ms: u64,
    },
    TooManyPurposes {
        count: usize,
    },
    UngatedCustom {
        name: String,
    },
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use DefinitionError::*;
        match self {
            Duplicate { name } => write!(
                f,
                "feature {name:?} is defined twice; rename one or add a version suffix (`_v2`)"
            ),
            BadName { name } => write!(
                f,
                "feature {name:?} is not named `entity.snake_case_name`; e.g. \"viewer.plays_24h\""
            ),
            UnknownEntity { name, prefix } => write!(
                f,
                "feature {name:?} names unknown entity {prefix:?}; use \"viewer\" or \"title\""
            ),
            WrongEntity {
                name,
                named,
                keyed_by,
            } => write!(
                f,
                "feature {name:?} is named for a {} but aggregates by {}; use by_{}() or rename it \"{}.…\"",
                named.as_str(),
                keyed_by.as_str(),
                named.as_str(),
                keyed_by.as_str()
            ),
            WindowNotTicks {
                name,
                window_ms,
                tick_ms,
            } => write!(
                f,
                "feature {name:?} has a window of {window_ms} ms, not a multiple of the {tick_ms} ms tick; round it to whole ticks"
            ),
            WindowPastRetention { name, window_ms } => write!(
                f,
                "feature {name:?} has a window of {window_ms} ms, past the {RETENTION_MS} ms retention limit; use within_retention()"
            ),
            NoComputation { name } => write!(
                f,
                "feature {name:?} computes nothing; add .aggregate(…) or .custom(…)"
            ),
            NoDescription { name } => write!(
                f,
                "feature {name:?} has no description; add .describe(\"…\")"
            ),
            NoPurpose { name } => write!(
                f,
                "feature {name:?} declares no purpose; add .purposes(&[Purpose::…])"
            ),
            BadPurpose { name, purpose } => write!(
                f,
                "feature {name:?} declares purpose {purpose:?}; a declared purpose is a \
                 snake_case name other than the built-in ones (use Purpose::Personalization, …)"
            ),
            ConsentMaxAge {
                max_age_ms,
                tick_ms,
            } => write!(
                f,
                "a consent max age of {max_age_ms} ms is not a positive whole number of \
                 {tick_ms} ms ticks up to {} ms (730 days, the VPPA limit); give a shorter one",
                crate::consent::MAX_AGE_LIMIT_MS
            ),
            TooManyPurposes { count } => write!(
                f,
                "{count} purposes need consent, more than 255; gate fewer purposes"
            ),
            UngatedCustom { name } => write!(
                f,
                "feature {name:?} is a custom computation of title values serving a purpose \
                 that needs consent: rewind cannot tell which viewers its values come from; \
                 build it from the combinators, or serve a purpose without consent"
            ),
        }
    }
}

/// Every mistake in a library, reported together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefinitionErrors(pub Vec<DefinitionError>);

impl std::fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} feature definition error(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionErrors {}

/// Checks a library against the tick it will run with.
pub fn validate(features: &[Feature], tick_ms: u64) -> Result<(), DefinitionErrors> {
    let mut errors = Vec::new();
    let mut seen = BTreeMap::new();
    for feature in features {
        let name = feature.name.to_string();
        if *seen
            .entry(feature.name)
            .and_modify(|n| *n += 1)
            .or_insert(1)
            == 2
        {
            errors.push(DefinitionError::Duplicate { name: name.clone() });
        }
        errors.extend(check(feature, tick_ms));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DefinitionErrors(errors))
    }
}

fn check(feature: &Feature, tick_ms: u64) -> Vec<DefinitionError> {
    let name = feature.name.to_string();
    let mut errors = Vec::new();
    let well_formed = feature.name.split_once('.').is_some_and(|(e, n)| {
        !e.is_empty()
            && !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if !well_formed {
        errors.push(DefinitionError::BadName { name: name.clone() });
    } else if feature.entity().is_none() {
        let prefix = feature.name.split_once('.').map_or("", |p| p.0).to_string();
        errors.push(DefinitionError::UnknownEntity {
            name: name.clone(),
            prefix,
        });
    }
    if feature.description.trim().is_empty() {
        errors.push(DefinitionError::NoDescription { name: name.clone() });
    }
    if feature.purposes.is_empty() {
        errors.push(DefinitionError::NoPurpose { name: name.clone() });
    }
    for purpose in &feature.purposes {
        if let Purpose::Named(named) = purpose {
            let snake = !named.is_empty()
                && named.starts_with(|c: char| c.is_ascii_lowercase())
                && named
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !snake || Purpose::BUILT_IN.iter().any(|p| p.as_str() == *named) {
                errors.push(DefinitionError::BadPurpose {
                    name: name.clone(),
                    purpose: named.to_string(),
                });
            }
        }
    }
    let Some(body) = &feature.body else {
        errors.push(DefinitionError::NoComputation { name });
        return errors;
    };
    if let (Some(named), Some(keyed_by)) = (feature.entity(), body.keyed_by)
        && named != keyed_by
    {
        errors.push(DefinitionError::WrongEntity {
            name: name.clone(),
            named,
            keyed_by,
        });
    }
    let window_ms = body.window.millis();
    if window_ms == 0 || !window_ms.is_multiple_of(tick_ms) {
        errors.push(DefinitionError::WindowNotTicks {
            name: name.clone(),
            window_ms,
            tick_ms,
        });
    }
    if window_ms > RETENTION_MS {
        errors.push(DefinitionError::WindowPastRetention { name, window_ms });
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn plays(name: &'static str) -> Feature {
        Feature::new(name)
            .describe("plays")
            .purposes(&[Purpose::Analytics])
            .aggregate(play_starts().by_viewer().count().over(hours(1)))
    }

    #[test]
    fn the_built_in_library_is_valid() {
        let library = crate::library();
        assert_eq!(library.len(), 9);
        validate(&library, 1000).unwrap();
    }

    #[test]
    fn every_definition_mistake_is_reported_together_with_a_hint() {
        let features = vec![
            plays("viewer.plays"),
            plays("viewer.plays"),
            plays("Viewer Plays"),
            plays("user.plays"),
            Feature::new("title.plays")
                .describe("keyed by the wrong entity")
                .purposes(&[Purpose::Ads])
                .aggregate(play_starts().by_viewer().count().over(hours(1))),
            Feature::new("viewer.odd_window")
                .describe("a window of 1.5 ticks")
                .purposes(&[Purpose::Ads])
                .aggregate(play_starts().by_viewer().count().over(1500)),
            Feature::new("viewer.too_long")
                .describe("two years")
                .purposes(&[Purpose::Ads])
                .aggregate(play_starts().by_viewer().count().over(days(730))),
            Feature::new("viewer.nothing"),
        ];
        let errors = validate(&features, 1000).unwrap_err();
        let text = errors.to_string();
        let expected = [
            "\"viewer.plays\" is defined twice; rename one or add a version suffix",
            "\"Viewer Plays\" is not named `entity.snake_case_name`",
            "\"user.plays\" names unknown entity \"user\"; use \"viewer\" or \"title\"",
            "\"title.plays\" is named for a title but aggregates by viewer; use by_title()",
            "\"viewer.odd_window\" has a window of 1500 ms, not a multiple of the 1000 ms tick",
            "\"viewer.too_long\" has a window of 63072000000 ms, past the 31536000000 ms retention",
            "\"viewer.nothing\" has no description",
            "\"viewer.nothing\" declares no purpose",
            "\"viewer.nothing\" computes nothing; add .aggregate(…) or .custom(…)",
        ];
        for needle in expected {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(errors.0.len(), expected.len(), "{text}");
        assert!(text.starts_with("9 feature definition error(s):"));
    }

    #[test]
    fn a_window_fine_for_one_tick_is_refused_for_another() {
        let features = [plays("viewer.plays_1h")];
        assert!(validate(&features, 1000).is_ok());
        let err = validate(&features, 7000).unwrap_err().to_string();
        assert!(err.contains("not a multiple of the 7000 ms tick"), "{err}");
    }

    #[test]
    fn the_catalog_describes_each_feature() {
        let library = crate::library();
        let ctr = library.iter().find(|f| f.name == "title.ctr_24h").unwrap();
        assert_eq!(ctr.entity(), Some(Entity::Title));
        assert_eq!(ctr.value_type(), ValueType::Ratio);
        assert_eq!(ctr.default_json(), "null");
        assert_eq!(ctr.window(), Some(Window::Sliding(hours(24))));
        assert!(ctr.abelian());
        let last = library
            .iter()
            .find(|f| f.name == "viewer.last_titles_10")
            .unwrap();
        assert_eq!(last.window(), Some(Window::Retention));
        assert_eq!(last.default_json(), "[]");
        assert!(!last.abelian());
    }
}
