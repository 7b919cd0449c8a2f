//! Seed 003's self sign-up: the password policy, the user's role, and the e-mailed code.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Email, Environment, PartnerId};

/// The code sandbox partners' users always confirm with (seed 003).
pub const SANDBOX_CODE: &str = "12345";

/// A password that passed the seed's policy and the common-password check. The text stays in a
/// `SecretString`: it is never logged and is wiped from memory when dropped.
#[derive(Clone)]
pub struct Password(SecretString);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// One rule of the policy a password broke; the 400 lists each of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRule {
    #[error("must be 8 to 32 characters long")]
    Length,
    #[error("must contain a lowercase Latin letter (a-z)")]
    Lowercase,
    #[error("must contain an uppercase Latin letter (A-Z)")]
    Uppercase,
    #[error("must contain a digit (0-9)")]
    Digit,
    #[error("must contain a symbol such as ! @ # $")]
    Symbol,
    #[error("must not contain control characters")]
    Control,
    #[error("is too common or too easy to guess{0}")]
    Common(String),
}

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 32;

    /// Checks every rule and returns all that fail. `context` holds what a guesser would try
    /// first for this user (the e-mail address and its parts): a password containing one of
    /// them (4 characters or more) counts as guessable.
    pub fn parse(raw: &str, context: &[&str]) -> Result<Self, Vec<PasswordRule>> {
        let mut broken = Vec::new();
        let length = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&length) {
            broken.push(PasswordRule::Length);
        }
        let has = |class: fn(&char) -> bool| raw.chars().any(|c| class(&c));
        if !has(char::is_ascii_lowercase) {
            broken.push(PasswordRule::Lowercase);
        }
        if !has(char::is_ascii_uppercase) {
            broken.push(PasswordRule::Uppercase);
        }
        if !has(char::is_ascii_digit) {
            broken.push(PasswordRule::Digit);
        }
        if !has(char::is_ascii_punctuation) {
            broken.push(PasswordRule::Symbol);
        }
        if has(|c| c.is_control()) {
            broken.push(PasswordRule::Control);
        }
        // The estimator only runs on passwords that meet the composition rules (a short or
        // control-laden one is refused already, and its cost grows with length).
        if broken.is_empty()
            && let Some(hint) = guessable(raw, context)
        {
            broken.push(PasswordRule::Common(hint));
        }
        if broken.is_empty() { Ok(Self(SecretString::from(raw.to_owned()))) } else { Err(broken) }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// zxcvbn (Dropbox's estimator, with its lists of the most common passwords, names and words)
/// scores below 2 — fewer than 10^6 guesses — for `Password1!`, `Summer2024!` and their kin,
/// which the composition rules alone let through; NIST SP 800-63B §3.1.1.2 asks for exactly
/// this check against commonly used and context-specific values.
fn guessable(password: &str, context: &[&str]) -> Option<String> {
    let lower = password.to_lowercase();
    if context.iter().any(|word| word.chars().count() >= 4 && lower.contains(&word.to_lowercase())) {
        return Some(" (it contains your e-mail address or a part of it)".into());
    }
    let estimate = zxcvbn::zxcvbn(password, context);
    if u8::from(estimate.score()) >= 2 {
        return None;
    }
    let warning = estimate.feedback().and_then(|f| f.warning()).map(|w| format!(" ({w})")).unwrap_or_default();
    Some(warning)
}

wire_enum! {
    /// Seed 003's `userType`: the role the account is opened with.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum UserRole {
        /// The default: a person using the partner's product.
        Customer = "CUSTOMER",
        /// A business account.
        Business = "BUSINESS",
    }
}

/// A confirmation code as the user typed it: digits only.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfirmCode(String);

impl fmt::Debug for ConfirmCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConfirmCode(***)")
    }
}

impl ConfirmCode {
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        ((1..=16).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit())).then(|| Self(raw.to_owned()))
    }

    /// A fresh code for a live partner's user: `digits` uniformly random digits. Sandbox
    /// partners' users get `12345` (the seed).
    pub fn issue(environment: Environment, digits: u32) -> Self {
        match environment {
            Environment::Sandbox => Self(SANDBOX_CODE.to_owned()),
            Environment::Live => Self(super::random_digits(digits as usize)),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored instead of the code: SHA-256 over the partner, the address and the code.
    /// A short code cannot be protected from someone who can read the database and try all of
    /// them, so this keeps codes out of backups and casual view; what protects them is that they
    /// expire in minutes and allow a handful of attempts.
    pub fn digest(&self, partner: PartnerId, email: &Email) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(partner.get().to_be_bytes());
        hasher.update(email.key().as_bytes());
        hasher.update([0]);
        hasher.update(self.0.as_bytes());
        hasher.finalize().into()
    }

    /// Whether this code is the one `stored` was made from (constant time).
    pub fn matches(&self, partner: PartnerId, email: &Email, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(self.digest(partner, email).ct_eq(stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(raw: &str) -> Vec<PasswordRule> {
        Password::parse(raw, &["jane@example.org", "jane", "example"]).err().unwrap_or_default()
    }

    #[test]
    fn the_seeds_example_password_passes() {
        assert!(Password::parse("A9#bL8@z", &["user@example.com"]).is_ok());
    }

    #[test]
    fn each_composition_rule_is_named() {
        assert_eq!(rules("Ab1!"), vec![PasswordRule::Length]);
        assert_eq!(rules(&format!("Ab1!{}", "x".repeat(29))), vec![PasswordRule::Length]);
        assert_eq!(rules("ABCD1234!X"), vec![PasswordRule::Lowercase]);
        assert_eq!(rules("abcd1234!x"), vec![PasswordRule::Uppercase]);
        assert_eq!(rules("Abcdefgh!x"), vec![PasswordRule::Digit]);
        assert_eq!(rules("Abcd1234xY"), vec![PasswordRule::Symbol]);
        assert_eq!(rules("Ab1!\u{7}xyzq"), vec![PasswordRule::Control]);
        assert_eq!(
            rules("ab"),
            vec![PasswordRule::Length, PasswordRule::Uppercase, PasswordRule::Digit, PasswordRule::Symbol]
        );
    }

    #[test]
    fn length_counts_characters_and_non_latin_letters_do_not_count_as_latin() {
        // Eight characters, more than eight bytes.
        assert!(Password::parse("Zq7!ñÑéü", &[]).is_ok());
        assert_eq!(rules("ÑÉÜÖ1234!x"), vec![PasswordRule::Uppercase]);
    }

    #[test]
    fn common_and_context_passwords_are_refused() {
        for common in ["Password1!", "Qwerty123!", "P@ssw0rd1", "Welcome1!", "Monkey123$"] {
            assert!(matches!(rules(common).as_slice(), [PasswordRule::Common(_)]), "{common} accepted");
        }
        assert!(matches!(rules("Jane@example1").as_slice(), [PasswordRule::Common(_)]));
        assert!(matches!(rules("Xq!9EXAMPLEz").as_slice(), [PasswordRule::Common(_)]));
        // Random-looking 8-character passwords pass, like the seed's.
        assert!(rules("Xk9$mPq2").is_empty());
    }

    #[test]
    fn codes_are_digits_and_sandbox_codes_are_fixed() {
        assert_eq!(ConfirmCode::issue(Environment::Sandbox, 5).expose(), SANDBOX_CODE);
        let live = ConfirmCode::issue(Environment::Live, 6);
        assert_eq!(live.expose().len(), 6);
        assert!(ConfirmCode::parse(live.expose()).is_some());
        assert!(ConfirmCode::parse("12a45").is_none());
        assert!(ConfirmCode::parse("").is_none());
    }

    #[test]
    fn code_digests_bind_the_partner_and_address() {
        let email = Email::parse("Ana@Example.org").unwrap();
        let other = Email::parse("bob@example.org").unwrap();
        let (p1, p2) = (PartnerId::new(1).unwrap(), PartnerId::new(2).unwrap());
        let code = ConfirmCode::parse("12345").unwrap();
        let stored = code.digest(p1, &email);
        assert!(code.matches(p1, &Email::parse("ana@example.org").unwrap(), &stored));
        assert!(!code.matches(p2, &email, &stored));
        assert!(!code.matches(p1, &other, &stored));
        assert!(!ConfirmCode::parse("12346").unwrap().matches(p1, &email, &stored));
    }
}
