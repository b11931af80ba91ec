//! Spindle's gRPC types, generated at build time:
//!
//! - [`inference`]: KServe v2 / Open Inference Protocol (package `inference`, service
//!   `GRPCInferenceService`) from `proto/inference.proto`. The server implements
//!   [`inference::grpc_inference_service_server::GrpcInferenceService`]; the client library uses
//!   [`inference::grpc_inference_service_client::GrpcInferenceServiceClient`].
//! - [`tensorflow`]: TF Serving's `tensorflow.serving.PredictionService` (Predict,
//!   GetModelMetadata) and `ModelService` (GetModelStatus), and the TensorFlow messages they
//!   carry (`TensorProto`, `SignatureDef`), from `proto/tensorflow*` and `proto/xla`: the subset
//!   Spindle serves, with TensorFlow's package names, paths and field numbers, so that
//!   `tensorflow-serving-api` clients work unchanged.
//! - [`google`]: the well-known types TF Serving's messages use (`Any`, `Int64Value`).
//!
//! Every service uses [`codec::StrictCodec`]: prost's encoding, with undecodable messages
//! answered INVALID_ARGUMENT.
//!
//! It lives under `server/` because the server defines the API it serves; the client library
//! and the load generator depend on it for the same messages.

pub mod codec;

/// prost, for encoding messages by hand (an `Any`'s value) without a dependency of one's own.
pub use prost;

/// Generated messages and service stubs.
#[allow(missing_docs, clippy::all)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// TensorFlow's messages (package `tensorflow`) and TF Serving's services.
#[allow(missing_docs, clippy::all)]
pub mod tensorflow {
    tonic::include_proto!("tensorflow");

    /// TF Serving's API (package `tensorflow.serving`).
    #[allow(missing_docs, clippy::all)]
    pub mod serving {
        tonic::include_proto!("tensorflow.serving");

        /// The `type_url` of a packed [`SignatureDefMap`], as TF Serving writes it (clients'
        /// `Any.Unpack` checks it).
        pub const SIGNATURE_DEF_MAP_TYPE_URL: &str =
            "type.googleapis.com/tensorflow.serving.SignatureDefMap";
    }

    /// TensorFlow's canonical error codes (package `tensorflow.error`).
    #[allow(missing_docs, clippy::all)]
    pub mod error {
        tonic::include_proto!("tensorflow.error");
    }
}

/// Protobuf's well-known types that TF Serving's messages use.
#[allow(missing_docs, clippy::all)]
pub mod google {
    /// Package `google.protobuf`.
    #[allow(missing_docs, clippy::all)]
    pub mod protobuf {
        tonic::include_proto!("google.protobuf");
    }
}
