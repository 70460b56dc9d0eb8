//! Container image references as written in `code.docker`.
//!
//! Grammar (the OCI distribution reference form):
//! `[host[:port]/]path[:tag][@algorithm:hex]`, path components made of
//! lowercase letters and digits separated by `.`, `_`, `__` or dashes.

use std::fmt;

use serde::Serialize;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReference {
    /// Registry host (with port), when the reference names one.
    pub registry: Option<String>,
    /// Repository path inside the registry.
    pub repository: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Content digest (`sha256:...`), when given.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses a reference, explaining what is wrong on failure.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the image reference is empty".into());
        }
        if text.len() > 255 {
            return Err("the image reference is longer than 255 characters".into());
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("the image reference contains {c:?}"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest)?;
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, after))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                check_host(first)?;
                (Some(first.to_string()), after)
            }
            _ => (None, rest),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => {
                check_tag(tag)?;
                (repository, Some(tag.to_string()))
            }
            None => (path, None),
        };
        if repository.is_empty() {
            return Err(format!("`{text}` has no repository name"));
        }
        for component in repository.split('/') {
            check_component(component)?;
        }
        Ok(ImageReference {
            registry,
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// True when the reference names the registry it comes from, so that a
    /// node can pull it (a bare `name:tag` may be a local image).
    pub fn is_remote(&self) -> bool {
        self.registry.is_some()
    }

    /// True when the reference pins a digest or a tag other than `latest`.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some() || self.tag.as_deref().is_some_and(|t| t != "latest")
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(registry) = &self.registry {
            write!(f, "{registry}/")?;
        }
        f.write_str(&self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
            return Err(format!("registry `{host}` has an invalid port"));
        }
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(format!("registry `{host}` is not a valid host name"));
    }
    Ok(())
}

fn check_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = !bytes.is_empty()
        && alnum(&bytes[0])
        && alnum(&bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
        && !component.contains("..")
        && !component.contains("___")
        && !component.contains("._")
        && !component.contains("_.")
        && !component.contains(".-")
        && !component.contains("-.")
        && !component.contains("_-")
        && !component.contains("-_");
    if valid {
        Ok(())
    } else if component.bytes().any(|b| b.is_ascii_uppercase()) {
        Err(format!(
            "repository name component `{component}` must be lowercase"
        ))
    } else {
        Err(format!(
            "`{component}` is not a valid repository name component (lowercase letters and digits, separated by `.`, `_` or `-`)"
        ))
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128)"
        ))
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let valid = match digest.split_once(':') {
        Some(("sha256", hex)) => {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        Some(("sha512", hex)) => {
            hex.len() == 128
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{digest}` is not a valid digest (expected `sha256:` and 64 lowercase hex digits)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_image_is_remote_and_pinned() {
        let image = ImageReference::parse("ghcr.io/cosmian/mse-flask:20230124182826").unwrap();
        assert_eq!(image.registry.as_deref(), Some("ghcr.io"));
        assert_eq!(image.repository, "cosmian/mse-flask");
        assert_eq!(image.tag.as_deref(), Some("20230124182826"));
        assert!(image.is_remote() && image.is_pinned());
        assert_eq!(
            image.to_string(),
            "ghcr.io/cosmian/mse-flask:20230124182826"
        );
    }

    #[test]
    fn latest_and_untagged_are_not_pinned() {
        assert!(!ImageReference::parse("ghcr.io/a/b:latest")
            .unwrap()
            .is_pinned());
        assert!(!ImageReference::parse("ghcr.io/a/b").unwrap().is_pinned());
        let digest = format!("ghcr.io/a/b@sha256:{}", "a".repeat(64));
        assert!(ImageReference::parse(&digest).unwrap().is_pinned());
    }

    #[test]
    fn registry_with_port_is_not_taken_for_a_tag() {
        let image = ImageReference::parse("localhost:5000/app").unwrap();
        assert_eq!(image.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(image.tag, None);
    }

    #[test]
    fn bare_names_are_local() {
        let image = ImageReference::parse("mse-flask:dev").unwrap();
        assert!(!image.is_remote());
        assert!(image.is_pinned());
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "Ghcr.io/UPPER/x:1",
            "ghcr.io/UPPER:1",
            "ghcr.io/a/b:",
            "ghcr.io/a/b:-x",
            "ghcr.io/a/b@sha256:zz",
            "ghcr.io//b:1",
            "ghcr.io/a b:1",
            "ghcr.io:port/a:1",
            "-ghcr.io/a:1",
            "ghcr.io/a..b:1",
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
