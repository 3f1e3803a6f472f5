//! The log's seat in the server: [`ServeHooks::served`] hands each response to the log.

use std::borrow::Cow;

use crate::serve::{self, ServeHooks, Status};

use super::{Served, ServedEntity, ServedLog, ServedValue, now_ms};

impl ServeHooks for ServedLog {
    /// Copies what the response carries (ids are pseudonyms or title ids: the server
    /// pseudonymized any `user_id` before reading) and queues it, without waiting.
    fn served(&self, served: &serve::Served<'_>) {
        self.record(Served {
            request_id: served.request_id.to_string(),
            served_at_ms: now_ms(),
            as_of_ms: served.as_of_ms,
            entities: served
                .entities
                .iter()
                .map(|e| entity(e, served.endpoint))
                .collect(),
        });
    }
}

/// One entity as its response carried it: Feast's format sends a value NOT_FOUND as null,
/// the native API as the feature's default.
fn entity(served: &serve::ServedEntity, endpoint: &str) -> ServedEntity {
    let feast = endpoint == "get-online-features";
    ServedEntity {
        kind: Cow::Borrowed(served.entity.as_str()),
        id: served.id.clone(),
        values: served
            .values
            .iter()
            .map(|v| ServedValue {
                feature: Cow::Borrowed(v.feature.full),
                json: match (feast, v.status) {
                    (true, Status::NotFound) => "null".to_string(),
                    _ => String::from_utf8_lossy(&v.value_json).into_owned(),
                },
                valid_from_ms: v.valid_from_ms,
            })
            .collect(),
    }
}
