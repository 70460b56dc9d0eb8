//! Accounts as the REST API shows them: users and their tokens, projects,
//! resources, custom domains, quotas and what is used of them, and the
//! bodies that create them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user (`GET /me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Whether it administers the platform.
    pub is_admin: bool,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Whether an administrator disabled it: its tokens are refused and its
    /// apps were stopped until an administrator enables it again.
    #[serde(default)]
    pub disabled: bool,
}

/// A user with the resources granted to it (`GET /users`, admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGrants {
    /// The user.
    #[serde(flatten)]
    pub user: User,
    /// The resources granted to it.
    pub grants: Vec<String>,
}

/// The body of `POST /users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Its unique name.
    pub name: String,
    /// Whether it administers the platform.
    #[serde(default)]
    pub admin: bool,
}

/// The answer to `POST /users`: the user and the secret of its first token,
/// shown this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The new user.
    #[serde(flatten)]
    pub user: User,
    /// Its first token's secret.
    #[serde(rename = "token")]
    pub secret: String,
}

impl fmt::Debug for UserCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("UserCreated")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The body of `POST /users/{id}/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// The resource granted.
    pub resource: String,
}

/// What a token may do. Each scope allows what the one before it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reading only: `GET` requests.
    Read,
    /// Everything its user may do but administer the platform: deploy,
    /// stop, remove, make and revoke tokens.
    Deploy,
    /// Everything, administration included (an administrator's token; a
    /// user's token of this scope has a user's power).
    Admin,
}

impl Scope {
    /// Every scope, from the narrowest.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Deploy, Scope::Admin];

    /// Its name on the wire: `read`, `deploy` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        }
    }

    /// The scope of this name.
    pub fn parse(name: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| format!("unknown scope `{name}`: the scopes are read, deploy and admin"))
    }

    /// Whether a token of this scope may do what `needed` allows.
    pub fn covers(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(name: &str) -> Result<Scope, String> {
        Scope::parse(name)
    }
}

/// An API token's public side (`GET /tokens`); the secret is shown once,
/// and stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Its id.
    pub id: String,
    /// The name its owner gave it.
    pub name: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// What it may do.
    pub scope: Scope,
    /// When it stops working, Unix seconds; `None`: when revoked.
    pub expires_at: Option<i64>,
}

/// The body of `POST /tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The name to give it.
    pub name: String,
    /// Seconds it lives from now; [default: as long as the token making it,
    /// within the platform's maximum]. Kept as sent, for the server to say
    /// when it is out of bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<serde_json::Number>,
    /// What it may do [default: what the token making it may].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// The answer to `POST /tokens`: the token and its secret, shown this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The new token.
    #[serde(flatten)]
    pub token: Token,
    /// Its secret.
    #[serde(rename = "token")]
    pub secret: String,
}

impl fmt::Debug for TokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("TokenCreated")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A project (`GET /projects/{name}`, each item of `GET /projects`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Its id.
    pub id: String,
    /// Its name, unique for its owner.
    pub name: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// The body of `POST /projects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Its name, unique for its owner.
    pub name: String,
}

/// A resource, the plan an app runs on (`GET /resources/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Its name.
    pub name: String,
    /// Memory, MB.
    pub memory_mb: i64,
    /// CPU cores.
    pub cores: i64,
    /// Enclave size, as the fingerprint names it (e.g. `1G`).
    pub enclave_size: String,
    /// Lifetime of an app without an expiry of its own, hours.
    pub default_hours: i64,
    /// Open to every user (`free`), or granted per user.
    #[serde(default)]
    pub public: bool,
    /// The most live apps on it, every user's together; `None`: no limit.
    #[serde(default)]
    pub max_live_apps: Option<i64>,
    /// The TEE kinds its apps may run in; none named: every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tees: Vec<crate::tee::Tee>,
}

/// The body of `POST /resources`. The numbers are kept as sent, for the
/// server to say which one is out of bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewResource {
    /// Its name.
    pub name: String,
    /// Memory, MB.
    pub memory_mb: serde_json::Number,
    /// CPU cores.
    pub cores: serde_json::Number,
    /// Enclave size (e.g. `1G`).
    pub enclave_size: String,
    /// Lifetime of an app without an expiry of its own, hours.
    pub default_hours: serde_json::Number,
    /// Open to every user.
    #[serde(default)]
    pub public: bool,
    /// The most live apps on it, every user's together.
    #[serde(default)]
    pub max_live_apps: Option<i64>,
    /// The TEE kinds its apps may run in; none named: every kind.
    #[serde(default)]
    pub tees: Vec<crate::tee::Tee>,
}

/// A custom domain and the account it belongs to (`GET /domains`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// The name, lowercase.
    pub name: String,
    /// Its owner's id.
    pub user_id: String,
    /// Its owner's name.
    pub user_name: String,
    /// When its first app was deployed, Unix seconds.
    pub claimed_at: i64,
}

/// A user's quota and what is used of it (`GET /users/{id}/quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    /// Live apps (`spawning`, `initializing`, `running`) at once.
    pub max_live_apps: i64,
    /// Bytes of encrypted code kept for the apps not removed, and of
    /// persistent storage reserved by the live ones.
    pub max_stored_bytes: i64,
    /// Its live apps.
    pub live_apps: i64,
    /// The bytes of encrypted code of its apps not removed, and of
    /// persistent storage its live apps reserve.
    pub stored_bytes: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_shows_its_secret_on_the_wire_and_never_in_debug() {
        let created = TokenCreated {
            token: Token {
                id: "t1".into(),
                name: "ci".into(),
                created_at: 3,
                scope: Scope::Read,
                expires_at: Some(60),
            },
            secret: "mse_secret".into(),
        };
        assert_eq!(
            serde_json::to_value(&created).unwrap(),
            serde_json::json!({"id": "t1", "name": "ci", "created_at": 3, "scope": "read",
                "expires_at": 60, "token": "mse_secret"})
        );
        assert!(!format!("{created:?}").contains("mse_secret"));
        let user = UserCreated {
            user: User {
                id: "u1".into(),
                name: "bob".into(),
                is_admin: false,
                created_at: 1,
                disabled: false,
            },
            secret: "mse_other".into(),
        };
        let value = serde_json::to_value(&user).unwrap();
        assert_eq!(value["token"], "mse_other");
        assert_eq!(value["is_admin"], false);
        assert!(!format!("{user:?}").contains("mse_other"));
    }

    #[test]
    fn scopes_are_ordered_and_named_on_the_wire() {
        assert!(Scope::Admin.covers(Scope::Deploy) && Scope::Deploy.covers(Scope::Read));
        assert!(!Scope::Read.covers(Scope::Deploy) && !Scope::Deploy.covers(Scope::Admin));
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
            assert_eq!(serde_json::to_value(scope).unwrap(), scope.as_str());
        }
        assert!(Scope::parse("write")
            .unwrap_err()
            .contains("read, deploy and admin"));
        let body: NewToken =
            serde_json::from_str(r#"{"name": "ci", "scope": "read", "expires_in": 60}"#).unwrap();
        assert_eq!(body.scope, Some(Scope::Read));
        assert!(serde_json::from_str::<NewToken>(r#"{"name": "ci", "user": "x"}"#).is_err());
    }

    #[test]
    fn a_resource_without_a_limit_writes_null() {
        let resource = Resource {
            name: "free".into(),
            memory_mb: 2048,
            cores: 1,
            enclave_size: "1G".into(),
            default_hours: 4,
            public: true,
            max_live_apps: None,
            tees: Vec::new(),
        };
        let value = serde_json::to_value(&resource).unwrap();
        assert_eq!(value["max_live_apps"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Resource>(value).unwrap(), resource);
    }
}
