//! A sanctions list publication as data: its files and what parsing them counted.

/// The four files of one list publication, as downloaded.
#[derive(Clone, Default)]
pub struct ListFiles {
    pub sdn: Vec<u8>,
    pub alt: Vec<u8>,
    pub add: Vec<u8>,
    pub comments: Vec<u8>,
}

impl ListFiles {
    /// The names the Treasury publishes them under, with the field each one fills.
    pub const NAMES: [&'static str; 4] = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"];

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            "sdn.csv" => Some(&self.sdn),
            "alt.csv" => Some(&self.alt),
            "add.csv" => Some(&self.add),
            "sdn_comments.csv" => Some(&self.comments),
            _ => None,
        }
    }

    pub fn set(&mut self, name: &str, bytes: Vec<u8>) {
        match name {
            "sdn.csv" => self.sdn = bytes,
            "alt.csv" => self.alt = bytes,
            "add.csv" => self.add = bytes,
            "sdn_comments.csv" => self.comments = bytes,
            _ => {}
        }
    }

    /// SHA-256 over the four files, each prefixed by its name and length: the list version's identity.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for name in Self::NAMES {
            let bytes = self.get(name).unwrap_or_default();
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
