//! Identity verification (KYC) as the CIP machine sees it: the provider's review and what it
//! means for the user (DESIGN.md §3, the mapping table in the README). Nothing here knows the
//! provider's wire format; `kyc::sumsub` parses that into these types.

use super::cip::{Check, CheckResult, Detail, Outcome};

wire_enum! {
    /// The provider's verdict (`reviewResult.reviewAnswer`).
    pub enum ReviewAnswer { Green = "GREEN", Red = "RED" }
}

wire_enum! {
    /// Whether a rejected applicant may resubmit (`reviewRejectType`).
    pub enum RejectType { Final = "FINAL", Retry = "RETRY" }
}

wire_enum! {
    /// Which provider serves a partner: Sumsub, or the built-in simulation for sandbox partners.
    pub enum ProviderKind { Sumsub = "sumsub", Sandbox = "sandbox" }
}

/// A completed review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub answer: ReviewAnswer,
    /// Set when the answer is RED (a RED without one is treated as RETRY: the user may try again).
    pub reject_type: Option<RejectType>,
    /// Rejection label names, as the provider sends them.
    pub labels: Vec<String>,
}

/// Rejection labels that say the document images could not be used (Sumsub's "Rejection
/// labels" and "Temporary rejection" pages: unreadable or bad photos, screenshots, black and
/// white copies, a missing page or side, an incomplete or damaged document). A RETRY with one of
/// these asks the user for better pictures (`UnreadableDoc`); other RETRY labels ask for
/// something else (`ProvideAdditionalInfo`).
pub const DOCUMENT_QUALITY_LABELS: &[&str] = &[
    "UNSATISFACTORY_PHOTOS",
    "SCREENSHOTS",
    "BLACK_AND_WHITE",
    "INCOMPLETE_DOCUMENT",
    "DOCUMENT_PAGE_MISSING",
    "FRONT_SIDE_MISSING",
    "BACK_SIDE_MISSING",
    "SAME_SIDES",
    "DOCUMENT_DAMAGED",
    "BAD_SELFIE",
];

impl Review {
    /// The KYC check's result: GREEN passes; RED + FINAL fails (`UpgradeFailed/None`); RED +
    /// RETRY soft-fails with `UnreadableDoc` when a label is about image quality, else
    /// `ProvideAdditionalInfo`. The reason names the labels, never the reviewer's comments.
    pub fn result(&self) -> CheckResult {
        let labels = if self.labels.is_empty() { "no labels".to_owned() } else { self.labels.join(", ") };
        let (outcome, reason) = match (self.answer, self.reject_type) {
            (ReviewAnswer::Green, _) => (Outcome::Pass, "identity verified (GREEN)".to_owned()),
            (ReviewAnswer::Red, Some(RejectType::Final)) => {
                (Outcome::Fail, format!("rejected, final (RED/FINAL: {labels})"))
            }
            (ReviewAnswer::Red, _) => {
                let unreadable = self.labels.iter().any(|l| DOCUMENT_QUALITY_LABELS.contains(&l.as_str()));
                let detail = if unreadable { Detail::UnreadableDoc } else { Detail::ProvideAdditionalInfo };
                (Outcome::Soft(detail), format!("resubmission requested (RED/RETRY: {labels})"))
            }
        };
        CheckResult { check: Check::Kyc, outcome, reason }
    }
}

/// The KYC result of a review put on hold (manual checks at the provider): a compliance case.
pub fn on_hold() -> CheckResult {
    CheckResult { check: Check::Kyc, outcome: Outcome::Review, reason: "review on hold at the provider".into() }
}

wire_enum! {
    /// The provider events Onboard acts on; every other type is stored and acknowledged.
    pub enum EventKind {
        Created = "applicantCreated",
        Pending = "applicantPending",
        Reviewed = "applicantReviewed",
        OnHold = "applicantOnHold",
        Reset = "applicantReset",
    }
}

/// One provider event about an applicant, parsed from a webhook or a status reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycEvent {
    /// The provider's type name, as sent (kept for the types Onboard does not act on).
    pub type_name: String,
    pub kind: Option<EventKind>,
    pub applicant_id: Option<String>,
    /// Our `usr:` id.
    pub external_user_id: String,
    pub level_name: Option<String>,
    /// When the provider created the event: the order events are applied in.
    pub created_at_ms: i64,
    pub review_status: Option<String>,
    pub review: Option<Review>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(reject: Option<RejectType>, labels: &[&str]) -> Review {
        Review {
            answer: ReviewAnswer::Red,
            reject_type: reject,
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    #[test]
    fn reviews_map_onto_cip_outcomes() {
        let green = Review { answer: ReviewAnswer::Green, reject_type: None, labels: vec![] };
        assert_eq!(green.result().outcome, Outcome::Pass);
        assert_eq!(red(Some(RejectType::Final), &["FORGERY"]).result().outcome, Outcome::Fail);
        let unreadable = red(Some(RejectType::Retry), &["UNSATISFACTORY_PHOTOS", "SCREENSHOTS"]).result();
        assert_eq!(unreadable.outcome, Outcome::Soft(Detail::UnreadableDoc));
        assert!(unreadable.reason.contains("SCREENSHOTS"), "{}", unreadable.reason);
        let other = red(Some(RejectType::Retry), &["WRONG_ADDRESS"]).result();
        assert_eq!(other.outcome, Outcome::Soft(Detail::ProvideAdditionalInfo));
        // A RED without a reject type lets the user try again.
        assert_eq!(red(None, &["DOCUMENT_PAGE_MISSING"]).result().outcome, Outcome::Soft(Detail::UnreadableDoc));
        assert_eq!(on_hold().outcome, Outcome::Review);
    }

    #[test]
    fn wire_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
        }
        assert_eq!("GREEN".parse::<ReviewAnswer>(), Ok(ReviewAnswer::Green));
        assert!("green".parse::<ReviewAnswer>().is_err());
    }
}
