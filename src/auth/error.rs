//! Why a credential was refused. Each reason has a short public text that
//! leaks nothing; the details go to the log once, where the request is
//! answered.

/// A refused credential. All but [`AuthError::KeysUnavailable`] mean 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("token too large")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("algorithm {0:?} not allowed")]
    AlgorithmNotAllowed(jsonwebtoken::Algorithm),
    #[error("no key for kid {0:?}")]
    UnknownKey(Option<String>),
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("bad signature")]
    BadSignature,
    #[error("token rejected: {0}")]
    Rejected(#[source] jsonwebtoken::errors::Error),
    #[error("unusable claims: {0}")]
    Claims(&'static str),
    #[error("signing keys not loaded yet")]
    KeysUnavailable,
    #[error("session cookie refused: {0}")]
    Session(&'static str),
}

impl AuthError {
    /// The short reason shown to the client: enough to act on, nothing more.
    pub fn public_reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "authentication required",
            AuthError::Expired => "token expired",
            AuthError::Session(_) => "session expired; sign in again",
            AuthError::KeysUnavailable => "authentication temporarily unavailable",
            _ => "invalid token",
        }
    }

    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed(_) => "malformed",
            AuthError::AlgorithmNotAllowed(_) => "algorithm",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "issuer",
            AuthError::WrongAudience => "audience",
            AuthError::BadSignature => "signature",
            AuthError::Rejected(_) => "rejected",
            AuthError::Claims(_) => "claims",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::Session(_) => "session",
        }
    }

    /// Classifies an error from `jsonwebtoken::decode`.
    pub(crate) fn from_jwt(e: jsonwebtoken::errors::Error) -> AuthError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => AuthError::Expired,
            K::ImmatureSignature => AuthError::NotYetValid,
            K::InvalidIssuer => AuthError::WrongIssuer,
            K::InvalidAudience => AuthError::WrongAudience,
            K::InvalidSignature => AuthError::BadSignature,
            K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => AuthError::Malformed(e),
            _ => AuthError::Rejected(e),
        }
    }
}
