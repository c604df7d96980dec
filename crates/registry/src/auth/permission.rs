//! The permission model, as pure functions.
//!
//! What an account may do on a repository follows from a few facts: who it
//! is ([`Account`]), who owns the repository's namespace and the account's
//! role there ([`Facts`]), and, when it authenticated with a token, the
//! token's limits ([`TokenLimits`]). The rules, in order:
//!
//! 1. Anyone, anonymous included, may pull from a public repository.
//! 2. A site admin may do everything everywhere.
//! 3. A user may do everything in their own namespace.
//! 4. An organisation member has its role's actions there: `read` pulls,
//!    `write` also pushes (and tags), `admin` also deletes and administers.
//!    A robot is a member of its organisation like a user.
//! 5. A token narrows 2-4 to its scopes and, if it has any, to the
//!    repositories its patterns cover (scopes imply what they need:
//!    `push` and `delete` imply `pull`, `admin` implies everything). Rule 1
//!    still applies: a narrow token never pulls less than an anonymous
//!    client.

use berth_meta::accounts::{AccountKind, Role, Visibility};
use berth_oci::RepositoryName;

use crate::glob;

/// One thing a client may do on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, push manifests, move tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Settings, members, protected tags.
    Admin,
}

impl Action {
    /// Every action, in order.
    pub const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Admin];

    /// The spelling in token scopes and JWT claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Admin => "admin",
        }
    }

    /// Parses `pull`, `push`, `delete` or `admin`.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Action`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(u8);

impl Access {
    /// Nothing.
    pub const NONE: Access = Access(0);
    /// Pull only.
    pub const PULL: Access = Access(1);
    /// Everything.
    pub const ALL: Access = Access(0b1111);

    /// The set holding `actions`.
    pub fn of(actions: &[Action]) -> Access {
        Access(actions.iter().fold(0, |b, a| b | a.bit()))
    }

    /// What a role allows.
    pub fn of_role(role: Role) -> Access {
        match role {
            Role::Read => Access::PULL,
            Role::Write => Access::of(&[Action::Pull, Action::Push]),
            Role::Admin => Access::ALL,
        }
    }

    /// What token scopes allow, with their implications (`push` and
    /// `delete` imply `pull`; `admin` implies everything). Unknown words
    /// are ignored.
    pub fn of_scopes<S: AsRef<str>>(scopes: &[S]) -> Access {
        let mut a = Access::NONE;
        for s in scopes {
            match Action::parse(s.as_ref()) {
                Some(Action::Admin) => a = Access::ALL,
                Some(Action::Pull) => a = a.with(Action::Pull),
                Some(x) => a = a.with(x).with(Action::Pull),
                None => {}
            }
        }
        a
    }

    /// Whether `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// Whether every action of `other` is in the set.
    pub fn covers(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    /// The set plus `action`.
    pub fn with(self, action: Action) -> Access {
        Access(self.0 | action.bit())
    }

    /// Actions in both sets.
    pub fn intersect(self, other: Access) -> Access {
        Access(self.0 & other.0)
    }

    /// Actions in either set.
    pub fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions, in order.
    pub fn actions(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// The actions' names, in order.
    pub fn names(self) -> Vec<&'static str> {
        self.actions().map(Action::as_str).collect()
    }
}

/// An authenticated account, as far as permissions care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name (a user's is also their namespace).
    pub name: String,
    /// User or robot.
    pub kind: AccountKind,
    /// A robot's organisation.
    pub org: Option<String>,
    /// Administers the whole registry.
    pub site_admin: bool,
}

/// What the database says about one repository, for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The repository's visibility: its override, else its namespace's,
    /// else the configured default.
    pub visibility: Visibility,
    /// The account's role in the namespace, if the namespace is an
    /// organisation and the account a member.
    pub role: Option<Role>,
}

/// The limits of the token a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLimits {
    /// The token's public id.
    pub id: String,
    /// What its scopes allow ([`Access::of_scopes`]).
    pub scopes: Access,
    /// Repository scopes it is limited to ([`glob::scope_covers`]); empty:
    /// no limit.
    pub patterns: Vec<String>,
    /// A refresh token (a `docker login` session): it acts for the
    /// account on repositories but never counts as an unrestricted
    /// credential (minting tokens, managing accounts, site administration).
    pub session: bool,
}

impl TokenLimits {
    /// What the token leaves of `access` on `repository`.
    pub fn narrow(&self, repository: &RepositoryName, access: Access) -> Access {
        let covered = self.patterns.is_empty()
            || self
                .patterns
                .iter()
                .any(|p| glob::scope_covers(p, repository));
        if covered {
            access.intersect(self.scopes)
        } else {
            Access::NONE
        }
    }
}

/// What `account` (or an anonymous client) may do on `repository`.
pub fn allowed(
    account: Option<&Account>,
    repository: &RepositoryName,
    facts: &Facts,
    limits: Option<&TokenLimits>,
) -> Access {
    let public = if facts.visibility == Visibility::Public {
        Access::PULL
    } else {
        Access::NONE
    };
    let Some(account) = account else {
        return public;
    };
    let is_user = account.kind == AccountKind::User;
    let owns_namespace = repository.namespace_str() == account.name;
    let mut access = if is_user && (account.site_admin || owns_namespace) {
        Access::ALL
    } else {
        facts.role.map(Access::of_role).unwrap_or(Access::NONE)
    };
    if let Some(limits) = limits {
        access = limits.narrow(repository, access);
    }
    access.union(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str) -> RepositoryName {
        RepositoryName::parse(name).unwrap()
    }

    fn user(name: &str) -> Account {
        Account {
            name: name.into(),
            kind: AccountKind::User,
            org: None,
            site_admin: false,
        }
    }

    fn facts(visibility: Visibility, role: Option<Role>) -> Facts {
        Facts { visibility, role }
    }

    const PRIVATE: Facts = Facts {
        visibility: Visibility::Private,
        role: None,
    };
    const PUBLIC: Facts = Facts {
        visibility: Visibility::Public,
        role: None,
    };

    fn limits(scopes: &[&str], patterns: &[&str]) -> TokenLimits {
        TokenLimits {
            id: "t".into(),
            scopes: Access::of_scopes(scopes),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            session: false,
        }
    }

    #[test]
    fn anonymous_pulls_public_only() {
        assert_eq!(allowed(None, &r("acme/web"), &PUBLIC, None), Access::PULL);
        assert_eq!(allowed(None, &r("acme/web"), &PRIVATE, None), Access::NONE);
    }

    #[test]
    fn own_namespace_is_admin() {
        let alice = user("alice");
        assert_eq!(
            allowed(Some(&alice), &r("alice/app"), &PRIVATE, None),
            Access::ALL
        );
        assert_eq!(
            allowed(Some(&alice), &r("alice"), &PRIVATE, None),
            Access::ALL
        );
        assert_eq!(
            allowed(Some(&alice), &r("alice/a/b"), &PRIVATE, None),
            Access::ALL
        );
        // A prefix is not a namespace.
        assert_eq!(
            allowed(Some(&alice), &r("alicex/app"), &PRIVATE, None),
            Access::NONE
        );
        assert_eq!(
            allowed(Some(&alice), &r("bob/app"), &PRIVATE, None),
            Access::NONE
        );
        assert_eq!(
            allowed(Some(&alice), &r("bob/app"), &PUBLIC, None),
            Access::PULL
        );
    }

    #[test]
    fn roles_grant_their_actions() {
        let alice = user("alice");
        let read = facts(Visibility::Private, Some(Role::Read));
        let write = facts(Visibility::Private, Some(Role::Write));
        let admin = facts(Visibility::Private, Some(Role::Admin));
        assert_eq!(
            allowed(Some(&alice), &r("acme/web"), &read, None),
            Access::PULL
        );
        let w = allowed(Some(&alice), &r("acme/web"), &write, None);
        assert!(w.contains(Action::Pull) && w.contains(Action::Push));
        assert!(!w.contains(Action::Delete) && !w.contains(Action::Admin));
        assert_eq!(
            allowed(Some(&alice), &r("acme/web"), &admin, None),
            Access::ALL
        );
    }

    #[test]
    fn site_admin_does_everything_robots_never_are() {
        let mut root = user("root");
        root.site_admin = true;
        assert_eq!(
            allowed(Some(&root), &r("acme/web"), &PRIVATE, None),
            Access::ALL
        );
        let robot = Account {
            name: "acme+ci".into(),
            kind: AccountKind::Robot,
            org: Some("acme".into()),
            site_admin: true,
        };
        assert_eq!(
            allowed(Some(&robot), &r("acme/web"), &PRIVATE, None),
            Access::NONE
        );
        let member = facts(Visibility::Private, Some(Role::Write));
        assert!(allowed(Some(&robot), &r("acme/web"), &member, None).contains(Action::Push));
    }

    #[test]
    fn robots_own_no_namespace() {
        let robot = Account {
            name: "acme+ci".into(),
            kind: AccountKind::Robot,
            org: Some("acme".into()),
            site_admin: false,
        };
        assert_eq!(
            allowed(Some(&robot), &r("acme/x"), &PRIVATE, None),
            Access::NONE
        );
        // Nor a repository named after the robot: that name is no
        // repository name, so no check on it can be asked for.
        assert!(RepositoryName::parse(format!("{}/x", robot.name)).is_err());
    }

    #[test]
    fn token_scopes_and_patterns_intersect() {
        let alice = user("alice");
        let pull_only = limits(&["pull"], &[]);
        assert_eq!(
            allowed(Some(&alice), &r("alice/app"), &PRIVATE, Some(&pull_only)),
            Access::PULL
        );
        let push = limits(&["push"], &["alice/web-*"]);
        let a = allowed(Some(&alice), &r("alice/web-api"), &PRIVATE, Some(&push));
        assert_eq!(
            a,
            Access::of(&[Action::Pull, Action::Push]),
            "push implies pull"
        );
        assert_eq!(
            allowed(Some(&alice), &r("alice/db"), &PRIVATE, Some(&push)),
            Access::NONE,
            "outside the patterns"
        );
        // A token never widens: push scope on a read role stays pull.
        let read = facts(Visibility::Private, Some(Role::Read));
        assert_eq!(
            allowed(
                Some(&alice),
                &r("acme/web"),
                &read,
                Some(&limits(&["admin"], &[]))
            ),
            Access::PULL
        );
        // Namespace patterns cover the whole namespace.
        let ns = limits(&["delete"], &["alice"]);
        let a = allowed(Some(&alice), &r("alice/x/y"), &PRIVATE, Some(&ns));
        assert!(a.contains(Action::Delete) && a.contains(Action::Pull));
        assert!(!a.contains(Action::Push));
        // Public pull survives a narrow token.
        assert_eq!(
            allowed(Some(&alice), &r("bob/app"), &PUBLIC, Some(&push)),
            Access::PULL
        );
        // A token without scopes does nothing but what anonymous may.
        assert_eq!(
            allowed(
                Some(&alice),
                &r("alice/app"),
                &PRIVATE,
                Some(&limits(&[], &[]))
            ),
            Access::NONE
        );
    }

    #[test]
    fn access_sets() {
        assert_eq!(Access::of_scopes(&["admin"]), Access::ALL);
        assert_eq!(Access::of_scopes(&["bogus"]), Access::NONE);
        assert_eq!(
            Access::of_scopes(&["delete"]).names(),
            vec!["pull", "delete"]
        );
        assert!(Access::ALL.covers(Access::PULL));
        assert!(!Access::PULL.covers(Access::ALL));
        assert_eq!(Access::of_role(Role::Admin), Access::ALL);
        assert_eq!(Action::parse("push"), Some(Action::Push));
        assert_eq!(Action::parse("*"), None);
    }
}
