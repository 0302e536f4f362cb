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

/// Every key the file holds that the config does not know.
pub(super) fn unknown_keys(table: &toml::Table) -> Vec<Problem> {
    const SECTIONS: &[(&str, &[&str])] = &[
        ("mqtt", &["url", "client_id", "calls_topic", "topic_root"]),
        ("broker", &["enabled", "listen"]),
        ("database", &["url"]),
        ("ingest", &["default_region", "max_future_skew"]),
        ("privacy", &["key_file"]),
        ("flagger", &["listen"]),
        ("demand", &["listen", "windows", "max_divisions"]),
        ("repeat_callers", &["cooldown", "exclude_numbers", "exclude_addresses", "merge_within", "rules"]),
        (
            "mental_health",
            &[
                "negation_terms",
                "negation_window",
                "incident_types",
                "qualifiers",
                "model",
                "model_threshold",
                "model_veto",
                "false_friends",
                "cues",
                "patterns",
            ],
        ),
        ("desk", &["listen", "users", "unit_savings"]),
        ("retention", &["history_margin", "event_ids"]),
    ];
    const ARRAYS: &[(&str, &[&str])] = &[
        ("repeat_callers.rules", &["name", "identity", "window", "min_calls", "severity", "channels", "communal_address", "age_band"]),
        ("mental_health.cues", &["category", "severity", "phrases", "label", "block", "block_within"]),
        ("mental_health.patterns", &["name", "category", "severity", "near", "within", "min_sets", "block", "block_within", "label"]),
        ("desk.users", &["name", "role", "password_hash"]),
    ];
    let mut out = Vec::new();
    for (section, value) in table {
        let Some((_, known)) = SECTIONS.iter().find(|(s, _)| s == section) else {
            let names: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
            out.push(Problem::new(section.clone(), format!("unknown section; the sections are {}", names.join(", "))));
            continue;
        };
        let Some(inner) = value.as_table() else {
            continue;
        };
        for (key, v) in inner {
            if section == "desk" && key == "unit_savings" {
                continue;
            }
            if !known.contains(&key.as_str()) {
                out.push(Problem::new(format!("{section}.{key}"), format!("unknown key; [{section}] takes {}", known.join(", "))));
                continue;
            }
            let path = format!("{section}.{key}");
            if let Some((_, fields)) = ARRAYS.iter().find(|(a, _)| *a == path) {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    for field in item.as_table().into_iter().flat_map(|t| t.keys()) {
                        if !fields.contains(&field.as_str()) {
                            out.push(Problem::new(
                                format!("{path}[{i}].{field}"),
                                format!("unknown key; [[{path}]] takes {}", fields.join(", ")),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}
