//! The edge between the store and the API: each row as the API shows it
//! (the wire types of `mse_api`), so that what the store keeps for itself
//! (nodes, claims, hashes) never reaches an answer.

use mse_api::{account, apps};

use crate::domain::{accounts, app as stored, quota};

impl From<&stored::App> for apps::App {
    fn from(app: &stored::App) -> Self {
        let spec = &app.spec;
        apps::App {
            id: app.id.clone(),
            project: app.project.clone(),
            domain_name: app.domain_name.clone(),
            config_domain_name: app.config_domain_name.clone(),
            name: spec.name.clone(),
            resource: spec.resource.clone(),
            docker: spec.docker.clone(),
            python_application: spec.python_application.clone(),
            healthcheck_endpoint: spec.healthcheck_endpoint.clone(),
            certificate_origin: spec.certificate_origin,
            ssl_certificate: spec.ssl_certificate.clone(),
            code_sha256: spec.code_sha256.clone(),
            code_bytes: spec.code_bytes,
            enclave_size: spec.enclave_size.clone(),
            status: app.status,
            reason: app.reason.clone(),
            created_at: app.created_at,
            ready_at: app.ready_at,
            stopped_at: app.stopped_at,
            onerror_at: app.onerror_at,
            expires_at: app.expires_at,
            sandbox: app.sandbox.clone(),
            limits: app.limits.clone(),
            node: app.node_owner.clone(),
            certificate: app.certificate.clone(),
            fingerprint: app.fingerprint.clone(),
            tee: app.tee,
            keep_running: app.keep_running,
            rescheduled: app.rescheduled.clone(),
            // The store's to say (`GET /apps/{id}`).
            storage: None,
        }
    }
}

impl From<&accounts::User> for account::User {
    fn from(user: &accounts::User) -> Self {
        account::User {
            id: user.id.clone(),
            name: user.name.clone(),
            is_admin: user.is_admin,
            created_at: user.created_at,
            disabled: user.disabled_at.is_some(),
        }
    }
}

impl From<&accounts::Token> for account::Token {
    fn from(token: &accounts::Token) -> Self {
        account::Token {
            id: token.id.clone(),
            name: token.name.clone(),
            created_at: token.created_at,
            scope: token.scope,
            expires_at: token.expires_at,
        }
    }
}

impl From<&accounts::Project> for account::Project {
    fn from(project: &accounts::Project) -> Self {
        account::Project {
            id: project.id.clone(),
            name: project.name.clone(),
            created_at: project.created_at,
        }
    }
}

impl From<&accounts::Resource> for account::Resource {
    fn from(resource: &accounts::Resource) -> Self {
        account::Resource {
            name: resource.name.clone(),
            memory_mb: resource.memory_mb,
            cores: resource.cores,
            enclave_size: resource.enclave_size.clone(),
            default_hours: resource.default_hours,
            public: resource.public,
            max_live_apps: resource.max_live_apps,
            tees: resource.tees.clone(),
        }
    }
}

impl From<&accounts::Domain> for account::Domain {
    fn from(domain: &accounts::Domain) -> Self {
        account::Domain {
            name: domain.name.clone(),
            user_id: domain.user_id.clone(),
            user_name: domain.user_name.clone(),
            claimed_at: domain.claimed_at,
        }
    }
}

/// A user's quota and its use, as the API shows them.
pub fn quota_use(quota: &quota::Quota, usage: &quota::Usage) -> account::QuotaUse {
    account::QuotaUse {
        max_live_apps: quota.max_live_apps,
        max_stored_bytes: quota.max_stored_bytes,
        live_apps: usage.live_apps,
        stored_bytes: usage.stored_bytes,
    }
}

/// Rows as the API shows them, for the handlers' lists.
pub fn all<'a, T, W>(rows: impl IntoIterator<Item = &'a T>) -> Vec<W>
where
    T: 'a,
    W: From<&'a T>,
{
    rows.into_iter().map(W::from).collect()
}
