//! Authentication: who is asking. Owns the provider's signing keys
//! ([`jwks`]), token verification with its claims cache ([`verify`]), the
//! verified [`Identity`], and the reasons a credential is refused
//! ([`AuthError`]).

mod error;
mod identity;
pub mod jwks;
mod verify;

pub use error::AuthError;
pub use identity::Identity;
pub use jwks::{FetchError, HttpFetcher, KeyFetcher, KeyStore, KeysError};
pub use verify::{Verifier, MAX_TOKEN_BYTES};
