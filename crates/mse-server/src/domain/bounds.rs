//! Bounds on every number an administrator sets: a value out of its range
//! is refused with the field's name and the range, never stored, so no
//! later computation (an app's expiry, a node's enclave) meets it.

use std::ops::RangeInclusive;

use serde_json::{json, Value};

/// Memory of a resource, MB: up to 1 TiB.
pub const MEMORY_MB: RangeInclusive<i64> = 1..=1024 * 1024;
/// CPU cores of a resource.
pub const CORES: RangeInclusive<i64> = 1..=1024;
/// Default lifetime of an app on a resource, hours: up to ten years.
pub const DEFAULT_HOURS: RangeInclusive<i64> = 1..=8760 * 10;
/// Enclave size of a resource, bytes: 1 MiB to 1 TiB.
pub const ENCLAVE_BYTES: RangeInclusive<u64> = 1 << 20..=1 << 40;

/// A token's lifetime, seconds: up to ten years (`expires_in`, and the
/// operator's `--max-token-lifetime`).
pub const TOKEN_LIFETIME_SECS: RangeInclusive<i64> = 1..=86_400 * 3650;

/// Why a number is refused: names the field and its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutOfBounds(pub String);

/// `value` as an integer within `range`, or an error naming `field`.
pub fn integer(
    field: &str,
    value: &serde_json::Number,
    range: &RangeInclusive<i64>,
) -> Result<i64, OutOfBounds> {
    value.as_i64().filter(|n| range.contains(n)).ok_or_else(|| {
        OutOfBounds(format!(
            "{field} must be an integer from {} to {}, not {value}",
            range.start(),
            range.end()
        ))
    })
}

/// The bytes of an enclave size: a number without leading zeros followed
/// by `M` (MiB) or `G` (GiB), as `mse.toml` writes sizes
/// ([`mse_config::fields::parse_size`]), within [`ENCLAVE_BYTES`].
pub fn enclave_size(text: &str) -> Result<u64, OutOfBounds> {
    mse_config::fields::parse_size("enclave_size", text)
        .ok()
        .filter(|bytes| ENCLAVE_BYTES.contains(bytes))
        .ok_or_else(|| {
            OutOfBounds(format!(
                "enclave_size must be a number of megabytes or gigabytes (`512M`, `4G`) from 1M \
                 to 1024G, not `{text}`"
            ))
        })
}

/// The JSON schema of an integer within `range`.
pub fn integer_schema(range: &RangeInclusive<i64>) -> Value {
    json!({"type": "integer", "minimum": range.start(), "maximum": range.end()})
}

/// The JSON schema of `POST /resources`, with these bounds.
pub fn resource_schema() -> Value {
    let integer = integer_schema;
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "memory_mb": integer(&MEMORY_MB),
            "cores": integer(&CORES),
            "enclave_size": {"type": "string", "pattern": "^[1-9][0-9]*[MG]$"},
            "default_hours": integer(&DEFAULT_HOURS),
            "public": {"type": "boolean"},
            "max_live_apps": {"type": ["integer", "null"], "minimum": 0, "maximum": super::quota::MAX_LIVE_APPS_BOUND},
        },
        "required": ["name", "memory_mb", "cores", "enclave_size", "default_hours"],
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enclave_sizes_parse_within_bounds_only() {
        assert_eq!(enclave_size("512M"), Ok(512 << 20));
        assert_eq!(enclave_size("1M"), Ok(1 << 20));
        assert_eq!(enclave_size("1024G"), Ok(1 << 40));
        for bad in [
            "",
            "M",
            "0M",
            "0512M",
            "1025G",
            "4T",
            "4g",
            "-1G",
            "1.5G",
            "lots",
            "99999999999999999999G",
            "18446744073709551615M",
        ] {
            let e = enclave_size(bad).unwrap_err();
            assert!(
                e.0.contains("enclave_size") && e.0.contains("1024G"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn integers_out_of_range_name_the_field_and_the_range() {
        let n = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert_eq!(integer("cores", &n("4"), &CORES), Ok(4));
        for bad in ["0", "-1", "1025", "9223372036854775807", "1e30", "1.5"] {
            let e = integer("cores", &n(bad), &CORES).unwrap_err();
            assert!(
                e.0.contains("cores") && e.0.contains("1 to 1024"),
                "{bad}: {e}"
            );
        }
    }
}
