//! The audit log, newest first, 50 events a page, filtered by actor,
//! action (exact, or a prefix ending in `.`), repository (exact, or a
//! namespace as `NS/`) and a first day. Who may read what is the API's
//! rule (`crate::api::audit::authorize`): site admins everything, a
//! namespace's admins the events of their namespace, through the
//! repository filter.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use berth_registry::AuditFilter;
use maud::{html, Markup};
use serde::Deserialize;

use super::format::{short_digest, time};
use super::{answer, Page, UiError, Viewer};
use crate::App;

/// Events per page.
const PER_PAGE: i64 = 50;

/// The filter form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    repository: Option<String>,
    /// A day, `YYYY-MM-DD` (UTC): events from its start on.
    since: Option<String>,
    /// Events older than this id (the next page).
    before: Option<i64>,
}

/// A non-empty, trimmed field.
fn field(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Unix ms of the start of the UTC day `YYYY-MM-DD`.
fn day_start(day: &str) -> Option<i64> {
    let mut parts = day.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}

/// `GET /ui/admin/audit`.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Response {
    let result = render(&app, &viewer, &q).await;
    answer(&viewer, result)
}

async fn render(app: &App, viewer: &Viewer, q: &AuditQuery) -> Result<Response, UiError> {
    if app.auth.enforced() {
        viewer.signed_in()?;
    }
    let since = match field(&q.since) {
        Some(day) => Some(day_start(&day).ok_or_else(|| {
            UiError::Service(berth_registry::Error::InvalidParameter(format!(
                "the day {day:?} is not a date as YYYY-MM-DD"
            )))
        })?),
        None => None,
    };
    let filter = AuditFilter {
        actor: field(&q.actor),
        action: field(&q.action),
        repository: field(&q.repository),
        since,
        until: None,
        after_id: None,
        before_id: q.before,
        newest_first: true,
        limit: Some(PER_PAGE),
    };
    let filter = crate::api::audit::authorize(app, &viewer.principal, filter)
        .await
        .map_err(UiError::from)?;
    let events = app.registry.audit_events(&filter).await?;
    let older = (events.len() as i64 == PER_PAGE)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let now = berth_registry::now_ms();
    let body = html! {
        h1 { "Audit log" }
        (form(q))
        @if events.is_empty() {
            p.muted { "No events match." }
        } @else {
            div.scroll { table.audit {
                caption.visually-hidden { "Audit events, newest first" }
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" }
                    th scope="col" { "Repository" } th scope="col" { "Tag or digest" } th scope="col" { "Client" }
                } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (time(e.event.at, now)) }
                            td { (e.event.actor) }
                            td { code { (e.event.action) } }
                            td { (e.event.repository.as_deref().unwrap_or("")) }
                            td.mono {
                                @if let Some(t) = &e.event.tag { (t) }
                                @else if let Some(d) = &e.event.digest { span title=(d) { (short_digest(d)) } }
                            }
                            td { (e.event.client_ip.as_deref().unwrap_or("")) }
                        }
                    }
                }
            } }
            @if let Some(id) = older {
                nav.pager aria-label="Audit pages" {
                    a rel="next" href=(older_link(q, id)) { "Older events →" }
                }
            }
        }
    };
    Ok(Page::new("Audit log")
        .crumb("Repositories", "/ui/")
        .render(Some(viewer), body))
}

fn form(q: &AuditQuery) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        form.filter method="get" action="/ui/admin/audit" {
            label for="audit-actor" { "Actor" }
            input #audit-actor type="text" name="actor" value=(value(&q.actor));
            label for="audit-action" { "Action" }
            input #audit-action type="text" name="action" value=(value(&q.action)) aria-describedby="audit-hint";
            label for="audit-repository" { "Repository" }
            input #audit-repository type="text" name="repository" value=(value(&q.repository)) aria-describedby="audit-hint";
            label for="audit-since" { "Since" }
            input #audit-since type="date" name="since" value=(value(&q.since));
            button type="submit" { "Filter" }
        }
        p.hint #audit-hint { "An action such as " code { "push" } " or " code { "tag.move" } ", or a prefix such as " code { "tag." } "; a repository such as " code { "acme/web" } " or a namespace as " code { "acme/" } "." }
    }
}

/// The next (older) page with the same filters.
fn older_link(q: &AuditQuery, before: i64) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("actor", &q.actor),
        ("action", &q.action),
        ("repository", &q.repository),
        ("since", &q.since),
    ] {
        if let Some(v) = field(v) {
            out.append_pair(k, &v);
        }
    }
    out.append_pair("before", &before.to_string());
    format!("/ui/admin/audit?{}", out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_start_at_utc_midnight() {
        assert_eq!(day_start("1970-01-01"), Some(0));
        assert_eq!(day_start("2026-11-30"), Some(1_795_996_800_000));
        assert_eq!(day_start("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(day_start("2026-13-01"), None);
        assert_eq!(day_start("yesterday"), None);
    }

    #[test]
    fn the_older_link_keeps_the_filters() {
        let q = AuditQuery {
            actor: Some("bob".into()),
            action: Some(" ".into()),
            repository: Some("acme/".into()),
            ..AuditQuery::default()
        };
        assert_eq!(
            older_link(&q, 42),
            "/ui/admin/audit?actor=bob&repository=acme%2F&before=42"
        );
    }
}
