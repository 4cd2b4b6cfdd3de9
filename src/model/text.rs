//! What a name or a host name may hold. Names are shown in the console and the CLI beside each
//! other, so characters that change how the text around them reads (bidirectional overrides,
//! zero-width joiners) are refused: "Servers\u{202E}txt.exe" must not pass for something else,
//! nor "Base\u{200B}Policy" for the Base Policy.

/// Why `name` cannot be a name, if it cannot: control characters, and the invisible
/// characters that reorder or hide text.
pub fn hidden_character(name: &str) -> Option<&'static str> {
    for c in name.chars() {
        if c.is_control() {
            return Some("it contains control characters");
        }
        if is_bidi_control(c) {
            return Some("it contains a character that reorders text (a bidirectional control)");
        }
        if is_invisible(c) {
            return Some("it contains an invisible character (zero-width or soft hyphen)");
        }
    }
    None
}

/// The Unicode bidirectional formatting characters (UAX #9): embeddings, overrides, isolates and
/// the implicit marks.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            // The deprecated shaping and symmetric-swapping controls.
            | '\u{206A}'..='\u{206F}'
    )
}

/// Characters that take no width, separate lines, or select a glyph variant: a name holding
/// one looks like another name.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            // Tag characters: invisible text that some software still reads.
            | '\u{E0000}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Why `text` is not a host name (RFC 1123 labels, `_` allowed as Windows names have it) or an
/// IP address, if it is not.
pub fn host_name_problem(text: &str) -> Option<&'static str> {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    if text.is_empty() {
        return Some("a host name is required");
    }
    if text.len() > 253 {
        return Some("it is longer than 253 characters");
    }
    let labels: Vec<&str> = text.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Some("it has an empty label (two dots, or a dot at either end)");
        }
        if label.len() > 63 {
            return Some("a label (between dots) is longer than 63 characters");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Some("use letters, digits, '-' and '_' between dots, or an IP address");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a label (between dots) must not start or end with '-'");
        }
    }
    // One all-digit label is a name (an asset tag such as 4711); dotted digits are an address.
    if labels.len() > 1 && labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Some("it looks like an IPv4 address but is not one");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_reorder_or_hide_text_are_refused() {
        for name in [
            "Servers\u{202E}exe.txt",
            "Base\u{200B}Policy",
            "Laptops\u{2066}",
            "a\u{200F}b",
            "soft\u{00AD}hyphen",
            "zero\u{FEFF}width",
            "line\u{2028}break",
            "tag\u{E0041}",
            "variant\u{FE0F}",
            "tab\there",
        ] {
            assert!(hidden_character(name).is_some(), "{name:?}");
        }
        for name in ["Servers", "Büro – Laptops", "東京 servers", "Café (Paris)"] {
            assert_eq!(hidden_character(name), None, "{name:?}");
        }
    }

    #[test]
    fn host_names_are_dns_labels_or_ip_addresses() {
        for ok in [
            "web-01",
            "web-01.example.com",
            "WIN_PC01",
            "192.0.2.7",
            "2001:db8::1",
            "::1",
            "a",
            "3com",
            "4711",
        ] {
            assert_eq!(host_name_problem(ok), None, "{ok:?}");
        }
        let long_label = "a".repeat(64);
        let too_long = ["a"; 128].join(".");
        for (bad, says) in [
            (":::::", "letters, digits"),
            (".", "empty label"),
            ("a..b", "empty label"),
            ("web.", "empty label"),
            ("", "required"),
            (long_label.as_str(), "longer than 63"),
            (too_long.as_str(), "longer than 253"),
            ("-web", "start or end with '-'"),
            ("web-.example", "start or end with '-'"),
            ("web 01", "letters, digits"),
            ("wéb", "letters, digits"),
            ("1.2.3", "looks like an IPv4"),
            ("192.0.2.300", "looks like an IPv4"),
        ] {
            let problem = host_name_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(problem.contains(says), "{bad:?}: {problem}");
        }
    }
}
