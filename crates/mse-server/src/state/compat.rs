//! What the original client's compatibility API keeps between requests
//! (`crate::api::compat`): the key its JWTs are signed with, and the
//! approved sign-ins whose codes are not yet traded.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The key and the pending sign-ins.
pub struct Compat {
    /// The HS256 key of access and id tokens.
    pub key: Vec<u8>,
    /// Approved sign-ins by authorization code.
    pub codes: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compat").finish_non_exhaustive()
    }
}

/// An approved sign-in waiting for its code to be traded.
pub struct Pending {
    /// Who approved.
    pub user_id: String,
    /// The token that approved it: the sign-in's token never does more or
    /// outlives it.
    pub token_id: String,
    /// The PKCE challenge (S256).
    pub challenge: String,
    /// Where the code was sent.
    pub redirect_uri: String,
    /// The client that asked.
    pub client_id: String,
    /// When the code stops working, Unix seconds.
    pub expires_at: i64,
}

impl Compat {
    /// Signs JWTs with a key derived from `secret` (the platform's
    /// enclave-signing key, which every API process of a platform reads),
    /// so any of them accepts the access tokens of another.
    pub fn new(secret: &[u8]) -> Compat {
        let mut key = Sha256::new();
        key.update(b"mse-compat-0.10-jwt-v1\n");
        key.update(secret);
        Compat {
            key: key.finalize().to_vec(),
            codes: Mutex::new(HashMap::new()),
        }
    }
}
