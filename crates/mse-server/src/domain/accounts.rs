//! The accounts: users, their tokens, projects, resources (plans) and
//! custom domains, as the platform knows them.

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Whether it administers the platform.
    pub is_admin: bool,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// When an administrator disabled it, Unix seconds; `None` while
    /// enabled.
    pub disabled_at: Option<i64>,
}

/// An API token's public side (the secret is shown once, stored hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A token's scope: the API's, stored by its name.
pub use mse_api::account::Scope;

/// A project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Its id.
    pub id: String,
    /// Its name, unique for its owner.
    pub name: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// A resource (plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Its name.
    pub name: String,
    /// Memory, MB.
    pub memory_mb: i64,
    /// CPU cores.
    pub cores: i64,
    /// Enclave size, as the fingerprint names it.
    pub enclave_size: String,
    /// Lifetime of an app without an expiry of its own, hours.
    pub default_hours: i64,
    /// Open to every user (`free`), or granted per user.
    pub public: bool,
    /// The most live apps on it, every user's together; `None`: no limit.
    pub max_live_apps: Option<i64>,
    /// The TEE kinds its apps may run in; none named: every kind.
    pub tees: Vec<mse_api::tee::Tee>,
}

/// A custom domain and the account it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A change of a user's quota: per number, `None` keeps it, `Some(None)`
/// returns it to the default, `Some(Some(n))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaChange {
    /// Live apps at once.
    pub max_live_apps: Option<Option<i64>>,
    /// Bytes of encrypted code kept.
    pub max_stored_bytes: Option<Option<i64>>,
}
