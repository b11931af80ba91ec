//! Spindle's client library (async KServe v2 over HTTP and gRPC, retries, several endpoints)
//! belongs here; it is the work of the protocols issue. Until then the load generator in
//! `loadtest/` carries its own minimal HTTP client.
