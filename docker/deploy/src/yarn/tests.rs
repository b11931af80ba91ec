//! The spec against the YARN Service API's documented field rules.

use super::spec::{self, SpecParams, build, validate};
use serde_json::{Value, json};

fn params() -> SpecParams {
    SpecParams {
        name: "spindle-cifar".into(),
        replicas: 3,
        repo: "hdfs://nn:8020/models".into(),
        artifact: "hdfs://nn:8020/user/ann/.spindle/spindle-spindle-cifar.tar.gz".into(),
        queue: Some("GPU_Q".into()),
        node_partition: Some("GPU".into()),
        gpus: 2,
        cpus: 8,
        memory_mb: 16384,
        port: 9000,
        poll_interval: "30s".into(),
        ort_library: Some("libonnxruntime.so.1.31.1".into()),
    }
}

fn field_of(spec: &Value) -> String {
    validate(spec).expect_err("must be refused").field
}

#[test]
fn the_built_spec_asks_for_what_the_deployment_needs() {
    let spec = build(&params());
    validate(&spec).expect("valid");
    let c = &spec["components"][0];
    assert_eq!(spec["name"], "spindle-cifar");
    assert_eq!(spec["queue"], "GPU_Q");
    assert_eq!(c["number_of_containers"], 3);
    assert_eq!(c["artifact"]["type"], "TARBALL");
    assert_eq!(c["restart_policy"], "ALWAYS");
    assert_eq!(c["resource"]["cpus"], 8);
    assert_eq!(c["resource"]["memory"], "16384");
    assert_eq!(c["resource"]["additional"]["yarn.io/gpu"]["value"], 2);
    let launch = c["launch_command"].as_str().unwrap();
    assert!(launch.contains("exec lib/spindle serve --repo hdfs://nn:8020/models"));
    assert!(launch.contains(r"--http-addr \$bind:9000 --grpc-addr \$bind:9001"));
    assert!(
        !launch.contains('"'),
        "YARN wraps it in bash -c \"...\": {launch}"
    );
    assert!(launch.contains("--device cuda"), "{launch}");
    assert_eq!(
        c["readiness_check"],
        json!({"type": "HTTP", "properties": {"url": "http://${THIS_HOST}:9000/v2/health/ready"}})
    );
    assert_eq!(
        c["placement_policy"]["constraints"][0],
        json!({"type": "ANTI_AFFINITY", "scope": "NODE", "target_tags": ["spindle"], "node_partitions": ["GPU"]})
    );
    assert_eq!(c["configuration"]["env"]["SPINDLE_HTTP_PORT"], "9000");
    assert_eq!(
        c["configuration"]["env"]["ORT_DYLIB_PATH"],
        "lib/libonnxruntime.so.1.31.1"
    );
}

#[test]
fn cpu_replicas_ask_for_no_gpu_and_no_cuda() {
    let mut p = params();
    p.gpus = 0;
    p.node_partition = None;
    p.queue = None;
    let spec = build(&p);
    validate(&spec).unwrap();
    let c = &spec["components"][0];
    assert!(c["resource"].get("additional").is_none());
    assert!(!c["launch_command"].as_str().unwrap().contains("cuda"));
    assert!(
        c["placement_policy"]["constraints"][0]
            .get("node_partitions")
            .is_none()
    );
    assert!(spec.get("queue").is_none());
}

#[test]
fn names_follow_the_registry_dns_rules() {
    for good in ["a", "spindle-1", &"a".repeat(63)] {
        spec::check_name("name", good, spec::MAX_SERVICE_NAME).unwrap();
    }
    for bad in [
        "",
        "Spindle",
        "1spindle",
        "spin_dle",
        "spindle-",
        "spïndle",
        &"a".repeat(64),
    ] {
        let e = spec::check_name("name", bad, spec::MAX_SERVICE_NAME).unwrap_err();
        assert_eq!(e.field, "name");
    }
    let mut spec = build(&params());
    spec["components"][0]["name"] = json!("c".repeat(45));
    assert_eq!(field_of(&spec), "components[0].name");
}

#[test]
fn required_fields_are_required() {
    for (field, path) in [
        ("name", vec!["name"]),
        ("version", vec!["version"]),
        ("components", vec!["components"]),
        ("components[0].name", vec!["components", "0", "name"]),
        (
            "components[0].artifact.id",
            vec!["components", "0", "artifact", "id"],
        ),
        (
            "components[0].launch_command",
            vec!["components", "0", "launch_command"],
        ),
        (
            "components[0].readiness_check.type",
            vec!["components", "0", "readiness_check", "type"],
        ),
        (
            "components[0].placement_policy.constraints[0].scope",
            vec![
                "components",
                "0",
                "placement_policy",
                "constraints",
                "0",
                "scope",
            ],
        ),
    ] {
        let mut spec = build(&params());
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut spec;
        for p in parents {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        at.as_object_mut().unwrap().remove(*last);
        assert_eq!(field_of(&spec), field, "removing {path:?}");
    }
}

#[test]
fn enums_resources_and_constraints_are_checked() {
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "components[0].restart_policy",
            Box::new(|s| s["components"][0]["restart_policy"] = json!("SOMETIMES")),
        ),
        (
            "components[0].artifact.type",
            Box::new(|s| s["components"][0]["artifact"]["type"] = json!("ZIP")),
        ),
        (
            "components[0].resource.cpus",
            Box::new(|s| s["components"][0]["resource"]["cpus"] = json!(0)),
        ),
        (
            "components[0].resource.memory",
            Box::new(|s| s["components"][0]["resource"]["memory"] = json!(4096)),
        ),
        (
            "components[0].resource",
            Box::new(|s| s["components"][0]["resource"]["profile"] = json!("small")),
        ),
        (
            "components[0].resource.additional.yarn.io/gpu.unit",
            Box::new(|s| {
                s["components"][0]["resource"]["additional"]["yarn.io/gpu"]["unit"] = json!("GB")
            }),
        ),
        (
            "components[0].resource.additional.yarn.io/gpu.value",
            Box::new(|s| {
                s["components"][0]["resource"]["additional"]["yarn.io/gpu"]["value"] = json!(-1)
            }),
        ),
        (
            "components[0].number_of_containers",
            Box::new(|s| s["components"][0]["number_of_containers"] = json!(-2)),
        ),
        (
            "components[0].number_of_containers",
            Box::new(|s| s["components"][0]["number_of_containers"] = json!("3")),
        ),
        (
            "components[0].containers",
            Box::new(|s| s["components"][0]["containers"] = json!([])),
        ),
        (
            "components[0].readiness_check.properties.url",
            Box::new(|s| s["components"][0]["readiness_check"]["properties"] = json!({})),
        ),
        (
            "components[0].placement_policy.constraints[0].type",
            Box::new(|s| {
                s["components"][0]["placement_policy"]["constraints"][0]["type"] = json!("SPREAD")
            }),
        ),
        (
            "components[0].placement_policy.constraints[0].target_tags",
            Box::new(|s| {
                s["components"][0]["placement_policy"]["constraints"][0]["target_tags"] =
                    json!(["web"])
            }),
        ),
        (
            "components[0].placement_policy.constraints[0].node_partitions",
            Box::new(|s| {
                s["components"][0]["placement_policy"]["constraints"][0]["node_partitions"] =
                    json!("GPU")
            }),
        ),
        (
            "components[0].placement_policy.constraints",
            Box::new(|s| s["components"][0]["placement_policy"]["constraints"] = json!([])),
        ),
        ("queue", Box::new(|s| s["queue"] = json!(""))),
    ];
    for (field, change) in cases {
        let mut spec = build(&params());
        change(&mut spec);
        let e = validate(&spec).expect_err(field);
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
}

#[test]
fn replica_counts_are_bounded() {
    assert_eq!(spec::check_replicas("--replicas", 1, false).unwrap(), 1);
    assert_eq!(spec::check_replicas("--replicas", 0, true).unwrap(), 0);
    for (n, zero) in [(0, false), (-1, true), (10_001, true)] {
        let e = spec::check_replicas("--replicas", n, zero).unwrap_err();
        assert!(e.to_string().contains(&n.to_string()), "{e}");
    }
}

#[test]
fn local_repositories_and_bad_names_are_usage_errors() {
    let args = super::ServiceArgs {
        name: "ok".into(),
        replicas: 2,
        repo: "/data/models".into(),
        queue: None,
        node_partition: None,
        gpus: 0,
        cpus: 1,
        memory: 1024,
        port: 8000,
        poll_interval: "10s".into(),
    };
    let e = super::params(&args, "hdfs://nn/x.tar.gz".into(), None).unwrap_err();
    assert!(e.downcast_ref::<spindle_core::UsageError>().is_some());
    assert!(e.to_string().contains("--repo /data/models"), "{e}");
    assert_eq!(
        super::staging_dir("hdfs://nn:8020/models", None, Some("ann".into())).unwrap(),
        "hdfs://nn:8020/user/ann/.spindle"
    );
}

/// The launch command's bind address, run through bash as YARN runs it
/// (launch_container.sh: `exec /bin/bash -c "COMMAND"`, with NM_HOST exported): the
/// NodeManager's address when it is an IP, else every interface.
#[test]
fn replicas_bind_the_node_address_when_yarn_gives_an_ip() {
    let spec = build(&params());
    let launch = spec["components"][0]["launch_command"].as_str().unwrap();
    // Print the arguments instead of serving.
    let launch = launch.replace("exec lib/spindle serve", "echo");
    for (nm_host, bind) in [
        (Some("127.0.0.2"), "127.0.0.2"),
        (Some("worker1.example.com"), "0.0.0.0"),
        (Some("fe80::1"), "0.0.0.0"),
        (None, "0.0.0.0"),
    ] {
        let mut bash = std::process::Command::new("bash");
        bash.arg("-c")
            .arg(format!("exec /bin/bash -c \"{launch}\""));
        bash.env_remove("NM_HOST");
        if let Some(host) = nm_host {
            bash.env("NM_HOST", host);
        }
        let out = bash.output().expect("bash");
        let args = String::from_utf8_lossy(&out.stdout);
        assert!(
            args.contains(&format!("--http-addr {bind}:9000 --grpc-addr {bind}:9001")),
            "NM_HOST {nm_host:?}: {args}"
        );
    }
}
