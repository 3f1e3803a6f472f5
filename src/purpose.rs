//! Reads that name a purpose: `rewind snapshot --purpose P`, and serving reads (the server's
//! `--purpose`, or the request's own). What a read for a purpose may see:
//! - a feature not declared for the purpose cannot be read for it ([`ReadPurpose::check`]);
//! - where the store gates the purpose by consent, a viewer who did not consent to it at the
//!   value's time reads the feature's default: the store records the consent in force per
//!   viewer and tick ([`CONSENT_FEATURE`]), and [`ReadPurpose::allows`] reads that record;
//! - a purpose the store does not gate needs no consent: its reads see the values as computed.
//!
//! A read naming no purpose, with none configured, sees what it saw before purposes existed.

use rewind_dataflows::{Feature, Purpose, library};

pub use rewind_dataflows::consent::CONSENT_FEATURE;

/// The store's meta key for its consent rules (`purposes=a,b max_age_ms=N`, or `none`).
pub use crate::engine::META_CONSENT;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurposeError {
    /// The name is not quoted: a serving request's purpose is whatever the caller sent.
    #[error("no feature serves a purpose of that name; the known purposes are {known}")]
    Unknown { known: String },
    #[error(
        "feature {feature:?} is not declared for purpose {purpose:?}: it serves {declared}; \
         read it for one of those, or leave it out"
    )]
    NotDeclared {
        feature: String,
        purpose: &'static str,
        declared: String,
    },
    #[error("no {entity} feature is declared for purpose {purpose:?}: there is nothing to read")]
    NothingDeclared {
        entity: &'static str,
        purpose: &'static str,
    },
}

impl PurposeError {
    /// `feature`, declared for `declared`, read for `purpose`: the refusal snapshots and
    /// serving (with 403) give alike.
    pub fn not_declared(feature: &str, purpose: Purpose, declared: &[Purpose]) -> PurposeError {
        let declared: Vec<&str> = declared.iter().map(|p| p.as_str()).collect();
        PurposeError::NotDeclared {
            feature: feature.to_string(),
            purpose: purpose.as_str(),
            declared: declared.join(", "),
        }
    }
}

/// The purpose a read names, and whether the store it reads gates that purpose by consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPurpose {
    pub purpose: Purpose,
    /// The store was built with consent gating this purpose: viewers are read for it only
    /// while they consent.
    pub gated: bool,
}

impl ReadPurpose {
    /// The purpose called `name`: a built-in one or one a feature of the library declares.
    pub fn find(name: &str) -> Result<Purpose, PurposeError> {
        let library = library();
        Purpose::find(name, &library).ok_or_else(|| PurposeError::Unknown {
            known: Purpose::known(&library)
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// `purpose`, read from a store whose [`META_CONSENT`] is `consent_meta`.
    pub fn in_store(purpose: Purpose, consent_meta: Option<&[u8]>) -> ReadPurpose {
        let gated = gated_purposes(consent_meta)
            .iter()
            .any(|p| p == purpose.as_str());
        ReadPurpose { purpose, gated }
    }

    pub fn name(&self) -> &'static str {
        self.purpose.as_str()
    }

    /// Refuses `feature` unless it declares this purpose.
    pub fn check(purpose: Purpose, feature: &Feature) -> Result<(), PurposeError> {
        if feature.purposes.contains(&purpose) {
            return Ok(());
        }
        Err(PurposeError::not_declared(
            feature.name,
            purpose,
            &feature.purposes,
        ))
    }

    /// Whether a viewer whose [`CONSENT_FEATURE`] value is `consented` (its JSON; `None` at the
    /// default, consenting to nothing) may be read for this purpose.
    pub fn allows(&self, consented: Option<&[u8]>) -> bool {
        if !self.gated {
            return true;
        }
        // A list of snake_case names: the quoted name is one whole element, never part of one.
        let quoted = format!("\"{}\"", self.name());
        consented.is_some_and(|json| json.windows(quoted.len()).any(|w| w == quoted.as_bytes()))
    }
}

/// The purposes a store gates by consent, from its [`META_CONSENT`] meta; none for a store
/// without consent (`none`, or no such key).
pub fn gated_purposes(consent_meta: Option<&[u8]>) -> Vec<String> {
    let text = consent_meta
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let purposes = text
        .split_whitespace()
        .find_map(|field| field.strip_prefix("purposes="));
    purposes
        .map(|list| {
            let names = list.split(',').filter(|p| !p.is_empty());
            names.map(str::to_string).collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_gates_the_purposes_its_meta_names() {
        let meta = b"purposes=personalization,analytics max_age_ms=63072000000";
        assert_eq!(gated_purposes(Some(meta)), ["personalization", "analytics"]);
        assert!(gated_purposes(Some(b"none")).is_empty());
        assert!(gated_purposes(None).is_empty());
        let ads = ReadPurpose::in_store(Purpose::Ads, Some(meta));
        assert!(!ads.gated && ads.allows(None));
    }

    #[test]
    fn a_gated_purpose_is_allowed_only_where_consent_is_recorded() {
        let meta = b"purposes=personalization,analytics max_age_ms=1000";
        let read = ReadPurpose::in_store(Purpose::Analytics, Some(meta));
        assert!(read.gated);
        assert!(read.allows(Some(br#"["analytics","personalization"]"#)));
        assert!(!read.allows(Some(br#"["personalization"]"#)));
        assert!(!read.allows(Some(b"[]")));
        assert!(!read.allows(None));
    }

    #[test]
    fn features_are_read_only_for_purposes_they_declare() {
        let library = library();
        let genres = library.iter().find(|f| f.name == "viewer.genre_share_90d");
        let genres = genres.expect("a library feature");
        assert!(ReadPurpose::check(Purpose::Personalization, genres).is_ok());
        let refused = ReadPurpose::check(Purpose::Analytics, genres).unwrap_err();
        let text = refused.to_string();
        assert!(text.contains("viewer.genre_share_90d") && text.contains("personalization"));
        assert!(ReadPurpose::find("analytics").is_ok());
        let unknown = ReadPurpose::find("marketing\u{0}").unwrap_err().to_string();
        assert!(unknown.contains("personalization") && !unknown.contains("marketing"));
    }
}
