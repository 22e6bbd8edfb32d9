//! The user's status page at `/_roost/`: their workspace's state, how long
//! it has run and when it idles out, CPU and memory, the last log lines,
//! and start / stop / restart buttons (POST forms carrying the session's
//! anti-CSRF token). Plain server-rendered HTML, no script: while a
//! workspace is starting or stopping the page refreshes itself every two
//! seconds (a `<meta http-equiv="refresh">`).

use std::time::Duration;

use http::header;
use http::{Method, Response, StatusCode};

use super::form::session_form;
use super::{caller, perform, sign_out_csp, to_sign_in, Caller};
use crate::app::App;
use crate::error::HttpError;
use crate::request::{Parsed, RequestBody};
use crate::response::{self, escape, redirect, Body, STYLE};
use crate::workspace::status::Status;

/// `GET /_roost/`.
pub(super) async fn page(app: &App, req: &Parsed<'_>) -> Result<Response<Body>, HttpError> {
    if !matches!(*req.method, Method::GET | Method::HEAD) {
        return Err(HttpError::MethodNotAllowed("GET, HEAD"));
    }
    let c = match caller(app, req).await {
        Ok(c) => c,
        Err(HttpError::Unauthenticated(_)) if app.login.is_some() => return Ok(to_sign_in(app, "/_roost/")),
        Err(e) => return Err(e),
    };
    let registry = &app.workspaces;
    let slug = c.identity.slug.to_string();
    let status = registry.status(&c.identity, &slug).await?;
    let logs = registry.recent_logs(&c.identity, &slug).await.unwrap_or_else(|e| {
        tracing::debug!(workspace = %slug, error = %e, "logs unavailable");
        Vec::new()
    });
    let origin = app.forward_auth.origin();
    let picker = profile_picker(app, &status, &c);
    let html = render(&status, &logs, &origin.workspace_url(&slug), &c, &picker);
    // Its sign-out button's redirect must be an allowed form target.
    let mut resp = response::html(StatusCode::OK, html, &sign_out_csp(app), origin.is_https());
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

fn human(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn render(status: &Status, logs: &[String], workspace_url: &str, c: &Caller, picker: &str) -> String {
    let mut rows = vec![
        ("Workspace", format!("<a href=\"{0}\">{0}</a>", escape(workspace_url))),
        (
            "State",
            format!(
                "<span class=\"state\" id=\"state\" data-state=\"{}\">{}</span>",
                status.state,
                escape(&status.message)
            ),
        ),
    ];
    if let Some(s) = status.running_for_secs {
        rows.push(("Running for", if s == 0 { "just started".into() } else { human(s) }));
    }
    if let Some(s) = status.idle_stop_in_secs {
        rows.push((
            "Stops when idle in",
            format!("{} (after {} without use)", human(s), human(status.idle_timeout_secs)),
        ));
    }
    if let Some(cpu) = status.cpu_seconds {
        rows.push(("CPU time used", format!("{cpu:.2} s")));
    }
    if let Some(mem) = status.memory_bytes {
        rows.push((
            "Memory in use",
            format!("{} of {}", mib(mem), mib(status.memory_limit_bytes)),
        ));
    }
    if let Some(q) = &status.quota {
        let mut parts = Vec::new();
        if let Some(limit) = q.workspace_hours_limit {
            parts.push(format!("{:.2} of {limit} workspace hours", q.workspace_hours));
        }
        if let Some(limit) = q.cpu_hours_limit {
            parts.push(format!("{:.2} of {limit} CPU hours", q.cpu_hours));
        }
        let resets = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(q.resets_at));
        let standing = if q.exempt {
            "exempt from the quota".to_string()
        } else if q.used_up {
            format!("<strong>used up</strong>: {}; it resets at {resets}", parts.join(", "))
        } else {
            format!("{} used; resets at {resets}", parts.join(", "))
        };
        rows.push(("Quota", standing));
    }
    let table: String = rows
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>"))
        .collect();
    let buttons = match &c.csrf {
        Some(token) => match status.state {
            "running" => &["stop", "restart"][..],
            "stopped" | "failed" => &["start"][..],
            _ => &[][..],
        }
        .iter()
        .map(|action| {
            format!(
                "<form method=\"post\" action=\"/_roost/{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                     <button type=\"submit\">{}{}</button></form>",
                escape(token),
                action[..1].to_uppercase(),
                &action[1..]
            )
        })
        .collect::<String>(),
        None => {
            "<p>Signed in with a token: use the API under <code>/_roost/api/v1/</code> to start or stop.</p>".into()
        }
    };
    let log_text = if logs.is_empty() {
        "(no log lines)".to_string()
    } else {
        escape(&logs.join("\n"))
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Your workspace: {slug}</title>{refresh}<style>{STYLE}</style></head><body><main>\
         <h1>Your workspace</h1><p>Signed in as <strong>{user}</strong>{sign_out}</p>\
         <table>{table}</table><p>{buttons}</p>{picker}<h2>Last log lines</h2><pre id=\"logs\">{log_text}</pre>\
         </main></body></html>",
        slug = escape(&status.workspace),
        // Follows a start or a stop along, without a script.
        refresh = if matches!(status.state, "starting" | "draining" | "stopping") {
            "<meta http-equiv=\"refresh\" content=\"2\">"
        } else {
            ""
        },
        user = escape(c.identity.email.as_deref().unwrap_or(&c.identity.sub)),
        // Sign-out is a POST with the form token (a link could be followed cross-site).
        sign_out = c.csrf.as_deref().map_or(String::new(), |token| format!(
            " · <form method=\"post\" action=\"/_roost/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            escape(token)
        )),
    )
}

/// The environment chooser: every profile, those the user may not choose
/// greyed out; switching a running workspace needs the box ticked.
fn profile_picker(app: &App, status: &Status, c: &Caller) -> String {
    let profiles = app.workspaces.profiles().all();
    let current = profiles.iter().find(|p| *p.name == *status.profile);
    let describe = current.map_or(String::new(), |p| {
        format!(
            "<p>Running in <strong id=\"profile\">{}</strong>: {}</p>",
            escape(&p.name),
            escape(&p.description)
        )
    });
    let Some(token) = c.csrf.as_deref().filter(|_| profiles.len() > 1) else {
        return if profiles.len() > 1 {
            format!("<h2>Environment</h2>{describe}")
        } else {
            String::new()
        };
    };
    let options: String = profiles
        .iter()
        .map(|p| {
            format!(
                "<option value=\"{name}\"{selected}{disabled}>{name}: {description}{locked}</option>",
                name = escape(&p.name),
                description = escape(&p.description),
                selected = if *p.name == *status.profile { " selected" } else { "" },
                disabled = if p.open_to(&c.identity) { "" } else { " disabled" },
                locked = if p.open_to(&c.identity) {
                    ""
                } else {
                    " (needs a permission)"
                },
            )
        })
        .collect();
    let confirm = if matches!(status.state, "running" | "paused" | "draining") {
        "<label><input type=\"checkbox\" name=\"confirm\" value=\"1\" required> \
         Restart my workspace in it now (files on its volume are kept; unsaved work in memory is lost)</label>"
    } else {
        ""
    };
    format!(
        "<h2>Environment</h2>{describe}<form method=\"post\" action=\"/_roost/profile\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <select name=\"profile\" aria-label=\"Environment\">{options}</select> {confirm} \
         <button type=\"submit\">Switch</button></form>",
        token = escape(token)
    )
}

/// `POST /_roost/profile` from the chooser: the form token, then the
/// switch (a running workspace only with the box ticked); back to the page.
pub(super) async fn choose_profile<B: RequestBody>(
    app: &App,
    req: &Parsed<'_>,
    body: B,
) -> Result<Response<Body>, HttpError> {
    let c = caller(app, req).await?;
    let form = session_form(req, body, &c).await?;
    let profile = form
        .field("profile")
        .ok_or(HttpError::BadRequest("no profile chosen"))?;
    let confirm = form.field("confirm").as_deref() == Some("1");
    crate::pages::profile::switch_profile(app, &c, &profile, confirm).await?;
    let mut resp = redirect(StatusCode::SEE_OTHER, &app.forward_auth.origin().url("/_roost/"));
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// `POST /_roost/{start,stop,restart}` from the page's forms: the session's
/// form token must come with it; then back to the page (303).
pub(super) async fn action<B: RequestBody>(app: &App, req: &Parsed<'_>, body: B) -> Result<Response<Body>, HttpError> {
    let c = caller(app, req).await?;
    session_form(req, body, &c).await?;
    perform(app, &c, req.path().trim_start_matches("/_roost/")).await?;
    let mut resp = redirect(StatusCode::SEE_OTHER, &app.forward_auth.origin().url("/_roost/"));
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}
