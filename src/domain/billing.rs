//! Accounts, subscription tiers, subscriptions and invoices (seed 003 step 4): their opaque ids,
//! billing periods, and the states a subscription and an invoice move through.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;

/// An opaque id `prefix:<uuid v7>` (time-ordered, so indexes stay append-mostly).
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = concat!($prefix, ":");

            pub fn generate() -> Self {
                Self(format!(concat!($prefix, ":{}"), uuid::Uuid::now_v7()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as stored; not checked (the database wrote it).
            pub fn stored(raw: String) -> Self {
                Self(raw)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let uuid = s
                    .strip_prefix(Self::PREFIX)
                    .and_then(|u| uuid::Uuid::parse_str(u).ok())
                    .ok_or(InvalidId(concat!($prefix, ":<uuid>")))?;
                Ok(Self(format!(concat!($prefix, ":{}"), uuid.hyphenated())))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// An id that does not have its kind's shape; the text is the shape it should have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must look like {0}")]
pub struct InvalidId(pub &'static str);

prefixed_id!(
    /// A user's account (`accountId`).
    AccountId,
    "acc"
);
prefixed_id!(
    /// A partner's subscription tier (seed 003's `subscriptionDetailsId`).
    PlanId,
    "plan"
);
prefixed_id!(
    /// A subscription of an account to a tier.
    SubscriptionId,
    "sub"
);
prefixed_id!(
    /// One billing period's invoice of a subscription (`invoiceId`).
    InvoiceId,
    "inv"
);
prefixed_id!(
    /// One entry of the payments ledger: a charge, a failed charge or a refund.
    PaymentId,
    "pay"
);

wire_enum! {
    /// How often a tier bills.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Interval {
        Month = "month",
        Year = "year",
    }
}

impl Interval {
    fn months(self) -> i32 {
        match self {
            Interval::Month => 1,
            Interval::Year => 12,
        }
    }
}

/// The end of billing period `n` (1-based) of a subscription anchored at `anchor_ms` (UTC):
/// `n` intervals later on the calendar, on the anchor's day of month or the month's last day
/// when it has fewer (Jan 31 → Feb 28/29 → Mar 31: counted from the anchor, so a short month
/// does not pull every later period earlier).
pub fn period_end(anchor_ms: i64, interval: Interval, n: u32) -> Option<i64> {
    let anchor = OffsetDateTime::from_unix_timestamp_nanos(i128::from(anchor_ms) * 1_000_000).ok()?;
    let months = i32::try_from(n).ok()?.checked_mul(interval.months())?;
    let index = anchor.year().checked_mul(12)?.checked_add(i32::from(u8::from(anchor.month())) - 1)? + months;
    let (year, month) = (index.div_euclid(12), u8::try_from(index.rem_euclid(12) + 1).ok()?);
    let month = time::Month::try_from(month).ok()?;
    let day = anchor.day().min(time::util::days_in_month(month, year));
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let at = anchor.replace_date(date);
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `days` whole days after `ms`.
pub fn days_after(ms: i64, days: u32) -> i64 {
    ms.saturating_add(i64::from(days) * 86_400_000)
}

wire_enum! {
    /// A subscription's state: `incomplete` until its first invoice is paid (or `trialing`
    /// through a tier's trial), `active` while paid up, `past_due` after a failed renewal
    /// (retried on `RENEWAL_RETRY_DAYS`), `canceled` at the end.
    #[derive(serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum SubscriptionStatus {
        Trialing = "trialing",
        Incomplete = "incomplete",
        Active = "active",
        PastDue = "past_due",
        Canceled = "canceled",
    }
}

wire_enum! {
    /// An invoice: `open` until paid (`paid`), or `void` when its subscription ended unpaid.
    #[derive(serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum InvoiceStatus {
        Open = "open",
        Paid = "paid",
        Void = "void",
    }
}

wire_enum! {
    /// A ledger entry: money taken (`charge`), a charge the provider declined (`failure`, amount
    /// 0), money given back (`refund`), or money the provider took that no open invoice could
    /// take (`unapplied`: a second charge, for an operator to refund).
    #[derive(serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum LedgerKind {
        Charge = "charge",
        Failure = "failure",
        Refund = "refund",
        Unapplied = "unapplied",
    }
}

/// After a renewal charge fails, it is retried this many days after the period began (Stripe's
/// "smart retries" default is similar); the subscription is `past_due` from the first failure
/// and `canceled` (its invoice void) when the last retry fails.
pub const RENEWAL_RETRY_DAYS: [u32; 3] = [1, 3, 5];

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(date: time::Date) -> i64 {
        i64::try_from(date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
    }

    #[test]
    fn periods_follow_the_calendar_from_the_anchor() {
        use time::macros::date;
        let anchor = ms(date!(2026 - 01 - 31));
        assert_eq!(period_end(anchor, Interval::Month, 1), Some(ms(date!(2026 - 02 - 28))));
        assert_eq!(period_end(anchor, Interval::Month, 2), Some(ms(date!(2026 - 03 - 31))));
        assert_eq!(period_end(anchor, Interval::Month, 13), Some(ms(date!(2027 - 02 - 28))));
        assert_eq!(period_end(ms(date!(2028 - 01 - 31)), Interval::Month, 1), Some(ms(date!(2028 - 02 - 29))));
        assert_eq!(period_end(ms(date!(2028 - 02 - 29)), Interval::Year, 1), Some(ms(date!(2029 - 02 - 28))));
        assert_eq!(period_end(ms(date!(2026 - 12 - 15)), Interval::Month, 1), Some(ms(date!(2027 - 01 - 15))));
        // The time of day is kept.
        assert_eq!(period_end(anchor + 3_600_000, Interval::Month, 1), Some(ms(date!(2026 - 02 - 28)) + 3_600_000));
    }

    #[test]
    fn ids_have_their_prefix() {
        let id = AccountId::generate();
        assert!(id.as_str().starts_with("acc:"));
        assert_eq!(id.as_str().parse::<AccountId>().unwrap(), id);
        assert!(id.as_str().parse::<InvoiceId>().is_err());
        assert!("acc:nope".parse::<AccountId>().is_err());
        assert_eq!(SubscriptionStatus::parse("past_due"), Some(SubscriptionStatus::PastDue));
        assert_eq!(serde_json::to_value(SubscriptionStatus::PastDue).unwrap(), "past_due");
        assert_eq!(Interval::parse("month"), Some(Interval::Month));
        assert_eq!(Interval::parse("Month"), None);
    }
}
