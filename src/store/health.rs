//! Whether the shared store answers: read by `/readyz` and `/metrics`,
//! set by whoever last talked to it. A change is logged once.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct StoreHealth {
    up: AtomicBool,
}

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth {
            up: AtomicBool::new(true),
        }
    }
}

impl StoreHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The store answered.
    pub fn up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("the shared store answers again");
        }
    }

    /// The store did not answer; `error` is logged on the change only.
    pub fn down(&self, error: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "the shared store does not answer; deciding from memory until it does");
        }
    }
}
