//! Text shared by the commands and the chat window: times at this machine's
//! offset from UTC, and one-line excerpts of messages.

/// The start of a text, on one line, at most `chars` characters (with … when
/// cut).
pub fn excerpt(text: &str, chars: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= chars {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// This machine's offset from UTC now, as `date +%z` says (UTC when that
/// cannot be asked: times are still right, in UTC).
pub fn local_offset() -> time::UtcOffset {
    std::process::Command::new("date")
        .arg("+%z")
        .output()
        .ok()
        .and_then(|out| parse_offset(String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or(time::UtcOffset::UTC)
}

/// `+0130` or `-0500` as an offset.
fn parse_offset(text: &str) -> Option<time::UtcOffset> {
    let (sign, digits) = match text.split_at_checked(1)? {
        ("+", d) => (1, d),
        ("-", d) => (-1, d),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i8 = digits[..2].parse().ok()?;
    let minutes: i8 = digits[2..].parse().ok()?;
    time::UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// A Unix time as `2026-12-01 14:05` at `offset`.
pub fn when(unix_seconds: i64, offset: time::UtcOffset) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "?".into())
}

/// Text from someone else, made safe for a terminal: control characters
/// (escape sequences among them) and bidirectional overrides become U+FFFD, so
/// nothing a peer writes can drive the terminal or fake an entry; line breaks
/// stay where `keep_newlines`.
pub fn printable(text: &str, keep_newlines: bool) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && !(keep_newlines && c == '\n')) || bidi {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_peers_text_cannot_drive_the_terminal() {
        let hostile = "hi\r[00:00] bob: fake\x1b]52;c;cGF5\x07\u{202e}txt.exe\nsecond";
        let shown = printable(hostile, true);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        assert!(!shown.contains('\u{202e}'));
        assert_eq!(shown.lines().count(), 2);
        assert!(!printable(hostile, false).contains('\n'));
        assert_eq!(printable("Zoë 🎂", false), "Zoë 🎂");
    }

    use super::*;

    #[test]
    fn offsets_and_times_read_as_people_expect() {
        assert_eq!(
            parse_offset("+0130"),
            time::UtcOffset::from_hms(1, 30, 0).ok()
        );
        assert_eq!(
            parse_offset("-0500"),
            time::UtcOffset::from_hms(-5, 0, 0).ok()
        );
        for bad in ["", "0100", "+1", "+01:00", "+ab00"] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
        // 2025-12-01 23:30 UTC is the next day in Berlin.
        let t = 1_764_631_800;
        assert_eq!(when(t, time::UtcOffset::UTC), "2025-12-01 23:30");
        assert_eq!(
            when(t, time::UtcOffset::from_hms(1, 0, 0).expect("offset")),
            "2025-12-02 00:30"
        );
        assert_eq!(excerpt("one\ntwo", 10), "one two");
        assert_eq!(excerpt("abcdefgh", 5), "abcd…");
    }
}
