//! Workspace names: a user's claim value turned into a DNS label.
//!
//! The claim is lowered to `[a-z0-9-]` and cut to 40 characters; whenever
//! that mapping was not the identity, 64 bits of a hash of the raw value
//! are appended, so `auth0|abc` and `auth0-abc` never share a workspace
//! (and finding a second value for someone's slug costs 2^64 tries).
//! Slugs made before carried 32 bits ([`legacy_slug_for`]); a workspace's
//! volume from then is found again by that name.

use sha2::{Digest, Sha256};

/// Longest slug: leaves room in a 63-byte DNS label and in `roost-<slug>-data`.
pub const MAX_LEN: usize = 40;
/// Hex digits of the hash: 64 bits.
const HASH_LEN: usize = 16;
/// What slugs carried before: 32 bits.
const LEGACY_HASH_LEN: usize = 8;

/// The workspace slug for a raw claim value.
pub fn slug_for(raw: &str) -> String {
    slug_with(raw, HASH_LEN)
}

/// The slug this claim value had when slugs carried 32-bit hashes, when
/// that differs from today's (only hashed slugs changed).
pub fn legacy_slug_for(raw: &str) -> Option<String> {
    let old = slug_with(raw, LEGACY_HASH_LEN);
    (old != slug_for(raw)).then_some(old)
}

fn slug_with(raw: &str, hash_len: usize) -> String {
    let mapped: String = raw
        .chars()
        .map(|ch| match ch {
            'a'..='z' | '0'..='9' | '-' => ch,
            'A'..='Z' => ch.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if mapped == raw && is_label(raw) && raw.len() <= MAX_LEN {
        return mapped;
    }
    let digest = Sha256::digest(raw.as_bytes());
    let hash: String = digest.iter().take(hash_len / 2).map(|b| format!("{b:02x}")).collect();
    // Collapse runs of '-' and trim them so the label stays readable and valid.
    let mut stem = String::with_capacity(mapped.len());
    for ch in mapped.chars() {
        if ch != '-' || !stem.ends_with('-') {
            stem.push(ch);
        }
    }
    let stem = stem.trim_matches('-');
    let room = MAX_LEN - hash_len - 1;
    let stem = stem[..stem.len().min(room)].trim_end_matches('-');
    if stem.is_empty() {
        format!("u-{hash}")
    } else {
        format!("{stem}-{hash}")
    }
}

/// True when `s` could be a slug roost made: a DNS label of `[a-z0-9-]`.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_mapping_keeps_the_name() {
        assert_eq!(slug_for("alice"), "alice");
        assert_eq!(slug_for("bob-42"), "bob-42");
    }

    #[test]
    fn changed_names_get_a_hash_and_never_collide() {
        let a = slug_for("auth0|abc");
        let b = slug_for("auth0-abc");
        assert_eq!(b, "auth0-abc");
        assert!(a.starts_with("auth0-abc-"), "{a}");
        assert_ne!(a, b);
        assert_ne!(slug_for("Alice"), slug_for("alice"));
        assert_ne!(slug_for("alice@example.com"), slug_for("alice-example-com"));
    }

    #[test]
    fn hashes_carry_64_bits_and_the_old_slug_is_known() {
        let s = slug_for("auth0|abc");
        let hash = s.rsplit('-').next().unwrap();
        assert_eq!(hash.len(), 16, "{s}");
        let old = legacy_slug_for("auth0|abc").unwrap();
        assert_eq!(old.rsplit('-').next().unwrap().len(), 8, "{old}");
        assert_eq!(&hash[..8], old.rsplit('-').next().unwrap(), "same hash, longer");
        assert_eq!(legacy_slug_for("alice"), None, "unhashed slugs never changed");
    }

    #[test]
    fn slugs_are_bounded_labels() {
        for raw in [
            "",
            "|||",
            "-lead",
            "trail-",
            "UPPER",
            "ünïcödé",
            "google-oauth2|112233445566778899001122334455667788",
            &"x".repeat(500),
            "a--b",
        ] {
            let s = slug_for(raw);
            assert!(is_label(&s) && s.len() <= MAX_LEN, "{raw:?} -> {s:?}");
        }
    }
}
