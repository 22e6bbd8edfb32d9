//! Choosing a workspace's profile, from the API or the status page: only
//! a configured one, only with its permission, and a running workspace in
//! another profile is restarted in the new one only once its user said so.

use std::sync::Arc;

use crate::app::App;
use crate::audit::{Actor, Event};
use crate::error::HttpError;
use crate::forward_auth::Authenticated as Caller;
use crate::workspace::profiles::Choice;
use crate::workspace::registry::state_of;

/// A configured profile `c` may choose: 404 for no such profile, 403
/// without its permission.
pub(crate) fn choosable(app: &App, c: &Caller, name: &str) -> Result<Arc<Choice>, HttpError> {
    let choice = app
        .workspaces
        .profiles()
        .find(name)
        .ok_or(HttpError::BadRequest("no such profile"))?;
    if !choice.open_to(&c.identity) {
        return Err(HttpError::Forbidden("that profile needs a permission you do not have"));
    }
    Ok(choice.clone())
}

/// Records `choice` as the caller's, durably, and in the audit trail (the
/// caller was authorized for their workspace).
pub(crate) async fn store_choice(app: &App, c: &Caller, choice: &Choice) -> Result<(), HttpError> {
    let slug = &*c.identity.slug;
    let name = (!choice.is_default()).then_some(&*choice.name);
    let result = app.store.set_profile(slug, name).await;
    let event = Event::new(Actor::User, "profile")
        .by(&c.identity.sub)
        .workspace(slug)
        .why(&choice.name)
        .result(&result, |_| "failed: store".into());
    app.workspaces.audit().record(event).await;
    Ok(result?)
}

/// Chooses profile `name` for the caller's workspace; `true` when the
/// running workspace restarts in it (only with `confirm`).
pub(crate) async fn switch_profile(app: &App, c: &Caller, name: &str, confirm: bool) -> Result<bool, HttpError> {
    let choice = choosable(app, c, name)?;
    let slug = &*c.identity.slug;
    let registry = &app.workspaces;
    registry.authorize(&c.identity, slug).await?;
    let entry = registry.get(slug);
    let state = entry.as_ref().map_or("stopped", |e| state_of(e.phase()));
    let changes = match &entry {
        Some(e) => registry.chosen_profile(e).await.name != choice.name,
        None => true,
    };
    if changes && state == "starting" {
        return Err(HttpError::Conflict("the workspace is starting: switch once it runs"));
    }
    if changes && matches!(state, "running" | "paused" | "draining") && !confirm {
        return Err(HttpError::Conflict(
            "switching profiles restarts the running workspace (files on its volume are kept): confirm it",
        ));
    }
    store_choice(app, c, &choice).await?;
    Ok(registry.apply_profile(&c.identity, slug).await?)
}
