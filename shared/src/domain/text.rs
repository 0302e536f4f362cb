//! Text rules shared by config validation and the cue matcher.

/// Folds text for matching: lower case (Unicode), curly quotes and dashes made plain.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        fold_char(c, &mut out);
    }
    out
}

/// Folds one character onto `out`.
pub fn fold_char(c: char, out: &mut String) {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' | '`' => out.push('\''),
        '\u{201C}' | '\u{201D}' | '\u{201F}' | '\u{2033}' => out.push('"'),
        '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
        '\u{00A0}' | '\u{2007}' | '\u{202F}' => out.push(' '),
        c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
        c => out.extend(c.to_lowercase()),
    }
}

/// True for characters that make up words: letters, digits and the apostrophe inside words.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\''
}

/// A phrase is one or more words; only the last character of a word may be `*`.
pub fn check_phrase(phrase: &str) -> Result<(), String> {
    let words: Vec<&str> = phrase.split_whitespace().collect();
    if words.is_empty() {
        return Err("is empty".into());
    }
    for w in &words {
        let body = w.strip_suffix('*').unwrap_or(w);
        if body.is_empty() {
            return Err(format!("`{phrase}`: a wildcard needs at least one letter before the *"));
        }
        if body.contains('*') {
            return Err(format!("`{phrase}`: * may only end a word (as in suicid*)"));
        }
        if !body.chars().all(|c| is_word_char(c) || c == '-') {
            return Err(format!("`{phrase}`: use letters, digits, apostrophes and hyphens only"));
        }
    }
    Ok(())
}
