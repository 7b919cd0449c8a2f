//! The CIP onboarding state machine (DESIGN.md §3): statuses, details, and which moves are legal.
//! Every stored transition goes through `Transition::new`, so an illegal move is an error rather
//! than a silent overwrite.

use std::fmt;
use std::str::FromStr;

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s { $(stringify!($variant) => Ok($name::$variant),)+ _ => Err(UnknownValue(s.to_owned())) }
            }
        }
    };
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

wire_enum!(
    /// seed 002's `status`.
    Status { Completed, UpgradePending, UpgradeInProgress, UpgradeFailed, UpgradeSoftFailed, AccountUpgradeInProgress }
);

wire_enum!(
    /// seed 002's `statusDetail`.
    Detail {
        None, InvalidAddress, InvalidEMail, UnreadableDoc, ProvideAdditionalInfo, InvalidPersonalData,
        OtpPrivacyMissing, OtpContractMissing, Compliance, ComplianceBlocked, OfacFailed,
    }
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipState {
    pub status: Status,
    pub detail: Detail,
}

impl CipState {
    pub const fn new(status: Status, detail: Detail) -> Self {
        Self { status, detail }
    }

    pub const ACCEPTED: CipState = CipState::new(Status::UpgradeInProgress, Detail::None);
    pub const COMPLIANCE: CipState = CipState::new(Status::UpgradePending, Detail::Compliance);
}

impl fmt::Display for CipState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.status, self.detail)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("illegal CIP transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: CipState,
    pub to: CipState,
}

/// A legal move, with why and who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<CipState>,
    pub to: CipState,
    pub reason: String,
    pub actor: String,
}

impl Transition {
    /// `from` is `None` for a user that has never been in the machine (seed 000/001 users).
    pub fn new(
        from: Option<CipState>,
        to: CipState,
        reason: impl Into<String>,
        actor: impl Into<String>,
    ) -> Result<Self, IllegalTransition> {
        if let Some(from) = from
            && !allowed(from, to)
        {
            return Err(IllegalTransition { from, to });
        }
        Ok(Self { from, to, reason: reason.into(), actor: actor.into() })
    }
}

/// Whether the detail belongs with the status (e.g. `Compliance` only while pending).
fn consistent(state: CipState) -> bool {
    use Detail as D;
    use Status as S;
    match state.status {
        S::UpgradeInProgress | S::AccountUpgradeInProgress | S::Completed => state.detail == D::None,
        S::UpgradeSoftFailed => {
            matches!(
                state.detail,
                D::InvalidAddress
                    | D::InvalidEMail
                    | D::InvalidPersonalData
                    | D::ProvideAdditionalInfo
                    | D::UnreadableDoc
            )
        }
        S::UpgradePending => matches!(state.detail, D::Compliance | D::OtpPrivacyMissing | D::OtpContractMissing),
        S::UpgradeFailed => matches!(state.detail, D::OfacFailed | D::ComplianceBlocked | D::None),
    }
}

fn allowed(from: CipState, to: CipState) -> bool {
    use Status as S;
    if !consistent(to) || from == to {
        return false;
    }
    match from.status {
        S::UpgradeInProgress => to.status != S::Completed,
        // A corrected resubmission restarts validation.
        S::UpgradeSoftFailed => to.status == S::UpgradeInProgress,
        // Cleared (back on track), consents given, or blocked; a consent case can also turn
        // out to be a compliance case.
        S::UpgradePending => matches!(to.status, S::UpgradeInProgress | S::UpgradeFailed | S::UpgradePending),
        S::AccountUpgradeInProgress => matches!(to.status, S::Completed | S::UpgradePending | S::UpgradeFailed),
        // Ongoing monitoring: a later list can put a finished customer under review.
        S::Completed => to == CipState::COMPLIANCE,
        S::UpgradeFailed => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(*s));
        }
        for d in Detail::ALL {
            assert_eq!(d.as_str().parse::<Detail>(), Ok(*d));
        }
        assert!("upgradefailed".parse::<Status>().is_err());
    }

    #[test]
    fn transitions() {
        let soft = CipState::new(Status::UpgradeSoftFailed, Detail::InvalidAddress);
        let ofac = CipState::new(Status::UpgradeFailed, Detail::OfacFailed);
        let done = CipState::new(Status::Completed, Detail::None);
        assert!(Transition::new(Some(CipState::ACCEPTED), soft, "address", "validator").is_ok());
        assert!(Transition::new(Some(soft), CipState::ACCEPTED, "corrected", "partner").is_ok());
        assert!(Transition::new(Some(done), CipState::COMPLIANCE, "rescreen", "sanctions").is_ok());
        assert!(Transition::new(None, CipState::COMPLIANCE, "rescreen", "sanctions").is_ok());
        // Terminal, inconsistent and no-op moves are refused.
        assert!(Transition::new(Some(ofac), CipState::ACCEPTED, "x", "y").is_err());
        assert!(Transition::new(Some(CipState::ACCEPTED), done, "skip provisioning", "y").is_err());
        assert!(
            Transition::new(Some(CipState::ACCEPTED), CipState::new(Status::UpgradePending, Detail::None), "x", "y")
                .is_err()
        );
        assert!(Transition::new(Some(CipState::COMPLIANCE), CipState::COMPLIANCE, "again", "y").is_err());
    }
}
