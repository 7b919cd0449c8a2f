//! Domain types: parsed once at the edge, trusted everywhere after.

/// A positive int32 id (the wires of seeds 001 and 003 carry int32s), stored as `i64`.
macro_rules! int32_id {
    ($(#[$doc:meta])* $name:ident, $error:ident, $message:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        #[derive(Debug, thiserror::Error, PartialEq, Eq)]
        #[error($message)]
        pub struct $error;

        impl $name {
            pub fn new(raw: i64) -> Result<Self, $error> {
                if (1..=i64::from(i32::MAX)).contains(&raw) { Ok(Self(raw)) } else { Err($error) }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse::<i64>().map_err(|_| $error).and_then(Self::new)
            }
        }
    };
}

/// A closed set of values with one spelling each on the wire and in the database: the variant's
/// own name, or the literal after `=`. Parsing is exact: an unknown value (or another case) is
/// an error, never a default. Serde, clap and utoipa derives, where a type needs them, come with
/// its attributes and must spell the same (the tests of each type check the round trip).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(#[$first_meta:meta])* $first:ident $(= $first_wire:literal)?
            $(, $(#[$variant_meta:meta])* $variant:ident $(= $wire:literal)?)* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(#[$first_meta])* $first,
            $($(#[$variant_meta])* $variant),*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$name::$first $(, $name::$variant)*];
            /// The spellings, for messages: `A, B, C`.
            pub const NAMES: &'static str =
                concat!($crate::domain::wire_enum!(@wire $first $($first_wire)?) $(, ", ", $crate::domain::wire_enum!(@wire $variant $($wire)?))*);

            pub fn as_str(self) -> &'static str {
                match self {
                    $name::$first => $crate::domain::wire_enum!(@wire $first $($first_wire)?),
                    $($name::$variant => $crate::domain::wire_enum!(@wire $variant $($wire)?)),*
                }
            }

            /// Exact spelling only.
            pub fn parse(raw: &str) -> Option<Self> {
                match raw {
                    $crate::domain::wire_enum!(@wire $first $($first_wire)?) => Some($name::$first),
                    $($crate::domain::wire_enum!(@wire $variant $($wire)?) => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| $crate::domain::UnknownValue(s.to_owned()))
            }
        }
    };
    (@wire $variant:ident $wire:literal) => { $wire };
    (@wire $variant:ident) => { stringify!($variant) };
}

pub(crate) use wire_enum;

/// A duration setting in seconds as milliseconds, the unit every stored time is in (saturating:
/// an absurd setting means "never", not an overflow).
pub fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `n` uniformly random decimal digits: the one-time codes users type back.
pub(crate) fn random_digits(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

/// Milliseconds since the epoch as RFC 3339, as every surface writes timestamps.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

pub mod address;
pub mod billing;
pub mod cip;
pub mod consent;
pub mod credentials;
pub mod email;
pub mod kyc;
pub mod money;
pub mod partner;
pub mod phone;
pub mod prospect;
pub mod registration;
pub mod sanctions_list;
pub mod signup;
pub mod user;
pub mod webhook;

#[cfg(test)]
pub(crate) mod properties;

pub use email::{Email, InvalidEmail};
pub use partner::{Environment, Partner, PartnerId, PartnerName};
pub use phone::{InvalidPhone, Phone};
pub use registration::{Alias, AuthMethod, ExternalUserId, PartnerRegistration, SignIn, UserType};
pub use user::{PublicUserId, UserId};

/// A value outside a closed set (`wire_enum!`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

/// Why a free-text field (a name, an alias, a partner's id) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// The one rule for free text: non-empty (after trimming, when `trim`), at most `max_chars`
/// characters, no control characters. Returns the text to keep.
pub fn clean_text(raw: &str, max_chars: usize, trim: bool) -> Result<&str, TextProblem> {
    let text = if trim { raw.trim() } else { raw };
    if text.is_empty() {
        return Err(TextProblem::Empty);
    }
    if text.chars().count() > max_chars {
        return Err(TextProblem::TooLong(max_chars));
    }
    if text.chars().any(char::is_control) {
        return Err(TextProblem::ControlCharacter);
    }
    Ok(text)
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A calendar date written `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<time::Date> {
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}
