//! Users, their tokens, projects and resources.

use sqlx::Row;

use super::rows::{
    joined_token, project, resource, token, user, RESOURCE_COLUMNS, TOKEN_COLUMNS, USER_COLUMNS,
};
use super::{new_id, Store, StoreError};

/// An unrevoked token joined to its user, as [`joined_token`] and `user`
/// read it; the query ends with the condition that picks the token.
const TOKEN_WITH_USER: &str = "SELECT u.id, u.name, u.is_admin, u.created_at, u.disabled_at, \
     t.id AS token_id, t.name AS token_name, t.created_at AS token_created_at, t.scope, \
     t.expires_at FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.revoked_at IS NULL AND";
use crate::domain::accounts::{Project, Resource, Scope, Token, User};

impl Store {
    /// Creates a user with its `default` project.
    pub async fn create_user(
        &self,
        name: &str,
        is_admin: bool,
        now: i64,
    ) -> Result<User, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = new_id();
        sqlx::query("INSERT INTO users (id, name, is_admin, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(name)
            .bind(i64::from(is_admin))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO projects (id, user_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(new_id())
            .bind(&id)
            .bind("default")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(User {
            id,
            name: name.to_string(),
            is_admin,
            created_at: now,
            disabled_at: None,
        })
    }

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Stores the hash of a new token of `user_id`, of this scope, working
    /// until `expires_at` (`None`: until revoked).
    pub async fn add_token(
        &self,
        user_id: &str,
        name: &str,
        hash: &str,
        scope: Scope,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<Token, StoreError> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO tokens (id, user_id, name, hash, created_at, scope, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(hash)
        .bind(now)
        .bind(scope.as_str())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(Token {
            id,
            name: name.to_string(),
            created_at: now,
            scope,
            expires_at,
        })
    }

    /// The unrevoked token with this hash and the user holding it (whether
    /// it expired, or its user is disabled, is the caller's to check).
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<(User, Token)>, StoreError> {
        let row = sqlx::query(&format!("{TOKEN_WITH_USER} t.hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((user(&row)?, joined_token(&row)?)))
    }

    /// The unrevoked token with this id, and its user.
    pub async fn token_by_id(&self, id: &str) -> Result<Option<(User, Token)>, StoreError> {
        let row = sqlx::query(&format!("{TOKEN_WITH_USER} t.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((user(&row)?, joined_token(&row)?)))
    }

    /// The user holding the working token with this hash: unrevoked,
    /// unexpired at `now`, of an enabled user.
    pub async fn user_by_token_hash(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<User>, StoreError> {
        Ok(self.token_by_hash(hash).await?.and_then(|(user, token)| {
            (user.disabled_at.is_none() && token.expires_at.is_none_or(|at| at > now))
                .then_some(user)
        }))
    }

    /// The working tokens of a user (unrevoked, unexpired at `now`), oldest
    /// first.
    pub async fn tokens(&self, user_id: &str, now: i64) -> Result<Vec<Token>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at, id"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(token).collect::<Result<_, _>>()?)
    }

    /// Revokes an unrevoked token: of `user_id` only, or of anyone when
    /// `None` (an administrator); false when there is no such token.
    pub async fn revoke_token(
        &self,
        user_id: Option<&str>,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let revoke = "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        let done = match user_id {
            Some(user_id) => {
                sqlx::query(&format!("{revoke} AND user_id = $3"))
                    .bind(now)
                    .bind(id)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(revoke)
                    .bind(now)
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    /// Disables a user (`Some(now)`) or enables it (`None`); false when
    /// there is no such user.
    pub async fn set_user_disabled(
        &self,
        id: &str,
        disabled_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled_at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates a project of `user_id`.
    pub async fn create_project(
        &self,
        user_id: &str,
        name: &str,
        now: i64,
    ) -> Result<Project, StoreError> {
        let id = new_id();
        sqlx::query("INSERT INTO projects (id, user_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(user_id)
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(Project {
            id,
            name: name.to_string(),
            created_at: now,
        })
    }

    /// The projects of `user_id`.
    pub async fn projects(&self, user_id: &str) -> Result<Vec<Project>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM projects WHERE user_id = $1 ORDER BY name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(project).collect::<Result<_, _>>()?)
    }

    /// A project of `user_id` by name.
    pub async fn project(&self, user_id: &str, name: &str) -> Result<Option<Project>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, created_at FROM projects WHERE user_id = $1 AND name = $2",
        )
        .bind(user_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(project).transpose()?)
    }

    /// The resources `user_id` may use: public ones and those granted.
    pub async fn resources(&self, user_id: &str) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE public = 1 \
             OR name IN (SELECT resource FROM grants WHERE user_id = $1) ORDER BY name"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(resource).collect::<Result<_, _>>()?)
    }

    /// A resource `user_id` may use, by name.
    pub async fn resource(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE name = $1 AND (public = 1 \
             OR name IN (SELECT resource FROM grants WHERE user_id = $2))"
        ))
        .bind(name)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(resource).transpose()?)
    }

    /// Creates a resource (granted per user unless `public`).
    pub async fn create_resource(&self, r: &Resource) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO resources ({RESOURCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&r.name)
        .bind(r.memory_mb)
        .bind(r.cores)
        .bind(&r.enclave_size)
        .bind(r.default_hours)
        .bind(i64::from(r.public))
        .bind(r.max_live_apps)
        .bind(mse_api::tee::join(&r.tees))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a resource of that name exists at all.
    pub async fn resource_exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT name FROM resources WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Grants a resource to a user (idempotent).
    pub async fn grant(&self, user_id: &str, resource: &str) -> Result<(), StoreError> {
        let exists = sqlx::query("SELECT user_id FROM grants WHERE user_id = $1 AND resource = $2")
            .bind(user_id)
            .bind(resource)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if !exists {
            sqlx::query("INSERT INTO grants (user_id, resource) VALUES ($1, $2)")
                .bind(user_id)
                .bind(resource)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }
}
