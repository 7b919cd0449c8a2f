//! Names in Arabic script (Arabic and Persian) against a list written in Latin letters. Arabic
//! writes consonants and long vowels, not short vowels, so no transliteration recovers `QASEM`
//! from `قاسم`; what the two spellings share is their consonant skeleton. Each side is reduced to
//! it — letters of one sound class written alike (`q`/`k`/`g`/`kh`/`gh` → `k`: Persian ق is `gh`,
//! as in `GHANI`), vowels, `w`, `y`, ʿayn and hamza dropped, doubles collapsed — and dictionary
//! tokens with the query word's skeleton are its candidates, ranked by how close a vowelled
//! rendering of the Arabic word (long vowels kept) is to them.
//! Letter values: the Arabic and Persian alphabets' usual Latin equivalents in name
//! transliteration (ALA-LC Arabic and Persian romanization tables), grouped by sound class.

/// One word of a query in Arabic script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArabicWord {
    /// What it has in common with its Latin spellings: `قاسم` → `ksm`.
    pub skeleton: String,
    /// A Latin rendering with its long vowels, to rank candidates: `قاسم` → `qasm`.
    pub rendered: String,
    /// It ends in `ه`, which Latin spellings write (`ALLAH`, `TAHA`) or leave out (`SHIHATA`).
    pub silent_h: bool,
    /// The skeleton with the other values names are often spelled with, when it differs:
    /// Persian and Urdu `ث` (s) and `ذ`, `ض`, `ظ` (z) — `فضل` is `FAZAL`, `ثناء اللہ` is
    /// `SANAULLAH` — and Egyptian `ج` (g): `رجب` is `RAGAB`.
    pub regional: Option<String>,
    /// A compound glued over an article, with the article's `l` left out as Latin spellings
    /// assimilate it: `شمس الدين` → `shmsdn` (`SHAMSUDDIN`) beside `shmsldn` (`SHAMSALDIN`).
    pub assimilated: Option<String>,
    /// It starts with ʿayn, which Latin spellings write as a vowel (`علي` is `ALI`).
    pub initial_ayn: bool,
}

fn is_arabic(c: char) -> bool {
    matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}' | '\u{FB50}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}')
}

/// Splits `name` into its Arabic-script words and the rest (left for the usual tokens). With
/// `glue`, the second words of compounds (`الدين`, `الرحمن`, `زاده`, `جان`, `خیل`) are glued to
/// the word before as well, as the list often writes them (`JALALUDDIN`, `AKHUNDZADA`,
/// `WALIJAN`); a screening tries both readings (`SanctionsIndex::screen`).
pub fn split(name: &str, glue: bool) -> (Vec<ArabicWord>, String) {
    if !name.chars().any(is_arabic) {
        return (Vec::new(), name.to_owned());
    }
    let mut words: Vec<ArabicWord> = Vec::new();
    let mut rest = String::new();
    // A particle (`عبد`, `بن`, `أبو` …) joins the next word, as the Latin tokens glue them
    // (`عبد الله` is the list's `ABDALLAH`).
    let mut particle: Option<ArabicWord> = None;
    for word in name.split(|c: char| c.is_whitespace() || c == ',' || c == '-') {
        if word.chars().any(is_arabic) {
            let (skeleton, rendered) = arabic_word(word, false);
            if skeleton.is_empty() {
                continue;
            }
            let regional = Some(arabic_word(word, true).0).filter(|p| *p != skeleton);
            let silent_h = word.ends_with(['ه', 'ہ', 'ھ']);
            let initial_ayn = word.starts_with('ع');
            let word = ArabicWord { skeleton, rendered, silent_h, regional, assimilated: None, initial_ayn };
            let is_particle = PARTICLES.contains(&word.rendered.as_str());
            let word = match particle.take() {
                Some(mut joined) => {
                    joined.join(&word);
                    joined
                }
                None => word,
            };
            match words.last_mut() {
                // Particles chain (`بن عبد العزيز` is the list's `BEN ABDUL AZIZ`, one token).
                _ if is_particle => particle = Some(word),
                // `الله` ends compound names the list writes as one (`KHAYRALLAH`). `الدين` is left
                // apart: the list writes it both ways (`SALAHALDIN`, `SAIF-AL-DIN`), and a listed
                // name with particles is also indexed with them apart, which meets more of them.
                Some(previous) if SUFFIXES.contains(&word.rendered.as_str()) && particle.is_none() => {
                    previous.join(&word)
                }
                Some(previous) if glue && is_compound_tail(&word) && particle.is_none() => previous.glue(&word),
                _ => words.push(word),
            }
        } else {
            rest.push(' ');
            rest.push_str(word);
        }
    }
    // A particle that ends the name stands alone.
    words.extend(particle);
    (words, rest)
}

impl ArabicWord {
    /// Appends `next` as the list writes glued names: skeletons meet without a doubled class.
    fn join(&mut self, next: &ArabicWord) {
        if self.regional.is_some() || next.regional.is_some() {
            let mut regional = self.regional.take().unwrap_or_else(|| self.skeleton.clone());
            push_skeleton(&mut regional, next.regional.as_deref().unwrap_or(&next.skeleton));
            self.regional = Some(regional);
        }
        push_skeleton(&mut self.skeleton, &next.skeleton);
        self.rendered.push_str(&next.rendered);
        self.silent_h = next.silent_h;
    }

    /// The rendering a one-consonant word is compared by: with the vowel Latin spellings write
    /// for an initial ʿayn (`علي` → `ali`, not `li`, which shares no letter position with `ALI`).
    /// Only for one-consonant words: on longer ones the extra vowel brought common names close
    /// to unrelated listed ones (`عبد الله السيد` to `ABDULAHI, Asad`).
    pub fn short_rendering(&self) -> std::borrow::Cow<'_, str> {
        if self.initial_ayn { format!("a{}", self.rendered).into() } else { self.rendered.as_str().into() }
    }

    /// Glues the second word of a compound: as `join`, and also with the article of the second
    /// word assimilated (`assimilated`).
    fn glue(&mut self, next: &ArabicWord) {
        let assimilated = next.rendered.starts_with("al") && next.skeleton.len() > 1 && next.skeleton.starts_with('l');
        let mut without = self.skeleton.clone();
        self.join(next);
        if assimilated {
            push_skeleton(&mut without, &next.skeleton[1..]);
            self.assimilated = Some(without);
        }
    }

    /// The skeletons Latin spellings of the word may have: its own; without the article `ال`,
    /// which they often leave out or assimilate (`الشاهبندر` / `SHAHBANDAR`, `الصبار` /
    /// `ESSABAR`); without a final `ه` they do not write (`شحاته` / `SHIHATA`); without both.
    pub fn skeletons(&self) -> Vec<&str> {
        let mut out = vec![self.skeleton.as_str()];
        out.extend(self.regional.as_deref());
        out.extend(self.assimilated.as_deref());
        if self.rendered.starts_with("al") {
            for at in 0..out.len() {
                if out[at].len() > 1 && out[at].starts_with('l') {
                    out.push(&out[at][1..]);
                }
            }
        }
        if self.silent_h && self.skeleton.len() > 1 && self.skeleton.ends_with('h') {
            for at in 0..out.len() {
                let shorter = &out[at][..out[at].len() - 1];
                if !shorter.is_empty() {
                    out.push(shorter);
                }
            }
        }
        out
    }
}

/// Appends a skeleton to another without doubling the class where they meet.
fn push_skeleton(skeleton: &mut String, tail: &str) {
    let skip = match (skeleton.chars().last(), tail.chars().next()) {
        (Some(a), Some(b)) if a == b => b.len_utf8(),
        _ => 0,
    };
    skeleton.push_str(&tail[skip..]);
}

/// Renderings of the words that end a compound name, joined to the word before them (`الله`).
const SUFFIXES: &[&str] = &["allh"];

/// The second words of compound names that the list writes glued or apart, in Arabic and
/// Persian spelling: al-Din, al-Rahman, -zada, -jan, -khel (Pashto).
const COMPOUND_TAILS: &[&str] = &["الدين", "الدین", "الرحمن", "الرحمان", "زاده", "زادہ", "جان", "خیل", "خيل"];

/// Whether `word` is one of `COMPOUND_TAILS` (compared by rendering, so spelling variants of
/// one letter meet).
fn is_compound_tail(word: &ArabicWord) -> bool {
    static TAILS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAILS.get_or_init(|| COMPOUND_TAILS.iter().map(|t| arabic_word(t, false).1).collect()).contains(&word.rendered)
}

/// Renderings of the particles that are written apart in Arabic script and glued in the list's
/// Latin spellings: ʿabd (`bd`), bin, ibn (`abn`), bint, abu (`abu`, `bu`).
const PARTICLES: &[&str] = &["abn", "abu", "bd", "bn", "bnt", "bu"];

/// Each letter's (sound class, rendering); `None` for letters that carry no consonant.
fn letter(c: char, regional: bool) -> Option<(char, &'static str)> {
    Some(match c {
        'ث' if regional => ('s', "s"),
        'ذ' | 'ض' | 'ظ' if regional => ('z', "z"),
        'ج' if regional => ('k', "g"),
        'ب' => ('b', "b"),
        'پ' => ('b', "p"),
        'ت' | 'ط' => ('t', "t"),
        'ث' => ('t', "th"),
        'ج' => ('j', "j"),
        'چ' => ('k', "ch"),
        'ح' | 'ه' | 'ۀ' | 'ہ' | 'ھ' => ('h', "h"),
        'خ' => ('k', "kh"),
        'د' | 'ض' => ('d', "d"),
        'ذ' => ('d', "dh"),
        'ر' => ('r', "r"),
        'ز' | 'ظ' | 'ژ' => ('z', "z"),
        'س' | 'ص' => ('s', "s"),
        'ش' => ('s', "sh"),
        'غ' => ('k', "gh"),
        'ف' => ('f', "f"),
        'ق' => ('k', "q"),
        'ك' | 'ک' => ('k', "k"),
        'گ' => ('k', "g"),
        'ل' => ('l', "l"),
        'م' => ('m', "m"),
        'ن' => ('n', "n"),
        _ => return None,
    })
}

/// The long vowels (and ta marbuta) as they are rendered; they carry no consonant.
fn vowel(c: char) -> Option<&'static str> {
    Some(match c {
        'ا' | 'آ' | 'أ' | 'إ' | 'ٱ' | 'ة' | 'ۃ' => "a",
        'و' | 'ؤ' => "u",
        'ي' | 'ى' | 'ی' | 'ئ' => "i",
        _ => return None,
    })
}

fn arabic_word(word: &str, regional: bool) -> (String, String) {
    let (mut skeleton, mut rendered) = (String::new(), String::new());
    for c in word.chars() {
        if let Some((class, latin)) = letter(c, regional) {
            if !skeleton.ends_with(class) {
                skeleton.push(class);
            }
            rendered.push_str(latin);
        } else if let Some(latin) = vowel(c) {
            // Word-initial `ي` and `و` are the consonants y and w (`یار` is `YAR`, `ولي` `WALI`).
            let latin = match (rendered.is_empty(), latin) {
                (true, "i") => "y",
                (true, "u") if c != 'ؤ' => "w",
                _ => latin,
            };
            rendered.push_str(latin);
        }
        // ʿayn, hamza, tatweel and the short-vowel marks carry nothing either side agrees on.
    }
    (skeleton, rendered)
}

/// The skeleton of a Latin token of the list (`qasem` → `ksm`, `soleimani` → `slmn`,
/// `ghani` → `kn`, `mohammed` → `mhmd`).
pub fn latin_skeleton(token: &str) -> String {
    let mut skeleton = String::with_capacity(token.len());
    let bytes = token.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // `x` is k and s (`ALEXANDER` / `ALEKSANDR`, `MAXIM` / `MAKSIM`).
        if bytes[i] == b'x' {
            if !skeleton.ends_with('k') {
                skeleton.push('k');
            }
            skeleton.push('s');
            i += 1;
            continue;
        }
        let (class, step) = match (bytes[i], bytes.get(i + 1)) {
            (b'k' | b'g' | b's' | b't' | b'd' | b'z' | b'c' | b'p', Some(b'h')) => (
                match bytes[i] {
                    b'k' | b'g' | b'c' => b'k',
                    b's' => b's',
                    b't' => b't',
                    b'd' => b'd',
                    b'z' => b'z',
                    _ => b'f',
                },
                2,
            ),
            // French spellings of Maghrebi names: `dj` is ج (`DJAMEL`), `c` before e, i, y is س
            // (`LOUNICI`, `BELGACEM`).
            (b'd', Some(b'j')) => (b'j', 2),
            (b'c', Some(b'e' | b'i' | b'y')) => (b's', 1),
            (b'q' | b'g' | b'c', _) => (b'k', 1),
            (b'p', _) => (b'b', 1),
            (b'v', _) => (b'f', 1),
            (b'a' | b'e' | b'i' | b'o' | b'u' | b'y' | b'w', _) => (0, 1),
            (other, _) => (other, 1),
        };
        if class != 0 && !skeleton.ends_with(class as char) {
            skeleton.push(class as char);
        }
        i += step;
    }
    skeleton
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn particles_compounds_articles_and_french_spellings() {
        let skeletons = |name: &str| split(name, false).0.into_iter().map(|w| w.skeleton).collect::<Vec<_>>();
        // Particles glue forward and chain, as the Latin tokens glue them.
        assert_eq!(skeletons("حمادي بن عبد العزيز"), ["hmd", "bnbdlz"]);
        assert_eq!(latin_skeleton("benabdulaziz"), "bnbdlz");
        assert_eq!(skeletons("يحيى عبد الله"), ["h", "bdlh"]);
        // `الله` ends the word before it; `الدين` stays apart.
        assert_eq!(skeletons("ساجدة خير الله طلفاح"), ["sjd", "krlh", "tlfh"]);
        assert_eq!(latin_skeleton("khayrallah"), "krlh");
        // The article and a final `ه` may be left out of the Latin spelling.
        assert_eq!(split("الشاهبندر", false).0[0].skeletons(), ["lshbndr", "shbndr"]);
        assert_eq!(split("شحاته", false).0[0].skeletons(), ["shth", "sht"]);
        assert_eq!(latin_skeleton("shihata"), "sht");
        // Persian and Urdu values, and word-initial y and w.
        assert_eq!(split("فضل", false).0[0].skeletons(), ["fdl", "fzl"]);
        assert!(split("رجب", false).0[0].skeletons().contains(&latin_skeleton("ragab").as_str()));
        assert_eq!(latin_skeleton("fazal"), "fzl");
        assert_eq!(split("ثناء اللہ", false).0[0].skeletons(), ["tnlh", "snlh", "tnl", "snl"]);
        assert_eq!(latin_skeleton("sanaullah"), "snlh");
        assert_eq!(split("یار", false).0[0].rendered, "yar");
        assert_eq!(split("ولي", false).0[0].rendered, "wli");
        // French spellings of Maghrebi names (`FAYCAL` for Fayçal stays out of reach: its `c` is
        // hard by the letters).
        assert_eq!(latin_skeleton("djamel"), skeletons("جمال")[0]);
        assert_eq!(latin_skeleton("belgacem"), skeletons("بلقاسم")[0]);
        assert_eq!(latin_skeleton("lounici"), skeletons("لونيسي")[0]);
    }

    #[test]
    fn arabic_and_latin_spellings_share_a_skeleton() {
        let (words, rest) = split("قاسم سليماني", false);
        assert_eq!(rest.trim(), "");
        let skeletons: Vec<&str> = words.iter().map(|w| w.skeleton.as_str()).collect();
        assert_eq!(skeletons, ["ksm", "slmn"]);
        assert_eq!(latin_skeleton("qasem"), "ksm");
        assert_eq!(latin_skeleton("soleimani"), "slmn");
        assert_eq!(
            split("اسماعیل قاآنی", false).0.iter().map(|w| w.skeleton.clone()).collect::<Vec<_>>(),
            ["sml", "kn"]
        );
        assert_eq!(latin_skeleton("esmail"), "sml");
        assert_eq!(latin_skeleton("ghani"), "kn");
        assert_eq!(split("حماس", false).0[0].skeleton, latin_skeleton("hamas"));
        assert_eq!(split("محمد", false).0[0].skeleton, latin_skeleton("mohammed"));
        assert_eq!(latin_skeleton("muhammad"), "mhmd");
        assert_eq!(split("قاسم", false).0[0].rendered, "qasm");
        assert_eq!(split("Ana حماس", false).1.trim(), "Ana");
        assert!(split("Nicolás Maduro", false).0.is_empty());
    }

    #[test]
    fn compounds_are_glued_in_the_second_reading_with_and_without_the_article() {
        assert_eq!(split("جلال الدين حقانى", false).0.len(), 3);
        let glued = split("جلال الدين حقانى", true).0;
        assert_eq!(glued.len(), 2);
        let shams = &split("شمس الدین", true).0[0];
        for latin in ["shamsuddin", "shamsaldin"] {
            assert!(shams.skeletons().contains(&latin_skeleton(latin).as_str()), "{latin}: {:?}", shams.skeletons());
        }
        assert_eq!(split("ولی جان", true).0[0].skeleton, latin_skeleton("walijan"));
        let akhund = split("احمد جان آخوند زاده", true).0;
        assert_eq!(akhund.len(), 2);
        assert!(akhund[1].skeletons().contains(&latin_skeleton("akhundzada").as_str()), "{:?}", akhund[1].skeletons());
        assert_eq!(split("علي", false).0[0].short_rendering(), "ali");
        assert_eq!(split("ولي", false).0[0].short_rendering(), "wli");
        // Not after a particle: `عبد الرحمن` is glued as a particle already.
        assert_eq!(split("عبد الرحمن", true).0.len(), 1);
    }
}
