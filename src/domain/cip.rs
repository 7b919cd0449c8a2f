//! The CIP onboarding state machine (DESIGN.md §3): statuses, details, and which moves are legal.
//! Every stored transition goes through `Transition::new`, so an illegal move is an error rather
//! than a silent overwrite.

use std::fmt;

pub use super::UnknownValue;

wire_enum! {
    /// seed 002's `status`.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum Status {
        Completed, UpgradePending, UpgradeInProgress, UpgradeFailed, UpgradeSoftFailed, AccountUpgradeInProgress,
    }
}

wire_enum! {
    /// seed 002's `statusDetail`.
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    pub enum Detail {
        None, InvalidAddress, InvalidEMail, UnreadableDoc, ProvideAdditionalInfo, InvalidPersonalData,
        OtpPrivacyMissing, OtpContractMissing, Compliance, ComplianceBlocked, OfacFailed,
    }
}

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
    pub const PROVISIONING: CipState = CipState::new(Status::AccountUpgradeInProgress, Detail::None);
    pub const COMPLETED: CipState = CipState::new(Status::Completed, Detail::None);
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
        // Cleared (back on track, or straight on to what the other checks decided), consents
        // given, or blocked; a consent case can also turn out to be a compliance case.
        S::UpgradePending => !matches!(to.status, S::Completed),
        S::AccountUpgradeInProgress => matches!(to.status, S::Completed | S::UpgradePending | S::UpgradeFailed),
        // Ongoing monitoring: a later list can put a finished customer under review.
        S::Completed => to == CipState::COMPLIANCE,
        S::UpgradeFailed => false,
    }
}

/// The checks a user's CIP goes through: the five validators of a seed-002 registration (each
/// one a job), and identity verification by the KYC provider, whose result arrives by webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    Personal,
    Address,
    Email,
    Phone,
    Sanctions,
    Kyc,
}

impl Check {
    /// The validators: every user in CIP goes through these.
    pub const ALL: [Check; 5] = [Check::Personal, Check::Address, Check::Email, Check::Phone, Check::Sanctions];
    /// The validators and KYC.
    const WITH_KYC: [Check; 6] =
        [Check::Personal, Check::Address, Check::Email, Check::Phone, Check::Sanctions, Check::Kyc];

    /// The checks whose results decide a user's CIP.
    pub fn required(kyc: bool) -> &'static [Check] {
        if kyc { &Self::WITH_KYC } else { &Self::ALL }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Personal => "personal",
            Check::Address => "address",
            Check::Email => "email",
            Check::Phone => "phone",
            Check::Sanctions => "sanctions",
            Check::Kyc => "kyc",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::WITH_KYC.into_iter().find(|c| c.as_str() == raw)
    }

    /// The job kind that runs this check.
    pub fn job_kind(self) -> &'static str {
        match self {
            Check::Personal => "cip.personal",
            Check::Address => "cip.address",
            Check::Email => "cip.email",
            Check::Phone => "cip.phone",
            Check::Sanctions => "cip.sanctions",
            Check::Kyc => "kyc.reconcile",
        }
    }

    /// The checks a corrected seed-002 field makes stale.
    pub fn affected_by(field: &str) -> &'static [Check] {
        match field {
            // A verified identity document was checked against these (see `MoveError::IdentityVerified`).
            "firstName" | "middleName" | "lastName" | "secondLastName" | "dateOfBirth" => {
                &[Check::Personal, Check::Sanctions, Check::Kyc]
            }
            "country" => &[Check::Address, Check::Phone, Check::Sanctions],
            "state" | "street" | "city" | "placeDetail" | "addressLatitude" | "addressLongitude" => &[Check::Address],
            "email" => &[Check::Email],
            "phoneNumber" => &[Check::Phone],
            _ => &[],
        }
    }
}

/// What one check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Something the user can fix, with the detail to show.
    Soft(Detail),
    /// A possible sanctions match, or a KYC review put on hold: a compliance case.
    Review,
    /// A corroborated sanctions match, or a final KYC rejection.
    Fail,
    /// A review a compliance officer cleared.
    Cleared,
}

impl Outcome {
    /// (outcome, detail) as stored.
    pub fn to_columns(self) -> (&'static str, Option<&'static str>) {
        match self {
            Outcome::Pass => ("pass", None),
            Outcome::Soft(detail) => ("soft", Some(detail.as_str())),
            Outcome::Review => ("review", None),
            Outcome::Fail => ("fail", None),
            Outcome::Cleared => ("cleared", None),
        }
    }

    pub fn from_columns(outcome: &str, detail: Option<&str>) -> Option<Self> {
        Some(match outcome {
            "pass" => Outcome::Pass,
            "soft" => Outcome::Soft(detail?.parse().ok()?),
            "review" => Outcome::Review,
            "fail" => Outcome::Fail,
            "cleared" => Outcome::Cleared,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub check: Check,
    pub outcome: Outcome,
    /// Why, in words a reviewer reads (never the full PII).
    pub reason: String,
}

/// The consents a partner's users must give before their account is opened, and the one
/// spelling of them the database keeps (`''`, `privacy`, `contract`, `privacy,contract`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequiredConsents {
    pub privacy: bool,
    pub contract: bool,
}

impl RequiredConsents {
    pub fn column(self) -> &'static str {
        match (self.privacy, self.contract) {
            (false, false) => "",
            (true, false) => "privacy",
            (false, true) => "contract",
            (true, true) => "privacy,contract",
        }
    }

    pub fn from_column(stored: &str) -> Self {
        let has = |consent: &str| stored.split(',').any(|c| c == consent);
        Self { privacy: has("privacy"), contract: has("contract") }
    }

    /// The consents' wire names, in order.
    pub fn names(self) -> Vec<&'static str> {
        [("privacy", self.privacy), ("contract", self.contract)]
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect()
    }
}

/// Consents a partner requires and the ones the user gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consents {
    pub privacy_required: bool,
    pub contract_required: bool,
    pub privacy_given: bool,
    pub contract_given: bool,
}

/// Where a registration goes once every check has reported (DESIGN.md §3), most serious first:
/// a corroborated sanctions match fails it (`OfacFailed`), then a final KYC rejection
/// (`UpgradeFailed/None`); a possible match or a KYC hold makes it a compliance case; anything
/// the user can fix soft-fails it (first in check order); then missing consents; and only then
/// is the account opened.
pub fn decide(results: &[CheckResult], consents: Consents) -> CipState {
    let has = |o: Outcome| results.iter().any(|r| r.outcome == o);
    let failed = |c: Check| results.iter().any(|r| r.check == c && r.outcome == Outcome::Fail);
    if failed(Check::Sanctions) {
        return CipState::new(Status::UpgradeFailed, Detail::OfacFailed);
    }
    if has(Outcome::Fail) {
        return CipState::new(Status::UpgradeFailed, Detail::None);
    }
    if has(Outcome::Review) {
        return CipState::COMPLIANCE;
    }
    let soft = Check::WITH_KYC.iter().find_map(|check| {
        results.iter().find(|r| r.check == *check).and_then(|r| match r.outcome {
            Outcome::Soft(detail) => Some(detail),
            _ => None,
        })
    });
    if let Some(detail) = soft {
        return CipState::new(Status::UpgradeSoftFailed, detail);
    }
    if consents.privacy_required && !consents.privacy_given {
        return CipState::new(Status::UpgradePending, Detail::OtpPrivacyMissing);
    }
    if consents.contract_required && !consents.contract_given {
        return CipState::new(Status::UpgradePending, Detail::OtpContractMissing);
    }
    CipState::PROVISIONING
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_consents_have_one_stored_spelling() {
        for privacy in [false, true] {
            for contract in [false, true] {
                let consents = RequiredConsents { privacy, contract };
                assert_eq!(RequiredConsents::from_column(consents.column()), consents);
            }
        }
        let both = RequiredConsents::from_column("privacy,contract");
        assert_eq!(both.names(), ["privacy", "contract"]);
        assert_eq!(RequiredConsents::from_column("").names(), Vec::<&str>::new());
    }

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

    #[test]
    fn decisions_take_the_most_serious_outcome() {
        let r = |check, outcome| CheckResult { check, outcome, reason: String::new() };
        let all_pass: Vec<_> = Check::ALL.iter().map(|c| r(*c, Outcome::Pass)).collect();
        assert_eq!(decide(&all_pass, Consents::default()), CipState::PROVISIONING);
        let mut results = all_pass.clone();
        results[2] = r(Check::Email, Outcome::Soft(Detail::InvalidEMail));
        results[1] = r(Check::Address, Outcome::Soft(Detail::InvalidAddress));
        assert_eq!(
            decide(&results, Consents::default()),
            CipState::new(Status::UpgradeSoftFailed, Detail::InvalidAddress)
        );
        results[4] = r(Check::Sanctions, Outcome::Review);
        assert_eq!(decide(&results, Consents::default()), CipState::COMPLIANCE);
        results[4] = r(Check::Sanctions, Outcome::Fail);
        assert_eq!(decide(&results, Consents::default()).detail, Detail::OfacFailed);
        let needs_both = Consents { privacy_required: true, contract_required: true, ..Consents::default() };
        assert_eq!(decide(&all_pass, needs_both).detail, Detail::OtpPrivacyMissing);
        let privacy_given = Consents { privacy_given: true, ..needs_both };
        assert_eq!(decide(&all_pass, privacy_given).detail, Detail::OtpContractMissing);
        let mut cleared = all_pass.clone();
        cleared[4] = r(Check::Sanctions, Outcome::Cleared);
        assert_eq!(decide(&cleared, Consents::default()), CipState::PROVISIONING);
        // KYC: a final rejection fails without a detail; a sanctions match still says OFAC.
        let mut kyc = all_pass;
        kyc.push(r(Check::Kyc, Outcome::Fail));
        assert_eq!(decide(&kyc, Consents::default()), CipState::new(Status::UpgradeFailed, Detail::None));
        kyc[4] = r(Check::Sanctions, Outcome::Fail);
        assert_eq!(decide(&kyc, Consents::default()).detail, Detail::OfacFailed);
        kyc[4] = r(Check::Sanctions, Outcome::Pass);
        kyc[5] = r(Check::Kyc, Outcome::Soft(Detail::UnreadableDoc));
        assert_eq!(decide(&kyc, Consents::default()), CipState::new(Status::UpgradeSoftFailed, Detail::UnreadableDoc));
        kyc[5] = r(Check::Kyc, Outcome::Review);
        assert_eq!(decide(&kyc, Consents::default()), CipState::COMPLIANCE);
    }

    #[test]
    fn outcomes_round_trip_through_columns() {
        for o in [Outcome::Pass, Outcome::Soft(Detail::InvalidEMail), Outcome::Review, Outcome::Fail, Outcome::Cleared]
        {
            let (outcome, detail) = o.to_columns();
            assert_eq!(Outcome::from_columns(outcome, detail), Some(o));
        }
        assert_eq!(Outcome::from_columns("soft", Some("Nope")), None);
    }
}
