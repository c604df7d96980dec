//! Who is looking: the session cookie turned into a [`Viewer`], and the
//! checks every form goes through.
//!
//! - The cookie `berth_session` holds a random session id (the database
//!   keeps only its SHA-256, see `berth_registry::auth`): `HttpOnly`,
//!   `SameSite=Lax`, `Path=/ui`, and `Secure` when the browser reached
//!   berth over HTTPS (berth serves TLS, the external URL is `https://`,
//!   or a trusted proxy says `X-Forwarded-Proto: https`).
//! - Every form carries the session's CSRF secret in a hidden `csrf`
//!   field; a POST without the right one is refused with 403 before it
//!   does anything. The sign-in form, which has no session yet, carries
//!   the value of a short-lived `berth_login` cookie instead (a
//!   double-submit token), so another site cannot sign a browser in to an
//!   account of its choosing.
//! - Without a session the viewer is anonymous and sees what anonymous
//!   API callers see (public repositories). With authentication off
//!   (`--auth none`) everyone sees everything and no one signs in; forms
//!   then carry the value of a `berth_form` cookie, set on the first page
//!   a browser gets (a double-submit secret, as the sign-in form's): an
//!   open registry still refuses a form another site makes a browser post.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use berth_registry::auth::Identity;

use super::UiError;
use crate::api::Principal;
use crate::App;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "berth_session";
/// The sign-in form's double-submit cookie.
pub(crate) const LOGIN_COOKIE: &str = "berth_login";
/// The forms' double-submit cookie when authentication is off.
pub(crate) const OPEN_COOKIE: &str = "berth_form";
/// How long a browser keeps [`OPEN_COOKIE`] (seconds): a year.
const OPEN_COOKIE_SECS: u64 = 365 * 24 * 3600;

/// The signed-in session behind a request.
#[derive(Clone)]
pub(crate) struct Session {
    /// The cookie value (the session id).
    pub id: String,
    /// The CSRF secret forms carry.
    pub csrf: String,
}

/// The caller of a UI request.
pub(crate) struct Viewer {
    /// Who it is, as the API would see it.
    pub principal: Principal,
    /// The session, when signed in.
    pub session: Option<Session>,
    /// With authentication off: the browser's form secret
    /// ([`OPEN_COOKIE`]).
    pub open_secret: Option<String>,
}

impl Viewer {
    /// The account name, when signed in.
    pub fn account(&self) -> Option<&str> {
        self.principal.account()
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.principal.identity
    }

    /// The session, or the sign-in redirect.
    pub fn signed_in(&self) -> Result<&Session, UiError> {
        self.session.as_ref().ok_or(UiError::SignIn)
    }

    /// The secret forms carry: the session's CSRF secret, or with
    /// authentication off the browser's form secret (empty without
    /// either).
    pub fn csrf(&self) -> &str {
        match (&self.session, &self.open_secret) {
            (Some(s), _) => &s.csrf,
            (None, Some(open)) => open,
            (None, None) => "",
        }
    }

    /// Refuses a form whose `csrf` field is not the secret of
    /// [`Viewer::csrf`].
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), UiError> {
        match sent {
            Some(s) if !self.csrf().is_empty() && same(s, self.csrf()) => Ok(()),
            _ => Err(UiError::Forged),
        }
    }
}

/// Constant-time string comparison (for secrets).
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached berth over HTTPS.
pub(crate) fn over_https(app: &App, headers: &HeaderMap) -> bool {
    app.settings.https
        || app
            .settings
            .external_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
        || (app.settings.trust_forwarded_for
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
}

/// A `Set-Cookie` value: `name=value` for `max_age` seconds (0: delete).
pub(crate) fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, UiError> {
        let ip = crate::auth::client_ip(app, &parts.headers, &parts.extensions);
        let anonymous = Identity::anonymous();
        if !app.auth.enforced() {
            let open_secret = match cookie(&parts.headers, OPEN_COOKIE) {
                Some(v) if !v.is_empty() => Some(v.to_owned()),
                _ => parts.extensions.get::<NewOpenSecret>().map(|s| s.0.clone()),
            };
            return Ok(Viewer {
                principal: Principal {
                    caller: anonymous.caller(ip, true),
                    identity: anonymous,
                },
                session: None,
                open_secret,
            });
        }
        let live = match cookie(&parts.headers, COOKIE) {
            Some(id) => app
                .auth
                .ui_session(id, app.settings.ui.idle_ms())
                .await
                .map_err(UiError::from_registry)?
                .map(|live| (id.to_owned(), live)),
            None => None,
        };
        Ok(match live {
            Some((id, live)) => {
                if let (Some(name), Some(who)) = (
                    live.identity.label(),
                    parts.extensions.get::<crate::observe::Account>(),
                ) {
                    who.set(&name);
                }
                Viewer {
                    principal: Principal {
                        caller: live.identity.caller(ip, false),
                        identity: live.identity,
                    },
                    session: Some(Session {
                        id,
                        csrf: live.csrf,
                    }),
                    open_secret: None,
                }
            }
            None => Viewer {
                principal: Principal {
                    caller: anonymous.caller(ip, false),
                    identity: anonymous,
                },
                session: None,
                open_secret: None,
            },
        })
    }
}

/// The form secret given to a browser in this response (it sent none).
#[derive(Clone)]
struct NewOpenSecret(String);

/// With authentication off, gives a browser that has no form secret one
/// ([`OPEN_COOKIE`]), for the page it asked for (a request extension the
/// [`Viewer`] reads) and in a cookie for its next requests.
pub(crate) async fn open_form_secret(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if app.auth.enforced() || cookie(req.headers(), OPEN_COOKIE).is_some_and(|v| !v.is_empty()) {
        return next.run(req).await;
    }
    let Ok(secret) = berth_registry::auth::secret::random_string(32) else {
        // Pages still render; their forms are refused until a secret is had.
        return next.run(req).await;
    };
    let secure = over_https(&app, req.headers());
    req.extensions_mut().insert(NewOpenSecret(secret.clone()));
    let mut resp = next.run(req).await;
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(OPEN_COOKIE, &secret, OPEN_COOKIE_SECS, secure),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; berth_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("berth_login=l"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("l"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn session_cookies_are_http_only_lax_and_secure_over_https() {
        let c = set_cookie(COOKIE, "v", 60, true);
        let c = c.to_str().unwrap();
        for part in [
            "berth_session=v",
            "Path=/ui",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!set_cookie(COOKIE, "v", 0, false)
            .to_str()
            .unwrap()
            .contains("Secure"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
