//! Seed 002: `POST /register-user-v2` accepts a full prospect and answers at once while the
//! validators run as jobs; `POST /getUserTokenV2` reports where the user is in the CIP machine.
//! Onboard adds what the seed's flow needs to finish: `PATCH /users/{userId}` (corrections),
//! the consents (`consents.rs`) and `GET /users/{userId}/events` (the timeline).
//! Partner credentials: `PartnerApiKey` or a bearer token.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::{Map, Value};

use super::AppState;
use super::error::responses::{BadRequest, NotFound, Unauthorized, UnsupportedMediaType};
use super::error::{ApiError, FieldError};
use super::extract::{AnyPartner, ApiJson, ApiPath};
use super::fields::{Problems, object};
use crate::core::onboarding::{self, Correction, MoveError};
use crate::domain::address::{self, Country, LatLng, PlaceDetail};
use crate::domain::cip::CipState;
use crate::domain::prospect::{self, DateOfBirth, Gender, Language, PersonName, Prospect};
use crate::domain::{Email, PartnerId, Phone, PublicUserId, now_ms};
use crate::store::{Duplicate, Lookup, ProspectRecord, UserEvent};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(user_status))
        .routes(routes!(correct))
        .routes(routes!(events))
}

/// The registration's fields, in the wire's spelling (DESIGN.md §1).
pub const FIELDS: [&str; 18] = [
    "firstName",
    "middleName",
    "lastName",
    "secondLastName",
    "gender",
    "dateOfBirth",
    "email",
    "phoneNumber",
    "language",
    "street",
    "city",
    "state",
    "country",
    "placeDetail",
    "addressLatitude",
    "addressLongitude",
    "userLatitude",
    "userLongitude",
];

pub(super) const INVALID: &str = "The request has invalid fields.";

impl Problems {
    /// A latitude/longitude pair: both or neither, numbers in range.
    fn location(&mut self, body: &Map<String, Value>, lat_field: &str, lng_field: &str) -> Option<LatLng> {
        let mut number = |field: &str, limit: f64| match body.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64().filter(|v| v.abs() <= limit) {
                Some(v) => Some(Some(v)),
                None => {
                    self.add(field, format!("must be between -{limit} and {limit}"));
                    Some(None)
                }
            },
            Some(_) => {
                self.add(field, "must be a number");
                Some(None)
            }
        };
        let (lat, lng) = (number(lat_field, 90.0), number(lng_field, 180.0));
        match (lat, lng) {
            (Some(Some(lat)), Some(Some(lng))) => LatLng::new(lat, lng),
            (Some(_), None) => {
                self.add(lng_field, format!("is required with {lat_field}"));
                None
            }
            (None, Some(_)) => {
                self.add(lat_field, format!("is required with {lng_field}"));
                None
            }
            _ => None,
        }
    }
}

fn text_message(e: crate::domain::TextProblem) -> String {
    e.to_string()
}

/// Parses a whole registration body. `today` is the day ages are computed on.
pub fn parse_registration(body: &Map<String, Value>, today: time::Date) -> Result<Prospect, Vec<FieldError>> {
    let mut p = Problems::default();
    p.unknown_fields(body, &FIELDS);
    let name = |p: &mut Problems, field: &str, required: bool| {
        p.parse(body, field, required, |raw| PersonName::parse(raw).map_err(text_message))
    };
    let first_name = name(&mut p, "firstName", true);
    let middle_name = name(&mut p, "middleName", false);
    let last_name = name(&mut p, "lastName", true);
    let second_last_name = name(&mut p, "secondLastName", false);
    let gender = p.parse(body, "gender", false, |raw| {
        Gender::parse(raw).ok_or_else(|| format!("must be one of {}", Gender::NAMES))
    });
    let date_of_birth = p.parse(body, "dateOfBirth", false, |raw| DateOfBirth::parse(raw, today));
    let email = p.parse(body, "email", false, |raw| Email::parse(raw).map(Some).map_err(|e| e.to_string()));
    let phone = p.parse(body, "phoneNumber", true, |raw| {
        let phone =
            Phone::parse(raw).map_err(|e| format!("{e}; a mobile number with country code, e.g. +5215521206703"))?;
        if phone.is_mobile_capable() {
            Ok(phone)
        } else {
            Err("must be a mobile number (this one is a fixed line, toll-free or premium number)".to_owned())
        }
    });
    let language = p.parse(body, "language", false, |raw| {
        Language::parse(raw).ok_or_else(|| format!("must be one of {}", Language::NAMES))
    });
    let line = |p: &mut Problems, field: &str| {
        p.parse(body, field, false, |raw| prospect::address_line(raw).map_err(text_message))
    };
    let street = line(&mut p, "street");
    let city = line(&mut p, "city");
    let country = p.parse(body, "country", false, |raw| {
        Country::parse(raw).ok_or("must be an ISO 3166-1 alpha-2 country code, e.g. MX")
    });
    let state = match (p.string(body, "state", false), country, body.get("country").is_some_and(|c| !c.is_null())) {
        (None, _, _) => None,
        (Some(raw), Some(country), _) => {
            let code = address::subdivision(country, raw);
            if code.is_none() {
                p.add(
                    "state",
                    format!(
                        "must be an ISO 3166-2 code of {} (e.g. {}-JAL) or its short name (e.g. JA, DF)",
                        country.as_str(),
                        country.as_str()
                    ),
                );
            }
            code
        }
        // The country itself is invalid: that is the problem to report.
        (Some(_), None, true) => None,
        (Some(_), None, false) => {
            p.add("state", "needs country: a state is an ISO 3166-2 code of the given country");
            None
        }
    };
    let place_detail = match body.get("placeDetail") {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => match PlaceDetail::parse(value) {
            Ok(place) => Some((place, value.clone())),
            Err(e) => {
                p.add("placeDetail", e);
                None
            }
        },
        Some(_) => {
            p.add("placeDetail", "must be a Google Maps Place Details object");
            None
        }
    };
    let address_location = p.location(body, "addressLatitude", "addressLongitude");
    let user_location = p.location(body, "userLatitude", "userLongitude");
    match (first_name, last_name, phone) {
        (Some(first_name), Some(last_name), Some(phone)) if p.0.is_empty() => Ok(Prospect {
            first_name,
            middle_name,
            last_name,
            second_last_name,
            gender,
            date_of_birth,
            email: email.flatten(),
            phone,
            language,
            street,
            city,
            state,
            country,
            place_detail,
            address_location,
            user_location,
        }),
        _ => Err(p.0),
    }
}

/// The wire form of a stored registration: what a correction is merged into.
fn to_wire(p: &Prospect) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("firstName", Some(p.first_name.as_str().into()));
    put("middleName", p.middle_name.as_ref().map(|n| n.as_str().into()));
    put("lastName", Some(p.last_name.as_str().into()));
    put("secondLastName", p.second_last_name.as_ref().map(|n| n.as_str().into()));
    put("gender", p.gender.map(|g| g.as_str().into()));
    put("dateOfBirth", p.date_of_birth.map(|d| d.to_string().into()));
    put("email", p.email.as_ref().map(|e| e.as_str().into()));
    put("phoneNumber", Some(p.phone.e164().into()));
    put("language", p.language.map(|l| l.as_str().into()));
    put("street", p.street.clone().map(Value::from));
    put("city", p.city.clone().map(Value::from));
    put("state", p.state.map(|s| s.as_str().into()));
    put("country", p.country.map(|c| c.as_str().into()));
    put("placeDetail", p.place_detail.as_ref().map(|(_, json)| json.clone()));
    put("addressLatitude", p.address_location.map(|l| l.lat.into()));
    put("addressLongitude", p.address_location.map(|l| l.lng.into()));
    put("userLatitude", p.user_location.map(|l| l.lat.into()));
    put("userLongitude", p.user_location.map(|l| l.lng.into()));
    m
}

pub(super) fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// Wakes the validators (after a registration or a correction enqueued their jobs).
pub(super) fn wake_checks(state: &AppState) {
    for check in crate::domain::cip::Check::ALL {
        state.jobs.wake_kind(check.job_kind());
    }
}

/// seed 002's user resolution: the id and, for users in the CIP machine, where they are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"userId": "usr:0193a1b2-0c4d-7e6f-8a9b-0c1d2e3f4a5b", "status": "UpgradeInProgress", "statusDetail": "None"}))]
pub struct UserStatus {
    /// `usr:<uuid>`.
    user_id: String,
    /// Status of the user's CIP process (absent for users outside it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::domain::cip::Status>)]
    status: Option<String>,
    /// Status detail of the user's CIP process.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::domain::cip::Detail>)]
    status_detail: Option<String>,
}

impl UserStatus {
    pub(super) fn new(user_id: String, state: Option<CipState>) -> Self {
        Self {
            user_id,
            status: state.map(|s| s.status.as_str().to_owned()),
            status_detail: state.map(|s| s.detail.as_str().to_owned()),
        }
    }

    fn of(record: &ProspectRecord) -> Result<Self, ApiError> {
        Ok(Self::new(record.public_id.clone(), record.cip_state()?))
    }
}

/// Which of the partner's users already have this phone or e-mail (after the database refused
/// the insert, so the 409 can name every field that collides).
async fn duplicates(state: &AppState, partner: PartnerId, p: &Prospect) -> Result<ApiError, ApiError> {
    let mut errors = Vec::new();
    if state.store.find_prospect(partner, Lookup::Phone(p.phone.e164())).await?.is_some() {
        errors.push(FieldError {
            field: "phoneNumber".into(),
            message: "is already registered to another user of this partner".into(),
        });
    }
    if let Some(key) = p.email_key()
        && state.store.find_prospect(partner, Lookup::EmailKey(&key)).await?.is_some()
    {
        errors.push(FieldError {
            field: "email".into(),
            message: "is already registered to another user of this partner".into(),
        });
    }
    Ok(duplicate_error(errors))
}

fn duplicate_error(errors: Vec<FieldError>) -> ApiError {
    let names: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    ApiError::ConflictingFields {
        detail: format!("A user with this {} is already registered.", names.join(" and ")),
        errors,
    }
}

/// Register a full prospect; validation continues in the background.
#[utoipa::path(post, path = "/register-user-v2", operation_id = "registerUserV2", tag = "Seed 002: prospects and CIP",
    security(("bearer" = []), ("partnerApiKey" = [])),
    request_body(content = RegisterUserParams, description = "DTO with extended PII (address, dates) for validators"),
    responses(
        (status = 200, body = UserStatus, description = "Accepted: validation runs asynchronously"),
        BadRequest, Unauthorized,
        (status = 409, body = super::error::Problem, content_type = "application/problem+json", description = "phoneNumber or email already registered"),
        UnsupportedMediaType,
    ))]
pub async fn register(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<UserStatus>, ApiError> {
    let body = object(body)?;
    let prospect =
        parse_registration(&body, today()).map_err(|errors| ApiError::Validation { detail: INVALID.into(), errors })?;
    let public_id = PublicUserId::generate();
    let actor = format!("partner:{}", partner.id);
    match onboarding::register(&state.store, partner.id, public_id.clone(), prospect.clone(), actor, now_ms()).await {
        Ok(_) => {}
        Err(err) if Duplicate::of(&err).is_some() => return Err(duplicates(&state, partner.id, &prospect).await?),
        Err(err) => return Err(err.into()),
    }
    wake_checks(&state);
    metrics::counter!("prospects_registered_total").increment(1);
    tracing::info!(user = public_id.as_str(), phone = %prospect.phone, "prospect accepted");
    Ok(Json(UserStatus::new(public_id.as_str().to_owned(), Some(CipState::ACCEPTED))))
}

/// Where a user is in onboarding: by `userId`, `phoneNumber` or `email` (exactly one).
#[utoipa::path(post, path = "/getUserTokenV2", operation_id = "getUserTokenV2", tag = "Seed 002: prospects and CIP",
    security(("bearer" = []), ("partnerApiKey" = [])),
    request_body(content = UserLookup),
    responses(
        (status = 200, body = UserStatus),
        BadRequest, Unauthorized, NotFound,
        UnsupportedMediaType,
    ))]
pub async fn user_status(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<UserStatus>, ApiError> {
    const KEYS: [&str; 3] = ["userId", "phoneNumber", "email"];
    let body = object(body)?;
    let mut p = Problems::default();
    p.unknown_fields(&body, &KEYS);
    let given: Vec<&str> = KEYS.into_iter().filter(|k| body.get(*k).is_some_and(|v| !v.is_null())).collect();
    if given.len() != 1 && p.0.is_empty() {
        p.add("userId", "give exactly one of userId, phoneNumber or email");
    }
    let invalid = |errors| ApiError::Validation { detail: INVALID.into(), errors };
    if !p.0.is_empty() {
        return Err(invalid(p.0));
    }
    let key = given[0];
    let found = match key {
        "userId" => {
            match p.parse(&body, key, true, |raw| raw.parse::<PublicUserId>().map_err(|_| "must be usr:<uuid>")) {
                Some(id) => state.store.find_prospect(partner.id, Lookup::PublicId(id.as_str())).await?,
                None => return Err(invalid(p.0)),
            }
        }
        "phoneNumber" => match p.parse(&body, key, true, |raw| Phone::parse(raw).map_err(|e| e.to_string())) {
            Some(phone) => state.store.find_prospect(partner.id, Lookup::Phone(phone.e164())).await?,
            None => return Err(invalid(p.0)),
        },
        _ => match p.parse(&body, key, true, |raw| Email::parse(raw).map_err(|e| e.to_string())) {
            Some(email) => {
                state.store.find_prospect(partner.id, Lookup::EmailKey(&email.as_str().to_lowercase())).await?
            }
            None => return Err(invalid(p.0)),
        },
    };
    let record = found.ok_or_else(|| ApiError::NotFound(format!("No user of this partner has this {key}.")))?;
    Ok(Json(UserStatus::of(&record)?))
}

pub(super) async fn own_prospect(
    state: &AppState,
    partner: PartnerId,
    user_id: &str,
) -> Result<ProspectRecord, ApiError> {
    let not_found = || ApiError::NotFound("No user of this partner has this userId.".into());
    let id: PublicUserId = user_id.parse().map_err(|_| not_found())?;
    state.store.find_prospect(partner, Lookup::PublicId(id.as_str())).await?.ok_or_else(not_found)
}

/// The stored public id of a record read back as the typed id.
pub(super) fn own_id(record: &ProspectRecord) -> Result<PublicUserId, ApiError> {
    record.public_id.parse().map_err(|_| ApiError::Internal(anyhow::anyhow!("user {}: stored public id", record.id)))
}

pub(super) fn move_error(err: MoveError) -> ApiError {
    match err {
        MoveError::NotFound => ApiError::NotFound("No user of this partner has this userId.".into()),
        MoveError::WrongState(state) => {
            ApiError::Conflict(format!("The user cannot make this move now: it is {state}."))
        }
        MoveError::Duplicate(which) => duplicate_error(vec![FieldError {
            field: match which {
                Duplicate::Phone => "phoneNumber".into(),
                Duplicate::Email => "email".into(),
            },
            message: "is already registered to another user of this partner".into(),
        }]),
        MoveError::IdentityVerified => ApiError::Conflict(
            "The identity was verified against a document: names and date of birth can no longer change.".into(),
        ),
        MoveError::KycNotConfigured => {
            ApiError::Conflict("Identity verification is not configured for this partner yet.".into())
        }
        MoveError::NothingChanged => {
            ApiError::invalid_field(INVALID, "body", "changes nothing: send the corrected fields")
        }
        // Holds are taken on compliance cases, which partners do not decide.
        MoveError::Held { .. } => ApiError::Internal(anyhow::anyhow!("{err} on a partner's move")),
        MoveError::Store(err) => err.into(),
    }
}

/// A PATCH of the registration's wire form: the given fields replace the stored ones, and null
/// removes an optional one.
fn patched(stored: &Prospect, patch: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = to_wire(stored);
    for (key, value) in patch {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    merged
}

/// Correct a soft-failed registration: the given fields replace the stored ones (null removes an
/// optional field) and the validators they affect run again.
#[utoipa::path(patch, path = "/users/{userId}", tag = "Seed 002: prospects and CIP",
    security(("bearer" = []), ("partnerApiKey" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>")),
    request_body(content = ProspectCorrection, description = "Any of the register-user-v2 fields: they replace the stored ones"),
    responses(
        (status = 200, body = UserStatus, description = "Validation restarted"),
        BadRequest, NotFound,
        (status = 409, body = super::error::Problem, content_type = "application/problem+json", description = "Not UpgradeSoftFailed, or a duplicate phone/e-mail"),
        UnsupportedMediaType,
    ))]
pub async fn correct(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<UserStatus>, ApiError> {
    let patch = object(body)?;
    let record = own_prospect(&state, partner.id, &user_id).await?;
    if record.cip_state()?.is_none() {
        // Seed 000/001 users, and sign-up users before their profile: no registration to correct.
        return Err(ApiError::Conflict("The user is not in onboarding: there is no registration to correct.".into()));
    }
    let corrected = parse_registration(&patched(&record.prospect()?, &patch), today())
        .map_err(|errors| ApiError::Validation { detail: INVALID.into(), errors })?;
    let actor = format!("partner:{}", partner.id);
    let correction = Correction { user: own_id(&record)?, partner: partner.id, prospect: corrected, actor };
    let to = onboarding::correct(&state.store, correction, now_ms()).await.map_err(move_error)?;
    wake_checks(&state);
    Ok(Json(UserStatus::new(record.public_id, Some(to))))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    user_id: String,
    events: Vec<EventView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TimelineEvent)]
pub struct EventView {
    /// RFC 3339.
    at: String,
    from_status: Option<String>,
    from_status_detail: Option<String>,
    status: String,
    status_detail: String,
    reason: String,
    actor: String,
}

impl From<UserEvent> for EventView {
    fn from(e: UserEvent) -> Self {
        Self {
            at: super::rfc3339(e.at),
            from_status: e.from_status,
            from_status_detail: e.from_detail,
            status: e.to_status,
            status_detail: e.to_detail,
            reason: e.reason,
            actor: e.actor,
        }
    }
}

/// A user's timeline: every CIP transition, oldest first (append-only).
pub async fn timeline(state: &AppState, record: &ProspectRecord) -> Result<Timeline, ApiError> {
    let events = state.store.user_events(record.id).await?;
    Ok(Timeline { user_id: record.public_id.clone(), events: events.into_iter().map(EventView::from).collect() })
}

/// The user's CIP events: from, to, why and who.
#[utoipa::path(get, path = "/users/{userId}/events", operation_id = "userEvents", tag = "Seed 002: prospects and CIP",
    security(("bearer" = []), ("partnerApiKey" = [])),
    params(("userId" = String, Path, description = "usr:<uuid>")),
    responses(
        (status = 200, body = Timeline),
        NotFound,
    ))]
pub async fn events(
    State(state): State<AppState>,
    AnyPartner(partner): AnyPartner,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<Timeline>, ApiError> {
    let record = own_prospect(&state, partner.id, &user_id).await?;
    Ok(Json(timeline(&state, &record).await?))
}

/// Seed 002's `RegisterUserParams`, as `parse_registration` reads it (field by field, so that
/// every problem is reported at once). Described here for the OpenAPI document; never built.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({
    "firstName": "Ana", "middleName": "María", "lastName": "Hernández", "secondLastName": "Gómez",
    "gender": "Female", "dateOfBirth": "1990-05-17", "email": "ana@correo.mx",
    "phoneNumber": "+5215521206703", "language": "es", "street": "Blvd. Kukulcan Km. 4.5",
    "city": "Cancún", "state": "MX-ROO", "country": "MX", "addressLatitude": 21.1357, "addressLongitude": -86.7435
}))]
#[allow(dead_code)]
pub struct RegisterUserParams {
    /// Legal first name(s). Example: Ana.
    #[schema(min_length = 1, max_length = 100)]
    first_name: String,
    /// Middle name when collected. Strongly recommended to avoid OFAC matches.
    #[schema(min_length = 1, max_length = 100)]
    middle_name: Option<String>,
    /// Primary legal last name (e.g. paternal surname).
    #[schema(min_length = 1, max_length = 100)]
    last_name: String,
    /// Second last name when used (e.g. maternal surname). Strongly recommended to avoid OFAC matches.
    #[schema(min_length = 1, max_length = 100)]
    second_last_name: Option<String>,
    gender: Option<crate::domain::prospect::Gender>,
    /// ISO 8601 (YYYY-MM-DD or a full date-time); a real date, age at least 18 and under 100.
    /// Strongly recommended to avoid OFAC matches.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}")]
    date_of_birth: Option<String>,
    /// Unique per partner. Strongly recommended.
    #[schema(format = Email)]
    email: Option<String>,
    /// A mobile number in E.164, with country code; unique per partner.
    #[schema(pattern = r"^\+[1-9]\d{6,14}$")]
    phone_number: String,
    language: Option<crate::domain::prospect::Language>,
    /// Street and number.
    street: Option<String>,
    city: Option<String>,
    /// ISO 3166-2 code of `country` (`MX-ROO`) or the state's short name (`DF`, `JA`).
    state: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[schema(pattern = "^[A-Z]{2}$")]
    country: Option<String>,
    /// A Google Maps Place Details object of the address.
    #[schema(value_type = Option<Object>)]
    place_detail: Option<Value>,
    /// Latitude of the address (with `addressLongitude`).
    #[schema(minimum = -90, maximum = 90)]
    address_latitude: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    address_longitude: Option<f64>,
    /// Latitude of the user's location (with `userLongitude`).
    #[schema(minimum = -90, maximum = 90)]
    user_latitude: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    user_longitude: Option<f64>,
}

/// `RegisterUserParams` with other required fields and without some: a correction names only
/// what changes; a seed-003 profile has no `email` (it is the sign-up address).
fn registration_variant(
    required: &[&str],
    without: &[&str],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::PartialSchema;
    use utoipa::openapi::schema::Schema;
    let mut schema = RegisterUserParams::schema();
    if let utoipa::openapi::RefOr::T(Schema::Object(object)) = &mut schema {
        object.required = required.iter().map(|field| field.to_string()).collect();
        object.properties.retain(|name, _| !without.contains(&name.as_str()));
        if let Some(serde_json::Value::Object(example)) = object.example.as_mut() {
            example.retain(|name, _| !without.contains(&name.as_str()));
        }
    }
    schema
}

/// `PATCH /users/{userId}`: any of the registration's fields, merged into the stored ones.
pub struct ProspectCorrection;

impl utoipa::PartialSchema for ProspectCorrection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        registration_variant(&[], &[])
    }
}

impl utoipa::ToSchema for ProspectCorrection {}

/// `PUT /me/profile`: the registration's person fields; the e-mail is the sign-up address.
pub struct ProfileParams;

impl utoipa::PartialSchema for ProfileParams {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        registration_variant(&["firstName", "lastName", "phoneNumber"], &["email"])
    }
}

impl utoipa::ToSchema for ProfileParams {}

/// `getUserTokenV2`: exactly one of the three.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(min_properties = 1, max_properties = 1, example = json!({"phoneNumber": "+5215521206703"}))]
#[allow(dead_code)]
pub struct UserLookup {
    /// `usr:<uuid>`.
    #[schema(pattern = "^usr:[0-9a-f-]{36}$")]
    user_id: Option<String>,
    /// E.164.
    #[schema(pattern = r"^\+[1-9]\d{6,14}$")]
    phone_number: Option<String>,
    #[schema(format = Email)]
    email: Option<String>,
}
