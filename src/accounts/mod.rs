//! Accounts: users and their credentials. Domain logic only: no HTTP, no SQL.

pub mod confirm;
pub mod forgot;
pub mod links;
pub mod lockout;
pub mod password;
pub mod password_policy;
pub mod qr;
pub mod recovery;
pub mod totp;
pub mod users;
pub mod webauthn;

pub use password::PasswordHasher;
pub use users::{AccountError, NewUser, ProfileUpdate};
