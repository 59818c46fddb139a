//! The HTTP/TLS edge: the server and its connections, the `/mutate` handler and its limits, the plain port, TLS and
//! certificates, reloading files, and the AdmissionReview envelope.

pub mod admission;
pub mod body;
pub mod certs;
pub mod conn;
pub mod defaults;
pub mod metrics_port;
pub mod mutate;
pub mod reload;
pub mod server;
pub mod state;
pub mod tls;
