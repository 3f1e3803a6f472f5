//! The HTTP/1.1 server: accepting, per-connection limits, authentication, request ids,
//! routing, and the hooks around each request and connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};

use super::io::WriteDeadline;
use super::lookup::{self, Lookup, ServedEntity};
use super::request::{self, BodyError};
use super::slot::Slot;
use super::{ApiError, RequestDone, ServeConfig, ServeHooks, Served, feast, native};

pub struct State {
    config: ServeConfig,
    /// SHA-256 of the token: requests are compared digest to digest, in constant time.
    token_digest: Option<[u8; 32]>,
    slot: Arc<Slot>,
    hooks: Arc<dyn ServeHooks>,
    /// Generated request ids: a random prefix per process, then a counter.
    id_prefix: u64,
    next_id: AtomicU64,
}

impl State {
    pub fn new(config: ServeConfig, slot: Arc<Slot>, hooks: Arc<dyn ServeHooks>) -> State {
        let token_digest = config.token.as_ref().map(|t| digest(t.as_bytes()));
        State {
            config,
            token_digest,
            slot,
            hooks,
            id_prefix: {
                use rand::{RngCore, SeedableRng};
                rand::rngs::StdRng::from_os_rng().next_u64()
            },
            next_id: AtomicU64::new(0),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

type Reply = Response<Full<Bytes>>;

pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return eprintln!("rewind: serve: cannot listen: {e}"),
    };
    let permits = Arc::new(Semaphore::new(state.config.limits.max_connections));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => return,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let write_timeout = state.config.limits.write_timeout;
        let response_timeout = state.config.limits.response_timeout;
        tokio::spawn(async move {
            let _open = Connection::open(state.hooks.clone());
            let service = hyper::service::service_fn(|req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(state.config.limits.header_timeout)
                .keep_alive(true)
                .serve_connection(
                    TokioIo::new(WriteDeadline::new(stream, write_timeout, response_timeout)),
                    service,
                );
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// Tells the hooks a connection opened, and that it closed however its task ends.
struct Connection(Arc<dyn ServeHooks>);

impl Connection {
    fn open(hooks: Arc<dyn ServeHooks>) -> Connection {
        hooks.connection_opened();
        Connection(hooks)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let started = Instant::now();
    let request_id = request_id(&state, &req);
    let (endpoint, result) = route(&state, req, &request_id).await;
    let mut reply = result.unwrap_or_else(|e| match endpoint {
        "get-online-features" => feast_error_reply(e),
        _ => error_reply(&e),
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        reply.headers_mut().insert("x-request-id", value);
    }
    state.hooks.request_done(&RequestDone {
        endpoint,
        status: reply.status().as_u16(),
        latency: started.elapsed(),
        request_id: &request_id,
    });
    Ok(reply)
}

/// The caller's `X-Request-Id` when it is a sane token (it is echoed and may be logged), else
/// a new one.
fn request_id(state: &State, req: &Request<Incoming>) -> String {
    let sane = |s: &str| {
        (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
    };
    match req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) if sane(id) => id.to_string(),
        _ => {
            let n = state.next_id.fetch_add(1, Ordering::Relaxed);
            format!("{:016x}-{n:x}", state.id_prefix)
        }
    }
}

async fn route(
    state: &Arc<State>,
    req: Request<Incoming>,
    request_id: &str,
) -> (&'static str, Result<Reply, ApiError>) {
    let path = req.uri().path().to_string();
    let (endpoint, allowed) = match path.as_str() {
        "/get-online-features" => ("get-online-features", "POST"),
        "/v1/batch" => ("native-batch", "POST"),
        "/health" => ("health", "GET"),
        "/metrics" => ("metrics", "GET"),
        p if p.starts_with("/v1/viewers/") || p.starts_with("/v1/titles/") => {
            ("native-entity", "GET")
        }
        _ => ("unknown", "GET"),
    };
    if let Err(e) = authorize(state, &req) {
        let mut reply = error_reply(&e);
        let bearer = HeaderValue::from_static("Bearer");
        reply.headers_mut().insert(header::WWW_AUTHENTICATE, bearer);
        return ("unauthorized", Ok(reply));
    }
    if endpoint == "unknown" {
        let detail = format!(
            "no such path {path:?}; rewind serves POST /get-online-features, GET \
             /v1/viewers/{{id}}, GET /v1/titles/{{id}}, POST /v1/batch, GET /health, GET /metrics"
        );
        return (endpoint, Err(ApiError::not_found(detail, &path)));
    }
    if req.method().as_str() != allowed {
        let detail = format!("{path} takes {allowed}, not {}", req.method());
        let mut reply = error_reply(&ApiError::new_status(405, detail));
        reply
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
        return (endpoint, Ok(reply));
    }
    let asked = match asked_purpose(endpoint, &req) {
        Ok(asked) => asked,
        Err(e) => return (endpoint, Err(e)),
    };
    let result = match endpoint {
        "health" => health(state),
        "metrics" => metrics(state),
        "native-entity" => native_entity(state, &path, asked.as_deref(), request_id),
        _ => match read_body(state, req).await {
            Err(e) => Err(e),
            Ok(body) if endpoint == "native-batch" => native_batch(state, &body, request_id).await,
            Ok(body) => get_online_features(state, &body, asked.as_deref(), request_id).await,
        },
    };
    (endpoint, result)
}

/// The purpose a request names outside its body: `?purpose=P` on the native entity path, the
/// `X-Rewind-Purpose` header on Feast's (whose JSON stays Feast's). A batch names it in its body.
fn asked_purpose(endpoint: &str, req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let undecodable = || ApiError::bad_request("the purpose does not decode to UTF-8");
    match endpoint {
        "native-entity" => {
            let query = req.uri().query().unwrap_or_default();
            let value = query.split('&').find_map(|kv| kv.strip_prefix("purpose="));
            value
                .map(|v| percent_decode(v).ok_or_else(undecodable))
                .transpose()
        }
        "get-online-features" => req
            .headers()
            .get("x-rewind-purpose")
            .map(|v| v.to_str().map(str::to_string).map_err(|_| undecodable()))
            .transpose(),
        _ => Ok(None),
    }
}

/// The purpose read for: the request's, else the server's; an unknown name is 422.
fn purpose_of(
    state: &State,
    asked: Option<&str>,
) -> Result<Option<rewind_dataflows::Purpose>, ApiError> {
    match asked {
        Some(name) => crate::purpose::ReadPurpose::find(name)
            .map(Some)
            .map_err(|e| ApiError::unprocessable(e.to_string())),
        None => Ok(state.config.purpose),
    }
}

/// Refuses, with 403, a read of a feature not declared for `purpose`.
fn check_declared(
    purpose: Option<rewind_dataflows::Purpose>,
    features: &[&'static lookup::LibFeature],
) -> Result<(), ApiError> {
    let Some(purpose) = purpose else {
        return Ok(());
    };
    match features.iter().find(|f| !f.declared_for(purpose)) {
        None => Ok(()),
        Some(f) => Err(ApiError::forbidden(
            crate::purpose::PurposeError::not_declared(f.full, purpose, f.purposes).to_string(),
        )),
    }
}

/// `purpose` as the viewed store gates it (by its recorded consent rules).
fn in_store(
    view: &rewind_state::View<'_>,
    purpose: Option<rewind_dataflows::Purpose>,
) -> Result<Option<crate::purpose::ReadPurpose>, ApiError> {
    let Some(purpose) = purpose else {
        return Ok(None);
    };
    let meta = view
        .meta(crate::purpose::META_CONSENT)
        .map_err(unreadable)?;
    Ok(Some(crate::purpose::ReadPurpose::in_store(
        purpose,
        meta.as_deref(),
    )))
}

fn authorize(state: &State, req: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(expected) = &state.token_digest else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()))
        .map(digest);
    // Digests have one length whatever the token's, and are compared without an early exit.
    let equal = given.is_some_and(|g| {
        g.iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if equal {
        return Ok(());
    }
    Err(ApiError::new_status(
        401,
        "this server needs \"Authorization: Bearer <token>\"",
    ))
}

/// The token of `Bearer <token>`; the scheme's case does not matter (RFC 7235).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// The body, refused with 413 as soon as it passes the limit (by its Content-Length, before
/// reading anything), and with 408 when it does not arrive in time.
async fn read_body(state: &State, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limits = &state.config.limits;
    let too_large = || {
        ApiError::new_status(
            413,
            format!(
                "the request body is larger than {} bytes",
                limits.max_body_bytes
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), limits.max_body_bytes);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new_status(
            408,
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn body_error(e: BodyError) -> ApiError {
    match e {
        BodyError::Malformed(_) => ApiError::bad_request(e.to_string()),
        BodyError::TooMany { .. } => ApiError::unprocessable(e.to_string()),
    }
}

/// A reader of a store that holds output, or 503 saying why not.
fn view_of(state: &State) -> Result<Arc<rewind_state::Reader>, ApiError> {
    state.slot.reader().map_err(ApiError::unavailable)
}

fn unreadable(e: rewind_state::StoreError) -> ApiError {
    ApiError::unavailable(format!("the store cannot be read: {e}"))
}

/// (as_of_ms, frontier_ms) of a view that holds output.
fn freshness(view: &rewind_state::View<'_>) -> Result<(u64, u64), ApiError> {
    if let Some(started) = view.replay_started_ms() {
        return Err(ApiError::unavailable(format!(
            "the store is being rebuilt by `rewind replay` (started {}): it holds a prefix of \
             its log, and is served once the replay has finished (a replay that stopped early \
             leaves it so: replay again into a fresh store)",
            crate::utc::format_ms(started)
        )));
    }
    match (view.as_of_ms(), view.frontier_ms()) {
        (Some(as_of), Some(frontier)) => Ok((as_of, frontier)),
        _ => Err(ApiError::unavailable(
            "the store holds no output yet: its run has not committed a tick",
        )),
    }
}

fn health(state: &State) -> Result<Reply, ApiError> {
    let reader = view_of(state)?;
    let view = reader.view().map_err(unreadable)?;
    let (as_of, frontier) = freshness(&view)?;
    let mut body = br#"{"status":"ok","#.to_vec();
    native::freshness(&mut body, as_of, frontier);
    body.push(b'}');
    Ok(json_reply(body, Some((as_of, frontier))))
}

fn metrics(state: &State) -> Result<Reply, ApiError> {
    let reader = state.slot.reader().ok();
    let Some(text) = state.hooks.metrics(reader.as_deref()) else {
        return Err(ApiError::not_found(
            "this server exports no metrics",
            "/metrics",
        ));
    };
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(reply)
}

fn native_entity(
    state: &State,
    path: &str,
    asked: Option<&str>,
    request_id: &str,
) -> Result<Reply, ApiError> {
    let (entity, id) = match (
        path.strip_prefix("/v1/viewers/"),
        path.strip_prefix("/v1/titles/"),
    ) {
        (Some(id), _) => (rewind_dataflows::Entity::Viewer, id),
        (_, Some(id)) => (rewind_dataflows::Entity::Title, id),
        _ => return Err(ApiError::not_found(format!("no such path {path:?}"), path)),
    };
    let id = percent_decode(id)
        .ok_or_else(|| ApiError::bad_request("the id is not valid UTF-8 once decoded"))?;
    check_native_id(entity, &id)?;
    let purpose = purpose_of(state, asked)?;
    // Every feature of the entity that the purpose may read.
    let mut features = lookup::of_entity(entity);
    features.retain(|f| purpose.is_none_or(|p| f.declared_for(p)));
    let reader = view_of(state)?;
    let mut view = reader.view().map_err(unreadable)?;
    let (as_of, frontier) = freshness(&view)?;
    let lookup = Lookup {
        entity,
        features: &features,
        purpose: in_store(&view, purpose)?,
    };
    let served = lookup.read(&mut view, &id).map_err(unreadable)?;
    drop(view);
    let body = native::render_entity(&served, as_of, frontier);
    report(
        state,
        request_id,
        "native-entity",
        as_of,
        frontier,
        std::slice::from_ref(&served),
    );
    Ok(json_reply(body, Some((as_of, frontier))))
}

/// An id in a path that cannot be a key is 422, as in a body; only a path that does not decode
/// (bad escapes, not UTF-8) is 400. The id itself is never quoted back.
fn check_native_id(entity: rewind_dataflows::Entity, id: &str) -> Result<(), ApiError> {
    let problem = match entity {
        rewind_dataflows::Entity::Viewer => (!lookup::is_pseudonym(id))
            .then(|| "a viewer id is a pseudonym: \"v_\" and 32 lowercase hex digits".to_string()),
        rewind_dataflows::Entity::Title => {
            lookup::title_id_problem(id).map(|p| format!("the title id {p}"))
        }
    };
    problem.map_or(Ok(()), |p| Err(ApiError::unprocessable(p)))
}

/// Entities a request may read on the runtime thread. A read is a few microseconds per entity;
/// thousands take tens of milliseconds, which would stall every other connection of the
/// runtime (`run --serve` has one thread), so larger requests read on the blocking pool.
const INLINE_ENTITIES: usize = 64;

async fn off_runtime<F>(entities: usize, work: F) -> Result<Reply, ApiError>
where
    F: FnOnce() -> Result<Reply, ApiError> + Send + 'static,
{
    if entities <= INLINE_ENTITIES {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(ApiError::new_status(500, format!("the read failed: {e}"))))
}

async fn native_batch(
    state: &Arc<State>,
    body: &[u8],
    request_id: &str,
) -> Result<Reply, ApiError> {
    let req = request::batch(body, state.config.limits.max_entities).map_err(body_error)?;
    let purpose = purpose_of(state, req.purpose.as_deref())?;
    let pick = |entity| -> Result<Vec<&'static lookup::LibFeature>, ApiError> {
        let mut all = lookup::of_entity(entity);
        let Some(names) = &req.features else {
            // Every feature the purpose may read.
            all.retain(|f| purpose.is_none_or(|p| f.declared_for(p)));
            return Ok(all);
        };
        for name in names {
            if lookup::by_full_name(name).is_none() {
                return Err(ApiError::not_found(
                    format!("unknown feature {name:?}"),
                    name,
                ));
            }
        }
        Ok(all
            .into_iter()
            .filter(|f| names.iter().any(|n| n == f.full))
            .collect())
    };
    let viewer_features = pick(rewind_dataflows::Entity::Viewer)?;
    let title_features = pick(rewind_dataflows::Entity::Title)?;
    if req.features.is_some() {
        check_declared(purpose, &viewer_features)?;
        check_declared(purpose, &title_features)?;
    }
    let viewers: Vec<String> = req
        .viewers
        .iter()
        .enumerate()
        .map(|(i, id)| feast::viewer_id(i, id))
        .collect::<Result<_, _>>()?;
    let titles: Vec<String> = req
        .titles
        .iter()
        .enumerate()
        .map(|(i, id)| feast::title_id(i, id))
        .collect::<Result<_, _>>()?;
    let (state, request_id) = (state.clone(), request_id.to_string());
    off_runtime(viewers.len() + titles.len(), move || {
        let reader = view_of(&state)?;
        let mut view = reader.view().map_err(unreadable)?;
        let (as_of, frontier) = freshness(&view)?;
        let purpose = in_store(&view, purpose)?;
        let read = |view: &mut rewind_state::View<'_>,
                    entity,
                    features: &[&'static lookup::LibFeature],
                    ids: &[String]| {
            let lookup = Lookup {
                entity,
                features,
                purpose,
            };
            ids.iter()
                .map(|id| lookup.read(view, id))
                .collect::<Result<Vec<_>, _>>()
        };
        let viewers = read(
            &mut view,
            rewind_dataflows::Entity::Viewer,
            &viewer_features,
            &viewers,
        )
        .map_err(unreadable)?;
        let titles = read(
            &mut view,
            rewind_dataflows::Entity::Title,
            &title_features,
            &titles,
        )
        .map_err(unreadable)?;
        drop(view);
        let body = native::render_batch(&viewers, &titles, as_of, frontier);
        let mut all = viewers;
        all.extend(titles);
        report(&state, &request_id, "native-batch", as_of, frontier, &all);
        Ok(json_reply(body, Some((as_of, frontier))))
    })
    .await
}

async fn get_online_features(
    state: &Arc<State>,
    body: &[u8],
    asked: Option<&str>,
    request_id: &str,
) -> Result<Reply, ApiError> {
    let purpose = purpose_of(state, asked)?;
    let req = request::feast(body, state.config.limits.max_entities).map_err(body_error)?;
    let plan = feast::plan(req, state.config.door.as_ref())?;
    for v in &plan.views {
        check_declared(purpose, &v.features)?;
    }
    let entities = plan.views.iter().map(|v| v.ids.len()).sum();
    let (state, request_id) = (state.clone(), request_id.to_string());
    off_runtime(entities, move || {
        let reader = view_of(&state)?;
        let mut view = reader.view().map_err(unreadable)?;
        let (as_of, frontier) = freshness(&view)?;
        if plan.pseudonymized {
            check_key(&state, &view)?;
        }
        let purpose = in_store(&view, purpose)?;
        let mut served: Vec<Vec<ServedEntity>> = Vec::with_capacity(plan.views.len());
        for v in &plan.views {
            let lookup = Lookup {
                entity: v.entity,
                features: &v.features,
                purpose,
            };
            let rows = v.ids.iter().map(|id| lookup.read(&mut view, id));
            served.push(rows.collect::<Result<_, _>>().map_err(unreadable)?);
        }
        drop(view);
        let body = feast::render(&plan, &served);
        let flat: Vec<ServedEntity> = served.into_iter().flatten().collect();
        report(
            &state,
            &request_id,
            "get-online-features",
            as_of,
            frontier,
            &flat,
        );
        Ok(json_reply(body, Some((as_of, frontier))))
    })
    .await
}

/// Raw ids pseudonymized with another key than the store's would silently find nobody.
fn check_key(state: &State, view: &rewind_state::View<'_>) -> Result<(), ApiError> {
    let door = state
        .config
        .door
        .as_ref()
        .expect("pseudonymized with the door");
    let stored = view
        .meta(crate::engine::META_KEY_FINGERPRINT)
        .map_err(unreadable)?;
    match stored {
        Some(f) if f != door.fingerprint().as_bytes() => Err(ApiError::unavailable(
            "this server's pseudonym key is not the one the store was built with, so user_id \
             cannot be served: start it with the store's key",
        )),
        _ => Ok(()),
    }
}

fn report(
    state: &State,
    request_id: &str,
    endpoint: &'static str,
    as_of_ms: u64,
    frontier_ms: u64,
    entities: &[ServedEntity],
) {
    state.hooks.served(&Served {
        request_id,
        endpoint,
        as_of_ms,
        frontier_ms,
        entities,
    });
}

fn json_reply(body: Vec<u8>, freshness: Option<(u64, u64)>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    let headers = reply.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((as_of, frontier)) = freshness {
        for (name, ms) in [("x-rewind-as-of", as_of), ("x-rewind-frontier", frontier)] {
            let text = crate::utc::format_ms(ms);
            headers.insert(
                name,
                HeaderValue::from_str(&text).expect("RFC 3339 is ASCII"),
            );
        }
    }
    reply
}

/// Feast's client re-raises typed errors from `feast serve`'s bodies; and FastAPI answers a
/// body it cannot parse with 422, not 400.
fn feast_error_reply(mut e: ApiError) -> Reply {
    if e.status == 400 {
        e.status = 422;
    }
    let mut reply = error_reply(&e);
    *reply.body_mut() = Full::new(Bytes::from(e.feast_body()));
    reply
}

fn error_reply(e: &ApiError) -> Reply {
    let mut reply = json_reply(e.body(), None);
    *reply.status_mut() =
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if e.status == 503 {
        reply
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    reply
}

/// `%XX` escapes of a path segment; `None` when they do not decode to UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            // from_str_radix would take a sign ("%+f"): two hex digits exactly.
            let hex = &bytes[i + 1..i + 3];
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, percent_decode};

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer x"), Some(&b"x"[..]));
        assert_eq!(bearer_token(b"bearer x"), Some(&b"x"[..]));
        assert_eq!(bearer_token(b"BEARER x"), Some(&b"x"[..]));
        assert_eq!(bearer_token(b"Basic xyzw"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }

    #[test]
    fn path_ids_are_percent_decoded_and_bad_escapes_refused() {
        assert_eq!(percent_decode("tt%20001").as_deref(), Some("tt 001"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+f"), None);
        assert_eq!(percent_decode("%-1"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
