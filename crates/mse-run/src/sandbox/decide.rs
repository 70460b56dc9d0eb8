//! What to do for an app from what the kernel and the node offer (pure),
//! who the app and its installers run as, and the line that tells the
//! app's owner.

use std::path::Path;

/// First uid of the range apps run as when the node runs as root.
pub const APP_UID_BASE: u32 = 0x6000_0000;
/// Size of that range (2^28): two live apps share a uid with probability
/// about n²/2^29 for n live apps on one host.
pub const APP_UID_SPAN: u32 = 1 << 28;
/// First uid of the range installers of `requirements.txt` run as: one per
/// requirements folder, outside the apps' range.
pub const INSTALLER_UID_BASE: u32 = APP_UID_BASE + APP_UID_SPAN;
/// Size of the installers' range.
pub const INSTALLER_UID_SPAN: u32 = 1 << 24;

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Confine every app; refuse to start an app that cannot be confined.
    Required,
    /// The operator's explicit opt-out: confine where the kernel allows,
    /// run unconfined (and say so) where it does not.
    BestEffort,
}

impl Mode {
    /// The command-line spelling (`--sandbox MODE`).
    pub fn as_arg(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::BestEffort => "best-effort",
        }
    }
}

impl From<mse_api::launch::Sandbox> for Mode {
    fn from(sandbox: mse_api::launch::Sandbox) -> Self {
        match sandbox {
            mse_api::launch::Sandbox::Required => Mode::Required,
            mse_api::launch::Sandbox::BestEffort => Mode::BestEffort,
        }
    }
}

impl From<Mode> for mse_api::launch::Sandbox {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Required => mse_api::launch::Sandbox::Required,
            Mode::BestEffort => mse_api::launch::Sandbox::BestEffort,
        }
    }
}

/// What the kernel and the node's identity offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// The kernel's Landlock ABI (0: none).
    pub landlock_abi: i32,
    /// Whether the node runs as root (then it can give the app a uid and a
    /// mount namespace of its own).
    pub root: bool,
}

/// Who the app runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The node's own (unprivileged) user.
    Inherited,
    /// An unprivileged uid and gid of its own, in a mount namespace of its
    /// own.
    Uid(u32),
}

/// What the node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Confine the app.
    Confine {
        /// Landlock ABI in force.
        abi: i32,
        /// Who the app runs as.
        identity: Identity,
    },
    /// Run it unconfined (only in [`Mode::BestEffort`]); the reason is shown
    /// to its owner.
    Unconfined(String),
    /// Refuse to start it.
    Refuse(String),
}

/// Decides how to run an app from what is offered (pure).
pub fn decide(mode: Mode, offered: Offered, app_uid: u32) -> Decision {
    let missing = if offered.landlock_abi < 1 {
        Some(
            "this kernel does not offer Landlock (Linux 5.13 or later with `landlock` in the \
             lsm= boot parameter)",
        )
    } else if !offered.root {
        Some(
            "the node does not run as root, so it cannot give the app a uid, a private /tmp \
             and a disk limit of its own (run mse-server as root)",
        )
    } else {
        None
    };
    match (missing, mode) {
        (None, _) => Decision::Confine {
            abi: offered.landlock_abi,
            identity: Identity::Uid(app_uid),
        },
        (Some(why), Mode::Required) => Decision::Refuse(format!(
            "cannot sandbox the app: {why}; the operator can run apps without it with \
             --sandbox best-effort"
        )),
        // Opted out: Landlock and seccomp where the kernel has them, as the
        // node's own user.
        (Some(_), Mode::BestEffort) if offered.landlock_abi >= 1 => Decision::Confine {
            abi: offered.landlock_abi,
            identity: Identity::Inherited,
        },
        (Some(why), Mode::BestEffort) => Decision::Unconfined(format!("UNSANDBOXED: {why}")),
    }
}

/// A uid in `[base, base + span)` derived from `name`.
fn derived_uid(name: &str, base: u32, span: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    base + n % span
}

/// The uid an app runs as when the node runs as root (from its uuid).
pub fn app_uid(uuid: &str) -> u32 {
    derived_uid(uuid, APP_UID_BASE, APP_UID_SPAN)
}

/// The uid the installer of one requirements folder runs as (from its
/// path): no app's, and another folder's installer has another.
pub fn installer_uid(folder: &Path) -> u32 {
    derived_uid(
        &folder.to_string_lossy(),
        INSTALLER_UID_BASE,
        INSTALLER_UID_SPAN,
    )
}

/// One line telling the app's owner how the app is confined.
pub fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Confine { abi, identity } => {
            let who = match identity {
                Identity::Inherited => "the node's user".to_string(),
                Identity::Uid(uid) => format!("uid {uid}, private /tmp"),
            };
            format!("landlock ABI {abi}, seccomp, {who}, no new privileges")
        }
        Decision::Unconfined(reason) | Decision::Refuse(reason) => reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(abi: i32, root: bool) -> Offered {
        Offered {
            landlock_abi: abi,
            root,
        }
    }

    #[test]
    fn without_landlock_the_app_is_refused_unless_the_operator_opted_out() {
        match decide(Mode::Required, offered(0, true), 7) {
            Decision::Refuse(why) => assert!(why.contains("--sandbox best-effort"), "{why}"),
            other => panic!("{other:?}"),
        }
        match decide(Mode::BestEffort, offered(0, true), 7) {
            Decision::Unconfined(why) => assert!(why.starts_with("UNSANDBOXED"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn root_nodes_give_apps_their_own_uid_and_never_uid_0() {
        assert_eq!(
            decide(Mode::Required, offered(7, true), 42),
            Decision::Confine {
                abi: 7,
                identity: Identity::Uid(42)
            }
        );
        for mode in [Mode::Required, Mode::BestEffort] {
            for abi in [0, 7] {
                if let Decision::Confine { identity, .. } = decide(mode, offered(abi, true), 42) {
                    assert_eq!(identity, Identity::Uid(42));
                }
            }
        }
    }

    #[test]
    fn a_node_that_is_not_root_refuses_unless_the_operator_opted_out() {
        match decide(Mode::Required, offered(7, false), 42) {
            Decision::Refuse(why) => {
                assert!(why.contains("root") && why.contains("best-effort"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(Mode::BestEffort, offered(3, false), 42),
            Decision::Confine {
                abi: 3,
                identity: Identity::Inherited
            }
        );
    }

    #[test]
    fn installers_have_uids_of_their_own_outside_the_apps_range() {
        let a = installer_uid(Path::new("/cache/requirements/aa/site"));
        let b = installer_uid(Path::new("/cache/requirements/bb/site"));
        assert_ne!(a, b);
        for uid in [a, b] {
            assert!((INSTALLER_UID_BASE..INSTALLER_UID_BASE + INSTALLER_UID_SPAN).contains(&uid));
            assert!(!(APP_UID_BASE..APP_UID_BASE + APP_UID_SPAN).contains(&uid));
        }
    }

    #[test]
    fn app_uids_are_unprivileged_and_stable() {
        let a = app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7c");
        assert_eq!(a, app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7c"));
        assert_ne!(a, app_uid("0b9c6a2e-1f4d-4e8a-9c1b-2d3e4f5a6b7d"));
        assert!((APP_UID_BASE..APP_UID_BASE + APP_UID_SPAN).contains(&a));
    }
}
