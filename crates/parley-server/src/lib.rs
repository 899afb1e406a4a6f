//! Parley's backend server.
//!
//! `routes` (HTTP in, service call, HTTP out) → `services` (the rules) → the store
//! trait (`parley-store`) → SQLite or PostgreSQL. Errors become HTTP answers in one
//! place (`error`). Time (`clock`), keys (`tokens`) and mail (`mail`) are passed to
//! the services, never reached for globally.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub(crate) mod error;
pub(crate) mod mail;
pub(crate) mod nats;
pub mod passwords;
pub mod push;
pub(crate) mod ratelimit;
pub mod routes;
pub mod server;
pub(crate) mod services;
pub(crate) mod tls;
pub mod tokens;
pub(crate) mod transport;
pub(crate) mod wakeups;
