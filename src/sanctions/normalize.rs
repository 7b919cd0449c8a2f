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
const GLUED: &[&str] = &["abd", "abdel", "abdul", "abo", "abou", "abu", "al", "ben", "bin", "bint", "el", "ibn", "ul"];

/// Case-folds, transliterates (`Nicolás` → `nicolas`, `Мадуро` → `maduro`), turns `LAST, First`
/// into `First LAST`, splits on punctuation, glues particles and drops noise words.
/// Whether a word is one of the particles that get glued to the next word.
pub fn is_particle(word: &str) -> bool {
    GLUED.binary_search(&word).is_ok()
}

pub fn tokens(name: &str) -> Vec<String> {
    tokens_with(name, true)
}

/// The tokens with particles left apart, when `tokens` glued any: a listed name is indexed both
/// ways, so a query that leaves a particle out (`Mohamed Ali` for `Mohamed BEN ALI`) still meets
/// it, and one that writes it glued or apart meets it too.
pub fn tokens_apart(name: &str) -> Option<Vec<String>> {
    let (glued, apart) = (tokens_with(name, true), tokens_with(name, false));
    (glued != apart).then_some(apart)
}

fn tokens_with(name: &str, glue: bool) -> Vec<String> {
    let ascii = deunicode::deunicode(&east_asian_names(name));
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
        if glue && GLUED.binary_search(&token.as_str()).is_ok() && i + 1 < raw.len() {
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

/// Korean and Chinese names written in their own scripts, romanised the way the lists write them
/// (deunicode alone gives `coeryonghae` for 최룡해 and `Ma Xiao Hong` for 马晓红, which meet
/// neither `CHOE, Ryong Hae` nor `MA, Xiaohong`). A run of Hangul or Han characters is read as a
/// name, surname first: Hangul syllables by McCune–Reischauer without diacritics (what the North
/// Korean entries use), each given-name syllable a word; Han characters in pinyin, the given-name
/// syllables joined into one word. Text in other scripts is left to deunicode.
fn east_asian_names(name: &str) -> std::borrow::Cow<'_, str> {
    #[derive(Clone, Copy, PartialEq)]
    enum Script {
        Hangul,
        Han,
    }
    let script = |c: char| match c {
        '\u{AC00}'..='\u{D7A3}' => Some(Script::Hangul),
        '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' => Some(Script::Han),
        _ => None,
    };
    if !name.chars().any(|c| script(c).is_some()) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() * 2);
    let mut run: Vec<char> = Vec::new();
    let mut run_script = None;
    let flush = |run: &mut Vec<char>, run_script: Option<Script>, out: &mut String| {
        let syllables: Vec<String> = run
            .iter()
            .map(|&c| match run_script {
                Some(Script::Hangul) => hangul_syllable(c),
                _ => deunicode::deunicode_char(c).unwrap_or_default().trim().to_lowercase(),
            })
            .collect();
        if let Some((surname, given)) = syllables.split_first() {
            out.push(' ');
            out.push_str(surname);
            out.push(' ');
            match run_script {
                Some(Script::Hangul) => out.push_str(&given.join(" ")),
                _ => out.push_str(&given.concat()),
            }
            out.push(' ');
        }
        run.clear();
    };
    for c in name.chars() {
        let this = script(c);
        if this.is_some() && this == run_script {
            run.push(c);
            continue;
        }
        flush(&mut run, run_script, &mut out);
        run_script = this;
        match this {
            Some(_) => run.push(c),
            None => out.push(c),
        }
    }
    flush(&mut run, run_script, &mut out);
    std::borrow::Cow::Owned(out)
}

/// One Hangul syllable as a word of its own, the way the OFAC list writes North Korean names:
/// McCune–Reischauer without diacritics or aspiration marks, word-initial ㄱ/ㄷ/ㅂ as k/t/p
/// (병 `pyong`, 철 `chol`), but ㅈ as `j` as North Korea's own romanisation writes it (정 `jong`,
/// `KIM, Jong Un`); 이/리 as `ri` (the list's spelling of the surname Ri/Yi/Lee). Tables: the
/// jamo order of the Unicode Hangul Syllables block; the jamo values of McCune–Reischauer (ALA-LC
/// Korean romanization table), with the list's ㅈ.
fn hangul_syllable(c: char) -> String {
    const INITIAL: [&str; 19] =
        ["k", "kk", "n", "t", "tt", "r", "m", "p", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h"];
    const MEDIAL: [&str; 21] = [
        "a", "ae", "ya", "yae", "o", "e", "yo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu", "u",
        "ui", "i",
    ];
    const FINAL: [&str; 28] = [
        "", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "p", "l", "l", "p", "l", "m", "p", "p", "t", "t", "ng",
        "t", "t", "k", "t", "p", "t",
    ];
    if c == '이' || c == '리' {
        return "ri".into();
    }
    let index = c as u32 - 0xAC00;
    let (initial, medial, last) = ((index / 588) as usize, ((index % 588) / 28) as usize, (index % 28) as usize);
    format!("{}{}{}", INITIAL[initial], MEDIAL[medial], FINAL[last])
}

/// Long legal-form words are recognised through one typo too (`CORPORATOIN`, `LIMTED`), since a
/// misspelt suffix would otherwise count as a name word nobody else has.
const LONG_NOISE: &[&str] = &["company", "corporation", "incorporated", "limited"];

fn is_noise(token: &str) -> bool {
    NOISE.binary_search(&token).is_ok()
        || token.len() >= 6 && LONG_NOISE.iter().any(|w| strsim::damerau_levenshtein(token, w) <= 1)
}

/// The script a name is written in, by its first letter outside ASCII.
pub fn script_of(name: &str) -> &'static str {
    match name.chars().find(|c| !c.is_ascii()).map(u32::from) {
        Some(0x0600..=0x06FF | 0x0750..=0x077F | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF) => "Arabic",
        Some(0x0400..=0x052F) => "Cyrillic",
        Some(0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF) => "Han",
        Some(0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF) => "Hangul",
        Some(0x0370..=0x03FF) => "Greek",
        Some(0x0590..=0x05FF) => "Hebrew",
        _ => "Latin",
    }
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

    #[test]
    fn korean_and_chinese_names_are_romanised_as_the_list_writes_them() {
        assert_eq!(t("최룡해"), ["choe", "ryong", "hae"]);
        assert_eq!(t("리병철"), ["ri", "pyong", "chol"]);
        assert_eq!(t("김정은"), ["kim", "jong", "un"]);
        assert_eq!(t("박"), ["pak"]);
        assert_eq!(t("马晓红"), ["ma", "xiaohong"]);
        assert_eq!(t("周建书"), ["zhou", "jianshu"]);
        assert_eq!(t("王国英"), ["wang", "guoying"]);
        assert_eq!(t("Mr 马晓红"), ["ma", "xiaohong"]);
        assert_eq!(t("CHOE, Ryong Hae"), ["ryong", "hae", "choe"]);
    }
}
