//! Masking for personal data that may appear in logs: enough to correlate, never the whole value.

use std::fmt;

/// Shows an e-mail as `a***@example.org`: first character of the local part and the domain.
pub struct MaskedEmail<'a>(pub &'a str);

impl fmt::Display for MaskedEmail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.rsplit_once('@') {
            Some((local, domain)) => {
                let first = local.chars().next().map(String::from).unwrap_or_default();
                write!(f, "{first}***@{domain}")
            }
            None => f.write_str("***"),
        }
    }
}

/// Shows a phone number as `+52******6703`: the first three and last four characters.
pub struct MaskedPhone<'a>(pub &'a str);

impl fmt::Display for MaskedPhone<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 8 {
            return f.write_str("***");
        }
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        write!(f, "{head}{}{tail}", "*".repeat(chars.len() - 7))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails() {
        assert_eq!(MaskedEmail("ana@example.org").to_string(), "a***@example.org");
        assert_eq!(MaskedEmail("@x.org").to_string(), "***@x.org");
        assert_eq!(MaskedEmail("no-at-sign").to_string(), "***");
    }

    #[test]
    fn masks_phones() {
        assert_eq!(MaskedPhone("+525521206703").to_string(), "+52******6703");
        assert_eq!(MaskedPhone("12345").to_string(), "***");
    }
}
