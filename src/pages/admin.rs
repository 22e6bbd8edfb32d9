//! The admin console at `/_roost/admin`: every workspace in a table that
//! sorts and filters (links and a GET form: no script, the same strict CSP
//! as every page), forced stop, removal and purge behind a confirmation,
//! quota use, and the newest audit records. Admins only; the actions are
//! POST forms with the session's form token, recorded in the audit trail.

use std::cmp::Ordering;

use http::header;
use http::{Method, Response, StatusCode};

use super::form::session_form;
use super::{caller, sign_out_csp, to_sign_in, Caller};
use crate::app::App;
use crate::audit::{Actor, Event};
use crate::error::HttpError;
use crate::request::{Parsed, RequestBody};
use crate::response::{self, escape, redirect, Body, STYLE};
use crate::slug::is_label;
use crate::workspace::registry::Overview;

/// Audit records the console shows.
const AUDIT_SHOWN: usize = 50;

/// The columns, as `sort=` names them.
const COLUMNS: [(&str, &str); 9] = [
    ("workspace", "Workspace"),
    ("owner", "Owner"),
    ("state", "State"),
    ("profile", "Profile"),
    ("uptime", "Up"),
    ("idle", "Idle"),
    ("cpu", "CPU s"),
    ("memory", "Memory MiB"),
    ("quota", "Quota h"),
];

/// `GET /_roost/admin?q=&sort=&dir=`.
pub(super) async fn page(app: &App, req: &Parsed<'_>) -> Result<Response<Body>, HttpError> {
    if !matches!(*req.method, Method::GET | Method::HEAD) {
        return Err(HttpError::MethodNotAllowed("GET, HEAD"));
    }
    let c = match caller(app, req).await {
        Ok(c) => c,
        Err(HttpError::Unauthenticated(_)) if app.login.is_some() => return Ok(to_sign_in(app, "/_roost/admin")),
        Err(e) => return Err(e),
    };
    if !c.identity.admin {
        return Err(HttpError::Forbidden("admins only"));
    }
    let param = |name: &str| {
        url::form_urlencoded::parse(req.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (filter, sort, desc) = (param("q"), param("sort"), param("dir") == "desc");
    let mut rows = app.workspaces.overview().await?;
    let needle = filter.to_lowercase();
    rows.retain(|r| {
        needle.is_empty()
            || [&r.workspace, &r.owner, &r.profile, &r.state.to_string()]
                .iter()
                .any(|v| v.to_lowercase().contains(&needle))
    });
    rows.sort_by(|a, b| {
        let o = compare(a, b, &sort);
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let events = app.workspaces.audit().recent(AUDIT_SHOWN).await.unwrap_or_default();
    let html = render(&rows, &events, &c, (&filter, &sort, desc));
    let mut resp = response::html(
        StatusCode::OK,
        html,
        &sign_out_csp(app),
        app.forward_auth.origin().is_https(),
    );
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

fn compare(a: &Overview, b: &Overview, column: &str) -> Ordering {
    let num = |v: Option<f64>| v.unwrap_or(-1.0);
    match column {
        "owner" => a.owner.cmp(&b.owner),
        "state" => a.state.cmp(b.state),
        "profile" => a.profile.cmp(&b.profile),
        "uptime" => a.uptime_secs.cmp(&b.uptime_secs),
        "idle" => a.idle_secs.cmp(&b.idle_secs),
        "cpu" => num(a.cpu_seconds).total_cmp(&num(b.cpu_seconds)),
        "memory" => a.memory_bytes.cmp(&b.memory_bytes),
        "quota" => num(a.quota_workspace_hours).total_cmp(&num(b.quota_workspace_hours)),
        _ => Ordering::Equal,
    }
    .then_with(|| a.workspace.cmp(&b.workspace))
}

fn render(rows: &[Overview], events: &[Event], c: &Caller, (filter, sort, desc): (&str, &str, bool)) -> String {
    let token = escape(c.csrf.as_deref().unwrap_or(""));
    let q = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>();
    let head: String = COLUMNS
        .iter()
        .map(|(key, label)| {
            let dir = if sort == *key && !desc { "desc" } else { "asc" };
            let mark = match (sort == *key, desc) {
                (true, false) => " ▲",
                (true, true) => " ▼",
                _ => "",
            };
            format!("<th><a href=\"?q={q}&amp;sort={key}&amp;dir={dir}\">{label}{mark}</a></th>")
        })
        .collect();
    let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
    let body: String = rows
        .iter()
        .map(|r| {
            let slug = escape(&r.workspace);
            let form = |action: &str, label: &str, confirm: &str| {
                format!(
                    "<form method=\"post\" action=\"/_roost/admin/action\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
                     <input type=\"hidden\" name=\"workspace\" value=\"{slug}\"><input type=\"hidden\" name=\"action\" value=\"{action}\">\
                     {confirm}<button type=\"submit\">{label}</button></form>"
                )
            };
            let sure = "<label><input type=\"checkbox\" name=\"confirm\" value=\"1\" required>sure</label>";
            let typed = format!(
                "<input name=\"confirm\" required size=\"10\" placeholder=\"type {slug}\" aria-label=\"Type {slug} to purge\">"
            );
            let mut actions = String::new();
            if matches!(r.state, "running" | "starting") {
                actions.push_str(&form("stop", "Stop", sure));
            }
            actions.push_str(&form("remove", "Remove", sure));
            actions.push_str(&form("purge", "Purge", &typed));
            format!(
                "<tr data-workspace=\"{slug}\"><td>{slug}</td><td>{owner}</td><td class=\"state\">{state}</td><td>{profile}</td>\
                 <td>{up}</td><td>{idle}</td><td>{cpu}</td><td>{mem}</td><td>{quota}</td><td>{actions}</td></tr>",
                owner = escape(&r.owner),
                state = r.state,
                profile = escape(&r.profile),
                up = opt(r.uptime_secs.map(|s| s.to_string())),
                idle = opt(r.idle_secs.map(|s| s.to_string())),
                cpu = opt(r.cpu_seconds.map(|s| format!("{s:.1}"))),
                mem = opt(r.memory_bytes.map(|b| format!("{:.1}", b as f64 / 1_048_576.0))),
                quota = opt(r.quota_workspace_hours.map(|h| format!("{h:.2}"))),
            )
        })
        .collect();
    let audit: String = events
        .iter()
        .map(|e| {
            let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.at));
            format!(
                "<tr><td>{at}</td><td>{actor}</td><td>{by}</td><td>{action}</td><td>{ws}</td><td>{why}</td><td>{outcome}</td></tr>",
                actor = escape(&format!("{:?}", e.actor).to_lowercase()),
                by = escape(e.by.as_deref().unwrap_or("")),
                action = escape(&e.action),
                ws = escape(e.workspace.as_deref().unwrap_or("")),
                why = escape(e.why.as_deref().unwrap_or("")),
                outcome = escape(&e.outcome),
            )
        })
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>roost: workspaces</title>\
         <style>{STYLE}</style></head><body><main>\
         <h1>Workspaces</h1><p>{count} shown · signed in as <strong>{user}</strong> (admin)</p>\
         <form method=\"get\" action=\"/_roost/admin\"><input name=\"q\" value=\"{filter}\" placeholder=\"filter\" aria-label=\"Filter\">\
         <input type=\"hidden\" name=\"sort\" value=\"{sort}\"><button type=\"submit\">Filter</button></form>\
         <table id=\"workspaces\"><thead><tr>{head}<th>Actions</th></tr></thead><tbody>{body}</tbody></table>\
         <h2>Recent audit events</h2><table id=\"audit\"><thead><tr><th>When</th><th>Who</th><th>By</th><th>What</th>\
         <th>Workspace</th><th>Why</th><th>Outcome</th></tr></thead><tbody>{audit}</tbody></table></main></body></html>",
        count = rows.len(),
        user = escape(c.identity.email.as_deref().unwrap_or(&c.identity.sub)),
        filter = escape(filter),
        sort = escape(sort),
    )
}

/// `POST /_roost/admin/action`: `workspace`, `action` (stop, remove,
/// purge) and `confirm` (ticked; for a purge, the workspace's name typed).
pub(super) async fn action<B: RequestBody>(app: &App, req: &Parsed<'_>, body: B) -> Result<Response<Body>, HttpError> {
    let c = caller(app, req).await?;
    if !c.identity.admin {
        return Err(HttpError::Forbidden("admins only"));
    }
    let form = session_form(req, body, &c).await?;
    let field = |name: &str| form.field(name).unwrap_or_default();
    let (slug, action, confirm) = (field("workspace"), field("action"), field("confirm"));
    if !is_label(&slug) {
        return Err(HttpError::NotFound);
    }
    let confirmed = match action.as_str() {
        "stop" | "remove" => confirm == "1",
        "purge" => confirm == slug,
        _ => return Err(HttpError::BadRequest("unknown action")),
    };
    if !confirmed {
        return Err(HttpError::BadRequest("not confirmed: nothing was done"));
    }
    let registry = &app.workspaces;
    let result = match action.as_str() {
        "stop" => registry.stop_by_admin(&slug),
        other => registry.remove_workspace(&slug, other == "purge").await.map(|_| ()),
    };
    let event = Event::new(Actor::Admin, &action)
        .by(&c.identity.sub)
        .workspace(&slug)
        .why("console")
        .result(&result, |e| format!("failed: {}", e.reason()));
    registry.audit().record(event).await;
    result?;
    let mut resp = redirect(StatusCode::SEE_OTHER, &app.forward_auth.origin().url("/_roost/admin"));
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}
