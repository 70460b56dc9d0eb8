//! Who holds what: custom domains, quotas and what is used of them.

use sqlx::Row;

use super::rows::{
    app, quota, resource, usage, APP_SELECT, LIVE, RESOURCE_COLUMNS, USER_LIVE_APPS,
    USER_STORED_BYTES,
};
use super::{Store, StoreError};
use crate::domain::accounts::{Domain, QuotaChange, Resource};
use crate::domain::app::App;
use crate::domain::quota::{Quota, Usage};

/// Who holds what: custom domains, quotas and what is used of them.
impl Store {
    /// The custom domains, by name: every user's, or those of `user_id`.
    pub async fn domains(&self, user_id: Option<&str>) -> Result<Vec<Domain>, StoreError> {
        let sql = "SELECT d.name, d.user_id, u.name AS user_name, d.claimed_at FROM domains d \
                   JOIN users u ON u.id = d.user_id";
        let rows = match user_id {
            Some(user_id) => {
                sqlx::query(&format!("{sql} WHERE d.user_id = $1 ORDER BY d.name"))
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{sql} ORDER BY d.name"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(Domain {
                    name: row.try_get("name")?,
                    user_id: row.try_get("user_id")?,
                    user_name: row.try_get("user_name")?,
                    claimed_at: row.try_get("claimed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Releases a custom domain: the next user to deploy it gets it. False
    /// when nobody holds it.
    pub async fn release_domain(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM domains WHERE name = $1")
            .bind(name.to_ascii_lowercase())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The live app on `domain`, if any, with its owner's id.
    pub async fn live_app_on_domain(
        &self,
        domain: &str,
    ) -> Result<Option<(App, String)>, StoreError> {
        let select = APP_SELECT.replacen("SELECT ", "SELECT p.user_id AS owner_id, ", 1);
        let row = sqlx::query(&format!(
            "{select} WHERE a.domain = $1 AND a.status IN {LIVE}"
        ))
        .bind(domain.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((app(&row)?, row.try_get("owner_id")?)))
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    /// A user's quota and what it uses of it; `None` when there is no such
    /// user.
    pub async fn user_quota(&self, user_id: &str) -> Result<Option<(Quota, Usage)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT max_live_apps, max_stored_bytes, ({USER_LIVE_APPS}) AS live_apps, \
             ({USER_STORED_BYTES}) AS stored_bytes FROM users WHERE id = $1"
        ))
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((quota(&row)?, usage(&row)?)))
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    /// Changes a user's quota; false when there is no such user.
    pub async fn set_user_quota(
        &self,
        user_id: &str,
        change: &QuotaChange,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query("UPDATE users SET max_live_apps = max_live_apps WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !found {
            return Ok(false);
        }
        for (column, value) in [
            ("max_live_apps", change.max_live_apps),
            ("max_stored_bytes", change.max_stored_bytes),
        ] {
            if let Some(value) = value {
                sqlx::query(&format!("UPDATE users SET {column} = $1 WHERE id = $2"))
                    .bind(value)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Sets the most live apps on a resource (`None`: no limit); false when
    /// there is no such resource.
    pub async fn set_resource_limit(
        &self,
        name: &str,
        max_live_apps: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE resources SET max_live_apps = $1 WHERE name = $2")
            .bind(max_live_apps)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A resource by name, whoever may use it (for the operator).
    pub async fn any_resource(&self, name: &str) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(resource).transpose()?)
    }

    /// The apps whose package size is not recorded (stored before sizes
    /// were).
    pub async fn apps_without_code_bytes(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM apps WHERE code_bytes IS NULL")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?)
    }

    /// Records the size of an app's package.
    pub async fn set_code_bytes(&self, id: &str, bytes: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE apps SET code_bytes = $1 WHERE id = $2")
            .bind(bytes)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
