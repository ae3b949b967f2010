//! postecoled as a library: `main.rs` wires these subsystems to the bus; the fuzz targets
//! (`fuzz/`) reach the parsers of untrusted bytes through it. ARCHITECTURE.md maps them.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod archive;
pub mod authz;
pub mod ballast;
pub mod blocking;
pub mod bus;
pub mod clock;
pub mod config;
pub mod error;
pub mod model;
pub mod oauth;
pub mod outbox;
pub mod queue;
pub mod secret;
pub mod store;
pub mod validate;
