//! A sanctions list publication as data: its files and what parsing them counted.

crate::domain::wire_enum! {
    /// A sanctions list Onboard can load, each from its own publication and format.
    #[derive(PartialOrd, Ord, serde::Serialize, serde::Deserialize, clap::ValueEnum, utoipa::ToSchema)]
    #[serde(rename_all = "kebab-case")]
    pub enum ListSource {
        /// OFAC's Specially Designated Nationals list (legacy CSV files).
        OfacSdn = "ofac-sdn",
        /// OFAC's consolidated non-SDN lists (the same CSV family, `cons_*.csv`).
        OfacCons = "ofac-cons",
        /// The UN Security Council Consolidated List (XML).
        Un = "un",
        /// The EU consolidated financial sanctions list (XML).
        Eu = "eu",
        /// The UK Sanctions List (XML).
        Uk = "uk",
    }
}

impl ListSource {
    /// The files of one publication, under the names they are published (and stored) as; the
    /// first is required, the others may be missing.
    pub fn file_names(self) -> &'static [&'static str] {
        match self {
            ListSource::OfacSdn => &["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"],
            ListSource::OfacCons => &["cons_prim.csv", "cons_alt.csv", "cons_add.csv", "cons_comments.csv"],
            ListSource::Un => &["consolidated.xml"],
            ListSource::Eu => &["eu_fsf.xml"],
            ListSource::Uk => &["UK_Sanctions_List.xml"],
        }
    }

    /// Whether `--url` names a directory the files are under (OFAC's CSV families) rather than
    /// the one file itself.
    pub fn url_is_base(self) -> bool {
        self.file_names().len() > 1
    }
}

/// The files of one list publication, as downloaded.
#[derive(Clone)]
pub struct ListFiles {
    source: ListSource,
    /// In `ListSource::file_names` order; a file not published is empty.
    files: Vec<Vec<u8>>,
}

impl Default for ListFiles {
    fn default() -> Self {
        Self::new(ListSource::OfacSdn)
    }
}

impl ListFiles {
    pub fn new(source: ListSource) -> Self {
        Self { source, files: vec![Vec::new(); source.file_names().len()] }
    }

    /// A publication from its files in `ListSource::file_names` order (missing ones empty, extra
    /// ones ignored).
    pub fn of(source: ListSource, files: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let mut of = Self::new(source);
        for (slot, bytes) in of.files.iter_mut().zip(files) {
            *slot = bytes;
        }
        of
    }

    pub fn source(&self) -> ListSource {
        self.source
    }

    /// The file names of this list's publications.
    pub fn names(&self) -> &'static [&'static str] {
        self.source.file_names()
    }

    /// A file's bytes (empty when it was not published); `None` for a name this list has not.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let at = self.names().iter().position(|n| *n == name)?;
        Some(&self.files[at])
    }

    /// A file to change in place; `None` for a name this list has not.
    pub fn file_mut(&mut self, name: &str) -> Option<&mut Vec<u8>> {
        let at = self.names().iter().position(|n| *n == name)?;
        Some(&mut self.files[at])
    }

    /// The `at`-th file in `file_names` order.
    pub fn nth(&self, at: usize) -> &[u8] {
        self.files.get(at).map(Vec::as_slice).unwrap_or_default()
    }

    /// Sets a file; false (and nothing set) for a name this list has not.
    pub fn set(&mut self, name: &str, bytes: Vec<u8>) -> bool {
        match self.names().iter().position(|n| *n == name) {
            Some(at) => {
                self.files[at] = bytes;
                true
            }
            None => false,
        }
    }

    /// SHA-256 over the files, each prefixed by its name and length: the list version's
    /// identity. The names differ from list to list, so two lists never share a digest.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for (name, bytes) in self.names().iter().zip(&self.files) {
            hasher.update(name.as_bytes());
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().into()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListCounts {
    pub entries: u64,
    pub alt_rows: u64,
    pub address_rows: u64,
    pub comment_rows: u64,
    /// alt/add/comment rows whose `ent_num` is not in sdn.csv: skipped, not fatal.
    pub orphan_rows: u64,
}

/// The lists a partner's users are screened against: one or more, each once, in list order.
/// Stored and written as names joined by commas (`ofac-sdn,un`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSelection(Vec<ListSource>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSelection {
    #[error("name at least one list")]
    Empty,
    #[error("{0:?} is not a list (one of {names})", names = ListSource::NAMES)]
    Unknown(String),
}

impl ListSelection {
    pub fn parse(text: &str) -> Result<Self, InvalidSelection> {
        let mut lists = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let list = ListSource::parse(name).ok_or_else(|| InvalidSelection::Unknown(name.to_owned()))?;
            if !lists.contains(&list) {
                lists.push(list);
            }
        }
        if lists.is_empty() {
            return Err(InvalidSelection::Empty);
        }
        lists.sort();
        Ok(Self(lists))
    }

    pub fn contains(&self, list: ListSource) -> bool {
        self.0.contains(&list)
    }

    pub fn lists(&self) -> &[ListSource] {
        &self.0
    }

    /// The chosen lists that are not among `loaded`, joined for a message (`un, eu`); `None`
    /// when every one is.
    pub fn missing(&self, loaded: impl Iterator<Item = ListSource> + Clone) -> Option<String> {
        let missing: Vec<&str> =
            self.0.iter().filter(|l| !loaded.clone().any(|have| have == **l)).map(|l| l.as_str()).collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}

impl std::fmt::Display for ListSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|l| l.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_names_round_trip_on_every_surface() {
        for list in ListSource::ALL {
            assert_eq!(ListSource::parse(list.as_str()), Some(*list));
            assert_eq!(serde_json::to_value(list).unwrap(), list.as_str());
            let value = <ListSource as clap::ValueEnum>::to_possible_value(list).unwrap();
            assert_eq!(value.get_name(), list.as_str());
        }
    }

    #[test]
    fn a_selection_is_one_or_more_known_lists() {
        let chosen = ListSelection::parse(" un,ofac-sdn , un").unwrap();
        assert_eq!(chosen.lists(), [ListSource::OfacSdn, ListSource::Un]);
        assert_eq!(chosen.to_string(), "ofac-sdn,un");
        assert!(chosen.contains(ListSource::Un) && !chosen.contains(ListSource::Eu));
        assert_eq!(chosen.missing([ListSource::Un, ListSource::Eu].into_iter()).as_deref(), Some("ofac-sdn"));
        assert_eq!(chosen.missing(ListSource::ALL.iter().copied()), None);
        assert_eq!(ListSelection::parse(" , "), Err(InvalidSelection::Empty));
        assert_eq!(ListSelection::parse("un,OFAC"), Err(InvalidSelection::Unknown("OFAC".into())));
    }

    #[test]
    fn every_list_has_its_own_digest() {
        let digests: std::collections::HashSet<[u8; 32]> =
            ListSource::ALL.iter().map(|l| ListFiles::new(*l).digest()).collect();
        assert_eq!(digests.len(), ListSource::ALL.len());
    }
}
