//! Quotas (`[quota]`): what one user's workspace may consume per period,
//! in run time and CPU time (the engine's count). The reaper's pass (one
//! replica at a time, the lease) accounts for every ready workspace in the
//! store; a workspace whose owner is not exempt is drained and stopped once
//! it is used up, and a start is refused (429 + `Retry-After` until the
//! period resets) until then. Admins and holders of
//! `quota.exempt_permission` are exempt: roost learns which an owner is
//! from their requests ([`Registry::gate`], starts), so a workspace whose
//! owner it has not seen since it started is accounted but never stopped.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Entry, Registry, Retire};
use crate::auth::Identity;
use crate::store::Usage;
use crate::workspace::runtime::{RuntimeError, Stats};

pub const UNKNOWN: u8 = 0;
pub const LIMITED: u8 = 1;
pub const EXEMPT: u8 = 2;

/// A workspace's standing in the current period.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    /// Seconds since the epoch.
    pub period_start: u64,
    pub resets_at: u64,
    pub workspace_hours: f64,
    pub cpu_hours: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_hours_limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_hours_limit: Option<f64>,
    pub exempt: bool,
    pub used_up: bool,
}

impl Registry {
    /// Whether any limit is set.
    pub fn quota_enabled(&self) -> bool {
        self.quota.workspace_hours.is_some() || self.quota.cpu_hours.is_some()
    }

    /// The current period: its start and end, seconds since the epoch.
    pub fn period(&self) -> (u64, u64) {
        let len = self.quota.period.as_secs().max(1);
        let now = self.now_secs();
        let start = now - now % len;
        (start, start + len)
    }

    /// Whether `who` has no quota.
    pub fn quota_exempt(&self, who: &Identity) -> bool {
        who.admin || self.quota.exempt_permission.as_deref().is_some_and(|p| who.has(p))
    }

    /// Notes whether `entry`'s owner (`owner`, asking now) is exempt.
    pub(super) fn learn_quota_class(&self, entry: &Entry, owner: &Identity) {
        if self.quota_enabled() {
            let class = if self.quota_exempt(owner) { EXEMPT } else { LIMITED };
            entry.quota_class.store(class, Ordering::Relaxed);
        }
    }

    fn used_up(&self, used: Usage) -> bool {
        let over = |limit: Option<f64>, secs: f64| limit.is_some_and(|h| secs >= h * 3600.0);
        over(self.quota.workspace_hours, used.run_secs) || over(self.quota.cpu_hours, used.cpu_secs)
    }

    /// `slug`'s standing now (`exempt`: its owner is).
    pub async fn quota_view(&self, slug: &str, exempt: bool) -> Option<QuotaView> {
        if !self.quota_enabled() {
            return None;
        }
        let (start, end) = self.period();
        let used = match self.store.usage(&[Arc::from(slug)], start).await {
            Ok(used) => used.first().copied().unwrap_or_default(),
            Err(_) => Usage::default(),
        };
        Some(QuotaView {
            period_start: start,
            resets_at: end,
            workspace_hours: used.run_secs / 3600.0,
            cpu_hours: used.cpu_secs / 3600.0,
            workspace_hours_limit: self.quota.workspace_hours,
            cpu_hours_limit: self.quota.cpu_hours,
            exempt,
            used_up: !exempt && self.used_up(used),
        })
    }

    /// Refuses to start `slug` for its owner `caller` once their quota is
    /// used up. A store that does not answer lets the start go on.
    pub(super) async fn check_quota(&self, caller: &Identity, entry: &Entry) -> Result<(), RuntimeError> {
        if !self.quota_enabled() || caller.admin {
            return Ok(());
        }
        self.learn_quota_class(entry, caller);
        if self.quota_exempt(caller) {
            return Ok(());
        }
        let (start, end) = self.period();
        let used = match self.store.usage(std::slice::from_ref(&entry.slug), start).await {
            Ok(used) => used.first().copied().unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "quota use unknown (the store does not answer): start allowed");
                return Ok(());
            }
        };
        if self.used_up(used) {
            return Err(RuntimeError::QuotaUsed {
                resets_at: end,
                retry_after: Duration::from_secs(end.saturating_sub(self.now_secs()).max(1)),
            });
        }
        Ok(())
    }

    /// Counts what each sampled ready workspace used since the last pass,
    /// and stops those of limited owners that are used up.
    pub(crate) async fn account(self: &Arc<Self>, samples: &[(Arc<Entry>, Stats)]) {
        if !self.quota_enabled() {
            return;
        }
        let (start, _) = self.period();
        let now = self.now_ms();
        // A pass never counts more than this much run time (a gap while
        // another replica held the lease is that replica's to count).
        let most = (self.quota.period.as_millis() as u64).min(120_000);
        for (entry, stats) in samples {
            let before = entry
                .accounted
                .lock()
                .ok()
                .and_then(|mut a| a.replace((now, stats.cpu_nanos)));
            let Some((then, cpu_then)) = before else {
                continue;
            };
            let run_ms = now.saturating_sub(then).min(most);
            // A lower count: the container began again.
            let cpu = if stats.cpu_nanos >= cpu_then {
                stats.cpu_nanos - cpu_then
            } else {
                stats.cpu_nanos
            };
            let used = Usage {
                run_secs: run_ms as f64 / 1000.0,
                cpu_secs: cpu as f64 / 1e9,
            };
            self.metrics.quota_used(used.run_secs, used.cpu_secs);
            let total = match self.store.add_usage(&entry.slug, start, used).await {
                Ok(total) => total,
                Err(e) => {
                    tracing::warn!(error = %e, workspace = %entry.slug, "quota use not recorded");
                    continue;
                }
            };
            if self.used_up(total) && entry.quota_class.load(Ordering::Relaxed) == LIMITED {
                self.retire_in_background(entry.clone(), Retire::Quota);
            }
        }
    }

    /// A workspace became ready: its accounting starts over.
    pub(super) fn reset_accounting(&self, entry: &Entry) {
        if let Ok(mut a) = entry.accounted.lock() {
            *a = None;
        }
    }
}
