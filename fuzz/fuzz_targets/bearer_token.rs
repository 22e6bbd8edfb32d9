//! Bearer token verification in-process: the size check, header decoding,
//! algorithm and key selection, signature, claims, the identity (and the
//! ID-token path of sign-in), against KeyStores loaded from a static
//! fetcher (k1 RS256 + a fuzz Ed25519 key): modes 0 and 1 run against the
//! RS256 deployment, modes 2 and 3 against the EdDSA one.
//!
//! Input: byte 0 picks the mode, the rest is
//!   0, 1: the token as presented (UTF-8; `@TOKEN@`/`@ADMIN@` splice in a
//!         valid one) → `cached`, `verify`, `verify_id_token`;
//!   2:    the claims (`@NOW@`, `@EXP@`: timestamps), signed with the Ed25519 key under a
//!         fixed header → reaches claim validation and `Identity`;
//!   3:    `header\npayload`, both chosen (payload as in 2), signed with the Ed25519 key →
//!         key / algorithm confusion.
//!
//! Checks: no panic; a token that verifies names a non-empty `sub` and a
//! valid workspace slug; in mode 3 only the Ed25519 key's own header
//! (alg EdDSA, kid `ed` or none) can verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roost::auth::{Identity, MAX_TOKEN_BYTES};
use roost_fuzz::{credentials, harness, sign_ed, split_at_byte, times_bytes};

fn check(identity: &Identity) {
    assert!(!identity.sub.is_empty());
    assert!(roost::slug::is_label(&identity.slug), "slug {:?}", identity.slug);
    assert!(identity.slug.len() <= roost::slug::MAX_LEN, "slug {:?}", identity.slug);
    assert_eq!(identity.user_header.as_bytes(), identity.sub.as_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    let verifier = &h.app.verifier;
    let ed = &h.ed.verifier;
    match mode % 4 {
        0 | 1 => {
            let rest = credentials().splice(rest);
            let Ok(token) = std::str::from_utf8(&rest) else {
                return;
            };
            let cached = verifier.cached(token);
            let verified = h.rt.block_on(verifier.verify(token));
            if roost_fuzz::debug() {
                eprintln!("bearer_token raw: {:?}", verified.as_ref().map(|i| &i.sub));
            }
            if let Some(id) = &cached {
                assert!(verified.is_ok(), "cached but refused");
                check(id);
            }
            if let Ok(id) = &verified {
                assert!(token.len() <= MAX_TOKEN_BYTES);
                check(id);
                let again = verifier.cached(token).expect("a verified token is cached");
                assert_eq!(again.sub, id.sub);
            }
            let _ = h.rt.block_on(verifier.verify_id_token(token, "fuzz-nonce"));
            let _ = h.rt.block_on(ed.verify_uncached(token));
        }
        2 => {
            let token = sign_ed(br#"{"alg":"EdDSA","kid":"ed","typ":"JWT"}"#, &times_bytes(rest));
            let verified = h.rt.block_on(ed.verify_uncached(&token));
            let id_claims = h.rt.block_on(ed.verify_id_token(&token, "fuzz-nonce"));
            if roost_fuzz::debug() {
                eprintln!(
                    "bearer_token signed: {:?} / id token {:?}",
                    verified.as_ref().map(|i| &i.sub),
                    id_claims.as_ref().map(|c| &c.sub)
                );
            }
            if let Ok(id) = &verified {
                check(id);
            }
            if let Ok(claims) = &id_claims {
                assert!(!claims.sub.is_empty());
            }
        }
        _ => {
            let (header, payload) = split_at_byte(rest, b'\n');
            let token = sign_ed(header, &times_bytes(payload));
            let verified = h.rt.block_on(ed.verify_uncached(&token));
            let id_claims = h.rt.block_on(ed.verify_id_token(&token, "fuzz-nonce"));
            if roost_fuzz::debug() {
                eprintln!(
                    "bearer_token header: {:?} / id token {:?}",
                    verified.as_ref().map(|i| &i.sub),
                    id_claims.as_ref().map(|c| &c.sub)
                );
            }
            if verified.is_ok() || id_claims.is_ok() {
                let hdr = jsonwebtoken::decode_header(&token).expect("a verified token has a header");
                assert_eq!(hdr.alg, jsonwebtoken::Algorithm::EdDSA, "{hdr:?} verified");
                // No kid: the deployment's only usable key (the Ed25519 one: k1 is
                // RS256, not allowed here) is the one that verifies.
                assert!(matches!(hdr.kid.as_deref(), None | Some("ed")), "{hdr:?} verified");
            }
            if let Ok(id) = &verified {
                check(id);
            }
        }
    }
});
