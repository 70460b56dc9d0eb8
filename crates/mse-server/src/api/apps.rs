//! The apps API: deploy (multipart: JSON config + encrypted code), read,
//! list, stop, delete, logs. The seed's server-side rules live here.

use std::io::Write as _;

use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use mse_api::apps::{CertificateOrigin, Created, DeployConfig, ListQuery};
use sha2::{Digest, Sha256};

use crate::data::dir::app_dir;
use crate::domain::app::{App, AppFilter, AppSpec, NewApp};
use crate::domain::nodes::Placement;
use crate::domain::quota::{Quota, QuotaExceeded, QuotaKind, Usage};
use crate::state::{ApiError, Caller, Shared};
use crate::store::{is_conflict, StoreError};

/// The largest configuration part accepted.
const MAX_CONFIG: usize = 1024 * 1024;
/// The largest upload accepted (configuration and code).
pub const MAX_UPLOAD: usize = 512 * 1024 * 1024;

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Writes the upload to a temporary file, hashing it; removes it on drop
/// unless kept.
struct Upload {
    path: std::path::PathBuf,
    keep: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The code part as received: its file, SHA-256 (hex) and size.
struct Code {
    upload: Upload,
    sha256: String,
    bytes: i64,
}

/// The status and message of a multipart error: 413 over the size cap, else
/// 400 (a malformed or cut-short upload).
fn upload_error(what: &str, e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!(
            "the upload is over {} MiB; make the code smaller (.mseignore)",
            MAX_UPLOAD >> 20
        ))
    } else {
        ApiError::bad_request(format!("{what}: {}", e.body_text()))
    }
}

/// Reads the parts, streaming the code to a file. Code over `room` bytes
/// (what the caller's stored-bytes quota leaves) is not kept: the rest of
/// it is read and counted, not written, and the deploy refused over quota.
async fn read_parts(
    state: &Shared,
    mut multipart: Multipart,
    room: (Quota, Usage),
) -> Result<(DeployConfig, Code), ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let storage = |e: std::io::Error| ApiError::internal(format!("storage: {e}"));
    let mut config = None;
    let mut upload = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| upload_error("malformed upload", &e))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let seen = match name.as_str() {
            "config" => config.is_some(),
            "code" => upload.is_some(),
            _ => {
                return Err(bad(
                    "unexpected part: send `config` (JSON) and `code` (code.tar)".into(),
                ))
            }
        };
        if seen {
            return Err(bad(format!(
                "the `{name}` part is sent twice; send it once"
            )));
        }
        if name == "config" {
            let mut bytes = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| upload_error("malformed upload", &e))?
            {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_CONFIG {
                    return Err(ApiError::too_large("the config part is over 1 MB"));
                }
            }
            config =
                Some(serde_json::from_slice::<DeployConfig>(&bytes).map_err(|e| {
                    bad(format!("the config part is not a deployment config: {e}"))
                })?);
        } else {
            let (path, file) =
                crate::data::dir::create_incoming(&state.data.root).map_err(storage)?;
            let mut guard = Upload { path, keep: false };
            let (quota, usage) = room;
            let room = quota.max_stored_bytes.saturating_sub(usage.stored_bytes);
            let mut hasher = Sha256::new();
            let mut bytes: i64 = 0;
            let mut file = Some(file);
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| upload_error("the upload was cut short", &e))?
            {
                bytes = bytes.saturating_add(i64::try_from(chunk.len()).unwrap_or(i64::MAX));
                if bytes > room {
                    // Over quota: nothing more is written, and what was
                    // goes now.
                    if file.take().is_some() {
                        let _ = std::fs::remove_file(&guard.path);
                        guard.keep = true;
                    }
                    continue;
                }
                hasher.update(&chunk);
                if let Some(file) = file.as_mut() {
                    file.write_all(&chunk).map_err(storage)?;
                }
            }
            if bytes > room {
                return Err(crate::api::tenancy::over_quota(&QuotaExceeded {
                    kind: QuotaKind::StoredBytes,
                    limit: quota.max_stored_bytes,
                    used: usage.stored_bytes,
                    adding: bytes,
                }));
            }
            upload = Some(Code {
                upload: guard,
                sha256: hex::encode(hasher.finalize()),
                bytes,
            });
        }
    }
    let config = config.ok_or_else(|| bad("missing the `config` part".into()))?;
    let code = upload.ok_or_else(|| bad("missing the `code` part (code.tar)".into()))?;
    check_has_code(&code.upload.path).await?;
    Ok((config, code))
}

/// Refuses a code package that is not a tarball, or that holds no
/// encrypted file (no code, and any key would open it).
async fn check_has_code(path: &std::path::Path) -> Result<(), ApiError> {
    let path = path.to_path_buf();
    let counted = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        Ok::<_, std::io::Error>(mse_package::encrypted_files(
            std::io::BufReader::new(file),
            mse_package::Limits::default(),
        ))
    })
    .await;
    match counted {
        Ok(Ok(Ok(0))) => Err(ApiError::unprocessable(
            "the code package holds no encrypted file: package a code folder with the app's \
             Python files (check code.location and .mseignore)",
        )),
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(ApiError::bad_request(format!(
            "the `code` part is not a code package: {e}"
        ))),
        Ok(Err(e)) => Err(ApiError::internal(format!("storage: {e}"))),
        Err(_) => Err(ApiError::internal(
            "reading the upload stopped unexpectedly",
        )),
    }
}

/// `POST /apps`.
pub async fn create(
    State(state): State<Shared>,
    caller: Caller,
    multipart: Multipart,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let user = &caller.0;
    // What the quota leaves now, to keep no more than that on disk; the
    // store checks again, with the count and the insert in one transaction.
    let room = state
        .store
        .user_quota(&user.id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the caller is gone"))?;
    let (config, code) = read_parts(&state, multipart, room).await?;
    let Code {
        mut upload,
        sha256: code_sha256,
        bytes: code_bytes,
    } = code;
    let created = now();

    mse_config::fields::check_name("name", &config.name).map_err(ApiError::unprocessable)?;
    mse_config::fields::check_name("project", &config.project).map_err(ApiError::unprocessable)?;
    mse_config::fields::check_resource(&config.resource).map_err(ApiError::unprocessable)?;
    mse_config::fields::PythonApplication::parse(&config.python_application)
        .map_err(|e| ApiError::unprocessable(format!("python_application: {e}")))?;
    mse_config::fields::check_healthcheck_endpoint(&config.healthcheck_endpoint)
        .map_err(|e| ApiError::unprocessable(format!("healthcheck_endpoint: {e}")))?;
    let image = mse_config::fields::check_docker(&config.docker)
        .map_err(|e| ApiError::unprocessable(format!("docker: {e}")))?;
    if !image.is_remote() || !image.is_pinned() {
        return Err(ApiError::unprocessable(format!(
            "docker: `{}` must name its registry and be pinned to a tag other than `latest` or to \
             a digest: the fingerprint covers the image, so it must not change under the app",
            config.docker
        )));
    }
    let storage_bytes = match config.storage_bytes {
        None => None,
        Some(bytes) if bytes == 0 || bytes > mse_api::launch::MAX_STORAGE_BYTES => {
            return Err(ApiError::unprocessable(format!(
                "storage_bytes: 1 to {} bytes ([storage] size is at most 4G)",
                mse_api::launch::MAX_STORAGE_BYTES
            )))
        }
        Some(bytes) => Some(i64::try_from(bytes).unwrap_or(i64::MAX)),
    };
    let catalog = state.current_catalog()?;
    let runtime = catalog
        .catalog
        .find(&config.docker)
        .map_err(|e| ApiError::unprocessable(format!("docker: {e}")))?;
    let runtime_digest = runtime.digest();
    let runtime_ready = state.cache.is_ready(runtime);

    let project = state
        .store
        .project(&user.id, &config.project)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "project `{}` not found; create it first",
                config.project
            ))
        })?;
    let resource = match state.store.resource(&user.id, &config.resource).await? {
        Some(resource) => resource,
        None if state.store.resource_exists(&config.resource).await? => {
            return Err(ApiError::forbidden(format!(
                "resource `{}` is not granted to you; use `free` or ask the operator",
                config.resource
            )))
        }
        None => {
            return Err(ApiError::not_found(format!(
                "resource `{}` not found",
                config.resource
            )))
        }
    };

    let owner = match (&config.ssl, config.untrusted_ssl) {
        (Some(_), true) => {
            return Err(ApiError::unprocessable(
                "ssl and untrusted_ssl exclude each other: the owner certificate is ignored \
                 with untrusted_ssl, so send only one",
            ))
        }
        (Some(ssl), false) => {
            mse_config::fields::check_domain_name(&ssl.domain_name)
                .map_err(|e| ApiError::unprocessable(format!("ssl.domain_name: {e}")))?;
            crate::api::tenancy::check_custom_domain(&ssl.domain_name, &state.base_domain)
                .map_err(ApiError::unprocessable)?;
            let leaf = mse_config::tls::parse_chain(ssl.certificate.as_bytes())
                .map_err(|e| ApiError::unprocessable(format!("ssl.certificate: {e}")))?;
            if !mse_config::tls::domain_matches(&ssl.domain_name, &leaf.dns_names) {
                return Err(ApiError::unprocessable(format!(
                    "ssl.certificate does not name {}",
                    ssl.domain_name
                )));
            }
            Some(leaf)
        }
        (None, _) => None,
    };

    // A resource's hours may come from an older store, unbounded: the rules
    // refuse an instant out of range.
    let request = mse_config::ExpiryRequest {
        expiration_date: config.expiration_date,
        certificate_not_after: owner.as_ref().map(|leaf| leaf.not_after),
    };
    let expires_at = request
        .expires_at(&config.resource, created, resource.default_hours)
        .map_err(|problem| match problem {
            mse_config::ExpiryProblem::LifetimeOutOfRange { hours } => {
                ApiError::unprocessable(format!(
                    "resource `{}`: its default duration ({hours} hours) is out of range; \
                 set expiration_date, or ask the operator to fix the resource",
                    config.resource
                ))
            }
            problem => ApiError::unprocessable(problem.to_string()),
        })?;

    let id = crate::store::new_id();
    let uuid_domain = format!("{id}.{}", state.base_domain);
    let origin = CertificateOrigin::chosen(
        config.ssl.is_some(),
        config.untrusted_ssl,
        state.acme.is_some() && !config.no_acme,
    );
    let domain = match &config.ssl {
        Some(ssl) => ssl.domain_name.to_ascii_lowercase(),
        None => uuid_domain.clone(),
    };
    let dir = app_dir(&state.data.root, &id);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("storage: {e}")))?;
    let stored = (|| -> std::io::Result<()> {
        std::fs::rename(&upload.path, dir.join("code.tar"))?;
        upload.keep = true;
        if let Some(ssl) = &config.ssl {
            std::fs::write(dir.join("owner.pem"), &ssl.certificate)?;
        }
        Ok(())
    })();
    if let Err(e) = stored {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ApiError::internal(format!("storage: {e}")));
    }

    let new = NewApp {
        id: id.clone(),
        project_id: project.id,
        domain,
        config_domain: uuid_domain,
        spec: AppSpec {
            name: config.name.clone(),
            resource: resource.name,
            docker: config.docker.clone(),
            python_application: config.python_application.clone(),
            healthcheck_endpoint: config.healthcheck_endpoint.clone(),
            certificate_origin: origin,
            ssl_certificate: config.ssl.as_ref().map(|s| s.certificate.clone()),
            code_sha256,
            code_bytes,
            enclave_size: resource.enclave_size,
            storage_bytes,
        },
        created_at: created,
        expires_at,
    };
    // Placed as it is stored, on the least loaded node with room for its
    // resource; the node's backend starts it.
    let placement = Placement::Fit {
        memory_mb: resource.memory_mb,
        cores: resource.cores,
        tees: resource.tees.clone(),
        now: created.timestamp(),
    };
    let app = match state.store.insert_placed_app(&new, &placement).await {
        Ok(app) => app,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(match e {
                StoreError::DomainTaken(name) => crate::api::tenancy::domain_taken(&name),
                StoreError::Quota(refused) => crate::api::tenancy::over_quota(&refused),
                StoreError::NoRoom(refused) => ApiError::unavailable(refused.to_string()),
                StoreError::UserDisabled => {
                    ApiError::forbidden(StoreError::UserDisabled.to_string())
                }
                e if is_conflict(&e) => conflict(&state, user, &config, &new.domain).await?,
                e => e.into(),
            });
        }
    };
    state.nodes.start(&app).await;
    let app = state.store.app(&id).await?.unwrap_or(app);
    Ok((
        StatusCode::CREATED,
        Json(Created {
            app: (&app).into(),
            runtime_digest,
            runtime_ready,
        }),
    ))
}

/// Why a new app conflicts with a live one: its name in its project, or
/// its domain.
async fn conflict(
    state: &Shared,
    user: &crate::domain::accounts::User,
    config: &DeployConfig,
    domain: &str,
) -> Result<ApiError, ApiError> {
    let same_name = state
        .store
        .user_apps(
            &user.id,
            &AppFilter {
                project: Some(config.project.clone()),
                name: Some(config.name.clone()),
                ..Default::default()
            },
        )
        .await?
        .into_iter()
        .find(|a| !a.status.is_terminal());
    let message = if let Some(live) = same_name {
        format!(
            "an app named `{}` is live in project `{}` ({}, {}); stop it first",
            config.name,
            config.project,
            live.id,
            live.status.as_str()
        )
    } else if let Some((live, owner)) = state.store.live_app_on_domain(domain).await? {
        if owner == user.id {
            format!(
                "domain {domain} leads to your live app `{}` in project `{}` ({}, {}); a domain \
                 leads to one live app: stop that one first, or redeploy under its name and \
                 project",
                live.spec.name,
                live.project,
                live.id,
                live.status.as_str()
            )
        } else {
            format!("domain {domain} leads to another account's live app")
        }
    } else {
        format!(
            "an app named `{}`, or on domain {domain}, was deployed at the same time",
            config.name
        )
    };
    Ok(ApiError::conflict(message))
}

pub(crate) async fn own_app(state: &Shared, caller: &Caller, id: &str) -> Result<App, ApiError> {
    state
        .store
        .user_app(&caller.0.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app {id} not found")))
}

/// `GET /apps/{id}`.
pub async fn get(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<mse_api::apps::App>, ApiError> {
    let app = own_app(&state, &caller, &id).await?;
    let mut wire: mse_api::apps::App = (&app).into();
    if let Some((storage, head)) = state.store.app_storage(&app).await? {
        wire.storage = Some(mse_api::apps::AppStorage {
            cap_bytes: storage.cap_bytes,
            version: storage.version,
            size: head.as_ref().map_or(0, |h| h.size),
            updated_at: head.as_ref().map(|h| h.updated_at),
            written_by: head.and_then(|h| h.written_by),
        });
    }
    Ok(Json(wire))
}

/// `GET /apps?project=&name=&status=&limit=&offset=`, newest first; `offset`
/// skips that many (the next page starts where the last one ended).
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<mse_api::apps::App>>, ApiError> {
    // Read here rather than by axum's extractor, so that the message is the
    // parameter's own (which one is wrong, and what it takes).
    let query: ListQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let filter = AppFilter {
        project: query.project,
        name: query.name,
        status: query.status,
        limit: query.limit,
        offset: query.offset,
    };
    Ok(Json(super::wire::all(
        &state.store.user_apps(&caller.0.id, &filter).await?,
    )))
}

/// `POST /apps/{id}/stop`: 202 while the node stops.
pub async fn stop(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<mse_api::apps::App>), ApiError> {
    let app = own_app(&state, &caller, &id).await?;
    if app.status.is_terminal() {
        return Err(ApiError::conflict(format!(
            "app {id} is {} already",
            app.status.as_str()
        )));
    }
    stop_app(&state, &id, crate::domain::lifecycle::STOPPED_BY_OWNER).await?;
    let app = own_app(&state, &caller, &id).await?;
    Ok((StatusCode::ACCEPTED, Json((&app).into())))
}

/// Stops a live app, `reason` saying why: at once when no node took it,
/// else by its node (one of this process now, another node process or a
/// remote host at its next look at the store).
pub async fn stop_app(
    state: &crate::state::AppState,
    id: &str,
    reason: &str,
) -> Result<(), ApiError> {
    if !state
        .store
        .request_stop(id, reason, now().timestamp())
        .await?
    {
        state.nodes.stop(id, reason);
    }
    Ok(())
}

/// `DELETE /apps/{id}`: only a stopped or failed app.
pub async fn remove(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let app = own_app(&state, &caller, &id).await?;
    if !app.status.is_terminal() || !state.store.delete_app(&id).await? {
        return Err(ApiError::conflict(format!(
            "app {id} is {}: stop it first",
            app.status.as_str()
        )));
    }
    let _ = std::fs::remove_dir_all(app_dir(&state.data.root, &id));
    state.nodes.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /apps/{id}/logs`: the last 64 kB, as text.
pub async fn logs(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    own_app(&state, &caller, &id).await?;
    let path = state.nodes.log_path(&id);
    let bytes = mse_run::logs::tail(&path).unwrap_or_default();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        String::from_utf8_lossy(&bytes).into_owned(),
    )
        .into_response())
}
