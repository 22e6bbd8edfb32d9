//! Rate limits (governor): failed or missing credentials per client address,
//! and authorized requests per user. Over a limit the caller answers 429
//! with the `Retry-After` computed here.
//!
//! Valid credentials never count against the per-address limit (an office
//! behind one NAT address must not lock its users out); once an address has
//! run out of failures it is blocked until the limit refills, before any
//! token from it is verified, so a flood of forged tokens costs no crypto.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::config::{LimitsConfig, Rate};

/// How often idle limiter state is dropped.
const JANITOR_PERIOD: Duration = Duration::from_secs(60);

/// How long until a refused caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

pub struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
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
            per_user: RateLimiter::keyed(quota(config.authenticated_per_user)),
            blocked: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.unauthenticated_per_ip.per)
                .build(),
            clock: DefaultClock::default(),
        }
    }

    /// `Err` while `ip` is blocked for having run out of failures.
    pub fn blocked(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        match self.blocked.get(&ip) {
            Some(until) if until > Instant::now() => Err(RetryAfter(until - Instant::now())),
            _ => Ok(()),
        }
    }

    /// Counts one missing or failed credential from `ip`; `Err` (and the
    /// address blocked) when it has run out.
    pub fn unauthenticated(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.per_ip.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            self.blocked.insert(ip, Instant::now() + wait);
            RetryAfter(wait)
        })
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
                    self.per_user.retain_recent();
                    self.per_user.shrink_to_fit();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_cuts_off_a_flood_within_its_burst() {
        let limits = Limits::new(&LimitsConfig {
            unauthenticated_per_ip: Rate::parse("30/min").unwrap(),
            authenticated_per_user: Rate::parse("2000/s").unwrap(),
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(limits.blocked(ip).is_ok());
        let allowed = (0..100).filter(|_| limits.unauthenticated(ip).is_ok()).count();
        assert_eq!(allowed, 30);
        assert!(limits.blocked(ip).is_err());
        let RetryAfter(wait) = limits.unauthenticated(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(2), "{wait:?}");
        // Another address is unaffected.
        assert!(limits.unauthenticated("192.0.2.8".parse().unwrap()).is_ok());
    }
}
