//! Rate limits (governor): what costs, per client address, and authorized
//! requests per user. Over a limit the caller answers 429 with the
//! `Retry-After` computed here.
//!
//! The per-address limit guards only what costs: the signature check of a
//! token roost has not verified before (counted when it fails) and sign-in
//! starts. Requests without credentials, session cookies and tokens
//! already verified never count and are never refused for their address,
//! so anonymous traffic from an office NAT (or from a load balancer every
//! client seems to come from) cannot lock signed-in users out. Once an
//! address has run out of failures, a new token from it is still verified
//! when it names (unverified) a user roost has verified before, a few
//! times a minute per such user, so a colleague's fresh token gets
//! through; any other token only within a small budget shared by all such
//! addresses. A flood of forged tokens so costs little crypto and locks no
//! known user out. IPv6 addresses are keyed by their /64.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::config::{LimitsConfig, Rate};

/// How often idle limiter state is dropped.
const JANITOR_PERIOD: Duration = Duration::from_secs(60);

/// Signature checks per second granted to all addresses that ran out of
/// failures, together (a bound on the crypto a flood can cost).
const BLOCKED_VERIFICATIONS_PER_SEC: u32 = 10;
/// ... and per minute for each user roost verified before, named by a
/// token from such an address.
const KNOWN_USER_VERIFICATIONS_PER_MIN: u32 = 5;

/// The limiter key for a client address: IPv4 as is, IPv6 by its /64 (one
/// host usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How long until a refused caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

pub struct Limits {
    /// Failed signature checks per address.
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Sign-in starts per address.
    sign_in_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    /// Signature checks for addresses out of failures, all together.
    blocked_budget: DefaultKeyedRateLimiter<()>,
    /// ... and per user roost verified before, named by such a token.
    blocked_per_known: DefaultKeyedRateLimiter<Arc<str>>,
    /// Users whose tokens roost verified recently.
    known: moka::sync::Cache<Arc<str>, ()>,
    per_user: DefaultKeyedRateLimiter<Arc<str>>,
    /// Addresses out of failures, with when they may try again.
    blocked: moka::sync::Cache<IpAddr, Instant>,
    clock: DefaultClock,
}

fn quota(rate: Rate) -> Quota {
    Quota::with_period(rate.per / rate.count.get())
        .unwrap_or_else(|| Quota::per_second(rate.count))
        .allow_burst(rate.count)
}

impl Limits {
    pub fn new(config: &LimitsConfig) -> Self {
        Limits {
            per_ip: RateLimiter::keyed(quota(config.unauthenticated_per_ip)),
            sign_in_per_ip: RateLimiter::keyed(quota(config.unauthenticated_per_ip)),
            blocked_budget: RateLimiter::keyed(Quota::per_second(
                std::num::NonZeroU32::new(BLOCKED_VERIFICATIONS_PER_SEC).unwrap_or(std::num::NonZeroU32::MIN),
            )),
            blocked_per_known: RateLimiter::keyed(Quota::per_minute(
                std::num::NonZeroU32::new(KNOWN_USER_VERIFICATIONS_PER_MIN).unwrap_or(std::num::NonZeroU32::MIN),
            )),
            known: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(7 * 24 * 3600))
                .build(),
            per_user: RateLimiter::keyed(quota(config.authenticated_per_user)),
            blocked: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.unauthenticated_per_ip.per)
                .build(),
            clock: DefaultClock::default(),
        }
    }

    /// May a token roost has not seen before, from `ip`, have its signature
    /// checked? Always, unless the address ran out of failures; then only
    /// within the budget all such addresses share.
    /// `claimed_sub` reads the token's `sub` without verifying it (only
    /// asked for a blocked address).
    pub fn may_verify(&self, ip: IpAddr, claimed_sub: impl FnOnce() -> Option<String>) -> Result<(), RetryAfter> {
        let key = client_key(ip);
        let until = match self.blocked.get(&key) {
            Some(until) if until > Instant::now() => until,
            _ => return Ok(()),
        };
        let refused = RetryAfter(until - Instant::now());
        if let Some(sub) = claimed_sub().map(Arc::<str>::from) {
            if self.known.contains_key(&sub) {
                return self.blocked_per_known.check_key(&sub).map_err(|_| refused);
            }
        }
        self.blocked_budget.check_key(&()).map_err(|_| refused)
    }

    /// Remembers a user whose token was verified.
    pub fn verified(&self, sub: &Arc<str>) {
        if !self.known.contains_key(sub) {
            self.known.insert(sub.clone(), ());
        }
    }

    /// Counts one failed signature check (or unusable token) from `ip`;
    /// when the address has run out it is blocked until the limit refills.
    pub fn failed(&self, ip: IpAddr) {
        let key = client_key(ip);
        if let Err(not_until) = self.per_ip.check_key(&key) {
            let wait = not_until.wait_time_from(self.clock.now());
            self.blocked.insert(key, Instant::now() + wait);
        }
    }

    /// Counts one sign-in start from `ip`.
    pub fn sign_in(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.sign_in_per_ip
            .check_key(&client_key(ip))
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// Counts one authorized request by `sub`.
    pub fn authenticated(&self, sub: &Arc<str>) -> Result<(), RetryAfter> {
        self.per_user
            .check_key(sub)
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// Drops the state of keys that are back at full capacity, until `cancel`.
    pub async fn run_janitor(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(JANITOR_PERIOD);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    self.per_ip.retain_recent();
                    self.per_ip.shrink_to_fit();
                    self.sign_in_per_ip.retain_recent();
                    self.sign_in_per_ip.shrink_to_fit();
                    self.per_user.retain_recent();
                    self.blocked_per_known.retain_recent();
                    self.blocked_per_known.shrink_to_fit();
                    self.per_user.shrink_to_fit();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::new(&LimitsConfig {
            unauthenticated_per_ip: Rate::parse("30/min").unwrap(),
            authenticated_per_user: Rate::parse("2000/s").unwrap(),
            tunnels_per_user: 32,
            tunnel_idle_timeout: Duration::from_secs(3600),
        })
    }

    #[test]
    fn failures_block_an_address_but_a_small_shared_budget_remains() {
        let limits = limits();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..30 {
            assert!(limits.may_verify(ip, || None).is_ok());
            limits.failed(ip);
        }
        // The 31st failure blocks the address.
        limits.failed(ip);
        let stranger = || Some("mallory".to_string());
        let granted = (0..100).filter(|_| limits.may_verify(ip, stranger).is_ok()).count();
        assert!(
            (1..=BLOCKED_VERIFICATIONS_PER_SEC as usize + 1).contains(&granted),
            "{granted}"
        );
        let RetryAfter(wait) = limits.may_verify(ip, stranger).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(2), "{wait:?}");
        // A user verified before still gets a few checks a minute.
        limits.verified(&Arc::from("bob"));
        let bob = || Some("bob".to_string());
        let granted = (0..20).filter(|_| limits.may_verify(ip, bob).is_ok()).count();
        assert_eq!(granted, KNOWN_USER_VERIFICATIONS_PER_MIN as usize);
        // Another address is unaffected.
        assert!(limits.may_verify("192.0.2.8".parse().unwrap(), stranger).is_ok());
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let limits = limits();
        for i in 0..31u16 {
            limits.failed(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, i + 1)));
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.blocked.get(&client_key(same_64)).is_some());
        assert!(limits.blocked.get(&client_key(other_64)).is_none());
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn sign_in_starts_are_limited_per_address() {
        let limits = limits();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!((0..50).filter(|_| limits.sign_in(ip).is_ok()).count(), 30);
        assert!(limits.sign_in("192.0.2.10".parse().unwrap()).is_ok());
    }
}
