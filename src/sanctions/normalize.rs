//! Names to comparable tokens. Listed names and queried names go through the same function, so
//! every rewrite here (transliteration, reordering, gluing, dropping) is applied to both sides.

/// Words that carry no identity: legal forms of companies, articles and connectives. Dropped
/// unless a name consists of nothing else. Sorted for binary search.
const NOISE: &[&str] = &[
    "ag",
    "and",
    "bhd",
    "bv",
    "cia",
    "co",
    "company",
    "corp",
    "corporation",
    "cv",
    "da",
    "de",
    "del",
    "der",
    "des",
    "di",
    "do",
    "dos",
    "du",
    "eirl",
    "et",
    "fzc",
    "fzco",
    "fze",
    "fzllc",
    "gmbh",
    "inc",
    "incorporated",
    "jsc",
    "la",
    "las",
    "le",
    "limited",
    "llc",
    "llp",
    "lp",
    "ltd",
    "ltda",
    "mr",
    "mrs",
    "oao",
    "of",
    "ooo",
    "pjsc",
    "plc",
    "pte",
    "pty",
    "pvt",
    "rl",
    "sa",
    "sac",
    "saic",
    "sal",
    "sarl",
    "sas",
    "sdn",
    "spa",
    "srl",
    "the",
    "van",
    "von",
    "y",
    "zao",
];

/// Particles that transliterations write either apart or glued to the next word
/// (`AL ZAWAHIRI` / `ALZAWAHIRI`, `ABDUL RAHMAN` / `ABDULRAHMAN`): always glued here.
const GLUED: &[&str] = &["abd", "abdel", "abdul", "abu", "al", "bin", "bint", "el", "ibn", "ul"];

/// Case-folds, transliterates (`Nicolás` → `nicolas`, `Мадуро` → `maduro`), turns `LAST, First`
/// into `First LAST`, splits on punctuation, glues particles and drops noise words.
/// Whether a word is one of the particles that get glued to the next word.
pub fn is_particle(word: &str) -> bool {
    GLUED.binary_search(&word).is_ok()
}

pub fn tokens(name: &str) -> Vec<String> {
    let ascii = deunicode::deunicode(name);
    // `LAST, First Middle`: only one comma means the list's own person format; more commas are
    // part of a company name and stay where they are.
    let ordered = match ascii.split_once(',') {
        Some((last, first)) if !first.contains(',') && !first.trim().is_empty() => format!("{first} {last}"),
        _ => ascii,
    };
    let mut raw: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in ordered.chars() {
        if c.is_ascii_alphanumeric() {
            current.push(c.to_ascii_lowercase());
        } else if c == '\'' || c == '`' || c == '.' {
            // O'BRIEN → obrien; S.A.C. → sac; an initial "J." stays a token (the space ends it).
        } else if !current.is_empty() {
            raw.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        raw.push(current);
    }

    let mut glued: Vec<String> = Vec::with_capacity(raw.len());
    let mut carry = String::new();
    for (i, token) in raw.iter().enumerate() {
        if GLUED.binary_search(&token.as_str()).is_ok() && i + 1 < raw.len() {
            carry.push_str(token);
            continue;
        }
        glued.push(std::mem::take(&mut carry) + token);
    }
    if !carry.is_empty() {
        glued.push(carry);
    }

    let meaningful: Vec<String> = glued.iter().filter(|t| !is_noise(t)).cloned().collect();
    if meaningful.is_empty() { glued } else { meaningful }
}

/// Long legal-form words are recognised through one typo too (`CORPORATOIN`, `LIMTED`), since a
/// misspelt suffix would otherwise count as a name word nobody else has.
const LONG_NOISE: &[&str] = &["company", "corporation", "incorporated", "limited"];

fn is_noise(token: &str) -> bool {
    NOISE.binary_search(&token).is_ok()
        || token.len() >= 6 && LONG_NOISE.iter().any(|w| strsim::damerau_levenshtein(token, w) <= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Vec<String> {
        tokens(name)
    }

    #[test]
    fn word_lists_are_sorted() {
        assert!(NOISE.windows(2).all(|w| w[0] < w[1]));
        assert!(GLUED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn goldens() {
        assert_eq!(t("MADURO MOROS, Nicolas"), ["nicolas", "maduro", "moros"]);
        assert_eq!(t("Nicolás Maduro"), ["nicolas", "maduro"]);
        assert_eq!(t("AL-ZAWAHIRI, Ayman"), ["ayman", "alzawahiri"]);
        assert_eq!(t("Ayman al Zawahiri"), ["ayman", "alzawahiri"]);
        assert_eq!(t("ABDUL RAHMAN, Yasin"), ["yasin", "abdulrahman"]);
        assert_eq!(t("O'BRIEN, Sean"), ["sean", "obrien"]);
        assert_eq!(t("D'S SUPERMARKET COMPANY LTD."), ["ds", "supermarket"]);
        assert_eq!(t("AIRCRAFT, AVIONICS, PARTS & SUPPORT LTD."), ["aircraft", "avionics", "parts", "support"]);
        assert_eq!(t("Banco de Venezuela, S.A."), ["banco", "venezuela"]);
        assert_eq!(t("11420 CORP."), ["11420"]);
        assert_eq!(t("THE COMPANY"), ["the", "company"]);
        assert_eq!(t("Мадуро Николас"), ["maduro", "nikolas"]);
        assert_eq!(t("  Gómez-Pérez,  José  "), ["jose", "gomez", "perez"]);
        assert_eq!(t("al"), ["al"]);
        assert_eq!(t("GREEN PINE ASSOCIATED CORPOARTION"), ["green", "pine", "associated"]);
        assert_eq!(t("KRAKERN LIMTED"), ["krakern"]);
        assert_eq!(t(""), Vec::<String>::new());
    }
}
