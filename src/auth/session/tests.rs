//! Tests of sessions: sealing, opening, renewal, the cache of opened cookies.

use super::*;
use crate::config::{RoutingConfig, Scheme, Secret};

fn sessions(key: &str, previous: Option<&str>) -> Sessions {
    let secrets = Secrets {
        cookie_key: Some(Secret::new(key)),
        cookie_key_previous: previous.map(Secret::new),
        ..Secrets::default()
    };
    let config = SessionConfig {
        lifetime: Duration::from_secs(3600),
        max_age: Duration::from_secs(86400),
        login_timeout: Duration::from_secs(600),
        logout_return_url: None,
    };
    let origin = PublicOrigin::new(&RoutingConfig {
        domain: "ws.example.com".into(),
        entrypoints: vec![],
        roost_url: "http://roost".into(),
        auth_url: "http://roost:8081".into(),
        scheme: Scheme::Https,
        tls_resolver: None,
        public_port: 443,
    });
    Sessions::new(&secrets, &config, &origin).unwrap()
}

fn value(set_cookie: &HeaderValue) -> String {
    let c = Cookie::parse(set_cookie.to_str().unwrap().to_string()).unwrap();
    c.value().to_string()
}

const K1: &str = "0123456789abcdef0123456789abcdef-one";
const K2: &str = "0123456789abcdef0123456789abcdef-two";

#[test]
fn a_cached_cookie_is_checked_again_on_every_use() {
    let revoked = Arc::new(Revocations::default());
    let s = sessions(K1, None).with_revocations(revoked.clone());
    let session = s.start("auth0|alice", "alice", None, false, vec![]);
    let v = value(&s.set_cookie(&session));
    let (first, refresh) = s.open_cached(&v).unwrap();
    assert!(!refresh);
    assert_eq!(first.session(), session);
    assert_eq!(*first.user.identity.sub, *"auth0|alice");
    let (again, _) = s.open_cached(&v).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "opened once");
    assert_eq!(s.cached(), 1);
    // Another value (one character changed) is not the cached one.
    let mut tampered = v.clone().into_bytes();
    tampered[v.len() / 2] ^= 1;
    assert!(s.open_cached(std::str::from_utf8(&tampered).unwrap()).is_err());
    // A sign-out reaches the cached cookie at once.
    let (revocation, _) = s.revocation(&first);
    revoked.apply(&revocation);
    assert!(matches!(s.open_cached(&v), Err(AuthError::Session("revoked"))));
    // A cookie sealed with the previous key is re-issued even from the cache.
    let rotated = sessions(K2, Some(K1));
    let other = rotated.start("auth0|bob", "bob", None, false, vec![]);
    let old = value(&s.set_cookie(&other));
    assert!(rotated.open_cached(&old).unwrap().1);
    assert!(rotated.open_cached(&old).unwrap().1);
}

#[test]
fn a_session_cookie_is_small_scoped_and_opens_again() {
    let s = sessions(K1, None);
    let session = s.start(
        "auth0|alice",
        "alice",
        Some("alice@example.com".into()),
        false,
        vec!["gpu".into()],
    );
    let set = s.set_cookie(&session);
    let text = set.to_str().unwrap();
    assert!(text.len() < 1024, "{} bytes", text.len());
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Domain=ws.example.com", "Path=/"] {
        assert!(text.contains(attr), "{text}");
    }
    assert!(!text.contains("alice"), "the payload is encrypted: {text}");
    let opened = s.open(&value(&set)).unwrap();
    assert_eq!(opened.session, session);
    assert!(!opened.refresh);
}

#[test]
fn tampered_wrong_key_and_expired_cookies_are_refused() {
    let s = sessions(K1, None);
    let session = s.start("alice", "alice", None, false, vec![]);
    let v = value(&s.set_cookie(&session));
    let mut tampered = v.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    assert!(s.open(std::str::from_utf8(&tampered).unwrap()).is_err());
    assert!(sessions(K2, None).open(&v).is_err());
    let expired = Session {
        expires: now_secs() - 1,
        ..session.clone()
    };
    assert!(s.open(&value(&s.set_cookie(&expired))).is_err());
    let too_old = Session {
        signed_in: now_secs() - 86400,
        ..session
    };
    assert!(s.open(&value(&s.set_cookie(&too_old))).is_err());
    assert!(s.open("").is_err());
    assert!(s.open(&"A".repeat(5000)).is_err());
}

#[test]
fn impossible_times_are_refused_and_renewal_never_overflows() {
    // Found by fuzz/session_cookie: a sealed session signed in at the
    // end of time passed max_age and overflowed its renewal.
    let s = sessions(K1, None);
    let session = s.start("alice", "alice", None, false, vec![]);
    let future = Session {
        signed_in: u64::MAX,
        ..session.clone()
    };
    assert!(s.open(&value(&s.set_cookie(&future))).is_err());
    let _ = s.renew(&future);
    let beyond_max_age = Session {
        expires: session.signed_in + 8 * 86400,
        ..session
    };
    assert!(s.open(&value(&s.set_cookie(&beyond_max_age))).is_err());
}

#[test]
fn the_previous_key_still_opens_and_asks_for_a_reseal() {
    let old = sessions(K1, None);
    let v = value(&old.set_cookie(&old.start("alice", "alice", None, false, vec![])));
    let rotated = sessions(K2, Some(K1));
    let opened = rotated.open(&v).unwrap();
    assert!(opened.refresh);
    let resealed = value(&rotated.renew(&opened.session));
    assert!(!rotated.open(&resealed).unwrap().refresh);
    assert!(sessions(K2, None).open(&resealed).is_ok());
}

#[test]
fn a_cookie_sealed_under_one_name_does_not_open_under_another() {
    let s = sessions(K1, None);
    let sealed = s.seal("roost_login_x", r#"{"s":"alice"}"#);
    assert!(s.unseal(SESSION_COOKIE, &sealed).is_none());
    assert!(s.unseal("roost_login_x", &sealed).is_some());
}

#[test]
fn sessions_in_their_second_half_are_renewed() {
    let s = sessions(K1, None);
    let mut session = s.start("alice", "alice", None, false, vec![]);
    session.expires = now_secs() + 1000; // lifetime 3600: past half
    let opened = s.open(&value(&s.set_cookie(&session))).unwrap();
    assert!(opened.refresh);
    let renewed = s.open(&value(&s.renew(&opened.session))).unwrap();
    assert!(renewed.session.expires > session.expires);
}
