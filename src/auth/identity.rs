//! The verified caller: what a valid token says about who is asking, with
//! the response headers precomputed so the hot path only clones them.

use std::sync::Arc;

use http::HeaderValue;
use serde_json::{Map, Value};

use super::AuthError;
use crate::slug::{legacy_slug_for, slug_for};

/// Longest `sub`, username claim or email roost accepts (bytes; each
/// JSON-escaped at worst to twice that, three of them still seal into a
/// session cookie of under 2 KiB, what `Sessions::unseal` takes).
pub const MAX_CLAIM_LEN: usize = 200;

/// Most permissions an identity (and so a session cookie) keeps.
pub const MAX_PERMISSIONS: usize = 8;

/// A verified user. Cached per token, shared by `Arc`.
#[derive(Debug)]
pub struct Identity {
    /// The full `sub` claim: what ownership is compared against.
    pub sub: Arc<str>,
    pub email: Option<String>,
    /// The user's own workspace slug, from `oidc.username_claim`.
    pub slug: Arc<str>,
    /// The slug this user had when slugs carried 32-bit hashes, if other.
    pub legacy_slug: Option<Arc<str>>,
    /// The token's `permissions` contain `oidc.admin_permission`.
    pub admin: bool,
    /// Those of the token's `permissions` the config names (a profile's
    /// `permission`, `quota.exempt_permission`); at most [`MAX_PERMISSIONS`].
    pub permissions: Vec<String>,
    /// Token expiry, seconds since the epoch. (For a session, the expiry of
    /// the cookie it was first made for; a session's own expiry is checked
    /// on every use, and identities are shared among a user's sessions.)
    pub exp: u64,
    /// `X-Roost-User`.
    pub user_header: HeaderValue,
    /// `X-Roost-Email` (empty when the token has no usable email).
    pub email_header: HeaderValue,
}

impl Identity {
    /// The one ownership rule: may this caller use a workspace whose owner
    /// (the full `sub` from its labels) is `owner`? Its owner, or an admin.
    pub fn may_use(&self, owner: &str) -> bool {
        self.admin || *self.sub == *owner
    }

    /// Whether the token granted `permission` (admins hold every one).
    pub fn has(&self, permission: &str) -> bool {
        self.admin || self.permissions.iter().any(|p| p == permission)
    }

    /// Builds an identity from verified claims.
    pub fn from_claims(
        claims: &Map<String, Value>,
        username_claim: &str,
        admin_permission: &str,
        wanted: &[String],
    ) -> Result<Identity, AuthError> {
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(AuthError::Claims("missing sub")),
        };
        let username = match claims.get(username_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(AuthError::Claims("missing username claim")),
        };
        let exp = match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) => exp,
            None => return Err(AuthError::Claims("missing exp")),
        };
        let email = claims.get("email").and_then(Value::as_str).map(str::to_string);
        let granted: &[Value] = match claims.get("permissions") {
            Some(Value::Array(perms)) => perms,
            _ => &[],
        };
        let admin = granted.iter().any(|p| p.as_str() == Some(admin_permission));
        let permissions = wanted
            .iter()
            .filter(|w| granted.iter().any(|p| p.as_str() == Some(w.as_str())))
            .take(MAX_PERMISSIONS)
            .cloned()
            .collect();
        Identity::new(sub, username, email, admin, exp, permissions)
    }

    /// An identity from its parts (a browser session carries them).
    pub fn new(
        sub: &str,
        username: &str,
        email: Option<String>,
        admin: bool,
        exp: u64,
        mut permissions: Vec<String>,
    ) -> Result<Identity, AuthError> {
        // Bounded so a session cookie always fits what browsers keep (no
        // provider issues longer ones: Auth0's are under 100 bytes).
        let fits = |v: &str| v.len() <= MAX_CLAIM_LEN && !v.chars().any(char::is_control);
        if !fits(sub) || !fits(username) {
            return Err(AuthError::Claims("sub or username claim too long or not text"));
        }
        let email = email.filter(|e| fits(e));
        permissions.retain(|p| fits(p));
        permissions.truncate(MAX_PERMISSIONS);
        let user_header = HeaderValue::from_str(sub).map_err(|_| AuthError::Claims("sub not a header value"))?;
        let email_header = email
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
            .unwrap_or_else(|| HeaderValue::from_static(""));
        Ok(Identity {
            sub: Arc::from(sub),
            email,
            slug: Arc::from(slug_for(username)),
            legacy_slug: legacy_slug_for(username).map(Arc::from),
            admin,
            permissions,
            exp,
            user_header,
            email_header,
        })
    }
}
