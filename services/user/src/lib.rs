//! The user service: accounts, addresses, and the only private key of the shop.
//!
//! It registers users (argon2id passwords, emails unique in any letter case), logs them in with
//! the OAuth2 password form, signs RS256 access and refresh tokens, publishes the public key set
//! at `/api/v1/auth/jwks`, and serves the caller's profile and addresses under
//! `/api/v1/users/me`. It verifies its own tokens through `common::auth`, like every service.
//!
//! Modules: `auth` (register, login, refresh, JWKS), `users` (the profile), `addresses`, each with
//! its `store` of queries; `tokens` signs, `passwords` hashes, `validation` checks input.

pub mod addresses;
pub mod auth;
pub mod config;
pub mod keys;
pub mod openapi;
pub mod passwords;
pub mod staff;
pub mod startup;
pub mod state;
pub mod throttle;
pub mod tokens;
pub mod users;
pub mod validation;

pub use config::{Config, PasswordHashing, SigningKeySource};
pub use startup::{Application, build};
