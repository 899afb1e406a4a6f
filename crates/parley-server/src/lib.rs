//! Parley's backend server.
//!
//! `routes` (HTTP in, service call, HTTP out) → `services` (the rules) → the store
//! trait (`parley-store`) → SQLite or PostgreSQL. Errors become HTTP answers in one
//! place (`error`). Time (`clock`), keys (`tokens`) and mail (`mail`) are passed to
//! the services, never reached for globally.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod error;
pub mod mail;
pub mod passwords;
pub mod push;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod services;
pub mod tls;
pub mod tokens;
pub mod transport;
pub mod wakeups;
