//! Authentication: who is asking. Owns the provider's signing keys
//! ([`jwks`]), token verification with its claims cache ([`verify`]), the
//! verified [`Identity`], browser sessions ([`session`]) and the sign-in
//! flow that creates them ([`login`]), sessions taken away
//! ([`revocations`]), and the reasons a credential is
//! refused ([`AuthError`]).

mod error;
mod identity;
pub mod jwks;
pub mod login;
pub mod revocations;
pub mod session;
mod verify;

#[cfg(test)]
mod test_support;

pub use error::AuthError;
pub use identity::Identity;
pub use jwks::{FetchError, HttpFetcher, KeyFetcher, KeyStore, KeysError};
pub use login::{Login, LoginError};
pub use revocations::Revocations;
pub use session::{Session, Sessions};
pub use verify::{IdClaims, Verifier, MAX_TOKEN_BYTES};
