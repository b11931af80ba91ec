//! Every integration test of the workspace's real components, in one test binary: one link of
//! the server, the engines and the clients instead of one per file, which on a 2-core CI machine
//! is minutes. Each module is one area (its own docs say what it covers); run one area with
//! `cargo test --release -p spindle-tests --test integration hdfs::`.

mod client;
mod criteo;
mod engines;
mod hdfs;
mod hostile;
mod http_v2;
mod kerberos;
mod loader_lifecycle;
mod loadtest_criteo;
mod loadtest_samples;
mod netcut;
mod protocols;
mod replicas;
mod score_images;
mod score_yarn;
mod tfserving_grpc;
mod tls;
mod tls_clients;
mod version_labels;
mod yarn;
mod yarn_cluster;
