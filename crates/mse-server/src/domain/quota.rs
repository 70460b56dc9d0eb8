//! Quotas: what a user, and every user on a resource, may hold at once,
//! and the admission of a new app against them (plain numbers in, a
//! decision out; the store supplies the numbers inside its transaction).

/// The live apps a user may have unless the operator sets otherwise.
pub const DEFAULT_MAX_LIVE_APPS: i64 = 10;
/// The bytes of encrypted code (and reserved persistent storage) a user's
/// apps may keep unless the operator sets otherwise: 2 GiB.
pub const DEFAULT_MAX_STORED_BYTES: i64 = 2 << 30;

/// A user's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Live apps (`spawning`, `initializing`, `running`) at once.
    pub max_live_apps: i64,
    /// Bytes of encrypted code kept for the apps not removed, and of
    /// persistent storage reserved by the live ones.
    pub max_stored_bytes: i64,
}

/// What a user uses of its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Its live apps.
    pub live_apps: i64,
    /// The bytes of encrypted code of its apps not removed, and of
    /// persistent storage its live apps reserve.
    pub stored_bytes: i64,
}

/// Which limit a new app would go over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaKind {
    /// The user's live apps.
    LiveApps,
    /// The user's stored bytes.
    StoredBytes,
    /// The live apps of every user on this resource.
    ResourceLiveApps(String),
}

/// A refused app: the limit, what is used of it, and what the app adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The limit.
    pub kind: QuotaKind,
    /// Its value.
    pub limit: i64,
    /// What is used of it now.
    pub used: i64,
    /// What the app would add (1 app, or its bytes).
    pub adding: i64,
}

/// Bytes in binary units, for people: `1.5 GiB`.
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let QuotaExceeded {
            limit,
            used,
            adding,
            ..
        } = self;
        match &self.kind {
            QuotaKind::LiveApps => write!(
                f,
                "quota of live apps reached: you have {used} live apps (spawning, initializing or \
                 running) of at most {limit}; stop one (`mse stop`) before deploying another, or \
                 ask the operator to raise your quota"
            ),
            QuotaKind::StoredBytes => write!(
                f,
                "quota of stored bytes reached: your apps keep {used} bytes ({}) of encrypted code \
                 and reserved persistent storage (the `[storage] size` of each live app) of at \
                 most {limit} ({}), and this one adds {adding} ({}); remove apps you no longer \
                 need (`mse stop`, then `mse remove`) to free space, deploy with a smaller \
                 `[storage] size`, or ask the operator to raise your quota",
                human_bytes(*used),
                human_bytes(*limit),
                human_bytes(*adding)
            ),
            QuotaKind::ResourceLiveApps(resource) => write!(
                f,
                "quota of resource `{resource}` reached: it runs at most {limit} live apps of \
                 all users together and {used} are live; deploy again once some stop, use \
                 another resource, or ask the operator"
            ),
        }
    }
}

/// The highest live-app count the operator may set (a user's or a
/// resource's).
pub const MAX_LIVE_APPS_BOUND: i64 = 10_000;
/// The highest stored-bytes quota the operator may set: 1 TiB.
pub const MAX_STORED_BYTES_BOUND: i64 = 1 << 40;

/// What is counted when a new app asks to be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission<'a> {
    /// Its user's quota.
    pub quota: Quota,
    /// What its user uses now.
    pub usage: Usage,
    /// Its resource's name.
    pub resource: &'a str,
    /// The most live apps on its resource, every user's together.
    pub resource_limit: Option<i64>,
    /// The live apps on its resource now.
    pub on_resource: i64,
    /// The stored bytes it adds: its encrypted code, and the persistent
    /// storage it reserves while live.
    pub stored_bytes_added: i64,
}

/// Admits a new app, or names the first limit it would go over: its user's
/// live apps, then its user's stored bytes, then its resource's live apps.
pub fn admit(a: &Admission<'_>) -> Result<(), QuotaExceeded> {
    let refused = if a.usage.live_apps >= a.quota.max_live_apps {
        Some((
            QuotaKind::LiveApps,
            a.quota.max_live_apps,
            a.usage.live_apps,
            1,
        ))
    } else if a.usage.stored_bytes.saturating_add(a.stored_bytes_added) > a.quota.max_stored_bytes {
        Some((
            QuotaKind::StoredBytes,
            a.quota.max_stored_bytes,
            a.usage.stored_bytes,
            a.stored_bytes_added,
        ))
    } else {
        a.resource_limit
            .filter(|limit| a.on_resource >= *limit)
            .map(|limit| {
                (
                    QuotaKind::ResourceLiveApps(a.resource.to_string()),
                    limit,
                    a.on_resource,
                    1,
                )
            })
    };
    match refused {
        Some((kind, limit, used, adding)) => Err(QuotaExceeded {
            kind,
            limit,
            used,
            adding,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(live: i64, stored: i64, on_resource: i64) -> Admission<'static> {
        Admission {
            quota: Quota {
                max_live_apps: 2,
                max_stored_bytes: 100,
            },
            usage: Usage {
                live_apps: live,
                stored_bytes: stored,
            },
            resource: "free",
            resource_limit: Some(3),
            on_resource,
            stored_bytes_added: 10,
        }
    }

    #[test]
    fn an_app_within_every_limit_is_admitted() {
        assert_eq!(admit(&admission(1, 90, 2)), Ok(()));
    }

    #[test]
    fn the_users_live_apps_are_checked_first() {
        let refused = admit(&admission(2, 95, 3)).unwrap_err();
        assert_eq!(refused.kind, QuotaKind::LiveApps);
        assert_eq!((refused.limit, refused.used, refused.adding), (2, 2, 1));
    }

    #[test]
    fn stored_bytes_count_what_the_new_app_adds() {
        let refused = admit(&admission(0, 91, 0)).unwrap_err();
        assert_eq!(refused.kind, QuotaKind::StoredBytes);
        assert_eq!((refused.limit, refused.used, refused.adding), (100, 91, 10));
        assert!(refused.to_string().contains("this one adds 10"));
    }

    #[test]
    fn a_resource_limit_counts_every_users_apps() {
        let refused = admit(&admission(0, 0, 3)).unwrap_err();
        assert_eq!(refused.kind, QuotaKind::ResourceLiveApps("free".into()));
        let unlimited = Admission {
            resource_limit: None,
            ..admission(0, 0, 1000)
        };
        assert_eq!(admit(&unlimited), Ok(()));
    }
}
