//! A small in-test ResourceManager that follows the YARN Services REST API
//! (`/app/v1/services`: create 202, get 200/404, flex, stop/start, destroy 204,
//! `component-instances?containerState=` listing components with their containers, as Hadoop
//! 3.4.2 answers it), for what a real ResourceManager (`scripts/hadoop.sh`, the tests in
//! `yarn_cluster.rs`) cannot be made to do: answer 401 as a secured (SPNEGO) cluster does for
//! a user it does not accept, answer a login page instead of JSON, and list containers on
//! hosts the test chooses, which `bench/deploy.sh` and the discovery tests need to point
//! clients at bare `spindle serve` processes. A call without `user.name` gets Hadoop's own
//! answer, 404 `Null user`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the fake ResourceManager holds and how it misbehaves.
#[derive(Default, Debug)]
pub struct RmState {
    /// Services by name, as submitted (plus `state` and `containers`).
    pub services: HashMap<String, Value>,
    /// The `user.name` every call must carry; `None` accepts anonymous calls.
    pub required_user: Option<String>,
    /// Queues the scheduler knows; `None` accepts any. A submission to another queue gets
    /// 400, as YARN answers it.
    pub queues: Option<Vec<String>>,
    /// Answer every call with a 200 HTML page instead of JSON.
    pub html: bool,
    /// Every call seen, as `METHOD path?query`.
    pub calls: Vec<String>,
}

/// A running fake ResourceManager.
pub struct FakeRm {
    /// Its address.
    pub addr: SocketAddr,
    /// Its state, for the test to inspect and change (e.g. containers turning READY).
    pub state: Arc<Mutex<RmState>>,
}

impl FakeRm {
    /// Starts one on 127.0.0.1:0 in the current runtime.
    pub async fn start(required_user: Option<&str>) -> FakeRm {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeRm::start_on(any_port, required_user)
            .await
            .expect("binding 127.0.0.1:0")
    }

    /// Starts one on `addr` in the current runtime.
    pub async fn start_on(
        addr: SocketAddr,
        required_user: Option<&str>,
    ) -> std::io::Result<FakeRm> {
        let state = Arc::new(Mutex::new(RmState {
            required_user: required_user.map(str::to_string),
            ..RmState::default()
        }));
        let app = Router::new()
            .route("/app/v1/services", axum::routing::post(create))
            .route("/app/v1/services/version", get(version))
            .route(
                "/app/v1/services/{name}",
                get(service).put(update).delete(destroy),
            )
            .route("/app/v1/services/{name}/components/{component}", put(flex))
            .route(
                "/app/v1/services/{name}/component-instances",
                get(instances),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FakeRm { addr, state })
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the containers of a service's first component: (instance name, ip, state).
    pub fn set_containers(&self, service: &str, containers: &[(&str, &str, &str)]) {
        let list: Vec<Value> = containers
            .iter()
            .enumerate()
            .map(|(i, (name, ip, state))| {
                json!({
                    "id": format!("container_e01_1_0001_01_{:06}", i + 2),
                    "component_instance_name": name,
                    "ip": ip,
                    "hostname": format!("{name}.{service}.example"),
                    "bare_host": format!("node{i}.example"),
                    "state": state,
                })
            })
            .collect();
        let mut s = self.state.lock().unwrap();
        let svc = s.services.get_mut(service).expect("service exists");
        svc["components"][0]["containers"] = Value::Array(list);
    }
}

type Shared = State<Arc<Mutex<RmState>>>;

fn status(code: StatusCode, diagnostics: &str) -> Response {
    (code, axum::Json(json!({ "diagnostics": diagnostics }))).into_response()
}

/// Auth, misbehaviour switches and the call log, shared by every route.
fn gate(state: &mut RmState, call: String, query: &HashMap<String, String>) -> Option<Response> {
    state.calls.push(call);
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
    axum::Json(json!({ "hadoop_version": "yarn-rm-standin" })).into_response()
}

async fn create(
    State(state): Shared,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = gate(&mut s, "POST /app/v1/services".into(), &query) {
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
    if let (Some(queues), Some(queue)) = (&s.queues, spec["queue"].as_str())
        && !queues.iter().any(|q| q == queue)
    {
        return status(
            StatusCode::BAD_REQUEST,
            &format!("Failed to submit application: queue {queue} does not exist"),
        );
    }
    let name = spec["name"].as_str().unwrap_or_default().to_string();
    if s.services.contains_key(&name) {
        return status(
            StatusCode::BAD_REQUEST,
            &format!("Service name {name} is already taken."),
        );
    }
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
    let mut s = state.lock().unwrap();
    if let Some(r) = gate(&mut s, format!("GET /app/v1/services/{name}"), &query) {
        return r;
    }
    match s.services.get(&name) {
        Some(spec) => axum::Json(spec.clone()).into_response(),
        None => status(StatusCode::NOT_FOUND, &format!("Service {name} not found")),
    }
}

async fn update(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = gate(&mut s, format!("PUT /app/v1/services/{name}"), &query) {
        return r;
    }
    let Some(spec) = s.services.get_mut(&name) else {
        return status(StatusCode::NOT_FOUND, &format!("Service {name} not found"));
    };
    match body["state"].as_str() {
        Some(st @ ("STOPPED" | "STARTED")) => {
            spec["state"] = json!(st);
            status(StatusCode::OK, &format!("Service {name} is {st}"))
        }
        _ => status(StatusCode::BAD_REQUEST, "state must be STOPPED or STARTED"),
    }
}

async fn destroy(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(r) = gate(&mut s, format!("DELETE /app/v1/services/{name}"), &query) {
        return r;
    }
    match s.services.remove(&name) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => status(StatusCode::NOT_FOUND, &format!("Service {name} not found")),
    }
}

async fn flex(
    State(state): Shared,
    Path((name, component)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = state.lock().unwrap();
    let call = format!("PUT /app/v1/services/{name}/components/{component}");
    if let Some(r) = gate(&mut s, call, &query) {
        return r;
    }
    let Some(spec) = s.services.get_mut(&name) else {
        return status(StatusCode::NOT_FOUND, &format!("Service {name} not found"));
    };
    let Some(c) = spec["components"]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["name"] == component.as_str()))
    else {
        return status(
            StatusCode::NOT_FOUND,
            &format!("Component {component} not found"),
        );
    };
    match body["number_of_containers"].as_i64() {
        Some(n) if n >= 0 => {
            c["number_of_containers"] = json!(n);
            status(
                StatusCode::OK,
                &format!("Updating component ({component}) size to {n}"),
            )
        }
        _ => status(
            StatusCode::BAD_REQUEST,
            "Invalid number of containers specified",
        ),
    }
}

async fn instances(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().unwrap();
    let call = format!("GET /app/v1/services/{name}/component-instances");
    if let Some(r) = gate(&mut s, call, &query) {
        return r;
    }
    let Some(spec) = s.services.get(&name) else {
        return status(StatusCode::NOT_FOUND, &format!("Service {name} not found"));
    };
    let wanted = query.get("containerState");
    // Hadoop's ComponentContainers: one entry per component, its containers inside.
    let list: Vec<Value> = spec["components"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let containers: Vec<Value> = c["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| wanted.is_none_or(|w| c["state"] == w.as_str()))
                .collect();
            json!({ "componentName": c["name"], "containers": containers })
        })
        .collect();
    axum::Json(Value::Array(list)).into_response()
}
