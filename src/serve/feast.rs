//! Feast's feature-server wire format, `POST /get-online-features`: the request is resolved
//! into a [`Plan`] (which features, of which views, for which ids), the reads produce
//! [`ServedEntity`]s, and [`render`] writes them as Feast's column-oriented response, field by
//! field what `feast serve` writes (`MessageToDict` of `GetOnlineFeaturesResponse`).

use rewind_dataflows::{Entity, services};

use super::ApiError;
use super::lookup::{self, LibFeature, ServedEntity, Status};
use super::request::{FeastRequest, IdValue};
use crate::privacy::Pseudonymizer;

pub const VIEWER_KEY: &str = "viewer_id";
pub const USER_KEY: &str = "user_id";
pub const TITLE_KEY: &str = "title_id";

/// The features of one view to read, for every entity row.
#[derive(Debug)]
pub struct ViewPlan {
    pub entity: Entity,
    pub features: Vec<&'static LibFeature>,
    /// The store's id of each entity row: pseudonyms for viewers, never a raw account id.
    pub ids: Vec<String>,
}

#[derive(Debug)]
pub struct Plan {
    /// The join-key columns as sent, echoed first.
    pub keys: Vec<(String, Vec<IdValue>)>,
    pub views: Vec<ViewPlan>,
    /// Each requested feature in order: its view's index in `views` and its place there.
    pub columns: Vec<(usize, usize)>,
    pub full_feature_names: bool,
    /// Raw account ids were pseudonymized: the store's key must be the server's.
    pub pseudonymized: bool,
}

impl Plan {
    pub fn rows(&self) -> usize {
        self.keys.first().map_or(0, |(_, ids)| ids.len())
    }
}

pub fn plan(req: FeastRequest, door: Option<&Pseudonymizer>) -> Result<Plan, ApiError> {
    let requested = requested_features(&req)?;
    check_names(&requested, req.full_feature_names)?;
    let rows = check_keys(&req.entities)?;
    let mut views: Vec<ViewPlan> = Vec::new();
    let mut columns = Vec::with_capacity(requested.len());
    let mut pseudonymized = false;
    for feature in requested {
        let v = match views.iter().position(|v| v.entity == feature.entity) {
            Some(v) => v,
            None => {
                let (ids, raw) = ids_for(feature.entity, &req.entities, door)?;
                pseudonymized |= raw;
                views.push(ViewPlan {
                    entity: feature.entity,
                    features: Vec::new(),
                    ids,
                });
                views.len() - 1
            }
        };
        columns.push((v, views[v].features.len()));
        views[v].features.push(feature);
    }
    debug_assert!(views.iter().all(|v| v.ids.len() == rows));
    Ok(Plan {
        keys: req.entities,
        views,
        columns,
        full_feature_names: req.full_feature_names,
        pseudonymized,
    })
}

fn requested_features(req: &FeastRequest) -> Result<Vec<&'static LibFeature>, ApiError> {
    if let Some(name) = &req.feature_service {
        let Some(service) = services().into_iter().find(|s| s.name == name) else {
            let known: Vec<_> = services().iter().map(|s| s.name).collect();
            return Err(ApiError::not_found(
                format!(
                    "unknown feature service {name:?}; known: {}",
                    known.join(", ")
                ),
                name,
            )
            .feast_class("FeatureServiceNotFoundException"));
        };
        let features = service.features.iter().map(|full| {
            lookup::by_full_name(full).ok_or_else(|| {
                ApiError::internal(format!("feature service {name:?} lists unknown {full:?}"))
            })
        });
        return features.collect();
    }
    let Some(refs) = &req.features else {
        return Err(ApiError::unprocessable(
            "give \"features\" (a list of \"view:feature\") or \"feature_service\"",
        ));
    };
    if refs.is_empty() {
        return Err(ApiError::unprocessable("\"features\" is empty"));
    }
    let mut out: Vec<&'static LibFeature> = Vec::with_capacity(refs.len());
    for r in refs {
        let feature = resolve(r)?;
        if out.contains(&feature) {
            return Err(ApiError::unprocessable(format!(
                "feature {r:?} is requested twice"
            )));
        }
        out.push(feature);
    }
    Ok(out)
}

/// `viewer:plays_24h` → the library's `viewer.plays_24h`.
fn resolve(reference: &str) -> Result<&'static LibFeature, ApiError> {
    let Some((view, name)) = reference.split_once(':') else {
        return Err(ApiError::unprocessable(format!(
            "feature reference {reference:?} is not \"view:feature\" (e.g. \"viewer:plays_24h\")"
        )));
    };
    let Some(entity) = lookup::entity_of_view(view) else {
        return Err(ApiError::not_found(
            format!("unknown feature view {view:?} in {reference:?}; views: viewer, title"),
            view,
        )
        .feast_class("FeatureViewNotFoundException"));
    };
    let known = lookup::of_entity(entity);
    match known.iter().find(|f| f.name == name) {
        Some(f) => Ok(f),
        None => {
            let names: Vec<_> = known.iter().map(|f| f.name).collect();
            Err(ApiError::not_found(
                format!(
                    "unknown feature {name:?} in view {view:?}; its features: {}",
                    names.join(", ")
                ),
                reference,
            ))
        }
    }
}

/// Feast refuses two columns of one name (`FeatureNameCollisionError`).
fn check_names(features: &[&'static LibFeature], full: bool) -> Result<(), ApiError> {
    for (i, f) in features.iter().enumerate() {
        if !full && features[..i].iter().any(|g| g.name == f.name) {
            return Err(ApiError::unprocessable(format!(
                "two requested features are named {:?}; set \"full_feature_names\": true",
                f.name
            )));
        }
    }
    Ok(())
}

/// Known join keys, one id per row under each; returns the number of rows.
fn check_keys(entities: &[(String, Vec<IdValue>)]) -> Result<usize, ApiError> {
    let Some((_, first)) = entities.first() else {
        return Err(ApiError::unprocessable("\"entities\" names no join key"));
    };
    for (i, (key, ids)) in entities.iter().enumerate() {
        if ![VIEWER_KEY, USER_KEY, TITLE_KEY].contains(&key.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "unknown join key {key:?}; rewind's are viewer_id (pseudonyms), user_id (raw \
                 account ids) and title_id"
            )));
        }
        if entities[..i].iter().any(|(k, _)| k == key) {
            return Err(ApiError::unprocessable(format!(
                "join key {key:?} is given twice"
            )));
        }
        if ids.len() != first.len() {
            return Err(ApiError::unprocessable(format!(
                "join key {key:?} lists {} ids and {:?} lists {}: every key needs one per row",
                ids.len(),
                entities[0].0,
                first.len()
            )));
        }
    }
    let has = |k: &str| entities.iter().any(|(key, _)| key == k);
    if has(VIEWER_KEY) && has(USER_KEY) {
        return Err(ApiError::unprocessable(
            "give viewers either as viewer_id (pseudonyms) or as user_id (raw account ids), not both",
        ));
    }
    Ok(first.len())
}

/// The store ids of `entity` for each row, and whether they came from raw account ids.
fn ids_for(
    entity: Entity,
    entities: &[(String, Vec<IdValue>)],
    door: Option<&Pseudonymizer>,
) -> Result<(Vec<String>, bool), ApiError> {
    let find = |k: &str| {
        entities
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, ids)| ids)
    };
    match entity {
        Entity::Title => {
            let ids = find(TITLE_KEY).ok_or_else(|| missing_key("title", TITLE_KEY))?;
            ids.iter()
                .enumerate()
                .map(|(row, id)| title_id(row, id))
                .collect::<Result<_, _>>()
                .map(|ids| (ids, false))
        }
        Entity::Viewer => {
            if let Some(ids) = find(VIEWER_KEY) {
                let ids = ids.iter().enumerate().map(|(row, id)| viewer_id(row, id));
                return ids.collect::<Result<_, _>>().map(|ids| (ids, false));
            }
            let ids =
                find(USER_KEY).ok_or_else(|| missing_key("viewer", "viewer_id or user_id"))?;
            let control = ids.iter().position(|id| lookup::has_control(&id.text()));
            if let Some(row) = control {
                return Err(ApiError::unprocessable(format!(
                    "user_id of row {row} holds a control character (U+0000-U+001F, \
                     U+007F-U+009F)"
                )));
            }
            let door = door.ok_or_else(|| {
                ApiError::unprocessable(
                    "user_id needs the pseudonym key, and this server has none: start it with \
                     --key-file or REWIND_PSEUDONYM_KEY (the key the store was built with), or \
                     send viewer_id pseudonyms",
                )
            })?;
            // The raw id goes no further than the door: not into errors, logs or the store.
            let ids = ids.iter().map(|id| door.viewer_id(&id.text()).to_string());
            Ok((ids.collect(), true))
        }
    }
}

fn missing_key(view: &str, key: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "features of view {view:?} are requested, but \"entities\" has no {key}"
    ))
}

pub fn viewer_id(row: usize, id: &IdValue) -> Result<String, ApiError> {
    match id {
        IdValue::Text(s) if lookup::is_pseudonym(s) => Ok(s.clone()),
        _ => Err(ApiError::unprocessable(format!(
            "viewer_id of row {row} is not a pseudonym (\"v_\" and 32 lowercase hex digits); \
             raw account ids go under user_id"
        ))),
    }
}

pub fn title_id(row: usize, id: &IdValue) -> Result<String, ApiError> {
    let text = id.text();
    match lookup::title_id_problem(&text) {
        Some(problem) => Err(ApiError::unprocessable(format!(
            "title_id of row {row} {problem}"
        ))),
        None => Ok(text),
    }
}

/// Feast's response: `served[v]` holds view `v`'s entity rows in order.
pub fn render(plan: &Plan, served: &[Vec<ServedEntity>]) -> Vec<u8> {
    let rows = plan.rows();
    let mut out = Vec::with_capacity(64 + rows * plan.columns.len() * 48);
    out.extend_from_slice(br#"{"metadata":{"feature_names":["#);
    let mut names = plan.keys.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    for &(v, k) in &plan.columns {
        let f = plan.views[v].features[k];
        names.push(match plan.full_feature_names {
            true => format!("{}__{}", f.entity.as_str(), f.name),
            false => f.name.to_string(),
        });
    }
    write_list(&mut out, names.iter(), |out, n| json_str(out, n));
    out.extend_from_slice(br#"]},"results":["#);
    let mut first = true;
    for (_, ids) in &plan.keys {
        sep(&mut out, &mut first);
        out.extend_from_slice(br#"{"values":["#);
        write_list(&mut out, ids.iter(), |out, id| match id {
            IdValue::Text(s) => json_str(out, s),
            IdValue::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        });
        column_tail(&mut out, rows, |_| ("PRESENT", None));
    }
    for &(v, k) in &plan.columns {
        sep(&mut out, &mut first);
        let entities = &served[v];
        out.extend_from_slice(br#"{"values":["#);
        write_list(&mut out, entities.iter(), |out, e| {
            match e.values[k].status {
                Status::NotFound => out.extend_from_slice(b"null"),
                _ => out.extend_from_slice(&e.values[k].value_json),
            }
        });
        column_tail(&mut out, rows, |row| {
            let value = &entities[row].values[k];
            (value.status.as_str(), value.valid_from_ms)
        });
    }
    out.extend_from_slice(b"]}");
    out
}

fn column_tail(
    out: &mut Vec<u8>,
    rows: usize,
    cell: impl Fn(usize) -> (&'static str, Option<u64>),
) {
    out.extend_from_slice(br#"],"statuses":["#);
    write_list(out, 0..rows, |out, row| json_str(out, cell(row).0));
    out.extend_from_slice(br#"],"event_timestamps":["#);
    write_list(out, 0..rows, |out, row| {
        json_str(out, &proto_timestamp(cell(row).1.unwrap_or(0)))
    });
    out.extend_from_slice(b"]}");
}

fn sep(out: &mut Vec<u8>, first: &mut bool) {
    if !std::mem::take(first) {
        out.push(b',');
    }
}

fn write_list<T>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
}

pub fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// A protobuf `Timestamp` as `MessageToDict` writes it: RFC 3339 UTC with `Z`, and a fraction
/// only when there is one (3 digits for milliseconds).
pub fn proto_timestamp(ms: u64) -> String {
    let text = crate::utc::format_ms(ms);
    match ms % 1000 {
        0 => text.replacen(".000Z", "Z", 1),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_drop_a_zero_fraction_as_protobuf_does() {
        assert_eq!(proto_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(proto_timestamp(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(
            proto_timestamp(1_767_225_600_500),
            "2026-01-01T00:00:00.500Z"
        );
    }

    fn request(features: &[&str], entities: Vec<(&str, Vec<IdValue>)>) -> FeastRequest {
        FeastRequest {
            features: Some(features.iter().map(|s| s.to_string()).collect()),
            feature_service: None,
            entities: entities
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            full_feature_names: false,
        }
    }

    fn text(s: &str) -> IdValue {
        IdValue::Text(s.into())
    }

    #[test]
    fn features_of_two_views_read_two_join_keys() {
        let v = "v_0123456789abcdef0123456789abcdef";
        let req = request(
            &["title:plays_1h", "viewer:plays_24h", "title:ctr_24h"],
            vec![
                ("viewer_id", vec![text(v)]),
                ("title_id", vec![IdValue::Int(7)]),
            ],
        );
        let plan = plan(req, None).unwrap();
        assert_eq!(plan.views.len(), 2);
        assert_eq!(plan.views[0].ids, vec!["7"]);
        assert_eq!(plan.columns, vec![(0, 0), (1, 0), (0, 1)]);
        assert!(!plan.pseudonymized);
    }

    #[test]
    fn unknown_views_and_features_are_404_naming_them() {
        let ids = || {
            vec![(
                "viewer_id",
                vec![text("v_0123456789abcdef0123456789abcdef")],
            )]
        };
        let err = plan(request(&["viewr:plays_24h"], ids()), None).unwrap_err();
        assert_eq!((err.status, err.unknown.as_deref()), (404, Some("viewr")));
        let err = plan(request(&["viewer:nope"], ids()), None).unwrap_err();
        assert_eq!(
            (err.status, err.unknown.as_deref()),
            (404, Some("viewer:nope"))
        );
        let mut req = request(&[], ids());
        (req.features, req.feature_service) = (None, Some("nope".into()));
        assert_eq!(plan(req, None).unwrap_err().status, 404);
    }

    #[test]
    fn raw_ids_need_a_key_and_never_appear_in_errors() {
        let req = request(
            &["viewer:plays_24h"],
            vec![("user_id", vec![text("alice@example.com")])],
        );
        let err = plan(req, None).unwrap_err();
        assert_eq!(err.status, 422);
        assert!(!err.detail.contains("alice"), "{}", err.detail);
        let door = Pseudonymizer::new(b"0123456789abcdef-test-key");
        let req = request(
            &["viewer:plays_24h"],
            vec![("user_id", vec![text("alice@example.com")])],
        );
        let plan = plan(req, Some(&door)).unwrap();
        assert_eq!(
            plan.views[0].ids,
            vec![door.viewer_id("alice@example.com").to_string()]
        );
        assert!(plan.pseudonymized);
    }

    #[test]
    fn mismatched_and_malformed_entities_are_422() {
        let v = "v_0123456789abcdef0123456789abcdef";
        for entities in [
            vec![("viewer_id", vec![text(v)]), ("title_id", vec![])],
            vec![("viewer_id", vec![text("alice")])],
            vec![("viewer_id", vec![text(v)]), ("user_id", vec![text("a")])],
            vec![("driver_id", vec![text(v)])],
            vec![("title_id", vec![text("t")])],
            vec![],
        ] {
            let err = plan(request(&["viewer:plays_24h"], entities.clone()), None).unwrap_err();
            assert_eq!(err.status, 422, "{entities:?}: {}", err.detail);
        }
    }
}
