//! The keys the config file knows, read from the raw structs themselves
//! (serde's own field lists, so they cannot drift from what is parsed), and
//! the nearest of them for a key that is not one: check-config's "did you
//! mean".

use serde_aux::serde_introspection::serde_introspect;

use super::raw::{
    RawConfig, RawDeployment, RawLimits, RawOidc, RawProfile, RawQuota, RawRouting, RawServer, RawSession, RawStore,
    RawSwarm, RawWorkspace,
};

/// Every known key, dotted (`workspace.idle_timeout`), sections included.
pub fn known() -> Vec<String> {
    let sections: [(&str, &[&str]); 11] = [
        ("deployment", serde_introspect::<RawDeployment>()),
        ("server", serde_introspect::<RawServer>()),
        ("oidc", serde_introspect::<RawOidc>()),
        ("routing", serde_introspect::<RawRouting>()),
        ("workspace", serde_introspect::<RawWorkspace>()),
        ("limits", serde_introspect::<RawLimits>()),
        ("session", serde_introspect::<RawSession>()),
        ("store", serde_introspect::<RawStore>()),
        ("profiles", serde_introspect::<RawProfile>()),
        ("quota", serde_introspect::<RawQuota>()),
        ("swarm", serde_introspect::<RawSwarm>()),
    ];
    let mut keys: Vec<String> = serde_introspect::<RawConfig>().iter().map(|k| k.to_string()).collect();
    for (section, fields) in sections {
        keys.extend(fields.iter().map(|f| format!("{section}.{f}")));
    }
    keys
}

/// The known key nearest to `unknown`, when one is near enough to be what
/// was meant: the right name in the wrong section (or at the top level), or
/// a misspelling in the same section (at most a third of its letters off).
pub fn nearest(unknown: &str, known: &[String]) -> Option<String> {
    let split = |k: &str| -> (String, String) {
        match k.rsplit_once('.') {
            Some((section, leaf)) => (section.to_string(), leaf.to_string()),
            None => (String::new(), k.to_string()),
        }
    };
    let (section, leaf) = split(unknown);
    if let Some(moved) = known.iter().find(|k| split(k).1 == leaf && **k != unknown) {
        return Some(moved.clone());
    }
    let (best, distance) = known
        .iter()
        .filter(|k| split(k).0 == section)
        .map(|k| (k, strsim::damerau_levenshtein(&leaf, &split(k).1)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= (leaf.len() / 3).max(1)).then(|| best.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_keys_are_the_parsed_ones() {
        let keys = known();
        for key in [
            "listen",
            "workspace.idle_timeout",
            "oidc.issuer",
            "limits.tunnels_per_user",
            "session.max_age",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
        assert!(!keys.iter().any(|k| k == "idle_timeout"));
    }

    #[test]
    fn misspelt_and_misplaced_keys_find_their_key() {
        let keys = known();
        for (unknown, meant) in [
            ("workspace.idle_timout", "workspace.idle_timeout"),
            ("workspace.idletimeout", "workspace.idle_timeout"),
            ("workspace.memroy", "workspace.memory"),
            ("oidc.isuer", "oidc.issuer"),
            ("idle_timeout", "workspace.idle_timeout"),
            ("workspace.domain", "routing.domain"),
            ("workspce", "workspace"),
            ("lisen", "listen"),
        ] {
            assert_eq!(nearest(unknown, &keys).as_deref(), Some(meant), "{unknown}");
        }
        for far in ["workspace.colour_scheme", "flux_capacitor", "oidc.x"] {
            assert_eq!(nearest(far, &keys), None, "{far}");
        }
    }
}
