//! Admin operations on any workspace (the router has checked the caller
//! is an admin): the overview, forced stop, removal, purge, the audit
//! trail, signing a user out everywhere. Each action is audited.

use http::StatusCode;
use serde_json::{json, Value};

use super::query_param;
use crate::app::App;
use crate::audit::{Actor, Event};
use crate::clock::now_secs;
use crate::error::HttpError;
use crate::forward_auth::Authenticated as Caller;
use crate::request::{Parsed, RequestBody};
use crate::response::{self, Body};
use crate::slug::is_label;
use crate::store::Revocation;
use crate::workspace::registry::Phase;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::Response;

type Answer = Result<(StatusCode, Value), HttpError>;

/// Most audit records one request reads.
const MAX_AUDIT: usize = 1000;

/// A `{slug}` that could be a workspace's (else 404).
fn slug(raw: &str) -> Result<&str, HttpError> {
    is_label(raw).then_some(raw).ok_or(HttpError::NotFound)
}

/// `GET admin/workspaces`.
pub(super) async fn workspaces(app: &App) -> Answer {
    let rows = app.workspaces.overview().await?;
    Ok((StatusCode::OK, json!({ "workspaces": rows })))
}

/// `POST admin/workspaces/{slug}/stop|remove`.
pub(super) async fn act(app: &App, c: &Caller, raw: &str, action: &str) -> Answer {
    let slug = slug(raw)?;
    let registry = &app.workspaces;
    let event = Event::new(Actor::Admin, action).by(&c.identity.sub).workspace(slug);
    match action {
        "stop" => {
            let result = registry.stop_by_admin(slug);
            registry
                .audit()
                .record(event.result(&result, |e| format!("failed: {}", e.reason())))
                .await;
            result?;
            Ok((StatusCode::ACCEPTED, json!({ "workspace": slug, "stopping": true })))
        }
        _ => {
            let result = registry.remove_workspace(slug, false).await;
            registry
                .audit()
                .record(event.result(&result, |e| format!("failed: {}", e.reason())))
                .await;
            Ok((StatusCode::OK, json!({ "workspace": slug, "removed": result? })))
        }
    }
}

/// `DELETE admin/workspaces/{slug}/volume?confirm={slug}`: the container
/// and the volume; the user's files are gone.
pub(super) async fn purge(app: &App, req: &Parsed<'_>, c: &Caller, raw: &str) -> Answer {
    let slug = slug(raw)?;
    if query_param(req, "confirm").as_deref() != Some(slug) {
        return Err(HttpError::BadRequest(
            "purging deletes every file of the workspace: pass confirm=<its name> to go on",
        ));
    }
    let result = app.workspaces.remove_workspace(slug, true).await;
    let event = Event::new(Actor::Admin, "purge")
        .by(&c.identity.sub)
        .workspace(slug)
        .result(&result, |e| format!("failed: {}", e.reason()));
    app.workspaces.audit().record(event).await;
    Ok((StatusCode::OK, json!({ "workspace": slug, "removed": result? })))
}

/// A workspace whose volume may be read or written through its container:
/// known, and stopped (409 otherwise).
fn stopped(app: &App, slug: &str) -> Result<(), HttpError> {
    match app.workspaces.get(slug).map(|e| e.phase()) {
        Some(Phase::Stopped | Phase::Failed(_)) | None => Ok(()),
        Some(_) => Err(HttpError::Conflict("stop the workspace first: its volume is in use")),
    }
}

/// `GET admin/workspaces/{slug}/backup`: the volume as a tar archive.
pub(super) async fn backup(app: &App, c: &Caller, raw: &str) -> Result<Response<Body>, HttpError> {
    let slug = slug(raw)?;
    stopped(app, slug)?;
    let result = app.workspaces.runtime().export_volume(slug).await;
    let event = Event::new(Actor::Admin, "backup")
        .by(&c.identity.sub)
        .workspace(slug)
        .result(&result, |e| format!("failed: {}", e.reason()));
    app.workspaces.audit().record(event).await;
    let tar = result?;
    let mut resp = Response::new(response::streamed(tar));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{slug}.tar\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// `PUT admin/workspaces/{slug}/backup`: unpacks a tar archive (as the
/// download is) into the volume; files it names are replaced, others kept.
pub(super) async fn restore<B: RequestBody>(
    app: &App,
    c: &Caller,
    raw: &str,
    body: B,
) -> Result<Response<Body>, HttpError> {
    let slug = slug(raw)?;
    stopped(app, slug)?;
    let frames = http_body_util::BodyStream::new(body).filter_map(|frame| {
        futures_util::future::ready(match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(e) => Some(Err(std::io::Error::other(e.into()))),
        })
    });
    let result = app.workspaces.runtime().import_volume(slug, Box::pin(frames)).await;
    let event = Event::new(Actor::Admin, "restore")
        .by(&c.identity.sub)
        .workspace(slug)
        .result(&result, |e| format!("failed: {}", e.reason()));
    app.workspaces.audit().record(event).await;
    result?;
    Ok(response::json(
        StatusCode::OK,
        &json!({ "workspace": slug, "restored": true }),
    ))
}

/// `GET admin/audit?limit=`: the newest records first.
pub(super) async fn audit(app: &App, req: &Parsed<'_>) -> Answer {
    let limit = match query_param(req, "limit") {
        None => 100,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_AUDIT).contains(&n) => n,
            _ => return Err(HttpError::BadRequest("limit must be a number from 1 to 1000")),
        },
    };
    let events = app.workspaces.audit().recent(limit).await?;
    Ok((StatusCode::OK, json!({ "events": events })))
}

/// `POST admin/users/{sub}/sign-out` (`sub` percent-encoded): every
/// session of that user signed in until now is refused on every replica.
pub(super) async fn sign_out_everywhere(app: &App, c: &Caller, user: &str) -> Answer {
    let sub = percent_encoding::percent_decode_str(user)
        .decode_utf8()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 200 && !s.contains(char::is_control))
        .ok_or(HttpError::BadRequest("not a user id"))?;
    let revocation = Revocation::everywhere(&sub, now_secs(), app.config.session.max_age);
    app.revocations.revoke(&*app.store, revocation).await;
    let event = Event::new(Actor::Admin, "sign_out_everywhere")
        .by(&c.identity.sub)
        .why(&format!("user {sub}"));
    app.workspaces.audit().record(event).await;
    Ok((StatusCode::OK, json!({ "signed_out": sub })))
}
