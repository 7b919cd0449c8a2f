//! Money: integer minor units of an ISO 4217 currency. The exponent (how many minor units make a
//! major one) comes from the ISO table (`iso_currency`), never from a float: 999 USD minor units
//! are 9.99 dollars, 999 JPY are 999 yen, 999 KWD are 0.999 dinars.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A currency payments can be made in: an ISO 4217 code with a minor-unit exponent that is
/// neither a fund (`CLF`, `BOV`…), a special unit (`XAU`, `XDR`…) nor superseded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidCurrency {
    #[error("is not an ISO 4217 currency code (three capital letters, e.g. USD)")]
    Unknown,
    #[error("is a fund, a precious metal or a superseded code, which cannot be charged")]
    NotPayable,
}

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, InvalidCurrency> {
        // The table is upper case; `usd` is refused rather than guessed (Stripe's lower case is
        // written by the Stripe adapter, not accepted from partners).
        if !raw.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidCurrency::Unknown);
        }
        let currency = iso_currency::Currency::from_code(raw).ok_or(InvalidCurrency::Unknown)?;
        if currency.exponent().is_none()
            || currency.is_fund()
            || currency.is_special()
            || currency.is_superseded().is_some()
        {
            return Err(InvalidCurrency::NotPayable);
        }
        Ok(Self(currency))
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Minor units per major unit, as a power of ten (0 for JPY, 2 for USD, 3 for KWD).
    pub fn exponent(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }

    fn scale(self) -> i64 {
        10_i64.pow(self.exponent())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = InvalidCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// An amount: integer minor units and their currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidAmount {
    #[error("must be a whole number of minor units, at least 0")]
    Negative,
    #[error("has more decimals than the currency's {0}")]
    TooPrecise(u32),
    #[error("is not a decimal amount (e.g. 9.99)")]
    NotDecimal,
    #[error("is too large")]
    TooLarge,
    #[error("is in {0}, not {1}")]
    OtherCurrency(Currency, Currency),
}

/// The largest amount anything here is priced at: 10^15 minor units (10 trillion dollars), far
/// below where sums of many of them could overflow an i64.
pub const MAX_MINOR: i64 = 1_000_000_000_000_000;

impl Money {
    /// `minor` units of `currency`; never negative (refunds are ledger rows of their own kind).
    pub fn new(minor: i64, currency: Currency) -> Result<Self, InvalidAmount> {
        if minor < 0 {
            return Err(InvalidAmount::Negative);
        }
        if minor > MAX_MINOR {
            return Err(InvalidAmount::TooLarge);
        }
        Ok(Self { minor, currency })
    }

    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    /// A decimal amount in major units, exactly: `9.99` USD is 999; `9.999` USD is refused,
    /// never rounded.
    pub fn parse_major(text: &str, currency: Currency) -> Result<Self, InvalidAmount> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (text.contains('.') && !digits(fraction)) {
            return Err(InvalidAmount::NotDecimal);
        }
        let exponent = currency.exponent();
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > exponent as usize {
            return Err(InvalidAmount::TooPrecise(exponent));
        }
        let whole: i64 = whole.parse().map_err(|_| InvalidAmount::TooLarge)?;
        let padded = format!("{fraction:0<width$}", width = exponent as usize);
        let fraction: i64 =
            if padded.is_empty() { 0 } else { padded.parse().map_err(|_| InvalidAmount::NotDecimal)? };
        let minor = whole.checked_mul(currency.scale()).and_then(|m| m.checked_add(fraction));
        Self::new(minor.ok_or(InvalidAmount::TooLarge)?, currency)
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    /// The amount in major units with exactly the currency's decimals: `9.90`, `999`, `0.999`.
    pub fn major(self) -> String {
        let exponent = self.currency.exponent() as usize;
        if exponent == 0 {
            return self.minor.to_string();
        }
        let scale = self.currency.scale();
        format!("{}.{:0width$}", self.minor / scale, self.minor % scale, width = exponent)
    }

    /// The sum of two amounts of one currency.
    pub fn plus(self, other: Money) -> Result<Money, InvalidAmount> {
        if self.currency != other.currency {
            return Err(InvalidAmount::OtherCurrency(other.currency, self.currency));
        }
        Money::new(self.minor.checked_add(other.minor).ok_or(InvalidAmount::TooLarge)?, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.major(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn currencies_come_from_the_iso_table() {
        assert_eq!(cur("USD").exponent(), 2);
        assert_eq!(cur("JPY").exponent(), 0);
        assert_eq!(cur("KWD").exponent(), 3);
        assert_eq!(Currency::parse("usd"), Err(InvalidCurrency::Unknown));
        assert_eq!(Currency::parse("ABC"), Err(InvalidCurrency::Unknown));
        assert_eq!(Currency::parse("XAU"), Err(InvalidCurrency::NotPayable));
        assert_eq!(Currency::parse("CLF"), Err(InvalidCurrency::NotPayable));
    }

    #[test]
    fn major_units_are_exact() {
        assert_eq!(Money::parse_major("9.99", cur("USD")).unwrap().minor(), 999);
        assert_eq!(Money::parse_major("9.9", cur("USD")).unwrap().minor(), 990);
        assert_eq!(Money::parse_major("10", cur("USD")).unwrap().minor(), 1000);
        assert_eq!(Money::parse_major("0.999", cur("KWD")).unwrap().minor(), 999);
        assert_eq!(Money::parse_major("999", cur("JPY")).unwrap().minor(), 999);
        assert_eq!(Money::parse_major("9.999", cur("USD")), Err(InvalidAmount::TooPrecise(2)));
        assert_eq!(Money::parse_major("1.5", cur("JPY")), Err(InvalidAmount::TooPrecise(0)));
        assert_eq!(Money::parse_major("1.50", cur("USD")).unwrap().major(), "1.50");
        for bad in ["", ".5", "1.", "-1", "1e3", "1,00", " 1"] {
            assert_eq!(Money::parse_major(bad, cur("USD")), Err(InvalidAmount::NotDecimal), "{bad}");
        }
        assert_eq!(Money::new(5, cur("KWD")).unwrap().major(), "0.005");
        assert_eq!(Money::new(5, cur("JPY")).unwrap().to_string(), "5 JPY");
        assert!(Money::new(1, cur("USD")).unwrap().plus(Money::new(1, cur("EUR")).unwrap()).is_err());
    }

    fn currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec!["JPY", "KRW", "CLP", "USD", "EUR", "MXN", "KWD", "BHD", "TND"]).prop_map(cur)
    }

    proptest! {
        /// No minor unit is lost between integer amounts and their decimal text, in currencies
        /// of exponent 0, 2 and 3, and sums add up to the sum of their parts.
        #[test]
        fn amounts_never_lose_a_minor_unit(minor in 0..=MAX_MINOR / 1000, parts in prop::collection::vec(0_i64..10_000_000, 1..50), currency in currency()) {
            let money = Money::new(minor, currency).unwrap();
            let text = money.major();
            prop_assert_eq!(Money::parse_major(&text, currency).unwrap(), money);
            let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
            prop_assert_eq!(decimals as u32, currency.exponent());
            let total = parts.iter().try_fold(Money::zero(currency), |sum, p| sum.plus(Money::new(*p, currency).unwrap())).unwrap();
            prop_assert_eq!(total.minor(), parts.iter().sum::<i64>());
        }
    }
}
