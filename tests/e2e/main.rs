//! End-to-end tests of doorman: real servers on local ports, driven like a browser and a
//! relying party would drive them, plus the binary's command line.

mod common;

mod account;
mod admin;
mod authorize_rules;
mod backchannel;
mod binary;
mod claims;
mod cli_passwd;
mod cloudflare;
mod connections;
mod container;
mod discovery;
mod harness;
mod health;
mod integrate;
mod invites;
mod jitsi;
mod jitsi_native;
mod jitsi_prosody;
mod keycloak_paths;
mod libraries;
mod login_rules;
mod logout;
mod mail;
mod onboarding_browser;
mod passkey_browser;
mod passkeys;
mod plex;
mod plex_browser;
mod proxy_apache;
mod proxy_caddy;
mod proxy_forward_auth;
mod proxy_nginx;
mod reset;
mod restart;
mod review_second_factor;
mod rp;
mod second_factor;
mod signin_cookies;
mod signin_limits;
mod sso;
mod token_rules;
mod tokens;
mod totp_browser;
