//! The forms `expiration_date` may take, all turned into a UTC instant.
//!
//! Accepted:
//! - a TOML offset datetime (`2030-01-01T12:00:00+02:00`), local datetime
//!   (`2030-01-01 12:00:00`, taken as UTC) or local date (`2030-01-01`, midnight UTC);
//! - a string `YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]`, where the separator may
//!   also be `T`, the offset may also be `-HH:MM` or `Z`, and a missing offset
//!   means UTC.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use toml::value::{Datetime, Offset};

/// The string form, for error messages and prompts.
pub const EXPECTED_FORM: &str = "YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]";

/// Parses the string form of a date and time.
pub fn parse_datetime_str(text: &str) -> Result<DateTime<Utc>, String> {
    let bad = || format!("`{text}` is not a date and time of the form {EXPECTED_FORM}");
    let text_trimmed = text.trim();
    if text_trimmed.len() != text.len() || !text.is_ascii() || text.len() < 19 {
        return Err(bad());
    }
    let bytes = text.as_bytes();
    let shape_ok = bytes[..10].iter().enumerate().all(|(i, b)| match i {
        4 | 7 => *b == b'-',
        _ => b.is_ascii_digit(),
    }) && matches!(bytes[10], b' ' | b'T' | b't')
        && bytes[11..19].iter().enumerate().all(|(i, b)| match i {
            2 | 5 => *b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(bad());
    }
    let (naive_part, offset_seconds) = split_offset(&text[10..]).ok_or_else(bad)?;
    let fraction = &naive_part[9..];
    let fraction_ok = fraction.is_empty()
        || (fraction.starts_with('.')
            && (2..=10).contains(&fraction.len())
            && fraction[1..].bytes().all(|b| b.is_ascii_digit()));
    if !fraction_ok {
        return Err(bad());
    }
    let date = NaiveDate::parse_from_str(&text[..10], "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a valid calendar date"))?;
    let time = NaiveTime::parse_from_str(&naive_part[1..], "%H:%M:%S%.f")
        .map_err(|_| format!("`{text}` is not a valid time of day"))?;
    let offset = FixedOffset::east_opt(offset_seconds).ok_or_else(bad)?;
    to_utc(NaiveDateTime::new(date, time), offset).ok_or_else(bad)
}

/// Splits `" HH:MM:SS[.f][offset]"` into its time part and the offset in seconds.
fn split_offset(rest: &str) -> Option<(&str, i32)> {
    if let Some(stripped) = rest.strip_suffix(['Z', 'z']) {
        return Some((stripped, 0));
    }
    let len = rest.len();
    if len >= 6 + 9 {
        let tail = &rest.as_bytes()[len - 6..];
        if matches!(tail[0], b'+' | b'-') && tail[3] == b':' {
            let digits = [tail[1], tail[2], tail[4], tail[5]];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let hours = i32::from(tail[1] - b'0') * 10 + i32::from(tail[2] - b'0');
            let minutes = i32::from(tail[4] - b'0') * 10 + i32::from(tail[5] - b'0');
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if tail[0] == b'-' { -1 } else { 1 };
            return Some((&rest[..len - 6], sign * (hours * 3600 + minutes * 60)));
        }
    }
    Some((rest, 0))
}

fn to_utc(naive: NaiveDateTime, offset: FixedOffset) -> Option<DateTime<Utc>> {
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|dt| dt.with_timezone(&Utc))
}

/// Converts a TOML datetime value; a bare time of day is refused.
pub fn from_toml_datetime(value: &Datetime) -> Result<DateTime<Utc>, String> {
    let Some(date) = value.date else {
        return Err(format!(
            "`{value}` is a time of day without a date; write {EXPECTED_FORM}"
        ));
    };
    let date = NaiveDate::from_ymd_opt(
        i32::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )
    .ok_or_else(|| format!("`{value}` is not a valid calendar date"))?;
    let time = match value.time {
        None => NaiveTime::MIN,
        Some(t) => NaiveTime::from_hms_nano_opt(
            u32::from(t.hour),
            u32::from(t.minute),
            u32::from(t.second.unwrap_or(0)),
            t.nanosecond.unwrap_or(0),
        )
        .ok_or_else(|| format!("`{value}` is not a valid time of day"))?,
    };
    let offset_seconds = match value.offset {
        None | Some(Offset::Z) => 0,
        Some(Offset::Custom { minutes }) => i32::from(minutes) * 60,
    };
    let offset = FixedOffset::east_opt(offset_seconds)
        .ok_or_else(|| format!("`{value}` has an invalid UTC offset"))?;
    to_utc(NaiveDateTime::new(date, time), offset)
        .ok_or_else(|| format!("`{value}` is not a valid date and time"))
}

/// Formats an instant the way the CLI shows it: `2030-01-01 12:00:00 UTC`.
pub fn display_utc(instant: &DateTime<Utc>) -> String {
    instant.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    #[test]
    fn string_without_offset_is_utc() {
        assert_eq!(
            parse_datetime_str("2030-01-02 03:04:05"),
            Ok(utc(2030, 1, 2, 3, 4, 5))
        );
    }

    #[test]
    fn string_with_positive_offset_is_shifted_to_utc() {
        assert_eq!(
            parse_datetime_str("2030-01-02 03:04:05+02:00"),
            Ok(utc(2030, 1, 2, 1, 4, 5))
        );
    }

    #[test]
    fn string_with_negative_offset_crosses_midnight() {
        assert_eq!(
            parse_datetime_str("2030-01-02 23:30:00-01:30"),
            Ok(utc(2030, 1, 3, 1, 0, 0))
        );
    }

    #[test]
    fn string_with_microseconds_keeps_them() {
        let parsed = parse_datetime_str("2030-01-02 03:04:05.123456").unwrap();
        assert_eq!(parsed.timestamp_subsec_micros(), 123_456);
        let with_offset = parse_datetime_str("2030-01-02 03:04:05.5+01:00").unwrap();
        assert_eq!(with_offset.timestamp_subsec_millis(), 500);
        assert_eq!(
            with_offset,
            utc(2030, 1, 2, 2, 4, 5) + chrono::Duration::milliseconds(500)
        );
    }

    #[test]
    fn string_in_rfc3339_form_is_accepted() {
        assert_eq!(
            parse_datetime_str("2030-01-02T03:04:05Z"),
            Ok(utc(2030, 1, 2, 3, 4, 5))
        );
    }

    #[test]
    fn strings_of_other_shapes_are_refused_with_the_expected_form() {
        for bad in [
            "",
            "2030-01-02",
            "30-01-02 03:04:05",
            "2030/01/02 03:04:05",
            "2030-01-02 03/04/05",
            "2030-01-02 03:04",
            " 2030-01-02 03:04:05",
            "2030-01-02 03:04:05 ",
            "2030-01-02 03:04:05.",
            "2030-01-02 03:04:05.1234567890",
            "2030-01-02 03:04:05+0200",
            "2030-01-02 03:04:05+02",
            "2030-01-02 03:04:05+24:00",
            "2030-01-02 03:04:05 UTC",
            "2030-01-02 03:04:05é",
        ] {
            let err = parse_datetime_str(bad).unwrap_err();
            assert!(err.contains(EXPECTED_FORM), "{bad:?}: {err}");
        }
    }

    #[test]
    fn impossible_calendar_dates_and_times_are_refused() {
        assert!(parse_datetime_str("2030-02-30 00:00:00")
            .unwrap_err()
            .contains("calendar date"));
        assert!(parse_datetime_str("2030-01-01 25:00:00")
            .unwrap_err()
            .contains("time of day"));
    }

    #[test]
    fn toml_datetimes_of_every_kind_convert() {
        let offset: Datetime = "2030-01-02T03:04:05+01:00".parse().unwrap();
        assert_eq!(from_toml_datetime(&offset), Ok(utc(2030, 1, 2, 2, 4, 5)));
        let local: Datetime = "2030-01-02 03:04:05".parse().unwrap();
        assert_eq!(from_toml_datetime(&local), Ok(utc(2030, 1, 2, 3, 4, 5)));
        let date: Datetime = "2030-01-02".parse().unwrap();
        assert_eq!(from_toml_datetime(&date), Ok(utc(2030, 1, 2, 0, 0, 0)));
        let time: Datetime = "03:04:05".parse().unwrap();
        assert!(from_toml_datetime(&time)
            .unwrap_err()
            .contains("without a date"));
    }

    #[test]
    fn display_is_utc_with_seconds() {
        assert_eq!(
            display_utc(&utc(2030, 1, 2, 3, 4, 5)),
            "2030-01-02 03:04:05 UTC"
        );
    }
}
