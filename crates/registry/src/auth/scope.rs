//! Token-request scopes (`repository:acme/web:pull,push`,
//! `registry:catalog:*`) and the challenge strings that ask for them.

use berth_oci::RepositoryName;

use super::permission::{Access, Action};

/// Most scopes honoured in one token request (the rest are ignored).
pub const MAX_SCOPES: usize = 64;

/// One requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Actions on one repository.
    Repository {
        /// Repository name.
        name: RepositoryName,
        /// Actions asked for.
        access: Access,
    },
    /// Listing the catalog.
    Catalog,
}

/// Parses the actions list of a scope (`pull,push`, `*`). Unknown words
/// are ignored; `*` is everything.
pub fn parse_actions(list: &str) -> Access {
    let mut a = Access::NONE;
    for word in list.split(',').map(str::trim) {
        if word == "*" {
            return Access::ALL;
        }
        if let Some(action) = Action::parse(word) {
            a = a.with(action);
        }
    }
    a
}

/// Parses one scope; `None` for types berth does not know or invalid
/// repository names (which are then simply not granted).
pub fn parse(scope: &str) -> Option<Scope> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    match kind {
        // `repository(plugin)` is what docker sends for plugins.
        "repository" | "repository(plugin)" => Some(Scope::Repository {
            name: RepositoryName::parse(name).ok()?,
            access: parse_actions(actions),
        }),
        "registry" if name == "catalog" => Some(Scope::Catalog),
        _ => None,
    }
}

/// Parses every scope of a request: repeated `scope` parameters, each of
/// which may hold several scopes separated by spaces (OAuth2 style).
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
    values
        .into_iter()
        .flat_map(str::split_whitespace)
        .take(MAX_SCOPES)
        .filter_map(parse)
        .collect()
}

/// The scope string a challenge asks for: `repository:<name>:<actions>`.
pub fn repository_scope(name: &RepositoryName, access: Access) -> String {
    format!("repository:{name}:{}", access.names().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> RepositoryName {
        RepositoryName::parse(name).unwrap()
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            parse("repository:acme/web:pull,push"),
            Some(Scope::Repository {
                name: r("acme/web"),
                access: Access::of(&[Action::Pull, Action::Push])
            })
        );
        assert_eq!(
            parse("repository:acme/web:*"),
            Some(Scope::Repository {
                name: r("acme/web"),
                access: Access::ALL
            })
        );
        assert_eq!(parse("registry:catalog:*"), Some(Scope::Catalog));
        assert_eq!(parse("repository:../etc:pull"), None);
        assert_eq!(parse("repository:Acme:pull"), None);
        assert_eq!(parse("nonsense"), None);
        assert_eq!(parse("registry:other:*"), None);
        let many = parse_all(["repository:a:pull repository:b:push", "registry:catalog:*"]);
        assert_eq!(many.len(), 3);
        let flood = vec!["repository:a:pull"; MAX_SCOPES + 10];
        assert_eq!(parse_all(flood).len(), MAX_SCOPES);
        assert_eq!(
            repository_scope(&r("a/b"), Access::of(&[Action::Pull, Action::Push])),
            "repository:a/b:pull,push"
        );
    }
}
