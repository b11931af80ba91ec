//! The YARN Services REST API of a ResourceManager (`/app/v1/services`, Hadoop 3.1+): create,
//! inspect, flex, stop/start and destroy a service, and list its READY containers for
//! discovery. Simple authentication: `user.name=` is added to every call when a user is set
//! (what a cluster with `hadoop.http.authentication.type=simple` expects). Kerberos: a 401
//! with `WWW-Authenticate: Negotiate` is answered with a SPNEGO token (`spnego.rs`).
//!
//! The answers are those of a real Hadoop 3.4.2 ResourceManager (`scripts/hadoop.sh`), which
//! differ from the API's documentation in places: a call without `user.name` is answered
//! `{"diagnostics":"Null user"}` with 404, 400 or 500 depending on the method (never 401, even
//! with anonymous HTTP allowed); an unknown service is 404 on GET, 400 `Service X doesn't
//! exist` on DELETE and 500 `File does not exist: .../.yarn/services/X/X.json` on a flex; a
//! spec Jackson cannot read is 404 `{"exception", "message"}`; a taken name or an unknown queue
//! is 500; `component-instances` lists components, each with its `containers`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// The environment variable the service spec sets to the replicas' HTTP port; discovery reads
/// it back from the service definition, since container listings carry hosts but no ports.
pub const PORT_ENV: &str = "SPINDLE_HTTP_PORT";

/// Why a ResourceManager call failed. Every variant names the URL it was about.
#[derive(Debug, thiserror::Error)]
pub enum YarnError {
    /// No connection to the ResourceManager, or no answer in time.
    #[error(
        "{url}: ResourceManager unreachable: {message} (check --rm: scheme, host and the RM web port, usually 8088)"
    )]
    Unreachable {
        /// The URL called.
        url: String,
        /// Details.
        message: String,
    },
    /// The service does not exist (404).
    #[error(
        "{url}: service '{service}' does not exist (list services with `yarn app -list -appTypes yarn-service`)"
    )]
    NotFound {
        /// The URL called.
        url: String,
        /// The service name.
        service: String,
    },
    /// The ResourceManager refused the call (401/403): authentication needed.
    #[error(
        "{url}: not authorised ({status}): {message} (pass --user for simple auth; a Kerberos (SPNEGO) ResourceManager needs a ticket for a principal it accepts: kinit PRINCIPAL, or --keytab FILE --principal NAME)"
    )]
    Unauthorized {
        /// The URL called.
        url: String,
        /// 401 or 403.
        status: u16,
        /// The answer's diagnostics.
        message: String,
    },
    /// No SPNEGO token for a Kerberos-secured ResourceManager: no ticket, or none obtainable.
    #[error(
        "{url}: the ResourceManager requires Kerberos (SPNEGO) and no Kerberos credentials were usable: {message}; get a ticket with `kinit PRINCIPAL`, or pass --keytab FILE --principal NAME (and KRB5_CONFIG for the realm's KDC)"
    )]
    Kerberos {
        /// The URL called.
        url: String,
        /// GSSAPI's explanation.
        message: String,
    },
    /// The Services API refused a call that carried no `user.name` (Hadoop answers
    /// `{"diagnostics":"Null user"}` with 404, 400 or 500, not 401).
    #[error(
        "{url}: the ResourceManager's YARN Services API needs a user name (user.name) and none was sent: pass --user U to `spindle yarn`, --yarn-user U to infer/loadtest, or set HADOOP_USER_NAME or USER"
    )]
    NoUser {
        /// The URL called.
        url: String,
    },
    /// `/app/v1/services/version` is missing: the address answers, but serves no YARN
    /// Services API.
    #[error(
        "{url}: no YARN Services API here ({status}: {message}); it needs Hadoop 3.1+ with yarn.webapp.api-service.enable=true in the ResourceManager's yarn-site.xml (and check --rm is the RM's web address)"
    )]
    NoServicesApi {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The answer's diagnostics.
        message: String,
    },
    /// Any other non-success answer; `message` carries YARN's diagnostics.
    #[error("{url}: ResourceManager answered {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// Diagnostics from the answer (ServiceStatus.diagnostics), or its text.
        message: String,
    },
    /// A success answer that is not the JSON expected.
    #[error(
        "{url}: answer is not the JSON expected ({message}); starts with: {start:?} (is --rm a ResourceManager web address?)"
    )]
    NotJson {
        /// The URL called.
        url: String,
        /// The parse error.
        message: String,
        /// The first bytes of the answer.
        start: String,
    },
    /// A malformed argument (URL, name).
    #[error("{0}")]
    Config(String),
}

/// One component's containers, as `component-instances` lists them (`ComponentContainers`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ComponentContainers {
    /// The component.
    #[serde(default, rename = "componentName")]
    pub component_name: String,
    /// Its containers in the state asked for.
    #[serde(default)]
    pub containers: Vec<ContainerInstance>,
}

/// One container of a service, as `component-instances` and the service definition list it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ContainerInstance {
    /// Container id.
    #[serde(default)]
    pub id: String,
    /// `component-N`.
    #[serde(default)]
    pub component_instance_name: String,
    /// The container's host name as the NodeManager reports it: the node's own host name
    /// under DefaultContainerExecutor (on one machine, the machine's name for every node),
    /// the container's name under Docker with Registry DNS.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The container's IP addresses, comma-separated (YARN joins `ContainerStatus.getIPs()`);
    /// the first is the one YARN's HTTP readiness check connects to as `${THIS_HOST}`.
    #[serde(default)]
    pub ip: Option<String>,
    /// The host of the NodeManager it runs on (its NodeId).
    #[serde(default)]
    pub bare_host: Option<String>,
    /// INIT, STARTED, READY, ...
    #[serde(default)]
    pub state: Option<String>,
}

impl ContainerInstance {
    /// The address a client should connect to: the first IP YARN reports, which is the
    /// address the readiness check reached (so a READY container answers there); else the
    /// NodeManager's host; the hostname last, since without Registry DNS it names the node
    /// only by the machine's own name (on the test cluster every node reports the same one).
    pub fn address(&self) -> Option<&str> {
        let first_ip = self
            .ip
            .as_deref()
            .and_then(|ips| ips.split(',').map(str::trim).find(|ip| !ip.is_empty()));
        [
            first_ip,
            self.bare_host.as_deref(),
            self.hostname.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
    }
}

/// A ResourceManager's YARN Services API.
#[derive(Clone, Debug)]
pub struct ResourceManager {
    base: String,
    user: Option<String>,
    timeout: Duration,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// The `hadoop.auth` cookie a SPNEGO-secured ResourceManager issued (shared by clones).
    auth_cookie: std::sync::Arc<std::sync::Mutex<Option<HeaderValue>>>,
}

/// Splits `http://rm:8088/NAME` into the ResourceManager URL and the service name.
pub fn split_service_url(spec: &str) -> Result<(String, String), YarnError> {
    let rest = spec.strip_prefix("http://").ok_or_else(|| {
        YarnError::Config(format!(
            "--yarn-service {spec}: expected http://RM_HOST:PORT/SERVICE_NAME (https is not supported)"
        ))
    })?;
    match rest.trim_end_matches('/').split_once('/') {
        Some((host, name)) if !host.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((format!("http://{host}"), name.to_string()))
        }
        _ => Err(YarnError::Config(format!(
            "--yarn-service {spec}: expected http://RM_HOST:PORT/SERVICE_NAME"
        ))),
    }
}

/// The simple-auth user when none is given: `$HADOOP_USER_NAME` (as Hadoop's own clients),
/// then `$USER`, then `$LOGNAME`. The Services API refuses calls without one.
pub fn default_user() -> Option<String> {
    ["HADOOP_USER_NAME", "USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty())
}

impl ResourceManager {
    /// A client for the ResourceManager at `base` (`http://host:8088`), calling as `user`
    /// (simple auth) when given.
    pub fn new(base: &str, user: Option<String>) -> Result<ResourceManager, YarnError> {
        let base = base.trim_end_matches('/');
        let host = base.strip_prefix("http://").ok_or_else(|| {
            YarnError::Config(format!(
                "--rm {base}: expected http://HOST:PORT (https is not supported yet)"
            ))
        })?;
        if host.is_empty() || host.contains('/') {
            return Err(YarnError::Config(format!(
                "--rm {base}: expected http://HOST:PORT with no path"
            )));
        }
        Ok(ResourceManager {
            base: base.to_string(),
            user,
            timeout: Duration::from_secs(30),
            http: HyperClient::builder(TokioExecutor::new()).build(HttpConnector::new()),
            auth_cookie: Default::default(),
        })
    }

    /// The ResourceManager's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The user calls are made as, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The URL of a path under `/app/v1/services`, with `user.name` when set.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        self.url_at("/app/v1/services", path, query)
    }

    /// The URL of a path of the RM's cluster REST API (`/ws/v1/cluster`), with `user.name`.
    pub fn cluster_url(&self, path: &str) -> String {
        self.url_at("/ws/v1/cluster", path, &[])
    }

    fn url_at(&self, root: &str, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{root}{path}", self.base);
        let mut pairs: Vec<(&str, &str)> = query.to_vec();
        if let Some(user) = &self.user {
            pairs.push(("user.name", user));
        }
        for (i, (k, v)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }

    /// One HTTP exchange: the status, the answer's headers and its body.
    async fn send(
        &self,
        method: &Method,
        url: &str,
        payload: &Option<String>,
        auth: Option<(hyper::header::HeaderName, HeaderValue)>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), YarnError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url)
            .body(Full::new(Bytes::from(payload.clone().unwrap_or_default())))
            .map_err(|e| YarnError::Config(format!("{url}: {e}")))?;
        if payload.is_some() {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some((name, value)) = auth {
            request.headers_mut().insert(name, value);
        }
        let unreachable = |message: String| YarnError::Unreachable {
            url: url.to_string(),
            message,
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(chain(&e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, YarnError>((status, headers, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
    }

    /// Sends a request; a secured ResourceManager's 401 with `WWW-Authenticate: Negotiate` is
    /// answered once with a SPNEGO token. Hadoop's authentication filter then hands out a
    /// signed `hadoop.auth` cookie, sent with the calls that follow instead of a new token
    /// each (a fresh token is made when the RM refuses the cookie, e.g. once it expired).
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), YarnError> {
        let payload = body.map(|b| b.to_string());
        let cookie = self.auth_cookie.lock().expect("cookie lock").clone();
        let first = cookie.map(|c| (hyper::header::COOKIE, c));
        let (status, headers, bytes) = self.send(&method, url, &payload, first).await?;
        let negotiate = headers
            .get_all(hyper::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.as_bytes().starts_with(b"Negotiate"));
        if status != StatusCode::UNAUTHORIZED || !negotiate {
            return Ok((status, bytes));
        }
        let host = self.host().to_string();
        let principal = spindle_loader::kerberos_login().map(|l| l.principal.clone());
        let token = tokio::task::spawn_blocking(move || {
            super::spnego::initial_token(&host, principal.as_deref())
        })
        .await
        .map_err(|e| YarnError::Kerberos {
            url: url.to_string(),
            message: e.to_string(),
        })?
        .map_err(|message| YarnError::Kerberos {
            url: url.to_string(),
            message,
        })?;
        use base64::Engine;
        let header = format!(
            "Negotiate {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        );
        let value = HeaderValue::from_str(&header).map_err(|e| YarnError::Config(e.to_string()))?;
        let (status, headers, bytes) = self
            .send(
                &method,
                url,
                &payload,
                Some((hyper::header::AUTHORIZATION, value)),
            )
            .await?;
        if let Some(cookie) = headers
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|c| c.starts_with("hadoop.auth=") && c.len() > "hadoop.auth=".len())
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            *self.auth_cookie.lock().expect("cookie lock") = Some(cookie);
        }
        Ok((status, bytes))
    }

    /// Whether this ResourceManager has asked for Kerberos: after a call, a secured one has
    /// answered SPNEGO with its signed `hadoop.auth` cookie.
    pub fn negotiated(&self) -> bool {
        self.auth_cookie.lock().expect("cookie lock").is_some()
    }

    /// The ResourceManager's host, without the port: its SPNEGO principal is HTTP/host.
    fn host(&self) -> &str {
        let authority = self.base.strip_prefix("http://").unwrap_or(&self.base);
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']')
    }

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        service: &str,
    ) -> Result<Bytes, YarnError> {
        let (status, bytes) = self.exchange(method, url, body).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let message = diagnostics(&bytes);
        let url = url.to_string();
        Err(if message == "Null user" {
            YarnError::NoUser { url }
        } else if missing_service(status, &bytes, &message, service) {
            YarnError::NotFound {
                url,
                service: service.to_string(),
            }
        } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            // A secured (Kerberos/SPNEGO) ResourceManager; a simple-auth one never answers 401.
            YarnError::Unauthorized {
                url,
                status: status.as_u16(),
                message,
            }
        } else {
            YarnError::Status {
                url,
                status: status.as_u16(),
                message,
            }
        })
    }

    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        service: &str,
    ) -> Result<T, YarnError> {
        let bytes = self.call(Method::GET, url, None, service).await?;
        serde_json::from_slice(&bytes).map_err(|e| YarnError::NotJson {
            url: url.to_string(),
            message: e.to_string(),
            start: String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned(),
        })
    }

    /// `GET /app/v1/services/version`: the Hadoop version behind the Services API. This is the
    /// API's readiness check (there is no listing: `GET /app/v1/services` answers 503); it
    /// needs no `user.name`. A 404 here means the Services API is not enabled.
    pub async fn version(&self) -> Result<String, YarnError> {
        let url = format!("{}/app/v1/services/version", self.base);
        match self.call_json::<Value>(&url, "").await {
            Ok(v) => Ok(v["hadoop_version"]
                .as_str()
                .unwrap_or("(unknown)")
                .to_string()),
            Err(YarnError::Status {
                url,
                status: 404,
                message,
            }) => Err(YarnError::NoServicesApi {
                url,
                status: 404,
                message,
            }),
            Err(e) => Err(e),
        }
    }

    /// `GET /ws/v1/cluster/nodes`: the NodeManagers the RM knows, with their labels and the
    /// resource types they offer.
    pub async fn nodes(&self) -> Result<Vec<Node>, YarnError> {
        let url = self.cluster_url("/nodes");
        let answer: Value = self.call_json(&url, "").await?;
        // {"nodes": null} when there is none; {"nodes": {"node": [...]}} otherwise.
        let list = answer["nodes"]["node"].clone();
        if list.is_null() {
            return Ok(Vec::new());
        }
        serde_json::from_value(list).map_err(|e| YarnError::NotJson {
            url,
            message: e.to_string(),
            start: answer.to_string().chars().take(80).collect(),
        })
    }

    /// `POST /app/v1/services`: submits a service specification (202 when accepted).
    pub async fn create(&self, spec: &Value) -> Result<(), YarnError> {
        let service = spec["name"].as_str().unwrap_or_default().to_string();
        let url = self.url("", &[]);
        self.call(Method::POST, &url, Some(spec), &service)
            .await
            .map(drop)
    }

    /// `GET /app/v1/services/{name}`: the service definition with its state and containers.
    pub async fn service(&self, name: &str) -> Result<Value, YarnError> {
        let url = self.url(&format!("/{}", encode(name)), &[]);
        self.call_json(&url, name).await
    }

    /// Whether a service of this name exists (a 404 means no).
    pub async fn exists(&self, name: &str) -> Result<bool, YarnError> {
        match self.service(name).await {
            Ok(_) => Ok(true),
            Err(YarnError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /app/v1/services/{name}/components/{component}`: sets its number of containers.
    pub async fn flex(&self, name: &str, component: &str, replicas: u32) -> Result<(), YarnError> {
        let url = self.url(
            &format!("/{}/components/{}", encode(name), encode(component)),
            &[],
        );
        let body = serde_json::json!({ "number_of_containers": replicas });
        self.call(Method::PUT, &url, Some(&body), name)
            .await
            .map(drop)
    }

    /// `PUT /app/v1/services/{name}` with `{"state": STATE}`: STOPPED or STARTED.
    pub async fn set_state(&self, name: &str, state: &str) -> Result<(), YarnError> {
        let url = self.url(&format!("/{}", encode(name)), &[]);
        let body = serde_json::json!({ "state": state });
        self.call(Method::PUT, &url, Some(&body), name)
            .await
            .map(drop)
    }

    /// `DELETE /app/v1/services/{name}`: stops it and removes its definition.
    pub async fn destroy(&self, name: &str) -> Result<(), YarnError> {
        let url = self.url(&format!("/{}", encode(name)), &[]);
        self.call(Method::DELETE, &url, None, name).await.map(drop)
    }

    /// `GET /app/v1/services/{name}/component-instances?containerState=READY`: the containers
    /// that passed their readiness check.
    pub async fn ready_instances(&self, name: &str) -> Result<Vec<ContainerInstance>, YarnError> {
        let url = self.url(
            &format!("/{}/component-instances", encode(name)),
            &[("containerState", "READY")],
        );
        let components: Vec<ComponentContainers> = self.call_json(&url, name).await?;
        Ok(components.into_iter().flat_map(|c| c.containers).collect())
    }

    /// The HTTP port the replicas of `name` listen on, read from the service definition's
    /// [`PORT_ENV`] (component level first, then service level).
    pub async fn service_port(&self, name: &str) -> Result<u16, YarnError> {
        Ok(self.service_endpoint(name).await?.1)
    }

    /// The replicas' scheme (`http`, or `https` for a deployment with TLS) and HTTP port.
    pub async fn service_endpoint(&self, name: &str) -> Result<(&'static str, u16), YarnError> {
        let service = self.service(name).await?;
        let port = port_of(&service).ok_or_else(|| {
            // Hadoop answers an ACCEPTED service (its AM not yet running) with no components.
            if service["state"] == "ACCEPTED" {
                return YarnError::Config(format!(
                    "{}: service '{name}' is ACCEPTED, not yet running: YARN shows its definition, and with it the replicas' port, once its AM runs (follow with `spindle yarn status {name}`)",
                    self.url(&format!("/{}", encode(name)), &[])
                ));
            }
            YarnError::Config(format!(
                "{}: service '{name}' sets no {PORT_ENV} in its configuration.env, so its port is unknown (was it deployed with `spindle yarn deploy`?)",
                self.url(&format!("/{}", encode(name)), &[])
            ))
        })?;
        Ok((super::tls::scheme_of(&service), port))
    }

    /// The `SCHEME://address:port` of every READY container of `name`.
    pub async fn ready_endpoints(
        &self,
        name: &str,
        scheme: &str,
        port: u16,
    ) -> Result<Vec<String>, YarnError> {
        let mut urls: Vec<String> = self
            .ready_instances(name)
            .await?
            .iter()
            .filter(|c| c.state.as_deref().is_none_or(|s| s == "READY"))
            .filter_map(|c| c.address().map(|a| format!("{scheme}://{a}:{port}")))
            .collect();
        urls.sort();
        urls.dedup();
        Ok(urls)
    }
}

/// The replicas' HTTP port in a service definition: [`PORT_ENV`] of its configuration.env,
/// component level first, then service level.
pub fn port_of(service: &Value) -> Option<u16> {
    let from = |v: &Value| -> Option<u16> {
        v["configuration"]["env"][PORT_ENV]
            .as_str()
            .and_then(|p| p.parse().ok())
    };
    service["components"]
        .as_array()
        .and_then(|cs| cs.iter().find_map(from))
        .or_else(|| from(service))
}

/// A NodeManager as `/ws/v1/cluster/nodes` lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct Node {
    /// NodeId, `host:port`.
    #[serde(default)]
    pub id: String,
    /// RUNNING, LOST, UNHEALTHY, DECOMMISSIONED, ...
    #[serde(default)]
    pub state: String,
    /// Its node labels (partition).
    #[serde(default, rename = "nodeLabels")]
    pub node_labels: Vec<String>,
    /// Its capacity, with every resource type it offers.
    #[serde(default, rename = "totalResource")]
    pub total_resource: Value,
}

impl Node {
    /// The amount of resource type `name` (e.g. `yarn.io/gpu`) the node offers; `None` when
    /// the RM lists no such type for it (the type is not configured).
    pub fn resource(&self, name: &str) -> Option<i64> {
        self.total_resource["resourceInformations"]["resourceInformation"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["value"].as_i64().unwrap_or(0))
    }

    /// The names of the resource types it offers (`memory-mb`, `vcores`, ...).
    pub fn resource_names(&self) -> Vec<String> {
        self.total_resource["resourceInformations"]["resourceInformation"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// Whether an error answer means "no such service". Hadoop 3.4 says so differently per call:
/// 404 `Service X not found` (GET), 400 `Service X doesn't exist` (DELETE, PUT state), 500
/// `File does not exist: /user/U/.yarn/services/X/X.json` (flex). A 404 carrying a Jackson
/// `exception` is a spec it could not read, not a missing service.
fn missing_service(status: StatusCode, body: &[u8], message: &str, service: &str) -> bool {
    if service.is_empty() {
        return false;
    }
    let exception = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("exception").is_some());
    (status == StatusCode::NOT_FOUND && !exception)
        || message == format!("Service {service} doesn't exist")
        || message == format!("Service {service} not found")
        || (message.starts_with("File does not exist:")
            && message.contains(&format!("/.yarn/services/{service}/")))
}

/// YARN answers errors as ServiceStatus `{"diagnostics": ..}`, Jersey's errors as
/// `{"exception", "message"}`; else the text itself. Only the first line: Hadoop appends Java
/// stack traces to some diagnostics.
fn diagnostics(body: &[u8]) -> String {
    let json = serde_json::from_slice::<Value>(body).ok();
    let field = |v: &Value| {
        v["diagnostics"]
            .as_str()
            .or(v["message"].as_str())
            .map(|d| d.lines().next().unwrap_or_default().trim().to_string())
    };
    json.as_ref().and_then(field).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(empty answer)".to_string()
        } else {
            text.chars().take(300).collect()
        }
    })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Percent-encodes a path segment or query value (names are validated, but user names are not).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_split_into_rm_and_name() {
        assert_eq!(
            split_service_url("http://rm:8088/spindle-cifar").unwrap(),
            ("http://rm:8088".to_string(), "spindle-cifar".to_string())
        );
        for bad in [
            "rm:8088/x",
            "http://rm:8088",
            "http://rm:8088/",
            "http://rm/a/b",
        ] {
            let e = split_service_url(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn urls_carry_the_simple_auth_user() {
        let rm = ResourceManager::new("http://rm:8088/", Some("ann smith".into())).unwrap();
        assert_eq!(
            rm.url("/s/component-instances", &[("containerState", "READY")]),
            "http://rm:8088/app/v1/services/s/component-instances?containerState=READY&user.name=ann%20smith"
        );
        let anonymous = ResourceManager::new("http://rm:8088", None).unwrap();
        assert_eq!(anonymous.url("", &[]), "http://rm:8088/app/v1/services");
        assert!(ResourceManager::new("rm:8088", None).is_err());
    }

    #[test]
    fn yarn_diagnostics_are_preferred_over_the_raw_answer() {
        assert_eq!(
            diagnostics(br#"{"diagnostics":"Service x already exists","code":0}"#),
            "Service x already exists"
        );
        assert_eq!(diagnostics(b"<html>bad</html>"), "<html>bad</html>");
        // Hadoop 3.4.2's answers: a stack trace after the first line, Jersey's exceptions.
        assert_eq!(
            diagnostics(
                br#"{"diagnostics":"File does not exist: /user/u/.yarn/services/x/x.json\n\tat org.apache.Foo(Foo.java:87)\n"}"#
            ),
            "File does not exist: /user/u/.yarn/services/x/x.json"
        );
        assert_eq!(
            diagnostics(
                br#"{"exception":"InvalidFormatException","message":"Cannot deserialize"}"#
            ),
            "Cannot deserialize"
        );
        assert_eq!(diagnostics(b""), "(empty answer)");
    }

    #[test]
    fn missing_services_are_recognised_in_each_form_hadoop_answers() {
        let (nf, bad, err) = (
            StatusCode::NOT_FOUND,
            StatusCode::BAD_REQUEST,
            StatusCode::INTERNAL_SERVER_ERROR,
        );
        let check = |status, body: &str| {
            missing_service(status, body.as_bytes(), &diagnostics(body.as_bytes()), "x")
        };
        assert!(check(
            nf,
            r#"{"diagnostics":"Service x not found","code":404004}"#
        ));
        assert!(check(bad, r#"{"diagnostics":"Service x doesn't exist"}"#));
        assert!(check(
            err,
            r#"{"diagnostics":"File does not exist: /user/u/.yarn/services/x/x.json\n\tat a.B"}"#
        ));
        assert!(!check(
            nf,
            r#"{"exception":"InvalidFormatException","message":"bad"}"#
        ));
        assert!(!check(
            err,
            r#"{"diagnostics":"Service name x is already taken."}"#
        ));
    }

    #[test]
    fn the_address_is_the_first_ip_then_the_node() {
        let c = |ip: Option<&str>, bare: Option<&str>| ContainerInstance {
            id: String::new(),
            component_instance_name: "spindle-0".into(),
            hostname: Some("machine".into()),
            ip: ip.map(str::to_string),
            bare_host: bare.map(str::to_string),
            state: Some("READY".into()),
        };
        assert_eq!(
            c(Some("10.0.0.5,172.17.0.1"), None).address(),
            Some("10.0.0.5")
        );
        assert_eq!(c(Some(""), Some("node1")).address(), Some("node1"));
        assert_eq!(c(None, None).address(), Some("machine"));
    }
}
