//! Human-readable times, durations and payloads.

use std::fmt::Write as _;
use std::time::Duration;

use oncely::Timestamp;

/// `2025-11-26 14:17:18.123 UTC`.
pub fn timestamp(t: Timestamp) -> String {
    let ms = t.0.rem_euclid(1000);
    let secs = t.0.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03} UTC", sod / 3600, sod / 60 % 60, sod % 60)
}

/// Howard Hinnant's days-to-civil conversion (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `850 ms`, `12.3 s`, `5 min 3 s`, `2 h 5 min`, `3 d 4 h`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{} h {} min", s / 3600, s / 60 % 60)
    } else {
        format!("{} d {} h", s / 86_400, s / 3600 % 24)
    }
}

/// A payload for a terminal: its text (escaped) when it is UTF-8, else hex.
pub fn payload(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{} bytes, text: {}", bytes.len(), text.escape_debug()),
        Err(_) => {
            let mut hex = String::with_capacity(bytes.len() * 3);
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 && i % 32 == 0 {
                    hex.push_str("\n              ");
                } else if i > 0 {
                    hex.push(' ');
                }
                let _ = write!(hex, "{b:02x}");
            }
            format!("{} bytes, hex: {hex}", bytes.len())
        }
    }
}

/// `text` cut to `max` characters with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(Timestamp(0)), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(timestamp(Timestamp(1_700_000_000_123)), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(timestamp(Timestamp(951_782_400_000)), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(timestamp(Timestamp(-1)), "1969-12-31 23:59:59.999 UTC");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(duration(Duration::from_secs(303)), "5 min 3 s");
        assert_eq!(duration(Duration::from_secs(7500)), "2 h 5 min");
        assert_eq!(duration(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3 d 4 h");
    }

    #[test]
    fn payloads_show_text_or_hex() {
        assert_eq!(payload(b"a\"b\n"), "4 bytes, text: a\\\"b\\n");
        assert_eq!(payload(&[0xff, 0x00]), "2 bytes, hex: ff 00");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
