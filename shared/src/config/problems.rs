//! Config problems: each names its key, says why, and where it can, gives the line.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path such as `repeat_callers.rules[0].min_calls`; empty for the whole file.
    pub key: String,
    pub message: String,
    pub line: Option<usize>,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { key: key.into(), message: message.into(), line: None }
    }

    pub fn file(message: String) -> Problem {
        Problem::new("", message)
    }

    pub(super) fn syntax(text: &str, e: &toml::de::Error) -> Problem {
        let line = e.span().map(|s| line_of(text, s.start));
        Problem { key: String::new(), message: format!("not valid TOML: {}", e.message()), line }
    }

    /// A key the config does not take, as serde reports its path (`a.b.0.c`).
    pub(super) fn unknown_key(path: &str) -> Problem {
        let mut key = String::new();
        for part in path.split('.') {
            if part.parse::<usize>().is_ok() {
                key.push_str(&format!("[{part}]"));
            } else {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(part);
            }
        }
        let message = if key.contains('.') || key.contains('[') {
            "unknown key: no section takes it here (a typo? config/lantern.toml shows every key)".to_string()
        } else {
            let sections = serde_json::to_value(super::Config::default())
                .ok()
                .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")))
                .unwrap_or_default();
            format!("unknown section; the sections are {sections}")
        };
        Problem::new(key, message)
    }

    pub(super) fn value(section: &str, e: &toml::de::Error) -> Problem {
        let msg = e.message().replace('\n', " ");
        Problem::new(section, msg)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn one(p: Problem) -> Problems {
        Problems(vec![p])
    }
    pub fn from_vec(v: Vec<Problem>) -> Problems {
        Problems(v)
    }

    /// Adds the line of each key that the text spells out, for people reading the report.
    pub fn with_lines(mut self, text: &str) -> Problems {
        for p in &mut self.0 {
            if p.line.is_none() && !p.key.is_empty() {
                p.line = find_key_line(text, &p.key);
            }
        }
        self
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the line where a dotted key (with `[n]` for the n-th table of an array) is written.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    // Split `a.b[2].c` into the table path, the index, and the leaf key.
    let mut table = String::new();
    let mut index = None;
    let mut leaf = key.to_string();
    if let Some(open) = key.rfind('[') {
        let close = key[open..].find(']')? + open;
        table = key[..open].to_string();
        index = key[open + 1..close].parse::<usize>().ok();
        leaf = key[close + 1..].trim_start_matches('.').to_string();
    } else if let Some(dot) = key.rfind('.') {
        table = key[..dot].to_string();
        leaf = key[dot + 1..].to_string();
    }
    let leaf = leaf.split('.').next().unwrap_or("").to_string();
    let mut seen = 0usize;
    let mut in_target = table.is_empty() && index.is_none();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with("[[") {
            let current = line.trim_matches(|c| c == '[' || c == ']').trim();
            if current == table {
                in_target = index == Some(seen);
                seen += 1;
                if in_target && leaf.is_empty() {
                    return Some(n + 1);
                }
            } else {
                in_target = false;
            }
        } else if line.starts_with('[') {
            let current = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_target = index.is_none() && current == table;
            if in_target && leaf.is_empty() {
                return Some(n + 1);
            }
        } else if in_target && !leaf.is_empty() {
            let name = line.split('=').next().unwrap_or("").trim().trim_matches('"');
            if line.contains('=') && name == leaf {
                return Some(n + 1);
            }
        }
    }
    None
}
