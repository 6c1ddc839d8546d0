//! doorman: a small, complete OpenID Connect identity provider for self-hosters.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod account;
pub mod accounts;
pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod error;
pub mod forward_auth;
pub mod integrate;
pub mod jitsi;
pub mod keys;
pub mod log_format;
pub mod login;
pub mod mail;
pub mod oidc;
pub mod plex;
pub mod secrets;
pub mod server;
pub mod session;
pub mod signin;
pub mod state;
pub mod store;
pub mod web;
