//! The absolute URLs roost sends browsers to, and which redirect targets it
//! accepts. Everything is built from the configured public origin
//! (`routing.scheme`, `routing.domain`, `routing.public_port`), never from
//! request headers; a redirect target (`rd`) passes only when it is an
//! `routing.scheme` URL for the domain or a host under it, on the public
//! port, without userinfo. Parsing is the WHATWG URL standard's (the `url`
//! crate), the same a browser applies, so `\\evil`, `//evil`, tabs and
//! percent-encoded tricks are read exactly as the browser would follow them.

use url::Url;

use crate::config::{RoutingConfig, Scheme};
use crate::slug;

/// roost's public origin and the rules for redirect targets.
#[derive(Debug, Clone)]
pub struct PublicOrigin {
    scheme: Scheme,
    domain: String,
    /// `None` when it is the scheme's default (then never written).
    port: Option<u16>,
    /// `<scheme>://<domain>[:port]`, no trailing slash.
    origin: String,
}

impl PublicOrigin {
    pub fn new(routing: &RoutingConfig) -> Self {
        let default = match routing.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let port = (routing.public_port != default).then_some(routing.public_port);
        let origin = match port {
            Some(p) => format!("{}://{}:{p}", routing.scheme.as_str(), routing.domain),
            None => format!("{}://{}", routing.scheme.as_str(), routing.domain),
        };
        PublicOrigin {
            scheme: routing.scheme,
            domain: routing.domain.clone(),
            port,
            origin,
        }
    }

    /// `<scheme>://<domain>[:port]`: the bare domain, where roost's own
    /// pages live.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// An absolute URL on the bare domain; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// An absolute URL on a host under the domain (`host` already validated
    /// as `<slug>.<domain>` or the domain itself).
    pub fn host_url(&self, host: &str, path: &str) -> String {
        match self.port {
            Some(p) => format!("{}://{host}:{p}{path}", self.scheme.as_str()),
            None => format!("{}://{host}{path}", self.scheme.as_str()),
        }
    }

    /// The sign-in page, returning to `back` (an absolute URL) afterwards.
    pub fn sign_in_url(&self, back: &str) -> String {
        self.url(&format!("/_roost/login?rd={}", encode(back)))
    }

    /// A workspace's front page.
    pub fn workspace_url(&self, slug: &str) -> String {
        self.host_url(&format!("{slug}.{}", self.domain), "/")
    }

    /// `target` if it is a safe place to send a browser: resolved against
    /// the bare domain (so a path works), then accepted only for this
    /// scheme, the domain or a workspace host under it, the public port,
    /// and no userinfo. Returns the normalized URL.
    pub fn safe_redirect(&self, target: &str) -> Option<String> {
        if target.is_empty() || target.len() > 4096 {
            return None;
        }
        let base = Url::parse(&self.origin).ok()?;
        let url = base.join(target).ok()?;
        if url.scheme() != self.scheme.as_str() || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        if url.port_or_known_default() != Some(self.port.unwrap_or(if self.is_https() { 443 } else { 80 })) {
            return None;
        }
        let host = match url.host() {
            Some(url::Host::Domain(h)) => h,
            _ => return None,
        };
        let ok = host == self.domain
            || host
                .strip_suffix(self.domain.as_str())
                .and_then(|s| s.strip_suffix('.'))
                .is_some_and(slug::is_label);
        // What the browser is sent back to rides in the sign-in state
        // cookie: long ones (percent-encoding can triple a target) would
        // push it past what browsers keep.
        (ok && url.as_str().len() <= MAX_REDIRECT_LEN).then(|| url.to_string())
    }
}

/// Longest redirect target kept, after normalisation.
pub const MAX_REDIRECT_LEN: usize = 1024;

/// Percent-encodes everything but RFC 3986's unreserved characters: for
/// query parameter values.
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(scheme: Scheme, port: u16) -> PublicOrigin {
        PublicOrigin::new(&RoutingConfig {
            domain: "ws.example.com".into(),
            entrypoints: vec!["web".into()],
            roost_url: "http://roost:8080".into(),
            auth_url: "http://roost:8081".into(),
            scheme,
            tls_resolver: None,
            public_port: port,
        })
    }

    #[test]
    fn urls_carry_the_port_only_when_it_is_not_the_default() {
        let o = origin(Scheme::Https, 443);
        assert_eq!(o.origin(), "https://ws.example.com");
        assert_eq!(o.workspace_url("alice"), "https://alice.ws.example.com/");
        let o = origin(Scheme::Http, 8080);
        assert_eq!(o.url("/_roost/callback"), "http://ws.example.com:8080/_roost/callback");
    }

    #[test]
    fn a_target_that_grows_past_the_limit_when_normalised_is_refused() {
        // Found by fuzz/redirect_target: percent-encoding made a short
        // target long enough to overflow the sign-in state cookie.
        let o = origin(Scheme::Https, 443);
        let long = format!("https://alice.ws.example.com/{}", "é".repeat(300));
        assert!(long.len() < 4096);
        assert_eq!(o.safe_redirect(&long), None);
        let fits = format!("https://alice.ws.example.com/{}", "a".repeat(900));
        assert!(o.safe_redirect(&fits).is_some());
    }

    #[test]
    fn redirects_stay_under_the_domain() {
        let o = origin(Scheme::Https, 443);
        for ok in [
            "https://alice.ws.example.com/lab?x=1",
            "https://ws.example.com/",
            "/_roost/",
            "https://ALICE.ws.example.com:443/",
        ] {
            assert!(o.safe_redirect(ok).is_some(), "{ok}");
        }
        let bad = [
            "https://evil.com/",
            "//evil.com/",
            "\\\\evil.com/",
            "/\\evil.com/",
            "https://ws.example.com.evil.com/",
            "https://evilws.example.com/",
            "https://a.b.ws.example.com/",
            "http://alice.ws.example.com/",
            "https://alice.ws.example.com:8443/",
            "https://alice.ws.example.com@evil.com/",
            "https://user:pw@alice.ws.example.com/",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "%2F%2Fevil.com",
            "https:%2F%2Fevil.com",
            "/\t/evil.com",
            "https://evil.com\\@alice.ws.example.com/",
            "https://127.0.0.1/",
            "",
        ];
        for b in bad {
            let got = o.safe_redirect(b);
            assert!(
                got.as_deref().is_none_or(|u| u.starts_with("https://ws.example.com/")),
                "{b:?} -> {got:?}"
            );
        }
    }
}
