//! Addresses as seed 002 sends them: ISO 3166-1 countries, ISO 3166-2 subdivisions (or the short
//! names partners use for them), Google Maps Place Details, and coordinates.
//!
//! Country and subdivision codes come from `rust_iso3166`; the short names (`DF`, `JA`, Google's
//! `Q.R.`) are not in any standard, so the table below is ours and documented in the README.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// An ISO 3166-1 alpha-2 country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Country(&'static str);

impl Country {
    /// Upper-case `MX`; lower case is refused (the seed says "ISO 3166-1 alpha-2").
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 2 || !raw.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        rust_iso3166::from_alpha2(raw).map(|c| Country(c.alpha2))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// Short names that are not ISO 3166-2 codes but that partners (and Google Maps' `short_name`)
/// use, per country: (alias, ISO 3166-2 code). Matching ignores case, dots and spaces.
///
/// Mexico: the two-letter state abbreviations of the seed (`DF`, `JA`) and of carriers, the old
/// ISO code `MX-DIF` and `CDMX` for Mexico City (ISO `MX-CMX` since 2017), and Google's
/// abbreviations (`Jal.`, `Q.R.`, `N.L.`, `Méx.`, …). For the US (and any other country) the
/// part after the dash is the usual short name (`CA`, `TX`), which is accepted everywhere.
const SHORT_NAMES: &[(&str, &str, &str)] = &[
    ("MX", "AG", "MX-AGU"),
    ("MX", "AGS", "MX-AGU"),
    ("MX", "BC", "MX-BCN"),
    ("MX", "BS", "MX-BCS"),
    ("MX", "CM", "MX-CAM"),
    ("MX", "CAMP", "MX-CAM"),
    ("MX", "CS", "MX-CHP"),
    ("MX", "CHIS", "MX-CHP"),
    ("MX", "CH", "MX-CHH"),
    ("MX", "CHIH", "MX-CHH"),
    ("MX", "CO", "MX-COA"),
    ("MX", "COAH", "MX-COA"),
    ("MX", "CL", "MX-COL"),
    ("MX", "DF", "MX-CMX"),
    ("MX", "DIF", "MX-CMX"),
    ("MX", "CX", "MX-CMX"),
    ("MX", "CDMX", "MX-CMX"),
    ("MX", "DG", "MX-DUR"),
    ("MX", "DGO", "MX-DUR"),
    ("MX", "GT", "MX-GUA"),
    ("MX", "GTO", "MX-GUA"),
    ("MX", "GR", "MX-GRO"),
    ("MX", "HG", "MX-HID"),
    ("MX", "HGO", "MX-HID"),
    ("MX", "JA", "MX-JAL"),
    ("MX", "EM", "MX-MEX"),
    ("MX", "EDOMEX", "MX-MEX"),
    ("MX", "MI", "MX-MIC"),
    ("MX", "MICH", "MX-MIC"),
    ("MX", "MO", "MX-MOR"),
    ("MX", "NA", "MX-NAY"),
    ("MX", "NL", "MX-NLE"),
    ("MX", "OA", "MX-OAX"),
    ("MX", "PU", "MX-PUE"),
    ("MX", "QT", "MX-QUE"),
    ("MX", "QRO", "MX-QUE"),
    ("MX", "QR", "MX-ROO"),
    ("MX", "QROO", "MX-ROO"),
    ("MX", "SL", "MX-SLP"),
    ("MX", "SI", "MX-SIN"),
    ("MX", "SO", "MX-SON"),
    ("MX", "TB", "MX-TAB"),
    ("MX", "TM", "MX-TAM"),
    ("MX", "TAMPS", "MX-TAM"),
    ("MX", "TL", "MX-TLA"),
    ("MX", "TLAX", "MX-TLA"),
    ("MX", "VE", "MX-VER"),
    ("MX", "YU", "MX-YUC"),
    ("MX", "ZA", "MX-ZAC"),
    ("MX", "ZAC", "MX-ZAC"),
];

/// Upper case, without dots, spaces, dashes or accents: `Q. R.` → `QR`, `Méx.` → `MEX`.
fn squeeze(raw: &str) -> String {
    deunicode::deunicode(raw).chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

/// An ISO 3166-2 subdivision code (`MX-JAL`), resolved from what a partner sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subdivision(&'static str);

impl Subdivision {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// Resolves what a partner sent as `state` to the ISO 3166-2 code of a subdivision of `country`:
/// the code itself (`MX-JAL`), its part after the dash (`JAL`, `CA`), a short name from the table
/// above (`JA`, `DF`, `MX-DIF`), or the subdivision's name (`Jalisco`, `Ciudad de México`).
pub fn subdivision(country: Country, raw: &str) -> Option<Subdivision> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 100 {
        return None;
    }
    let entry = rust_iso3166::from_alpha2(country.as_str())?;
    let subdivisions = entry.subdivisions()?;
    let wanted = squeeze(raw);
    let local = wanted.strip_prefix(country.as_str()).filter(|_| raw.contains('-')).unwrap_or(&wanted);
    let by_code = subdivisions.iter().find(|s| s.code.split_once('-').is_some_and(|(_, part)| part == local));
    if let Some(found) = by_code {
        return Some(Subdivision(found.code));
    }
    if let Some((_, _, code)) = SHORT_NAMES.iter().find(|(c, alias, _)| *c == country.as_str() && *alias == local) {
        return Some(Subdivision(code));
    }
    let by_name = subdivisions.iter().find(|s| squeeze(s.name) == wanted);
    by_name.map(|s| Subdivision(s.code))
}

/// A point in WGS 84 degrees, in range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

impl LatLng {
    pub fn new(lat: f64, lng: f64) -> Option<Self> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng)).then_some(Self { lat, lng })
    }
}

/// How far outside a country's box a point may be and still count as in it: boxes are drawn
/// around the mainland (Cancún's coast is on the edge of Mexico's), roughly 110 km.
const BOX_MARGIN_DEGREES: f64 = 1.0;

/// Boxes that the public-domain table leaves out: territory far from the mainland box.
const EXTRA_BOXES: &[(&str, [f64; 4])] = &[
    ("US", [-179.2, 51.2, -129.9, 71.4]), // Alaska
    ("US", [-160.3, 18.9, -154.8, 22.3]), // Hawaii
    ("US", [-82.0, 24.4, -80.0, 25.3]),   // Florida Keys
];

/// Country bounding boxes (`data/reference/country-bounding-boxes.json`, public domain, see its
/// README), as `[min_lng, min_lat, max_lng, max_lat]`.
static BOXES: LazyLock<HashMap<String, Vec<[f64; 4]>>> = LazyLock::new(|| {
    let raw: HashMap<String, (String, [f64; 4])> =
        serde_json::from_str(include_str!("../../data/reference/country-bounding-boxes.json"))
            .expect("the shipped bounding-box table is valid JSON");
    let mut boxes: HashMap<String, Vec<[f64; 4]>> = raw.into_iter().map(|(code, (_, b))| (code, vec![b])).collect();
    for (code, extra) in EXTRA_BOXES {
        boxes.entry((*code).to_owned()).or_default().push(*extra);
    }
    boxes
});

/// Whether `point` lies in (or within the margin of) the country; `None` when we have no box for it.
pub fn in_country(country: Country, point: LatLng) -> Option<bool> {
    let boxes = BOXES.get(country.as_str())?;
    let m = BOX_MARGIN_DEGREES;
    Some(boxes.iter().any(|[min_lng, min_lat, max_lng, max_lat]| {
        point.lat >= min_lat - m && point.lat <= max_lat + m && point.lng >= min_lng - m && point.lng <= max_lng + m
    }))
}

/// A Google Maps Place Details result (the fields Onboard reads; others are kept as sent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlaceDetail {
    pub place_id: String,
    pub formatted_address: String,
    pub address_components: Vec<AddressComponent>,
    pub geometry: Geometry,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AddressComponent {
    pub long_name: String,
    pub short_name: String,
    pub types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Geometry {
    pub location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
}

impl PlaceDetail {
    /// Parses and checks the shape: non-empty ids, components with names and types, a location
    /// in range. The message names the first problem.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        let place: PlaceDetail = serde_json::from_value(value.clone())
            .map_err(|e| format!("is not a Google Maps Place Details object: {e}"))?;
        if place.place_id.trim().is_empty() {
            return Err("place_id must not be empty".into());
        }
        if place.formatted_address.trim().is_empty() {
            return Err("formatted_address must not be empty".into());
        }
        if place.address_components.iter().any(|c| c.long_name.trim().is_empty() || c.types.is_empty()) {
            return Err("every address component needs a long_name and types".into());
        }
        if place.location().is_none() {
            return Err("geometry.location must have lat in [-90, 90] and lng in [-180, 180]".into());
        }
        Ok(place)
    }

    pub fn location(&self) -> Option<LatLng> {
        LatLng::new(self.geometry.location.lat, self.geometry.location.lng)
    }

    /// The first component of the given type (`country`, `administrative_area_level_1`, …).
    pub fn component(&self, kind: &str) -> Option<&AddressComponent> {
        self.address_components.iter().find(|c| c.types.iter().any(|t| t == kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx() -> Country {
        Country::parse("MX").unwrap()
    }

    #[test]
    fn countries_are_upper_case_alpha2() {
        assert_eq!(Country::parse("MX").map(Country::as_str), Some("MX"));
        for bad in ["mx", "MEX", "XX", "", "M"] {
            assert_eq!(Country::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn mexican_states_by_code_short_name_and_name() {
        for (raw, code) in [
            ("MX-JAL", "MX-JAL"),
            ("JAL", "MX-JAL"),
            ("JA", "MX-JAL"),
            ("Jal.", "MX-JAL"),
            ("Jalisco", "MX-JAL"),
            ("DF", "MX-CMX"),
            ("MX-DIF", "MX-CMX"),
            ("MX-CMX", "MX-CMX"),
            ("CDMX", "MX-CMX"),
            ("Ciudad de Mexico", "MX-CMX"),
            ("Ciudad de México", "MX-CMX"),
            ("Q.R.", "MX-ROO"),
            ("MX-ROO", "MX-ROO"),
            ("N.L.", "MX-NLE"),
            ("Méx.", "MX-MEX"),
            ("EM", "MX-MEX"),
        ] {
            assert_eq!(subdivision(mx(), raw).map(Subdivision::as_str), Some(code), "{raw}");
        }
        for bad in ["XX", "US-CA", "CA", "", "Texas", "MX-"] {
            assert_eq!(subdivision(mx(), bad), None, "{bad}");
        }
    }

    #[test]
    fn us_states_by_usps_code() {
        let us = Country::parse("US").unwrap();
        assert_eq!(subdivision(us, "CA").map(Subdivision::as_str), Some("US-CA"));
        assert_eq!(subdivision(us, "US-TX").map(Subdivision::as_str), Some("US-TX"));
        assert_eq!(subdivision(us, "New York").map(Subdivision::as_str), Some("US-NY"));
        assert_eq!(subdivision(us, "JA"), None);
    }

    #[test]
    fn bounding_boxes() {
        let cancun = LatLng::new(21.16, -86.85).unwrap();
        assert_eq!(in_country(mx(), cancun), Some(true));
        let madrid = LatLng::new(40.4, -3.7).unwrap();
        assert_eq!(in_country(mx(), madrid), Some(false));
        let honolulu = LatLng::new(21.3, -157.85).unwrap();
        assert_eq!(in_country(Country::parse("US").unwrap(), honolulu), Some(true));
        assert!(LatLng::new(91.0, 0.0).is_none());
        assert!(LatLng::new(0.0, -180.5).is_none());
    }

    #[test]
    fn place_detail_shape() {
        let ok = serde_json::json!({
            "place_id": "ChIJ21P2rgUrTI8Ris1fYjy3Ms4", "formatted_address": "Cancún, Q.R., México",
            "address_components": [{"long_name": "Quintana Roo", "short_name": "Q.R.", "types": ["administrative_area_level_1", "political"]}],
            "geometry": {"location": {"lat": 21.16, "lng": -86.85}}, "url": "kept"
        });
        let place = PlaceDetail::parse(&ok).unwrap();
        assert_eq!(place.component("administrative_area_level_1").unwrap().short_name, "Q.R.");
        let mut bad = ok.clone();
        bad["geometry"]["location"]["lat"] = 95.0.into();
        assert!(PlaceDetail::parse(&bad).is_err());
        assert!(PlaceDetail::parse(&serde_json::json!({"place_id": "x"})).is_err());
    }
}
