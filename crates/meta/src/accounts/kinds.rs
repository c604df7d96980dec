//! The small enumerations of the accounts model, stored as lowercase
//! strings.

use serde::Serialize;

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The stored (and JSON) spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the stored spelling.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// What kind of account logs in.
    AccountKind {
        /// A person, with a password and a namespace of their own.
        User = "user",
        /// A machine account of an organisation (CI), tokens only.
        Robot = "robot",
    }
}

string_enum! {
    /// Who owns a namespace.
    NamespaceKind {
        /// The user of the same name.
        User = "user",
        /// An organisation.
        Org = "org",
    }
}

string_enum! {
    /// Whether anonymous clients may pull.
    Visibility {
        /// Anyone may pull.
        Public = "public",
        /// Only accounts with a role may pull.
        Private = "private",
    }
}

string_enum! {
    /// A member's role in an organisation; each includes the ones before.
    Role {
        /// Pull.
        Read = "read",
        /// Pull, push, tag.
        Write = "write",
        /// Everything: delete, settings, members.
        Admin = "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for r in [Role::Read, Role::Write, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        assert_eq!(Visibility::parse("public"), Some(Visibility::Public));
        assert_eq!(Visibility::parse("Public"), None);
        assert_eq!(AccountKind::Robot.to_string(), "robot");
        assert_eq!(
            serde_json::to_string(&NamespaceKind::Org).ok().as_deref(),
            Some("\"org\"")
        );
    }
}
