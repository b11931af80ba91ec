//! The YARN Services REST API of a ResourceManager (`/app/v1/services`, Hadoop 3.1+): create,
//! inspect, flex, stop/start and destroy a service, and list its READY containers for
//! discovery. Simple authentication only: `user.name=` is added to every call when a user is
//! set (what a cluster with `hadoop.http.authentication.type=simple` expects).

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
        "{url}: not authorised ({status}): {message} (pass --user for simple auth; Kerberos/SPNEGO clusters need a kinit'd client, which spindle does not speak yet)"
    )]
    Unauthorized {
        /// The URL called.
        url: String,
        /// 401 or 403.
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

/// One container of a service, as `component-instances` lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ContainerInstance {
    /// Container id.
    #[serde(default)]
    pub id: String,
    /// `component-N`.
    #[serde(default)]
    pub component_instance_name: String,
    /// The container's host name (with Registry DNS, its own name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The container's IP address.
    #[serde(default)]
    pub ip: Option<String>,
    /// The node it runs on.
    #[serde(default)]
    pub bare_host: Option<String>,
    /// INIT, STARTED, READY, ...
    #[serde(default)]
    pub state: Option<String>,
}

impl ContainerInstance {
    /// The address a client should connect to: the IP when YARN reports one (it always
    /// resolves), else the hostname, else the node.
    pub fn address(&self) -> Option<&str> {
        self.ip
            .as_deref()
            .or(self.hostname.as_deref())
            .or(self.bare_host.as_deref())
            .filter(|s| !s.is_empty())
    }
}

/// A ResourceManager's YARN Services API.
#[derive(Clone, Debug)]
pub struct ResourceManager {
    base: String,
    user: Option<String>,
    timeout: Duration,
    http: HyperClient<HttpConnector, Full<Bytes>>,
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
        })
    }

    /// The ResourceManager's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of a path under `/app/v1/services`, with `user.name` when set.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}/app/v1/services{path}", self.base);
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

    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        service: &str,
    ) -> Result<Bytes, YarnError> {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| YarnError::Config(format!("{url}: {e}")))?;
        if body.is_some() {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, YarnError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        if status.is_success() {
            return Ok(bytes);
        }
        let message = diagnostics(&bytes);
        Err(match status {
            StatusCode::NOT_FOUND => YarnError::NotFound {
                url: url.to_string(),
                service: service.to_string(),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => YarnError::Unauthorized {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            },
            _ => YarnError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            },
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
        self.call_json(&url, name).await
    }

    /// The HTTP port the replicas of `name` listen on, read from the service definition's
    /// [`PORT_ENV`] (component level first, then service level).
    pub async fn service_port(&self, name: &str) -> Result<u16, YarnError> {
        let service = self.service(name).await?;
        let from = |v: &Value| -> Option<u16> {
            v["configuration"]["env"][PORT_ENV]
                .as_str()
                .and_then(|p| p.parse().ok())
        };
        service["components"]
            .as_array()
            .and_then(|cs| cs.iter().find_map(from))
            .or_else(|| from(&service))
            .ok_or_else(|| {
                YarnError::Config(format!(
                    "{}: service '{name}' sets no {PORT_ENV} in its configuration.env, so its port is unknown (was it deployed with `spindle yarn deploy`?)",
                    self.url(&format!("/{}", encode(name)), &[])
                ))
            })
    }

    /// The `http://address:port` of every READY container of `name`.
    pub async fn ready_endpoints(&self, name: &str, port: u16) -> Result<Vec<String>, YarnError> {
        let mut urls: Vec<String> = self
            .ready_instances(name)
            .await?
            .iter()
            .filter(|c| c.state.as_deref().is_none_or(|s| s == "READY"))
            .filter_map(|c| c.address().map(|a| format!("http://{a}:{port}")))
            .collect();
        urls.sort();
        urls.dedup();
        Ok(urls)
    }
}

/// YARN answers errors as ServiceStatus `{"diagnostics": ..}`; else the text itself.
fn diagnostics(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["diagnostics"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
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
        assert_eq!(diagnostics(b""), "(empty answer)");
    }
}
