//! rewind's own API: every feature of an entity by its full name, with its value, the time it
//! is valid from, and what the store is as of, in the body.
//!
//! ```json
//! {"entity": "viewer", "id": "v_…", "found": true,
//!  "as_of": "…Z", "as_of_ms": 1767225600000, "frontier": "…Z", "frontier_ms": 1767225601000,
//!  "features": {"viewer.plays_24h": {"value": 3, "valid_from": "…Z", "valid_from_ms": …}}}
//! ```
//!
//! A viewer withheld for lack of consent to the read's purpose carries `"withheld": "consent"`
//! after `found`, and every feature at its default, valid from `null`.

use super::feast::json_str;
use super::lookup::ServedEntity;
use crate::utc;

/// The store's freshness, as fields.
pub fn freshness(out: &mut Vec<u8>, as_of_ms: u64, frontier_ms: u64) {
    out.extend_from_slice(br#""as_of":"#);
    json_str(out, &utc::format_ms(as_of_ms));
    out.extend_from_slice(format!(r#","as_of_ms":{as_of_ms},"frontier":"#).as_bytes());
    json_str(out, &utc::format_ms(frontier_ms));
    out.extend_from_slice(format!(r#","frontier_ms":{frontier_ms}"#).as_bytes());
}

/// `GET /v1/{viewers|titles}/{id}`.
pub fn render_entity(entity: &ServedEntity, as_of_ms: u64, frontier_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    entity_fields(&mut out, entity);
    out.push(b',');
    freshness(&mut out, as_of_ms, frontier_ms);
    out.push(b'}');
    out
}

/// `POST /v1/batch`: the viewers and titles in the order asked.
pub fn render_batch(
    viewers: &[ServedEntity],
    titles: &[ServedEntity],
    as_of_ms: u64,
    frontier_ms: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + (viewers.len() + titles.len()) * 400);
    out.push(b'{');
    freshness(&mut out, as_of_ms, frontier_ms);
    for (name, list) in [("viewers", viewers), ("titles", titles)] {
        out.extend_from_slice(format!(r#","{name}":["#).as_bytes());
        for (i, entity) in list.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            entity_fields(&mut out, entity);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

fn entity_fields(out: &mut Vec<u8>, entity: &ServedEntity) {
    out.extend_from_slice(br#""entity":"#);
    json_str(out, entity.entity.as_str());
    out.extend_from_slice(br#","id":"#);
    json_str(out, &entity.id);
    out.extend_from_slice(format!(r#","found":{}"#, entity.found).as_bytes());
    if entity.withheld {
        out.extend_from_slice(br#","withheld":"consent""#);
    }
    out.extend_from_slice(br#","features":{"#);
    for (i, value) in entity.values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, value.feature.full);
        out.extend_from_slice(br#":{"value":"#);
        out.extend_from_slice(&value.value_json);
        match value.valid_from_ms {
            Some(ms) => {
                out.extend_from_slice(br#","valid_from":"#);
                json_str(out, &utc::format_ms(ms));
                out.extend_from_slice(format!(r#","valid_from_ms":{ms}}}"#).as_bytes());
            }
            None => out.extend_from_slice(br#","valid_from":null,"valid_from_ms":null}"#),
        }
    }
    out.extend_from_slice(b"}");
}
