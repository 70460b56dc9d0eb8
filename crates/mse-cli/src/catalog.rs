//! The image catalog the client checks apps against: the platform's own,
//! fetched at login into `$MSE_CONF_PATH/catalog.json` and refreshed when
//! the platform's changes (a conditional `GET /catalog`), never a copy kept
//! by hand. `validate`, `test`, the deploy pre-check and the fingerprint all
//! use it. Without a login, the catalog built into this client (the one a
//! new platform starts with) stands in, and commands say so.

use std::path::PathBuf;

use mse_runtime::{Catalog, PublishedCatalog};
use serde::{Deserialize, Serialize};

use crate::api::Client;
use crate::conf::conf_dir;
use crate::exit::Failure;
use crate::profile::Profile;

const FILE_NAME: &str = "catalog.json";

/// A catalog and where it came from.
#[derive(Debug, Clone)]
pub struct Current {
    /// The images.
    pub catalog: Catalog,
    /// Its digest.
    pub digest: String,
    /// Where it came from, for messages: "the catalog of URL" or "the
    /// built-in catalog".
    pub origin: String,
    /// Said to the user once, when it is not the platform's current one.
    pub note: Option<String>,
    /// The platform's signature of the catalog's reference measurements.
    pub references_signature: Option<String>,
}

/// The platform's catalog as kept on disk.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    url: String,
    #[serde(flatten)]
    published: PublishedCatalog,
}

fn path() -> PathBuf {
    conf_dir().join(FILE_NAME)
}

fn of(url: &str) -> String {
    format!("the catalog of {url}")
}

fn read_saved(url: &str) -> Option<PublishedCatalog> {
    let text = std::fs::read_to_string(path()).ok()?;
    let saved: Saved = serde_json::from_str(&text).ok()?;
    (saved.url == url).then_some(saved.published)
}

fn save(url: &str, published: &PublishedCatalog) -> Result<(), Failure> {
    let saved = Saved {
        url: url.to_string(),
        published: published.clone(),
    };
    let text = serde_json::to_vec_pretty(&saved)
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot encode the catalog: {e}")))?;
    let path = path();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            Failure::Other(anyhow::anyhow!("cannot create {}: {e}", parent.display()))
        })?;
    }
    std::fs::write(&path, text)
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot write {}: {e}", path.display())))
}

fn checked(url: &str, published: PublishedCatalog) -> Result<Current, Failure> {
    let digest = published.digest.clone();
    let references_signature = published.references_signature.clone();
    let catalog = published
        .into_catalog(&of(url))
        .map_err(|e| Failure::Other(e.into()))?;
    Ok(Current {
        catalog,
        digest,
        origin: of(url),
        note: None,
        references_signature,
    })
}

/// The platform's current catalog: the saved copy if the platform says it
/// is current, else the platform's, saved. Needs the platform.
pub fn refresh(client: &Client) -> Result<Current, Failure> {
    let url = client.base().to_string();
    let saved = read_saved(&url);
    let known = saved.as_ref().map(|s| s.digest.as_str());
    match client.catalog(known)? {
        Some(published) => {
            save(&url, &published)?;
            checked(&url, published)
        }
        None => match saved {
            Some(saved) => checked(&url, saved),
            None => Err(Failure::Other(anyhow::anyhow!(
                "{url} answered 304 to a first catalog request"
            ))),
        },
    }
}

/// The catalog with no network at all: the copy saved from the platform of
/// `mse login`, else the built-in one.
pub fn without_network() -> Result<Current, Failure> {
    if let Ok(profile) = Profile::load() {
        if let Some(saved) = read_saved(&profile.url) {
            return checked(&profile.url, saved);
        }
    }
    let catalog = Catalog::default_catalog();
    Ok(Current {
        digest: catalog.digest(),
        catalog,
        origin: "the built-in catalog".into(),
        note: None,
        references_signature: None,
    })
}

/// A catalog as `GET /catalog` serves it, read from `path`.
pub fn from_file(path: &std::path::Path) -> Result<Current, Failure> {
    let text = std::fs::read(path)
        .map_err(|e| Failure::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let published: PublishedCatalog = serde_json::from_slice(&text).map_err(|e| {
        Failure::Invalid(format!(
            "{} is not a catalog as GET /catalog serves it: {e}",
            path.display()
        ))
    })?;
    let origin = path.display().to_string();
    let digest = published.digest.clone();
    let references_signature = published.references_signature.clone();
    let catalog = published
        .into_catalog(&origin)
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    Ok(Current {
        catalog,
        digest,
        origin,
        note: None,
        references_signature,
    })
}

/// The catalog for commands that work without the platform (`validate`,
/// `test`): the platform's, refreshed when it answers; the saved copy when it
/// does not; the built-in one when not logged in. Each fallback says so.
pub fn for_local_use() -> Result<Current, Failure> {
    let builtin = |origin: &str, note: Option<String>| {
        let catalog = Catalog::default_catalog();
        Current {
            digest: catalog.digest(),
            catalog,
            origin: origin.into(),
            note,
            references_signature: None,
        }
    };
    let Ok(profile) = Profile::load() else {
        return Ok(builtin(
            "the built-in catalog (not logged in; after `mse login`, the platform's)",
            None,
        ));
    };
    match profile.client().and_then(|client| refresh(&client)) {
        Ok(current) => Ok(current),
        Err(e) => match read_saved(&profile.url) {
            Some(saved) => {
                let mut current = checked(&profile.url, saved)?;
                current.note = Some(format!(
                    "{} is not reachable ({e}): using its catalog as saved at the last login",
                    profile.url
                ));
                Ok(current)
            }
            None => Ok(builtin(
                "the built-in catalog",
                Some(format!(
                    "{} is not reachable ({e}): checking against the built-in catalog",
                    profile.url
                )),
            )),
        },
    }
}

/// A hint when a catalog file from older clients is still present: it is
/// not read any more.
pub fn legacy_file_note() -> Option<String> {
    let old = conf_dir().join("catalog.toml");
    old.exists().then(|| {
        format!(
            "{} is ignored: the catalog is the platform's (`mse login` fetches it); remove the file",
            old.display()
        )
    })
}
