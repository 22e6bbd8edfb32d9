//! The audit trail: every lifecycle and admin action (who, what, which
//! workspace, why, outcome), logged once (target `roost::audit`) and kept
//! in the store, the newest [`crate::store::AUDIT_KEEP`] of them, for
//! admins to read (`GET /_roost/api/v1/admin/audit`, the console). Records
//! name users by their `sub` and carry no credential: nothing in here is a
//! secret.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::store::{Store, StoreError};

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// The workspace's owner (status page, API, first request).
    User,
    /// An admin (API, console).
    Admin,
    /// The reaper: idle or past `max_lifetime`.
    Reaper,
    /// The quota: used up.
    Quota,
    /// roost itself (adopting a running container, a failed start).
    System,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the epoch.
    pub at: u64,
    pub actor: Actor,
    /// The `sub` of the user or admin who acted, if a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// `start`, `stop`, `restart`, `remove`, `purge`, `profile`, `backup`,
    /// `restore`, `sign_out_everywhere`, `ready`, `failed`, `culled`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Why, in a few words (`idle`, `max_lifetime`, `quota`, a profile name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// `ok`, or what went wrong (a short reason, never an engine message).
    pub outcome: String,
}

impl Event {
    pub fn new(actor: Actor, action: &str) -> Event {
        Event {
            at: now_secs(),
            actor,
            by: None,
            action: action.to_string(),
            workspace: None,
            why: None,
            outcome: "ok".into(),
        }
    }

    pub fn by(mut self, sub: &str) -> Event {
        self.by = Some(sub.to_string());
        self
    }

    pub fn workspace(mut self, slug: &str) -> Event {
        self.workspace = Some(slug.to_string());
        self
    }

    pub fn why(mut self, why: &str) -> Event {
        self.why = Some(why.to_string());
        self
    }

    pub fn outcome(mut self, outcome: &str) -> Event {
        self.outcome = outcome.to_string();
        self
    }

    /// `ok`, or the reason of an error.
    pub fn result<T, E: std::fmt::Display>(self, result: &Result<T, E>, reason: impl FnOnce(&E) -> String) -> Event {
        match result {
            Ok(_) => self,
            Err(e) => {
                let outcome = reason(e);
                self.outcome(&outcome)
            }
        }
    }
}

/// Writes records to the log and the store.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Audit {
        Audit { store }
    }

    /// Logs `event` and keeps it; a store that does not answer loses it
    /// from the trail (the log still has it), with a warning.
    pub async fn record(&self, event: Event) {
        tracing::info!(
            target: "roost::audit",
            actor = ?event.actor,
            by = event.by.as_deref().unwrap_or(""),
            action = %event.action,
            workspace = event.workspace.as_deref().unwrap_or(""),
            why = event.why.as_deref().unwrap_or(""),
            outcome = %event.outcome,
            "audit"
        );
        let Ok(json) = serde_json::to_string(&event) else {
            return;
        };
        if let Err(e) = self.store.append_audit(&json).await {
            tracing::warn!(error = %e, action = %event.action, "audit record not kept (it is in this log)");
        }
    }

    /// The newest `n` records, newest first.
    pub async fn recent(&self, n: usize) -> Result<Vec<Event>, StoreError> {
        let records = self.store.recent_audit(n).await?;
        Ok(records.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
    }
}
