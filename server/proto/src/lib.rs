//! KServe v2 / Open Inference Protocol gRPC types (package `inference`, service
//! `GRPCInferenceService`), generated from `proto/inference.proto` at build time.
//!
//! The server implements [`inference::grpc_inference_service_server::GrpcInferenceService`];
//! the client library uses [`inference::grpc_inference_service_client::GrpcInferenceServiceClient`].
//! Both use [`codec::StrictCodec`]: prost's encoding, with undecodable messages answered
//! INVALID_ARGUMENT.
//!
//! It lives under `server/` because the server defines the API it serves; the client library
//! and the load generator depend on it for the same messages.

pub mod codec;

/// Generated messages and service stubs.
#[allow(missing_docs, clippy::all)]
pub mod inference {
    tonic::include_proto!("inference");
}
