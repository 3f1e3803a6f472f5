//! Consistency built in: the online values must be exactly the history as of the store's
//! frontier, for every entity and feature, and no history row may lie at or past the frontier.
//! Training sets are cut from history and model servers read online values, so this is the
//! check that training and serving agree. It also reads every other table, so every stored
//! value's checksum is checked: a store that verifies holds exactly what was written.

use std::collections::BTreeMap;

use rewind_state::{Snapshot, StoreError};

/// One disagreement between the online table and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub feature: String,
    pub entity_id: String,
    pub online: Option<String>,
    pub history: Option<String>,
    pub what: &'static str,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(default)".into());
        write!(
            f,
            "{} of {}: {}; online {}, history {}",
            self.feature,
            self.entity_id,
            self.what,
            show(&self.online),
            show(&self.history)
        )
    }
}

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The tick the comparison is as of (`None`: the store has no output yet).
    pub as_of_ms: Option<u64>,
    pub online_rows: usize,
    pub history_rows: usize,
    /// Rows of the meta, offsets and dead-letter tables, read for their checksums.
    pub other_rows: usize,
    pub differences: Vec<Difference>,
}

type Latest = (u64, Option<String>);

/// Compares every online value with the history as of the store's `as_of_ms`.
pub fn verify(snap: &Snapshot) -> Result<Report, StoreError> {
    let other_rows =
        snap.meta_all()?.len() + snap.next_offsets()?.len() + snap.dead_letters()?.len();
    let Some(as_of) = snap.meta_u64("as_of_ms")? else {
        return Ok(Report {
            other_rows,
            ..Report::default()
        });
    };
    let history = snap.history()?;
    let mut latest: BTreeMap<(String, String), Latest> = BTreeMap::new();
    let mut differences = Vec::new();
    for row in &history {
        let value = row
            .value_json
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        if row.valid_from_ms > as_of {
            differences.push(Difference {
                feature: row.feature.clone(),
                entity_id: row.entity_id.clone(),
                online: None,
                history: value,
                what: "history row past the store's frontier",
            });
            continue;
        }
        latest.insert(
            (row.feature.clone(), row.entity_id.clone()),
            (row.valid_from_ms, value),
        );
    }
    let mut online: BTreeMap<(String, String), Latest> = BTreeMap::new();
    for (_, id, row) in snap.online_all()? {
        let value = Some(String::from_utf8_lossy(&row.value_json).into_owned());
        online.insert((row.feature, id), (row.valid_from_ms, value));
    }
    let online_rows = online.len();
    for (key, (from, value)) in &latest {
        let found = online.remove(key);
        if value.is_none() && found.is_none() {
            continue;
        }
        let (online_from, online_value) = found.unwrap_or((0, None));
        let what = if online_value != *value {
            "values differ"
        } else if online_from != *from {
            "valid_from differs"
        } else {
            continue;
        };
        differences.push(difference(key, online_value, value.clone(), what));
    }
    for (key, (_, value)) in online {
        differences.push(difference(
            &key,
            value,
            None,
            "online value without history",
        ));
    }
    Ok(Report {
        as_of_ms: Some(as_of),
        online_rows,
        history_rows: history.len(),
        other_rows,
        differences,
    })
}

fn difference(
    key: &(String, String),
    online: Option<String>,
    history: Option<String>,
    what: &'static str,
) -> Difference {
    Difference {
        feature: key.0.clone(),
        entity_id: key.1.clone(),
        online,
        history,
        what,
    }
}
