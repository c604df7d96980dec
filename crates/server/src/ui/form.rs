//! A form body (`application/x-www-form-urlencoded`), read whole (forms
//! are small: at most [`MAX_FORM`] bytes).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};

use super::UiError;

/// The largest form body accepted.
const MAX_FORM: usize = 64 * 1024;

/// The fields of a submitted form.
pub(crate) struct Form(pub Fields);

/// Fields by name; a repeated name keeps every value.
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = UiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, UiError> {
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM)
            .await
            .map_err(|_| {
                UiError::Service(berth_registry::Error::InvalidParameter(
                    "the form is too large".into(),
                ))
            })?;
        Ok(Form(parse(&body)))
    }
}

fn parse(body: &Bytes) -> Fields {
    Fields(
        form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse_with_repeated_fields() {
        let f = parse(&Bytes::from_static(b"a=1&s=pull&s=push&b=x%2By+z"));
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.all("s").collect::<Vec<_>>(), ["pull", "push"]);
        assert_eq!(f.get("b"), Some("x+y z"));
        assert_eq!(f.get("c"), None);
    }
}
