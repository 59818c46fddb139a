//! The HTTP/TLS edge: the server and its limits, TLS, certificates, and the AdmissionReview envelope.

pub mod admission;
pub mod certs;
pub mod server;
pub mod tls;
