//! Masking of phone-like runs (SPEC section 2, "Masking"): the one function used wherever
//! Lantern echoes or keeps free text.
//!
//! A phone-like run is a run of digits (full-width ones too) with single spaces, `-`, `.`, `/`,
//! `_` or parentheses between groups and an optional `+` or `00` prefix, nine or more digits in
//! all, that the phone-number library reads as a possible number for the default region or in
//! international form. Dates, times, crime references and identifiers such as
//! `LC-20261123-004211` stay. Each digit of a run becomes `#`, so the text keeps its length in
//! characters and masking can run before any cutting.

use phonenumber::country;
use serde_json::Value;
use std::sync::OnceLock;

static REGION: OnceLock<country::Id> = OnceLock::new();

/// Sets the default region (`ingest.default_region`) for the whole process, once, at start-up;
/// `GB` until then. A later call changes nothing.
pub fn set_default_region(region: &str) {
    if let Ok(id) = region.to_ascii_uppercase().parse::<country::Id>() {
        let _ = REGION.set(id);
    }
}

fn region() -> country::Id {
    REGION.get().copied().unwrap_or(country::Id::GB)
}

/// The value of a digit, ASCII or full-width.
fn digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + '0' as u32),
        _ => None,
    }
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '/' | '_' | '\u{00A0}')
}

/// Digits a possible number can have at most: 15 in E.164, and a `00` prefix.
const MAX_DIGITS: usize = 17;

/// A chain of digit groups joined by single separators (and parentheses), as written.
struct Chain {
    /// Where the chain starts (its `+` or `(` when it opens with one).
    start: usize,
    plus: bool,
    /// Each group: where its digits start and end in the text (every character between is a
    /// digit). Kept from chain to chain so that reading a text allocates it once.
    groups: Vec<(usize, usize)>,
    /// Where the chain ends, a closing parenthesis included.
    end: usize,
}

/// Reads into `chain` the chain starting at `i`, where `chars[i]` is a digit, or a `+` or `(`
/// before one.
fn chain_at(chars: &[char], i: usize, chain: &mut Chain) {
    let c = chars[i];
    let opens = c == '+' || c == '(';
    chain.start = i;
    chain.plus = c == '+';
    chain.groups.clear();
    chain.end = i;
    let mut j = i + usize::from(opens);
    let mut open_paren = c == '(';
    loop {
        let group_start = j;
        while chars.get(j).and_then(|c| digit(*c)).is_some() {
            j += 1;
        }
        if j == group_start {
            break;
        }
        chain.groups.push((group_start, j));
        chain.end = j;
        // Then one separator (with a parenthesis beside it at most) before the next group.
        let mut k = j;
        let mut seps = 0;
        let mut parens = 0;
        while let Some(&s) = chars.get(k) {
            if s == ')' && open_paren && parens == 0 {
                open_paren = false;
                parens += 1;
                chain.end = k + 1;
            } else if s == '(' && parens == 0 && !open_paren {
                open_paren = true;
                parens += 1;
            } else if is_separator(s) && seps == 0 {
                seps += 1;
            } else {
                break;
            }
            k += 1;
        }
        if k == j || chars.get(k).and_then(|c| digit(*c)).is_none() {
            break;
        }
        j = k;
    }
}

/// The character ranges `[start, end)` of every phone-like run in `chars`. A chain of groups
/// that is not a possible number as a whole may hold one: `evt-07700900123-1` does, as does
/// `ref 12 07700 900123`. The longest possible run of whole groups wins, leftmost first.
pub fn phone_like_runs(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut chain = Chain { start: 0, plus: false, groups: Vec::new(), end: 0 };
    let mut digits = String::new();
    let count = |groups: &[(usize, usize)]| groups.iter().map(|(start, end)| end - start).sum::<usize>();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens = (c == '+' || c == '(') && chars.get(i + 1).and_then(|n| digit(*n)).is_some();
        if digit(c).is_none() && !opens {
            i += 1;
            continue;
        }
        chain_at(chars, i, &mut chain);
        let groups = &chain.groups;
        if count(groups) >= 9 {
            let mut s = 0;
            while s < groups.len() {
                let mut found = None;
                for e in (s..groups.len()).rev() {
                    let n = count(&groups[s..=e]);
                    if n < 9 {
                        break;
                    }
                    if n > MAX_DIGITS {
                        continue;
                    }
                    digits.clear();
                    digits.extend(groups[s..=e].iter().flat_map(|&(start, end)| chars[start..end].iter().filter_map(|c| digit(*c))));
                    if possible(s == 0 && chain.plus, &digits) {
                        found = Some(e);
                        break;
                    }
                }
                match found {
                    Some(e) => {
                        let start = if s == 0 { chain.start } else { groups[s].0 };
                        let end = if e + 1 == groups.len() { chain.end } else { groups[e].1 };
                        out.push((start, end));
                        s = e + 1;
                    }
                    None => s += 1,
                }
            }
        }
        i = chain.end.max(i + 1);
    }
    out
}

/// Answers of [`possible_in`] already found on this thread, keyed by a hash under a key
/// random to the thread, never by the digits (no number is kept, even in memory). The ids of
/// one call's events hold the same digit runs, so the library runs about once per call instead
/// of twice per event; it was most of the cost of reading an event.
struct PossibleCache {
    keys: std::hash::RandomState,
    answers: std::collections::HashMap<u64, bool>,
}

const POSSIBLE_CACHE_MAX: usize = 1 << 16;

thread_local! {
    static POSSIBLE: std::cell::RefCell<PossibleCache> =
        std::cell::RefCell::new(PossibleCache { keys: std::hash::RandomState::new(), answers: std::collections::HashMap::new() });
}

/// Whether the library reads these digits as a possible number: in international form after a
/// `+` or `00`, or for the default region.
fn possible(plus: bool, digits: &str) -> bool {
    use std::hash::BuildHasher;
    if !plus && too_long_for_region(region(), digits) {
        return false;
    }
    let key = POSSIBLE.with(|c| c.borrow().keys.hash_one((plus, digits, region())));
    if let Some(hit) = POSSIBLE.with(|c| c.borrow().answers.get(&key).copied()) {
        return hit;
    }
    let answer = possible_in(region(), plus, digits);
    POSSIBLE.with(|c| {
        let mut c = c.borrow_mut();
        if c.answers.len() >= POSSIBLE_CACHE_MAX {
            c.answers.clear();
        }
        c.answers.insert(key, answer);
    });
    answer
}

/// Every length a region's numbers can have, local lengths included, over every kind of number
/// it describes.
fn lengths(m: &phonenumber::metadata::Metadata) -> Vec<u16> {
    let d = m.descriptors();
    let kinds = [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ];
    std::iter::once(d.general())
        .chain(kinds.into_iter().flatten())
        .flat_map(|k| k.possible_length().iter().chain(k.possible_local_length()).copied())
        .collect()
}

/// What the library makes of a region's numbers, worked out once: enough to rule out, without
/// parsing, digits too long to be a number there.
struct RegionLengths {
    /// The region's calling code, which the library may strip from the front.
    code: String,
    /// Its international prefix and its national prefix for parsing, anchored at the start.
    idd: Option<regex::Regex>,
    prefix_for_parsing: Option<regex::Regex>,
    /// Its national prefix's length: stripped once more after the prefix for parsing.
    national_prefix: usize,
    /// The longest number any region sharing the calling code has, local lengths included.
    longest: usize,
}

impl RegionLengths {
    fn of(region: country::Id) -> Option<RegionLengths> {
        let db = &*phonenumber::metadata::DATABASE;
        let meta = db.by_id(region.as_ref())?;
        // Built as the library builds its own: metadata patterns are laid out with whitespace.
        let anchored =
            |re: Option<&str>| re.map(|re| regex::RegexBuilder::new(&format!("^(?:{re})")).ignore_whitespace(true).build()).transpose();
        let longest = db.by_code(&meta.country_code()).unwrap_or_default().into_iter().flat_map(lengths).max()?;
        Some(RegionLengths {
            code: meta.country_code().to_string(),
            idd: anchored(meta.international_prefix().map(|re| re.as_str())).ok()?,
            prefix_for_parsing: anchored(meta.national_prefix_for_parsing().map(|re| re.as_str())).ok()?,
            national_prefix: meta.national_prefix().map_or(0, str::len),
            longest: usize::from(longest),
        })
    }

    /// The library reads digits with no `+` as the region does: it strips an international
    /// prefix (then the number is another country's), or else perhaps the calling code, then a
    /// match of the prefix for parsing (or the national prefix), then the national prefix
    /// again. What is left is at least this long; longer than any number there, it is not one.
    fn rules_out(&self, digits: &str) -> bool {
        if digits.starts_with("00") || self.idd.as_ref().is_some_and(|re| re.is_match(digits)) {
            return false;
        }
        let shortest = [Some(digits), digits.strip_prefix(self.code.as_str())]
            .into_iter()
            .flatten()
            .map(|d| {
                let first = match &self.prefix_for_parsing {
                    Some(re) => re.find(d).map_or(0, |m| m.end()),
                    None => self.national_prefix,
                };
                d.len().saturating_sub(first + self.national_prefix)
            })
            .min()
            .unwrap_or(0);
        shortest > self.longest
    }
}

thread_local! {
    static LENGTHS: std::cell::RefCell<Option<(country::Id, Option<RegionLengths>)>> = const { std::cell::RefCell::new(None) };
}

/// True when the library, reading `digits` (no `+`) for `region`, cannot find a possible
/// number: even after stripping every prefix it could, more digits are left than any number
/// of the region has. Exact, not a guess: where the digits open with the region's
/// international prefix or `00` (read in international form as well), it answers false and
/// the library decides. Ids such as `SIM43BB-20251201-0000001-0` hold 15- and 16-digit runs:
/// this answers those, which were most of the cost of reading an event.
fn too_long_for_region(region: country::Id, digits: &str) -> bool {
    LENGTHS.with(|l| {
        let mut l = l.borrow_mut();
        if l.as_ref().is_none_or(|(known, _)| *known != region) {
            *l = Some((region, RegionLengths::of(region)));
        }
        l.as_ref().and_then(|(_, lengths)| lengths.as_ref()).is_some_and(|lengths| lengths.rules_out(digits))
    })
}

fn possible_in(region: country::Id, plus: bool, digits: &str) -> bool {
    let check = |country: Option<country::Id>, text: String| {
        // The library is not ours: a panic inside it counts as "possible", so the text is masked.
        std::panic::catch_unwind(|| {
            phonenumber::parse(country, &text).is_ok_and(|n| {
                let len = n.national().to_string().len() as u16;
                // Every region sharing the calling code (+44: GB, GG, IM, JE): a number in a
                // range no region has assigned yet is still possible if its length is.
                let regions = phonenumber::metadata::DATABASE.by_code(&n.code().value()).unwrap_or_default();
                regions.into_iter().flat_map(lengths).any(|l| l == len)
            })
        })
        .unwrap_or(true)
    };
    if plus {
        return check(None, format!("+{digits}"));
    }
    if let Some(rest) = digits.strip_prefix("00") {
        if check(None, format!("+{rest}")) {
            return true;
        }
    }
    check(Some(region), digits.to_string())
}

/// `text` with every digit of every phone-like run replaced by `#`.
pub fn mask(text: &str) -> String {
    // Fast path: fewer than nine digits cannot hold a run.
    if text.chars().filter(|c| digit(*c).is_some()).count() < 9 {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    for (start, end) in phone_like_runs(&chars) {
        for c in &mut chars[start..end] {
            if digit(*c).is_some() {
                *c = '#';
            }
        }
    }
    chars.into_iter().collect()
}

/// A JSON value with every string, every object key and every number masked: a number that
/// holds a phone-like run becomes a string of its masked text.
pub fn mask_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask(&s)),
        Value::Number(n) => {
            let text = n.to_string();
            let masked = mask(&text);
            if masked == text {
                Value::Number(n)
            } else {
                Value::String(masked)
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(mask_json).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (mask(&k), mask_json(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
