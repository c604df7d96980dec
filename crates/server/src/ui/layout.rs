//! The frame around every page: the header with navigation and the
//! sign-in state, a skip link, the main landmark, the stylesheet and
//! script.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::assets;
use super::Viewer;

/// A page being rendered.
pub(crate) struct Page {
    title: String,
    crumbs: Vec<(String, String)>,
}

impl Page {
    /// A page titled `title` (the document title reads `title · berth`).
    pub fn new(title: impl Into<String>) -> Page {
        Page {
            title: title.into(),
            crumbs: Vec::new(),
        }
    }

    /// Adds a breadcrumb link before the title.
    pub fn crumb(mut self, label: impl Into<String>, href: impl Into<String>) -> Page {
        self.crumbs.push((label.into(), href.into()));
        self
    }

    /// The whole document around `body`, as a 200 response.
    pub fn render(self, viewer: Option<&Viewer>, body: Markup) -> Response {
        let account = viewer.and_then(Viewer::account);
        let admin = viewer.is_some_and(|v| v.identity().is_site_admin());
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (self.title) " · berth" }
                    link rel="stylesheet" href=(assets::style_url());
                    script src=(assets::script_url()) defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        nav aria-label="Site" {
                            a.brand href="/ui/" { "berth" }
                            form.search role="search" action="/ui/" method="get" {
                                label.visually-hidden for="site-search" { "Search repositories" }
                                input #site-search type="search" name="q" placeholder="Search repositories";
                            }
                            ul.links {
                                @if account.is_some() {
                                    li { a href="/ui/tokens" { "Tokens" } }
                                }
                                @if admin {
                                    li { a href="/ui/admin/users" { "Users" } }
                                    li { a href="/ui/admin/orgs" { "Organisations" } }
                                    li { a href="/ui/admin/usage" { "Storage" } }
                                    li { a href="/ui/admin/audit" { "Audit log" } }
                                }
                                @match (account, viewer.and_then(|v| v.session.as_ref())) {
                                    (Some(name), Some(session)) => {
                                        li.who { span { "Signed in as " strong { (name) } } }
                                        li {
                                            form.inline method="post" action="/ui/logout" {
                                                input type="hidden" name="csrf" value=(session.csrf);
                                                button.link type="submit" { "Sign out" }
                                            }
                                        }
                                    }
                                    _ => {
                                        li { a href="/ui/login" { "Sign in" } }
                                    }
                                }
                            }
                        }
                    }
                    main #main tabindex="-1" {
                        @if !self.crumbs.is_empty() {
                            nav.crumbs aria-label="Breadcrumb" {
                                ol {
                                    @for (label, href) in &self.crumbs {
                                        li { a href=(href) { (label) } }
                                    }
                                    li aria-current="page" { (self.title) }
                                }
                            }
                        }
                        (body)
                    }
                }
            }
        };
        let mut resp = markup.into_string().into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        resp
    }
}
