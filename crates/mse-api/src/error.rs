//! The body of every error answer of the REST API: `{"error": "…"}`, the
//! message saying what was wrong and what to do.

use serde::{Deserialize, Serialize};

/// An error answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, for people.
    pub error: String,
}

impl ErrorBody {
    /// The body of this message.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorBody {
            error: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_one_error_field() {
        assert_eq!(
            serde_json::to_string(&ErrorBody::new("app x not found")).unwrap(),
            r#"{"error":"app x not found"}"#
        );
    }
}
