//! The YARN Services specification (YarnFile) of a spindle deployment, and its validation
//! against the field rules of Hadoop's YARN Service API documentation, so a bad spec is refused
//! here, naming the field, instead of by the ResourceManager with a terse 400.

use super::rm::PORT_ENV;
use serde_json::{Value, json};

/// The one component of a spindle service; its containers are `spindle-0`, `spindle-1`, ...
pub const COMPONENT: &str = "spindle";
/// Longest service name when Registry DNS is enabled (a DNS label).
pub const MAX_SERVICE_NAME: usize = 63;
/// Longest component name when Registry DNS is enabled.
pub const MAX_COMPONENT_NAME: usize = 44;
/// The most replicas accepted: a guard against a typo asking a cluster for a million containers.
pub const MAX_REPLICAS: u32 = 10_000;

/// What a deployment asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecParams {
    /// Service name (a DNS label).
    pub name: String,
    /// Number of containers.
    pub replicas: u32,
    /// Model repository the replicas serve (`hdfs://...`).
    pub repo: String,
    /// Tarball with the binary and the ONNX Runtime library (`hdfs://.../x.tar.gz`).
    pub artifact: String,
    /// YARN queue.
    pub queue: Option<String>,
    /// Node partition (node label), e.g. CPU or GPU.
    pub node_partition: Option<String>,
    /// GPUs per container (`yarn.io/gpu`); > 0 also makes the replicas serve on CUDA.
    pub gpus: u32,
    /// Vcores per container.
    pub cpus: u32,
    /// Memory per container, MB.
    pub memory_mb: u64,
    /// HTTP port; gRPC listens on the next one.
    pub port: u16,
    /// Repository poll interval passed to `spindle serve` (e.g. 30s).
    pub poll_interval: String,
    /// File name of the ONNX Runtime library inside the tarball, if packaged.
    pub ort_library: Option<String>,
}

/// A rule of the YARN Service API the spec breaks: the field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("YARN service spec, field `{field}`: {message}")]
pub struct SpecError {
    /// JSON path of the field, like `components[0].name`.
    pub field: String,
    /// What is wrong and what would be right.
    pub message: String,
}

fn fail(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// The specification for `params`, as submitted to `POST /app/v1/services`.
pub fn build(params: &SpecParams) -> Value {
    let grpc_port = params.port.saturating_add(1);
    // TARBALL artifacts are unpacked into `lib/` of the container's working directory.
    // The address: the NodeManager's own (`$NM_HOST`, which YARN sets in every container) when
    // that is an IPv4 address, else every interface. Binding the node's address is what lets
    // NodeManagers that share a machine under different addresses (scripts/hadoop.sh:
    // 127.0.0.2 and 127.0.0.3) run a replica each on the same port; on clusters whose
    // NodeManagers are known by host name (the usual case; `serve` takes addresses, not
    // names) it stays 0.0.0.0, which also covers the container IP the readiness check uses.
    // The NodeManager writes the command into launch_container.sh as `exec /bin/bash -c
    // "COMMAND"` (UnixShellScriptBuilder), so it may hold no double quote, and the outer shell
    // expands `$` first: `\$bind` reaches the inner shell as `$bind`, after the `case` set it.
    let mut launch = format!(
        "case x${{NM_HOST:-}} in x|x*[!0-9.]*) bind=0.0.0.0;; *) bind=$NM_HOST;; esac; exec lib/spindle serve --repo {} --http-addr \\$bind:{} --grpc-addr \\$bind:{grpc_port} --cache-dir cache --poll-interval {}",
        params.repo, params.port, params.poll_interval
    );
    if params.gpus > 0 {
        launch.push_str(" --engine ort --device cuda");
    }
    let mut env = json!({ PORT_ENV: params.port.to_string() });
    if let Some(lib) = &params.ort_library {
        env["ORT_DYLIB_PATH"] = json!(format!("lib/{lib}"));
    }
    let mut resource = json!({ "cpus": params.cpus, "memory": params.memory_mb.to_string() });
    if params.gpus > 0 {
        resource["additional"] = json!({ "yarn.io/gpu": { "value": params.gpus, "unit": "" } });
    }
    // Self anti-affinity: every replica binds the same port, so two on one node would collide.
    let mut constraint = json!({
        "type": "ANTI_AFFINITY",
        "scope": "NODE",
        "target_tags": [COMPONENT],
    });
    if let Some(partition) = &params.node_partition {
        constraint["node_partitions"] = json!([partition]);
    }
    let mut spec = json!({
        "name": params.name,
        "version": env!("CARGO_PKG_VERSION"),
        "description": format!("spindle inference server serving {}", params.repo),
        "components": [{
            "name": COMPONENT,
            "number_of_containers": params.replicas,
            "artifact": { "id": params.artifact, "type": "TARBALL" },
            "launch_command": launch,
            "resource": resource,
            "restart_policy": "ALWAYS",
            "readiness_check": {
                "type": "HTTP",
                "properties": { "url": format!("http://${{THIS_HOST}}:{}/v2/health/ready", params.port) },
            },
            "placement_policy": { "constraints": [constraint] },
            "configuration": { "env": env },
        }],
    });
    if let Some(queue) = &params.queue {
        spec["queue"] = json!(queue);
    }
    spec
}

/// Where the replicas find the keytab when it is localized from HDFS (YARN links a STATIC file
/// into the container's working directory under its `dest_file` name).
pub const LOCALIZED_KEYTAB: &str = "spindle.keytab";

/// The Kerberos identity of a service on a secured cluster (YARN Services' `kerberos_principal`):
/// the service AM logs in with it, and so does every replica's `spindle serve` (`--keytab
/// --principal`), so both renew their own tickets instead of living on the delegation tokens
/// taken at submission, which expire (7 days by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceKerberos {
    /// The principal, `NAME/HOST@REALM`, e.g. `spindle/gateway.example.com@EXAMPLE.COM`.
    pub principal: String,
    /// The keytab: `hdfs://...` (YARN localizes it for the AM and the replicas) or
    /// `file:///...` (already on every node, at that path).
    pub keytab: String,
}

impl ServiceKerberos {
    /// Checks `--yarn-principal` and `--yarn-keytab` the way the Services API and the replicas'
    /// launch command need them.
    pub fn new(principal: &str, keytab: &str) -> Result<ServiceKerberos, SpecError> {
        // The launch command passes both through bash (see `build`): no quotes, spaces or `$`.
        let plain = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/@:+=%~".contains(c))
        };
        if principal.is_empty() || !plain(principal) {
            return Err(fail(
                "--yarn-principal",
                format!(
                    "'{principal}' is not a Kerberos principal: give NAME/HOST@REALM (letters, digits and . _ - / @), e.g. spindle/gateway.example.com@EXAMPLE.COM"
                ),
            ));
        }
        // Hadoop 3.4's Services API refuses, on a secured cluster, a service principal
        // without an instance ("does not contain a hostname").
        let instance = principal
            .split('@')
            .next()
            .and_then(|name| name.split_once('/'))
            .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty());
        if !instance {
            return Err(fail(
                "--yarn-principal",
                format!(
                    "'{principal}' has no host part: YARN Services wants a service principal of the form NAME/HOST@REALM (e.g. spindle/gateway.example.com@EXAMPLE.COM), whose key the keytab holds"
                ),
            ));
        }
        if principal.contains("_HOST") {
            return Err(fail(
                "--yarn-principal",
                format!(
                    "'{principal}': _HOST is not substituted in the replicas' login; give the principal whose key the keytab holds, e.g. spindle/gateway.example.com@EXAMPLE.COM"
                ),
            ));
        }
        if super::tls::file_uri_path(keytab).is_none() {
            return Err(fail(
                "--yarn-keytab",
                format!(
                    "'{keytab}' is not a keytab URI YARN can use: give hdfs://namenode:port/path/to.keytab (put it there with `hdfs dfs -put` and chmod 400) or file:///path/to.keytab (the same path on every node)"
                ),
            ));
        }
        Ok(ServiceKerberos {
            principal: principal.to_string(),
            keytab: keytab.to_string(),
        })
    }

    /// The keytab's path as the replicas see it.
    fn replica_keytab(&self) -> &str {
        self.keytab
            .strip_prefix("file://")
            .unwrap_or(LOCALIZED_KEYTAB)
    }
}

/// Adds `kerberos` to a spec from [`build`]: the service's `kerberos_principal`, the keytab as
/// a STATIC file of the component when it is on HDFS, and `--keytab --principal` on the
/// replicas' command line.
pub fn add_kerberos(spec: &mut Value, kerberos: &ServiceKerberos) {
    spec["kerberos_principal"] = json!({
        "principal_name": kerberos.principal,
        "keytab": kerberos.keytab,
    });
    for component in spec["components"].as_array_mut().into_iter().flatten() {
        if kerberos.keytab.starts_with("hdfs://") {
            let files = &mut component["configuration"]["files"];
            if !files.is_array() {
                *files = json!([]);
            }
            files.as_array_mut().expect("an array").push(json!({
                "type": "STATIC",
                "src_file": kerberos.keytab,
                "dest_file": LOCALIZED_KEYTAB,
            }));
        }
        if let Some(launch) = component["launch_command"].as_str() {
            component["launch_command"] = json!(format!(
                "{launch} --keytab {} --principal {}",
                kerberos.replica_keytab(),
                kerberos.principal
            ));
        }
    }
}

/// Checks a service or component name: lower-case letters, digits and `-`, starting with a
/// letter, not ending with `-`, at most `max` characters (what YARN's Registry DNS accepts).
pub fn check_name(field: &str, name: &str, max: usize) -> Result<(), SpecError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty()
        || !valid_chars
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || name.ends_with('-')
    {
        return Err(fail(
            field,
            format!(
                "'{name}' is not a valid name: use lower-case letters, digits and '-', starting with a letter (e.g. spindle-cifar10)"
            ),
        ));
    }
    if name.len() > max {
        return Err(fail(
            field,
            format!(
                "'{name}' has {} characters; at most {max} are allowed",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a replica count for deploy (at least one) or flex (zero allowed).
pub fn check_replicas(field: &str, n: i64, allow_zero: bool) -> Result<u32, SpecError> {
    let min = if allow_zero { 0 } else { 1 };
    if n < min || n > i64::from(MAX_REPLICAS) {
        return Err(fail(
            field,
            format!("{n} replicas: give a number from {min} to {MAX_REPLICAS}"),
        ));
    }
    Ok(n as u32)
}

fn one_of(field: &str, value: &Value, allowed: &[&str], required: bool) -> Result<(), SpecError> {
    match value {
        Value::Null if !required => Ok(()),
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(()),
        other => Err(fail(
            field,
            format!("{other} is not one of {}", allowed.join(", ")),
        )),
    }
}

fn positive_int(field: &str, value: &Value) -> Result<(), SpecError> {
    match value.as_i64() {
        Some(n) if n > 0 => Ok(()),
        _ => Err(fail(field, format!("{value} is not a positive integer"))),
    }
}

/// Checks a specification against the documented rules: required fields, names and their
/// lengths, enums, resources, readiness check, placement constraints, and no read-only
/// fields (`containers`) in a submission.
pub fn validate(spec: &Value) -> Result<(), SpecError> {
    let name = spec["name"]
        .as_str()
        .ok_or_else(|| fail("name", "required: a unique service name"))?;
    check_name("name", name, MAX_SERVICE_NAME)?;
    match spec["version"].as_str() {
        Some(v) if !v.is_empty() => {}
        _ => return Err(fail("version", "required: the service's version string")),
    }
    if let Some(queue) = spec.get("queue")
        && queue.as_str().is_none_or(str::is_empty)
    {
        return Err(fail("queue", "must be a non-empty queue name"));
    }
    if let Some(kerberos) = spec.get("kerberos_principal") {
        let principal = kerberos["principal_name"].as_str().unwrap_or_default();
        let keytab = kerberos["keytab"].as_str().unwrap_or_default();
        ServiceKerberos::new(principal, keytab).map_err(|e| {
            let field = if e.field == "--yarn-principal" {
                "kerberos_principal.principal_name"
            } else {
                "kerberos_principal.keytab"
            };
            fail(field, e.message)
        })?;
    }
    let components = spec["components"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| fail("components", "required: at least one component"))?;
    let names: Vec<&str> = components
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for (i, c) in components.iter().enumerate() {
        let at = |f: &str| format!("components[{i}].{f}");
        let cname = c["name"]
            .as_str()
            .ok_or_else(|| fail(at("name"), "required: the component's name"))?;
        check_name(&at("name"), cname, MAX_COMPONENT_NAME)?;
        if names.iter().filter(|n| **n == cname).count() > 1 {
            return Err(fail(at("name"), format!("'{cname}' is used twice")));
        }
        if !c["number_of_containers"].is_null() {
            match c["number_of_containers"].as_i64() {
                Some(n) => {
                    check_replicas(&at("number_of_containers"), n, true)?;
                }
                None => {
                    return Err(fail(
                        at("number_of_containers"),
                        "must be an integer number of containers",
                    ));
                }
            }
        }
        if c.get("containers").is_some() {
            return Err(fail(
                at("containers"),
                "read-only: YARN fills it in GET answers; a submission must not set it",
            ));
        }
        let artifact_type = &c["artifact"]["type"];
        if !c["artifact"].is_null() {
            if c["artifact"]["id"].as_str().is_none_or(str::is_empty) {
                return Err(fail(
                    at("artifact.id"),
                    "required: the tarball's URI or the image name",
                ));
            }
            one_of(
                &at("artifact.type"),
                artifact_type,
                &["DOCKER", "TARBALL", "SERVICE"],
                false,
            )?;
        }
        // DOCKER is the default artifact type, and the only one that may omit launch_command.
        let docker =
            c["artifact"].is_null() || artifact_type.is_null() || artifact_type == "DOCKER";
        if !docker && c["launch_command"].as_str().is_none_or(str::is_empty) {
            return Err(fail(
                at("launch_command"),
                "required for TARBALL and SERVICE artifacts",
            ));
        }
        validate_resource(&at("resource"), &c["resource"])?;
        one_of(
            &at("restart_policy"),
            &c["restart_policy"],
            &["ALWAYS", "ON_FAILURE", "NEVER"],
            false,
        )?;
        let check = &c["readiness_check"];
        if !check.is_null() {
            one_of(
                &at("readiness_check.type"),
                &check["type"],
                &["DEFAULT", "HTTP", "PORT"],
                true,
            )?;
            if check["type"] == "HTTP" {
                let url = check["properties"]["url"].as_str().unwrap_or_default();
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(fail(
                        at("readiness_check.properties.url"),
                        "an HTTP check needs a url like http://${THIS_HOST}:8000/v2/health/ready",
                    ));
                }
            }
        }
        let policy = &c["placement_policy"];
        if !policy.is_null() {
            let constraints = policy["constraints"]
                .as_array()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    fail(
                        at("placement_policy.constraints"),
                        "required: at least one constraint",
                    )
                })?;
            for (j, pc) in constraints.iter().enumerate() {
                let at = |f: &str| format!("components[{i}].placement_policy.constraints[{j}].{f}");
                one_of(
                    &at("type"),
                    &pc["type"],
                    &["AFFINITY", "ANTI_AFFINITY", "AFFINITY_WITH_CARDINALITY"],
                    true,
                )?;
                one_of(&at("scope"), &pc["scope"], &["NODE", "RACK"], true)?;
                for tag in pc["target_tags"].as_array().into_iter().flatten() {
                    let tag = tag.as_str().unwrap_or_default();
                    if !names.contains(&tag) {
                        return Err(fail(
                            at("target_tags"),
                            format!("'{tag}' is not a component of this service"),
                        ));
                    }
                }
                if let Some(partitions) = pc.get("node_partitions") {
                    let ok = partitions.as_array().is_some_and(|p| {
                        p.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty()))
                    });
                    if !ok {
                        return Err(fail(
                            at("node_partitions"),
                            "must be a list of node label names, like [\"GPU\"]",
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn validate_resource(field: &str, resource: &Value) -> Result<(), SpecError> {
    if resource.is_null() {
        return Ok(());
    }
    let has_profile = !resource["profile"].is_null();
    let has_amounts = !resource["cpus"].is_null() || !resource["memory"].is_null();
    if has_profile && has_amounts {
        return Err(fail(field, "give a profile or cpus and memory, not both"));
    }
    if !has_profile {
        positive_int(&format!("{field}.cpus"), &resource["cpus"])?;
        // The API takes memory as a string of MB.
        let memory = resource["memory"]
            .as_str()
            .and_then(|m| m.parse::<u64>().ok());
        if memory.is_none_or(|m| m == 0) {
            return Err(fail(
                format!("{field}.memory"),
                format!(
                    "{} is not a positive number of MB written as a string (e.g. \"4096\")",
                    resource["memory"]
                ),
            ));
        }
    }
    const UNITS: [&str; 15] = [
        "", "p", "n", "u", "m", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi",
    ];
    if let Some(additional) = resource.get("additional") {
        let map = additional.as_object().ok_or_else(|| {
            fail(
                format!("{field}.additional"),
                "must map resource names to {value, unit}",
            )
        })?;
        for (name, info) in map {
            let at = format!("{field}.additional.{name}");
            if info["value"].as_i64().is_none_or(|v| v < 0) {
                return Err(fail(
                    format!("{at}.value"),
                    "must be a non-negative integer",
                ));
            }
            if let Some(unit) = info.get("unit")
                && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
            {
                return Err(fail(
                    format!("{at}.unit"),
                    format!("{unit} is not one of p/n/u/m/k/M/G/T/P/Ki/Mi/Gi/Ti/Pi or empty"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod kerberos_tests {
    use super::*;

    fn spec() -> Value {
        build(&SpecParams {
            name: "spindle-krb".into(),
            replicas: 1,
            repo: "hdfs://nn:8020/models".into(),
            artifact: "hdfs://nn:8020/user/ann/.spindle/spindle-spindle-krb.tar.gz".into(),
            queue: None,
            node_partition: None,
            gpus: 0,
            cpus: 1,
            memory_mb: 1024,
            port: 8000,
            poll_interval: "30s".into(),
            ort_library: None,
        })
    }

    /// The spec with `principal` and `keytab` added, checked valid.
    fn spec_with(principal: &str, keytab: &str) -> Value {
        let kerberos = ServiceKerberos::new(principal, keytab).unwrap();
        let mut spec = spec();
        add_kerberos(&mut spec, &kerberos);
        validate(&spec).expect("valid");
        spec
    }

    fn launch(spec: &Value) -> &str {
        spec["components"][0]["launch_command"].as_str().unwrap()
    }

    #[test]
    fn an_hdfs_keytab_is_localized_for_the_replicas_and_the_am() {
        let spec = spec_with(
            "spindle/gw@EXAMPLE.COM",
            "hdfs://nn:8020/user/ann/spindle.keytab",
        );
        assert_eq!(
            spec["kerberos_principal"],
            json!({"principal_name": "spindle/gw@EXAMPLE.COM", "keytab": "hdfs://nn:8020/user/ann/spindle.keytab"})
        );
        assert_eq!(
            spec["components"][0]["configuration"]["files"],
            json!([{"type": "STATIC", "src_file": "hdfs://nn:8020/user/ann/spindle.keytab", "dest_file": "spindle.keytab"}])
        );
        assert!(
            launch(&spec).ends_with(" --keytab spindle.keytab --principal spindle/gw@EXAMPLE.COM"),
            "{}",
            launch(&spec)
        );
        // The environment the replicas had stays.
        assert_eq!(
            spec["components"][0]["configuration"]["env"][super::PORT_ENV],
            "8000"
        );
    }

    #[test]
    fn a_file_keytab_is_read_where_it_lies_on_every_node() {
        let spec = spec_with(
            "spindle/worker@EXAMPLE.COM",
            "file:///etc/security/keytabs/spindle.keytab",
        );
        assert!(
            spec["components"][0]["configuration"]
                .get("files")
                .is_none()
        );
        assert!(
            launch(&spec).ends_with(
                " --keytab /etc/security/keytabs/spindle.keytab --principal spindle/worker@EXAMPLE.COM"
            ),
            "{}",
            launch(&spec)
        );
    }

    #[test]
    fn bad_principals_and_keytabs_name_the_flag_and_the_fix() {
        let keytab = "hdfs://nn:8020/k.keytab";
        for principal in [
            "",
            "spin dle@EXAMPLE.COM",
            "a\"b@R",
            "x$y@R",
            "spindle@EXAMPLE.COM",
            "/gw@EXAMPLE.COM",
            "spindle/@EXAMPLE.COM",
            "spindle/_HOST@EXAMPLE.COM",
        ] {
            let e = ServiceKerberos::new(principal, keytab).unwrap_err();
            assert_eq!(e.field, "--yarn-principal", "{principal}: {e}");
            assert!(e.message.contains(&format!("'{principal}'")), "{e}");
        }
        for keytab in [
            "/etc/spindle.keytab",
            "spindle.keytab",
            "hdfs://nn:8020",
            "hdfs://nn:8020/",
            "file://",
            "s3://bucket/k.keytab",
            "hdfs://nn/with space.keytab",
        ] {
            let e = ServiceKerberos::new("spindle/gw@EXAMPLE.COM", keytab).unwrap_err();
            assert_eq!(e.field, "--yarn-keytab", "{keytab}: {e}");
            assert!(
                e.message.contains(&format!("'{keytab}'")) && e.message.contains("hdfs://"),
                "{e}"
            );
        }
        // A spec edited by hand is checked the same way, naming its field.
        let mut spec = spec();
        spec["kerberos_principal"] =
            json!({"principal_name": "spindle/gw@R", "keytab": "/k.keytab"});
        let e = validate(&spec).unwrap_err();
        assert_eq!(e.field, "kerberos_principal.keytab", "{e}");
    }

    /// The replicas' command, run through bash as YARN runs it, still passes the login intact.
    #[test]
    fn the_login_reaches_spindle_through_the_launch_script() {
        let spec = spec_with("spindle/gw@EXAMPLE.COM", "hdfs://nn:8020/k.keytab");
        let command = launch(&spec).replace("exec lib/spindle serve", "echo");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("exec /bin/bash -c \"{command}\""))
            .output()
            .expect("bash");
        let args = String::from_utf8_lossy(&out.stdout);
        assert!(
            args.trim_end()
                .ends_with("--keytab spindle.keytab --principal spindle/gw@EXAMPLE.COM"),
            "{args}"
        );
    }
}
