//! TLS and bearer tokens for a YARN deployment's replicas. The files `spindle yarn deploy
//! --tls-cert/--tls-key/--tls-client-ca/--auth-token-file` name are URIs every node can reach:
//! `hdfs://` ones are localized into each container (like `--yarn-keytab`), `file://` ones are
//! read where they lie. The replicas' `spindle serve` gets the matching flags; with TLS the
//! service records its scheme (`SPINDLE_SCHEME=https` beside the port in configuration.env),
//! so that `spindle yarn status` and `--yarn-service` discovery list `https://` replicas, and
//! the readiness check becomes YARN's port probe: its HTTP probe runs in the service AM with
//! the JVM's default trust store, which cannot verify a private CA.

use super::rm::PORT_ENV;
use super::spec::SpecError;
use clap::Args;
use serde_json::{Value, json};

/// The configuration.env variable that tells clients the replicas' scheme (`https` with TLS).
pub const SCHEME_ENV: &str = "SPINDLE_SCHEME";

/// The replicas' TLS files and tokens (`spindle yarn spec` and `deploy`).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct ServiceTlsArgs {
    /// Server certificate (PEM) of every replica, as a URI every node can reach:
    /// hdfs://nn:port/path (localized into each container) or file:///path (at that path on
    /// every node). The replicas then serve HTTPS and gRPC over TLS, and are listed as
    /// https:// (clients give --ca-cert).
    #[arg(long, value_name = "URI", requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// Private key (PEM) of --tls-cert, hdfs:// or file:// (on HDFS keep it readable by the
    /// service's user only: chmod 400).
    #[arg(long, value_name = "URI", requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// CA (PEM) whose client certificates the replicas require (mutual TLS), hdfs:// or
    /// file://.
    #[arg(long, value_name = "URI", requires = "tls_cert")]
    pub tls_client_ca: Option<String>,
    /// Bearer tokens the replicas accept, one per line, hdfs:// or file:// (health stays open,
    /// so YARN's readiness check needs none).
    #[arg(long, value_name = "URI")]
    pub auth_token_file: Option<String>,
}

/// The path inside a `hdfs://` or `file://` URI, if it is one a launch command can carry.
pub(crate) fn file_uri_path(uri: &str) -> Option<&str> {
    // The launch command passes paths through bash (see `spec::build`): no quotes, spaces or `$`.
    let plain = uri
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/@:+=%~".contains(c));
    let path = uri
        .strip_prefix("hdfs://")
        .map(|rest| rest.split_once('/').map_or("", |(_, p)| p))
        .or_else(|| uri.strip_prefix("file://"))?;
    (plain && !path.trim_matches('/').is_empty()).then_some(path)
}

impl ServiceTlsArgs {
    /// Each file given: its `serve` flag, its URI, and its name once localized.
    fn files(&self) -> impl Iterator<Item = (&'static str, &str, &'static str)> {
        [
            ("--tls-cert", &self.tls_cert, "spindle-tls.pem"),
            ("--tls-key", &self.tls_key, "spindle-tls.key"),
            (
                "--tls-client-ca",
                &self.tls_client_ca,
                "spindle-client-ca.pem",
            ),
            ("--auth-token-file", &self.auth_token_file, "spindle-tokens"),
        ]
        .into_iter()
        .filter_map(|(flag, uri, localized)| uri.as_deref().map(|uri| (flag, uri, localized)))
    }

    /// Adds the files, the `serve` flags and, with TLS, the scheme and the port probe to a
    /// spec from [`super::spec::build`]. A URI YARN cannot use is refused, naming the flag.
    pub fn apply(&self, spec: &mut Value) -> Result<(), SpecError> {
        let mut files = ContainerFiles::default();
        for (flag, uri, name) in self.files() {
            files.add(flag, uri, name)?;
        }
        let tls = self.tls_cert.is_some();
        for component in spec["components"].as_array_mut().into_iter().flatten() {
            files.apply_to(component);
            if tls {
                let env = &mut component["configuration"]["env"];
                env[SCHEME_ENV] = json!("https");
                let port = env[PORT_ENV].clone();
                component["readiness_check"] =
                    json!({ "type": "PORT", "properties": { "port": port } });
            }
        }
        Ok(())
    }
}

/// Files a container's command needs, each given as a URI every node can reach: an `hdfs://`
/// one is localized into the container under a fixed name (a STATIC file of the component),
/// a `file://` one is read where it lies. The replicas' TLS files (`yarn deploy`) and the
/// scorer's executors' client TLS files (`score --yarn`) go the same way.
#[derive(Debug, Default)]
pub struct ContainerFiles {
    /// ` FLAG PATH` for each file, as the container's command line takes it.
    flags: String,
    /// The STATIC files YARN localizes.
    localized: Vec<Value>,
}

impl ContainerFiles {
    /// Adds `uri` as the value of `flag`, localized as `name` when it is on HDFS. A URI YARN
    /// cannot use is refused, naming the flag.
    pub fn add(&mut self, flag: &str, uri: &str, name: &str) -> Result<(), SpecError> {
        if file_uri_path(uri).is_none() {
            return Err(SpecError {
                field: flag.to_string(),
                message: format!(
                    "'{uri}' is not a URI YARN can localize: give hdfs://namenode:port/path (put it there with `hdfs dfs -put`) or file:///path (the same path on every node)"
                ),
            });
        }
        let path = match uri.strip_prefix("file://") {
            Some(path) => path,
            None => {
                self.localized
                    .push(json!({ "type": "STATIC", "src_file": uri, "dest_file": name }));
                name
            }
        };
        self.flags.push_str(&format!(" {flag} {path}"));
        Ok(())
    }

    /// Appends the flags to `component`'s launch command and the files to its configuration.
    pub fn apply_to(&self, component: &mut Value) {
        if let Some(launch) = component["launch_command"].as_str() {
            component["launch_command"] = json!(format!("{launch}{}", self.flags));
        }
        if !self.localized.is_empty() {
            let files = &mut component["configuration"]["files"];
            if !files.is_array() {
                *files = json!([]);
            }
            files
                .as_array_mut()
                .expect("an array")
                .extend(self.localized.iter().cloned());
        }
    }
}

/// The replicas' scheme in a service definition: `https` when [`SCHEME_ENV`] says so
/// (component level first, then service level), else `http`.
pub fn scheme_of(service: &Value) -> &'static str {
    let from = |v: &Value| {
        v["configuration"]["env"][SCHEME_ENV]
            .as_str()
            .map(str::to_string)
    };
    let scheme = service["components"]
        .as_array()
        .and_then(|cs| cs.iter().find_map(from))
        .or_else(|| from(service));
    match scheme.as_deref() {
        Some("https") => "https",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yarn::spec::{SpecParams, build, validate};

    fn params() -> SpecParams {
        SpecParams {
            name: "spindle-tls".into(),
            replicas: 2,
            repo: "hdfs://nn:8020/models".into(),
            artifact: "hdfs://nn:8020/user/ann/.spindle/spindle-tls.tar.gz".into(),
            queue: None,
            node_partition: None,
            gpus: 0,
            cpus: 2,
            memory_mb: 2048,
            port: 8443,
            poll_interval: "30s".into(),
            ort_library: None,
        }
    }

    fn applied(args: &ServiceTlsArgs) -> Result<Value, SpecError> {
        let mut spec = build(&params());
        args.apply(&mut spec)?;
        validate(&spec)?;
        Ok(spec)
    }

    #[test]
    fn hdfs_files_are_localized_and_the_replicas_serve_tls_with_tokens() {
        let spec = applied(&ServiceTlsArgs {
            tls_cert: Some("hdfs://nn:8020/user/ann/tls/server.pem".into()),
            tls_key: Some("hdfs://nn:8020/user/ann/tls/server.key".into()),
            tls_client_ca: Some("file:///etc/spindle/clients-ca.pem".into()),
            auth_token_file: Some("hdfs://nn:8020/user/ann/tls/tokens".into()),
        })
        .unwrap();
        let component = &spec["components"][0];
        let launch = component["launch_command"].as_str().unwrap();
        assert!(
            launch.ends_with(
                " --tls-cert spindle-tls.pem --tls-key spindle-tls.key --tls-client-ca /etc/spindle/clients-ca.pem --auth-token-file spindle-tokens"
            ),
            "{launch}"
        );
        assert_eq!(
            component["configuration"]["files"],
            json!([
                {"type": "STATIC", "src_file": "hdfs://nn:8020/user/ann/tls/server.pem", "dest_file": "spindle-tls.pem"},
                {"type": "STATIC", "src_file": "hdfs://nn:8020/user/ann/tls/server.key", "dest_file": "spindle-tls.key"},
                {"type": "STATIC", "src_file": "hdfs://nn:8020/user/ann/tls/tokens", "dest_file": "spindle-tokens"},
            ])
        );
        // YARN's HTTP probe cannot verify a private CA: the port probe, on the replicas' port.
        assert_eq!(
            component["readiness_check"],
            json!({"type": "PORT", "properties": {"port": "8443"}})
        );
        assert_eq!(scheme_of(&spec), "https");
    }

    #[test]
    fn tokens_alone_keep_http_and_its_readiness_check() {
        let plain = build(&params());
        let spec = applied(&ServiceTlsArgs {
            auth_token_file: Some("file:///etc/spindle/tokens".into()),
            ..Default::default()
        })
        .unwrap();
        let component = &spec["components"][0];
        assert!(
            component["launch_command"]
                .as_str()
                .unwrap()
                .ends_with(" --auth-token-file /etc/spindle/tokens")
        );
        assert_eq!(
            component["readiness_check"],
            plain["components"][0]["readiness_check"]
        );
        assert!(component["configuration"]["files"].is_null());
        assert_eq!(scheme_of(&spec), "http");
        assert_eq!(scheme_of(&plain), "http");
        // Nothing asked for, nothing changed.
        assert_eq!(applied(&ServiceTlsArgs::default()).unwrap(), plain);
    }

    #[test]
    fn uris_yarn_cannot_use_name_the_flag() {
        for (cert, key) in [
            ("/local/server.pem", "hdfs://nn:8020/k"),
            ("hdfs://nn:8020/server.pem", "hdfs://nn:8020/"),
            ("file:///a b.pem", "file:///k"),
            ("http://x/server.pem", "file:///k"),
        ] {
            let e = applied(&ServiceTlsArgs {
                tls_cert: Some(cert.into()),
                tls_key: Some(key.into()),
                ..Default::default()
            })
            .unwrap_err();
            let flag = if file_uri_path(cert).is_none() {
                "--tls-cert"
            } else {
                "--tls-key"
            };
            assert_eq!(e.field, flag, "{cert} {key}");
            assert!(e.message.contains("hdfs://"), "{}", e.message);
        }
    }
}
