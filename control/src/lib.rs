//! `banyan-control`: Banyan's control plane.
//!
//! Relays report themselves by heartbeat; the control plane keeps that soft state, assigns
//! viewers and publishers to relays, answers relays' route lookups, and grows or shrinks the
//! relay tree when a flash crowd comes and goes.
//!
//! # Module map
//! - [`api`]: the HTTP/JSON contract (request and response types of every endpoint). With
//!   `default-features = false` this is the whole crate and depends on `serde` only.

pub mod api;
