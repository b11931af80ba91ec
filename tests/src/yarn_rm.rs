//! A small in-test ResourceManager answering the three YARN Services calls `spindle yarn
//! deploy` makes (version, get, create), for the answers a real ResourceManager
//! (`scripts/hadoop.sh`, the tests in `yarn_cluster.rs`) cannot be made to give in the tests:
//! a 401 for a user a secured (SPNEGO) cluster refuses (the test clusters either run simple
//! authentication without ACLs, or, secured, refuse a caller without a ticket before any user
//! is known), and a login page instead of JSON (a gateway in front of the RM). A call without
//! `user.name` gets Hadoop's own answer, 404 `Null user`. Everything else the REST client does
//! is tested against the real ResourceManager.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the fake ResourceManager holds and how it misbehaves.
#[derive(Default, Debug)]
pub struct RmState {
    /// Services by name, as submitted (plus `state` and `id`).
    pub services: HashMap<String, Value>,
    /// The `user.name` every call must carry; `None` accepts anonymous calls.
    pub required_user: Option<String>,
    /// Answer every call with a 200 HTML page instead of JSON.
    pub html: bool,
}

/// A running fake ResourceManager.
pub struct FakeRm {
    /// Its address.
    pub addr: SocketAddr,
    /// Its state, for the test to inspect and change (e.g. to answer HTML).
    pub state: Arc<Mutex<RmState>>,
}

impl FakeRm {
    /// Starts one on 127.0.0.1:0 in the current runtime.
    pub async fn start(required_user: Option<&str>) -> FakeRm {
        let state = Arc::new(Mutex::new(RmState {
            required_user: required_user.map(str::to_string),
            ..RmState::default()
        }));
        let app = Router::new()
            .route("/app/v1/services", axum::routing::post(create))
            .route("/app/v1/services/version", get(version))
            .route("/app/v1/services/{name}", get(service))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeRm { addr, state }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type Shared = State<Arc<Mutex<RmState>>>;

fn status(code: StatusCode, diagnostics: &str) -> Response {
    (code, axum::Json(json!({ "diagnostics": diagnostics }))).into_response()
}

/// Auth and the misbehaviour switch, shared by every route.
fn gate(state: &RmState, query: &HashMap<String, String>) -> Option<Response> {
    if state.html {
        return Some((StatusCode::OK, "<html><body>Please sign in</body></html>").into_response());
    }
    if state.required_user.is_some() && !query.contains_key("user.name") {
        return Some(status(StatusCode::NOT_FOUND, "Null user"));
    }
    if let Some(user) = &state.required_user
        && query.get("user.name") != Some(user)
    {
        return Some(status(
            StatusCode::UNAUTHORIZED,
            "Authentication required: pass user.name",
        ));
    }
    None
}

async fn version() -> Response {
    axum::Json(json!({ "hadoop_version": "in-test" })).into_response()
}

async fn create(
    State(state): Shared,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = gate(&s, &query) {
        return r;
    }
    let Ok(mut spec) = serde_json::from_str::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "Invalid service definition: not JSON",
        );
    };
    if let Err(e) = spindle_deploy::yarn::spec::validate(&spec) {
        return status(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let name = spec["name"].as_str().unwrap_or_default().to_string();
    spec["state"] = json!("ACCEPTED");
    spec["id"] = json!(format!("application_1_{:04}", s.services.len() + 1));
    s.services.insert(name, spec);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "diagnostics": "Application ID: application_1_0001" })),
    )
        .into_response()
}

async fn service(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let s = state.lock().unwrap();
    if let Some(r) = gate(&s, &query) {
        return r;
    }
    match s.services.get(&name) {
        Some(spec) => axum::Json(spec.clone()).into_response(),
        None => status(StatusCode::NOT_FOUND, &format!("Service {name} not found")),
    }
}
