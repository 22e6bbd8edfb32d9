//! The caller's own workspace: its status, starting it (in a profile),
//! stopping or purging it, choosing its profile; the profiles on offer.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{query_param, read_json};
use crate::app::App;
use crate::audit::{Actor, Event};
use crate::error::HttpError;
use crate::forward_auth::Authenticated as Caller;
use crate::pages::perform;
use crate::pages::profile::{choosable, store_choice, switch_profile};
use crate::request::{Parsed, RequestBody};

type Answer = Result<(StatusCode, Value), HttpError>;

/// `POST workspace`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    profile: Option<String>,
}

/// `PUT workspace/profile`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    profile: String,
    /// Switching a running workspace restarts it: say so.
    #[serde(default)]
    confirm: bool,
}

/// The caller's workspace status, with its URL.
pub(super) async fn status(app: &App, c: &Caller) -> Result<Value, HttpError> {
    let slug = &*c.identity.slug;
    let mut value = serde_json::to_value(app.workspaces.status(&c.identity, slug).await?).unwrap_or_default();
    value["url"] = json!(app.forward_auth.origin().workspace_url(slug));
    Ok(value)
}

/// `GET status`, `GET logs`, `POST start|stop|restart`.
pub(super) async fn legacy(app: &App, c: &Caller, what: &str) -> Answer {
    match what {
        "status" => Ok((StatusCode::OK, status(app, c).await?)),
        "logs" => {
            let slug = &*c.identity.slug;
            let lines = app.workspaces.recent_logs(&c.identity, slug).await?;
            Ok((StatusCode::OK, json!({ "workspace": slug, "lines": lines })))
        }
        action => {
            perform(app, c, action).await?;
            Ok((StatusCode::ACCEPTED, status(app, c).await?))
        }
    }
}

/// `GET|POST|DELETE workspace`.
pub(super) async fn workspace<B: RequestBody>(app: &App, req: &Parsed<'_>, c: &Caller, body: B) -> Answer {
    match *req.method {
        http::Method::POST => {
            if let Some(StartBody { profile: Some(name) }) = read_json(body).await? {
                let choice = choosable(app, c, &name)?;
                app.workspaces.authorize(&c.identity, &c.identity.slug).await?;
                store_choice(app, c, &choice).await?;
            }
            perform(app, c, "start").await?;
            Ok((StatusCode::ACCEPTED, status(app, c).await?))
        }
        http::Method::DELETE if query_param(req, "purge").as_deref() == Some("true") => {
            let slug = &*c.identity.slug;
            if query_param(req, "confirm").as_deref() != Some(slug) {
                return Err(HttpError::BadRequest(
                    "purging deletes every file of the workspace: pass confirm=<its name> to go on",
                ));
            }
            app.workspaces.authorize(&c.identity, slug).await?;
            let result = app.workspaces.remove_workspace(slug, true).await;
            let event = Event::new(Actor::User, "purge")
                .by(&c.identity.sub)
                .workspace(slug)
                .result(&result, |e| format!("failed: {}", e.reason()));
            app.workspaces.audit().record(event).await;
            let removed = result?;
            Ok((StatusCode::OK, json!({ "workspace": slug, "removed": removed })))
        }
        http::Method::DELETE => {
            perform(app, c, "stop").await?;
            Ok((StatusCode::ACCEPTED, status(app, c).await?))
        }
        _ => Ok((StatusCode::OK, status(app, c).await?)),
    }
}

/// `PUT workspace/profile`: a running workspace in another profile is
/// recreated in the new one (same volume) once `confirm` says so.
pub(super) async fn choose_profile<B: RequestBody>(app: &App, c: &Caller, body: B) -> Answer {
    let Some(ProfileBody { profile, confirm }) = read_json(body).await? else {
        return Err(HttpError::BadRequest("the body is not the JSON this endpoint takes"));
    };
    let restarting = switch_profile(app, c, &profile, confirm).await?;
    Ok((StatusCode::OK, json!({ "profile": profile, "restarting": restarting })))
}

/// `GET profiles`: every profile, and whether the caller may choose it.
pub(super) fn profiles(app: &App, c: &Caller) -> (StatusCode, Value) {
    let list: Vec<Value> = app
        .workspaces
        .profiles()
        .all()
        .iter()
        .map(|p| {
            json!({
                "name": &*p.name,
                "description": p.description,
                "image": p.config.image,
                "cpus": p.config.cpus,
                "memory_bytes": p.config.memory,
                "idle_timeout_secs": p.config.idle_timeout.as_secs(),
                "max_lifetime_secs": p.config.max_lifetime.as_secs(),
                "available": p.open_to(&c.identity),
            })
        })
        .collect();
    (StatusCode::OK, json!({ "profiles": list }))
}
