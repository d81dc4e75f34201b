//! The Gatekeeper: Highway's registry and front door.
//!
//! A peer joins through it (and gets candidate neighbours), keeps its entry alive with a
//! periodic status, reports neighbours it found dead, and leaves. See
//! [`highway_wire::gatekeeper`] for the API and its authentication rules, [`store`] for the
//! registry semantics both backends share, and [`client`] for the typed client peers use.

pub mod admission;
pub mod api;
pub mod auth;
pub mod client;
pub mod config;
pub mod metrics;
pub mod server;
pub mod store;

pub use client::{ClientConfig, ClientError, GatekeeperClient};
pub use config::GatekeeperConfig;
pub use server::{App, run, run_tls, serve_until_signal, serve_until_signal_tls};
pub use store::{EmbeddedStore, RedisOptions, RedisStore, Store, StoreError};
