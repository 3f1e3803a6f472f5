//! From requested features and ids to what is served: the library's features by view, the
//! reads of one view of the store, and each value with its status and valid-from tick.
//!
//! Every read names what it is for in one place, [`Lookup`]: a read for a purpose the store
//! gates by consent serves a viewer who did not consent as withheld ([`Lookup::read`]).

use std::sync::OnceLock;

use rewind_dataflows::{Entity, Purpose, library};
use rewind_state::{CurrentValue, View};

use crate::purpose::{CONSENT_FEATURE, ReadPurpose};

/// A library feature as served: Feast's view is its entity kind, its feature the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibFeature {
    /// `viewer.plays_24h`: what the store and the native API call it.
    pub full: &'static str,
    pub entity: Entity,
    /// `plays_24h`.
    pub name: &'static str,
    pub default_json: &'static str,
    /// The purposes it is declared for: it is read for no other.
    pub purposes: &'static [Purpose],
}

/// The library, once.
pub fn features() -> &'static [LibFeature] {
    static FEATURES: OnceLock<Vec<LibFeature>> = OnceLock::new();
    FEATURES.get_or_init(|| {
        library()
            .iter()
            .filter_map(|f| {
                let entity = f.entity()?;
                let (_, name) = f.name.split_once('.')?;
                Some(LibFeature {
                    full: f.name,
                    entity,
                    name,
                    default_json: f.default_json(),
                    // Once per feature, for the life of the process (this is a static).
                    purposes: Box::leak(f.purposes.clone().into_boxed_slice()),
                })
            })
            .collect()
    })
}

impl LibFeature {
    pub fn declared_for(&self, purpose: Purpose) -> bool {
        self.purposes.contains(&purpose)
    }

    /// The default JSON of the library feature named `full` (`viewer.plays_24h`).
    pub fn default_of(full: &str) -> Option<&'static str> {
        by_full_name(full).map(|f| f.default_json)
    }
}

pub fn by_full_name(full: &str) -> Option<&'static LibFeature> {
    features().iter().find(|f| f.full == full)
}

pub fn of_entity(entity: Entity) -> Vec<&'static LibFeature> {
    features().iter().filter(|f| f.entity == entity).collect()
}

pub fn entity_of_view(view: &str) -> Option<Entity> {
    [Entity::Viewer, Entity::Title]
        .into_iter()
        .find(|e| e.as_str() == view)
}

/// Feast's field statuses that rewind serves (it has no max age, and nothing invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Present,
    NullValue,
    NotFound,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Present => "PRESENT",
            Status::NullValue => "NULL_VALUE",
            Status::NotFound => "NOT_FOUND",
        }
    }
}

/// One served value of one feature of one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedValue {
    pub feature: &'static LibFeature,
    /// The stored value, or the feature's default (for NOT_FOUND too, which Feast's format
    /// sends as null).
    pub value_json: Vec<u8>,
    /// The tick the value holds from; `None` for a default that held from the start, and for
    /// an entity the store has never seen.
    pub valid_from_ms: Option<u64>,
    pub status: Status,
}

/// What was served for one entity: the id as the store keys it (pseudonyms only, never a raw
/// account id), whether the store has a row for it, and its values in the order requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedEntity {
    pub entity: Entity,
    pub id: String,
    pub found: bool,
    /// Withheld for lack of consent to the read's purpose: every value is NOT_FOUND with the
    /// feature's default, as for an entity the store lacks.
    pub withheld: bool,
    pub values: Vec<ServedValue>,
}

/// One read: these features of entities of one kind.
pub struct Lookup<'f> {
    pub entity: Entity,
    pub features: &'f [&'static LibFeature],
    /// The purpose read for, as the store gates it; `None` reads as before purposes existed.
    pub purpose: Option<ReadPurpose>,
}

impl Lookup<'_> {
    /// Reads `id` in `view`. An entity without a row is `found: false`, each value NOT_FOUND
    /// (which Feast's format sends as null, as Feast serves a key its online store lacks) and
    /// its default (which the native API sends, as `rewind get` shows it).
    pub fn read(&self, view: &mut View<'_>, id: &str) -> rewind_state::Result<ServedEntity> {
        let kind = self.entity.as_str();
        let row = view.entity(kind, id)?;
        let catalog = view.catalog();
        let withheld = row.as_ref().is_some_and(|row| self.withholds(catalog, row));
        let values = self.features.iter().map(|feature| match &row {
            _ if withheld => ServedValue {
                feature,
                value_json: feature.default_json.as_bytes().to_vec(),
                valid_from_ms: None,
                status: Status::NotFound,
            },
            None => ServedValue {
                feature,
                value_json: feature.default_json.as_bytes().to_vec(),
                valid_from_ms: None,
                status: Status::NotFound,
            },
            Some(row) => {
                let index = catalog.index(kind, feature.full);
                let current = index.and_then(|i| row.iter().find(|v| v.feature == i));
                served(feature, current)
            }
        });
        Ok(ServedEntity {
            entity: self.entity,
            id: id.to_string(),
            found: row.is_some(),
            withheld,
            values: values.collect(),
        })
    }

    /// A viewer whose recorded consent, as of the view, lacks the purpose the store gates.
    fn withholds(&self, catalog: &rewind_state::Catalog, row: &[CurrentValue]) -> bool {
        let Some(read) = self.purpose.filter(|p| p.gated) else {
            return false;
        };
        if self.entity != Entity::Viewer {
            return false;
        }
        let index = catalog.index(Entity::Viewer.as_str(), CONSENT_FEATURE);
        let consent = index.and_then(|i| row.iter().find(|v| v.feature == i));
        !read.allows(consent.and_then(|c| c.value_json.as_deref()))
    }
}

/// A value at its default is a fact (a count of zero), served as PRESENT; only a null default
/// is NULL_VALUE.
fn served(feature: &'static LibFeature, current: Option<&CurrentValue>) -> ServedValue {
    let valid_from_ms = current.map(|c| c.valid_from_ms);
    match current.and_then(|c| c.value_json.clone()) {
        Some(value_json) => ServedValue {
            feature,
            value_json,
            valid_from_ms,
            status: Status::Present,
        },
        None => ServedValue {
            feature,
            value_json: feature.default_json.as_bytes().to_vec(),
            valid_from_ms,
            status: match feature.default_json {
                "null" => Status::NullValue,
                _ => Status::Present,
            },
        },
    }
}

/// A pseudonym as the door makes them: `v_` and 32 lowercase hex digits.
pub fn is_pseudonym(id: &str) -> bool {
    id.len() == 34
        && id.starts_with("v_")
        && id[2..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Title ids are the producers' own; bounded, so a hostile id cannot bloat a key or a log.
pub const MAX_ID_BYTES: usize = 256;

/// Whether `id` holds a control character (Unicode's Cc: U+0000 to U+001F, U+007F to
/// U+009F). None belongs in an id: a NUL would become part of a store key and a served-log
/// row, and an escape would reach whatever terminal shows a log line.
pub fn has_control(id: &str) -> bool {
    id.chars().any(char::is_control)
}

/// What makes `id` no title id, if anything: said of the id without quoting it, since an
/// error is echoed and logged.
pub fn title_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Some(format!("is not 1 to {MAX_ID_BYTES} bytes long"));
    }
    has_control(id).then(|| "holds a control character (U+0000-U+001F, U+007F-U+009F)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_entity_kinds_and_features_the_rest_of_the_name() {
        let f = by_full_name("viewer.genre_share_90d").unwrap();
        assert_eq!(
            (f.entity, f.name, f.default_json),
            (Entity::Viewer, "genre_share_90d", "{}")
        );
        assert_eq!(by_full_name("title.ctr_24h").unwrap().default_json, "null");
        assert_eq!(entity_of_view("title"), Some(Entity::Title));
        assert_eq!(entity_of_view("viewers"), None);
    }

    #[test]
    fn defaults_are_present_unless_null() {
        let plays = by_full_name("viewer.plays_24h").unwrap();
        let ctr = by_full_name("title.ctr_24h").unwrap();
        let back = CurrentValue {
            feature: 0,
            valid_from_ms: 5000,
            value_json: None,
        };
        let p = served(plays, Some(&back));
        assert_eq!(
            (p.value_json.as_slice(), p.status, p.valid_from_ms),
            (&b"0"[..], Status::Present, Some(5000))
        );
        let c = served(ctr, None);
        assert_eq!(
            (c.value_json.as_slice(), c.status, c.valid_from_ms),
            (&b"null"[..], Status::NullValue, None)
        );
    }

    #[test]
    fn pseudonyms_are_recognized_exactly() {
        assert!(is_pseudonym("v_0123456789abcdef0123456789abcdef"));
        assert!(!is_pseudonym("v_0123456789ABCDEF0123456789abcdef"));
        assert!(!is_pseudonym("v_0123"));
        assert!(!is_pseudonym("alice"));
        assert!(!is_pseudonym("v_0123456789abcdef0123456789abcde\0"));
    }

    #[test]
    fn title_ids_are_bounded_and_free_of_control_characters() {
        assert_eq!(title_id_problem("tt000001"), None);
        assert_eq!(title_id_problem("titel-\u{e9}t\u{e9}"), None);
        for bad in ["", "tt\0", "\u{1b}[2J", "tt\u{7f}", "tt\u{85}", "a\nb"] {
            assert!(title_id_problem(bad).is_some(), "{bad:?}");
        }
        assert!(title_id_problem(&"t".repeat(MAX_ID_BYTES + 1)).is_some());
    }
}
