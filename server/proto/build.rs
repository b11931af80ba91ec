//! Generates the gRPC code (KServe v2, and TF Serving's PredictionService and ModelService with
//! the TensorFlow messages they carry) with a vendored `protoc`, so a fresh clone builds without
//! a system protobuf compiler.

use std::path::PathBuf;

/// TF Serving's services and what they import; the paths are TensorFlow's own.
const TF_SERVING: &[&str] = &[
    "proto/tensorflow_serving/apis/prediction_service.proto",
    "proto/tensorflow_serving/apis/model_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // TF Serving's messages use google.protobuf.Any and Int64Value: generated here from
    // protoc's own copies rather than taken from prost-types, one dependency fewer.
    config.compile_well_known_types();
    let include = protoc_bin_vendored::include_path()?;
    let protos: Vec<PathBuf> = std::iter::once("proto/inference.proto")
        .chain(TF_SERVING.iter().copied())
        .map(PathBuf::from)
        .collect();
    // Requests that do not parse are INVALID_ARGUMENT, not prost's INTERNAL (src/codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::codec::StrictCodec")
        .compile_with_config(config, &protos, &[PathBuf::from("proto"), include])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
