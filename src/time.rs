//! Timestamps as the API speaks them: ISO-8601 with an explicit offset in, UTC with microseconds
//! out (`2026-11-22T14:42:24.123456Z`). Microseconds because that is what PostgreSQL stores: a
//! client that pages with `since = last createdAt` must get back exactly the value stored, or it
//! skips or repeats messages (Hatch@ truncated to seconds and lost messages).

use jiff::Timestamp;

/// An ISO-8601 / RFC 3339 timestamp with an offset (`Z`, `+02:00`), `T` or space between date and
/// time. A timestamp without an offset is refused: its meaning would depend on a server setting.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.trim().parse::<Timestamp>().ok()
}

pub fn format(ts: Timestamp) -> String {
    // Whole microseconds: PostgreSQL's precision.
    ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn from_unix_seconds(seconds: f64) -> Option<Timestamp> {
    if !seconds.is_finite() {
        return None;
    }
    // `as` saturates a value beyond i64, and jiff refuses anything past its years -9999..9999.
    Timestamp::from_microsecond((seconds * 1e6).round() as i64).ok()
}

/// One end of a message window: a timestamp, or the open ends `-infinity` / `infinity` (Hatch@'s
/// spelling for "from the beginning" and "until the end").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    NegativeInfinity,
    At(Timestamp),
    Infinity,
}

impl Bound {
    pub fn parse(text: &str) -> Option<Bound> {
        match text.trim() {
            "-infinity" => Some(Bound::NegativeInfinity),
            "infinity" | "+infinity" => Some(Bound::Infinity),
            other => parse(other).map(Bound::At),
        }
    }

    /// The spelling PostgreSQL reads back as the same `timestamptz`.
    pub fn to_sql_literal(self) -> String {
        match self {
            Bound::NegativeInfinity => "-infinity".into(),
            Bound::Infinity => "infinity".into(),
            Bound::At(ts) => format(ts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_microseconds() {
        let ts = parse("2026-11-22T15:42:24.123456+01:00").unwrap();
        assert_eq!(format(ts), "2026-11-22T14:42:24.123456Z");
        assert_eq!(format(parse("2026-11-22T14:42:24Z").unwrap()), "2026-11-22T14:42:24.000000Z");
    }

    #[test]
    fn parses_what_clients_send() {
        for text in [
            "2026-11-22T14:42:24.123Z",      // JavaScript toISOString()
            "2026-11-22T14:42:24.123456Z",   // our own createdAt
            "2026-11-22 14:42:24.123456+00", // PostgreSQL's text output
            "2026-11-22T16:42:24.123+02:00",
        ] {
            assert!(parse(text).is_some(), "{text}");
        }
        for text in ["", "yesterday", "2026-11-22", "2026-11-22T14:42:24", "2026-13-01T00:00:00Z"] {
            assert!(parse(text).is_none(), "{text}");
        }
    }

    #[test]
    fn round_trips_our_own_output_exactly() {
        let ts = parse("2026-11-22T14:42:24.000001Z").unwrap();
        assert_eq!(parse(&format(ts)), Some(ts));
    }

    #[test]
    fn bounds_accept_the_seeds_infinities() {
        assert_eq!(Bound::parse("-infinity"), Some(Bound::NegativeInfinity));
        assert_eq!(Bound::parse("infinity"), Some(Bound::Infinity));
        assert_eq!(Bound::parse("never"), None);
        let at = Bound::parse("2026-11-22T14:42:24.5Z").unwrap();
        assert_eq!(at.to_sql_literal(), "2026-11-22T14:42:24.500000Z");
    }

    #[test]
    fn unix_seconds_convert_with_fractions() {
        let ts = from_unix_seconds(1_795_000_000.25).unwrap();
        assert_eq!(format(ts), "2026-11-18T11:06:40.250000Z");
        assert!(from_unix_seconds(f64::NAN).is_none());
        assert!(from_unix_seconds(1e300).is_none());
    }
}
