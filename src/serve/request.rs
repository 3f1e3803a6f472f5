//! Request bodies, parsed with their limits: the entity count is enforced while the JSON is
//! read, so a request naming a million entities fails at the first one past the limit without
//! building a list of them.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Why a body is refused: 400 for what is not JSON of the right shape, 413 and 422 for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    Malformed(String),
    TooMany { max: usize },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Malformed(why) => write!(f, "the request body is not valid: {why}"),
            BodyError::TooMany { max } => write!(
                f,
                "the request names more than {max} entities; split it into smaller requests"
            ),
        }
    }
}

/// One entity id as sent: a string, or an integer (Feast's int64 join keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdValue {
    Text(String),
    Int(i64),
}

impl IdValue {
    /// The id as the store keys it.
    pub fn text(&self) -> String {
        match self {
            IdValue::Text(s) => s.clone(),
            IdValue::Int(n) => n.to_string(),
        }
    }
}

/// `POST /get-online-features`, as Feast's feature server takes it.
#[derive(Debug)]
pub struct FeastRequest {
    pub features: Option<Vec<String>>,
    pub feature_service: Option<String>,
    /// Join key → one id per entity row, in the order sent.
    pub entities: Vec<(String, Vec<IdValue>)>,
    pub full_feature_names: bool,
}

#[derive(Deserialize)]
struct FeastWire<'a> {
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    feature_service: Option<String>,
    #[serde(borrow)]
    entities: &'a RawValue,
    #[serde(default)]
    full_feature_names: bool,
}

pub fn feast(body: &[u8], max_entities: usize) -> Result<FeastRequest, BodyError> {
    let wire: FeastWire<'_> = serde_json::from_slice(body).map_err(malformed)?;
    let mut budget = max_entities;
    let entities = (&mut serde_json::Deserializer::from_str(wire.entities.get()))
        .deserialize_map(EntitiesVisitor {
            budget: &mut budget,
            max: max_entities,
        })
        .map_err(|e| over_budget(e, max_entities))?;
    Ok(FeastRequest {
        features: wire.features,
        feature_service: wire.feature_service,
        entities,
        full_feature_names: wire.full_feature_names,
    })
}

/// `POST /v1/batch`: ids by entity kind, and optionally which features (full names).
#[derive(Debug, Default)]
pub struct BatchRequest {
    pub viewers: Vec<IdValue>,
    pub titles: Vec<IdValue>,
    pub features: Option<Vec<String>>,
    /// The purpose the read is for (else the server's).
    pub purpose: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchWire<'a> {
    #[serde(default, borrow)]
    viewers: Option<&'a RawValue>,
    #[serde(default, borrow)]
    titles: Option<&'a RawValue>,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    purpose: Option<String>,
}

pub fn batch(body: &[u8], max_entities: usize) -> Result<BatchRequest, BodyError> {
    let wire: BatchWire<'_> = serde_json::from_slice(body).map_err(malformed)?;
    let mut budget = max_entities;
    let mut ids = |raw: Option<&RawValue>| -> Result<Vec<IdValue>, BodyError> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let seed = IdsSeed {
            budget: &mut budget,
            max: max_entities,
        };
        seed.deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
            .map_err(|e| over_budget(e, max_entities))
    };
    Ok(BatchRequest {
        viewers: ids(wire.viewers)?,
        titles: ids(wire.titles)?,
        features: wire.features,
        purpose: wire.purpose,
    })
}

fn malformed(e: serde_json::Error) -> BodyError {
    BodyError::Malformed(e.to_string())
}

/// The marker the seeds fail with, told apart from other JSON errors by its text.
const OVER_BUDGET: &str = "rewind: entity budget exhausted";

/// Errors of the entity ids: serde's text quotes the offending value ("invalid type: floating
/// point `12.5`"), and an id may be a raw account id that must not travel back in an error
/// (nor into logs), so the message says what is wrong and where, never the value.
fn over_budget(e: serde_json::Error, max: usize) -> BodyError {
    let text = e.to_string();
    if text.starts_with(OVER_BUDGET) {
        return BodyError::TooMany { max };
    }
    if e.is_data() {
        return BodyError::Malformed(format!(
            "entity ids are lists of strings or integers (int64); one is not, at column {} of \
             its list",
            e.column()
        ));
    }
    malformed(e)
}

struct EntitiesVisitor<'b> {
    budget: &'b mut usize,
    max: usize,
}

impl<'de> Visitor<'de> for EntitiesVisitor<'_> {
    type Value = Vec<(String, Vec<IdValue>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of join key → list of ids")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let ids = map.next_value_seed(IdsSeed {
                budget: &mut *self.budget,
                max: self.max,
            })?;
            out.push((key, ids));
        }
        Ok(out)
    }
}

/// A list of ids, each taken from the shared budget. Every join key of a Feast request lists
/// one id per row, so the budget is rows × keys: what the server reads.
struct IdsSeed<'b> {
    budget: &'b mut usize,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for IdsSeed<'_> {
    type Value = Vec<IdValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for IdsSeed<'_> {
    type Value = Vec<IdValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of ids (strings or integers)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(id) = seq.next_element::<Id>()? {
            if *self.budget == 0 {
                return Err(de::Error::custom(OVER_BUDGET));
            }
            *self.budget -= 1;
            ids.push(id.0);
        }
        Ok(ids)
    }
}

struct Id(IdValue);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id: a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(IdValue::Text(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(IdValue::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v)
                    .map(|v| Id(IdValue::Int(v)))
                    .map_err(|_| E::custom("an integer id out of int64 range"))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_value_errors_never_quote_the_value() {
        for bad in [
            r#"[12.5]"#,
            r#"[true]"#,
            r#"[{"secret-account": 1}]"#,
            r#""secret-account""#,
            r#"[18446744073709551615]"#,
        ] {
            let body = format!(
                r#"{{"features": ["viewer:plays_24h"], "entities": {{"user_id": {bad}}}}}"#
            );
            let e = feast(body.as_bytes(), 10).unwrap_err().to_string();
            assert!(e.contains("entity ids are lists"), "{bad}: {e}");
            for leak in ["12.5", "true", "secret-account", "18446744073709551615"] {
                assert!(!e.contains(leak), "{bad}: {e}");
            }
            let body = format!(r#"{{"titles": {bad}}}"#);
            let e = batch(body.as_bytes(), 10).unwrap_err().to_string();
            assert!(
                e.contains("entity ids are lists") && !e.contains("secret"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_feast_request_keeps_its_join_keys_in_order() {
        let body = br#"{"features": ["viewer:plays_24h"], "entities": {"viewer_id": ["v_1", "v_2"], "title_id": [7, "t"]}}"#;
        let req = feast(body, 10).unwrap();
        assert_eq!(req.features.unwrap(), vec!["viewer:plays_24h"]);
        assert!(!req.full_feature_names);
        let keys: Vec<_> = req.entities.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["viewer_id", "title_id"]);
        assert_eq!(
            req.entities[1].1,
            vec![IdValue::Int(7), IdValue::Text("t".into())]
        );
    }

    #[test]
    fn the_entity_budget_stops_the_parse_at_the_first_entity_past_it() {
        let body = br#"{"features": [], "entities": {"viewer_id": ["a", "b"], "title_id": ["c"]}}"#;
        assert_eq!(feast(body, 2).unwrap_err(), BodyError::TooMany { max: 2 });
        assert!(feast(body, 3).is_ok());
        let batch_body = br#"{"viewers": ["a"], "titles": ["b", "c"]}"#;
        assert_eq!(
            batch(batch_body, 2).unwrap_err(),
            BodyError::TooMany { max: 2 }
        );
    }

    #[test]
    fn wrong_shapes_are_malformed() {
        for body in [
            &br#"{"features": ["x"]}"#[..],
            br#"{"features": ["x"], "entities": {"viewer_id": [true]}}"#,
            br#"{"features": ["x"], "entities": {"viewer_id": "v_1"}}"#,
            br#"{"features": ["x"], "entities": ["v_1"]}"#,
            br#"not json"#,
            br#"{"features": ["x"], "entities": {}} trailing"#,
        ] {
            let err = feast(body, 10).unwrap_err();
            assert!(matches!(err, BodyError::Malformed(_)), "{err:?}");
        }
        assert!(matches!(
            batch(br#"{"viewer": []}"#, 10),
            Err(BodyError::Malformed(_))
        ));
    }
}
