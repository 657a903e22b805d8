//! Lossless edits of a systemd configuration file (systemd.syntax(7)): a `.nspawn` file or a
//! unit drop-in. Pure: text in, text out.
//!
//! The file is read as systemd reads it (`[Section]` headers, `Key=Value` assignments,
//! `#`/`;` comment lines, a line ending in `\` continued on the next, comment lines inside a
//! continuation skipped), but every physical line is kept with its own bytes and line ending.
//! An edit touches only the lines of the assignments of one key; every other line (comments,
//! blank lines, other keys, lines systemd would not understand, assignments before any
//! section) comes out byte for byte.
//!
//! What an edit does, for one `[Section]` `Key=`:
//! - the key's assignments are found in every instance of the section (a section may appear
//!   twice), in file order;
//! - setting it to values `V1…Vn` rewrites the i-th assignment to `Vi` (an assignment that
//!   already has that value is left as it is, a continued one becomes one line with the
//!   original `Key = ` spelling), removes assignments beyond `n`, and inserts the values
//!   beyond the existing assignments after the last of them; with no assignment yet, after the
//!   last assignment of the last instance of the section, or in a new section at the end;
//! - unsetting it is setting it to no values.
//!
//! New lines use the file's line ending (CRLF when its first line has one); a file without a
//! final newline still has none afterwards.

use anyhow::{Result, bail};

/// One logical line of the file: the physical lines `start..end` it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Blank,
    Comment,
    /// `[name]`; `index` counts the section headers of the file from 0.
    Section {
        name: String,
        index: usize,
    },
    Assignment {
        /// The section it is under, `None` before any header.
        section: Option<String>,
        /// Which header (see `Section::index`) it is under.
        section_index: Option<usize>,
        key: String,
        value: String,
    },
    /// Anything else (systemd logs it and skips it): kept as it is.
    Other,
}

/// A file split into physical lines, each with its line ending (`\n`, `\r\n` or none).
#[derive(Debug, Clone)]
pub(crate) struct Document {
    lines: Vec<(String, String)>,
    entries: Vec<Entry>,
    newline: &'static str,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

fn is_comment(trimmed: &str) -> bool {
    trimmed.starts_with('#') || trimmed.starts_with(';')
}

impl Document {
    pub fn parse(text: &str) -> Document {
        let lines: Vec<(String, String)> = text
            .split_inclusive('\n')
            .map(|l| {
                if let Some(body) = l.strip_suffix("\r\n") {
                    (body.to_string(), "\r\n".to_string())
                } else if let Some(body) = l.strip_suffix('\n') {
                    (body.to_string(), "\n".to_string())
                } else {
                    (l.to_string(), String::new())
                }
            })
            .collect();
        let newline = match lines.first() {
            Some((_, end)) if end == "\r\n" => "\r\n",
            _ => "\n",
        };
        let entries = classify(&lines);
        Document {
            lines,
            entries,
            newline,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The physical line (1-based) an entry starts on.
    pub fn line_of(entry: &Entry) -> usize {
        entry.start + 1
    }

    /// The assignments of `section`/`key`, in file order.
    fn assignments<'a>(
        &'a self,
        section: &'a str,
        key: &'a str,
    ) -> impl Iterator<Item = &'a Entry> {
        self.entries.iter().filter(move |e| {
            matches!(&e.kind, Kind::Assignment { section: Some(s), key: k, .. } if s == section && k == key)
        })
    }

    /// The values `section`/`key` is assigned, in file order (an empty one included).
    pub fn values(&self, section: &str, key: &str) -> Vec<String> {
        self.assignments(section, key)
            .filter_map(|e| match &e.kind {
                Kind::Assignment { value, .. } => Some(value.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn render(&self) -> String {
        self.lines.iter().map(|(b, e)| format!("{b}{e}")).collect()
    }

    /// Where a new assignment of `section` goes: after this physical line; `None` when the
    /// section does not exist.
    fn insertion_point(&self, section: &str) -> Option<usize> {
        let last_header = self.entries.iter().rev().find_map(|e| match &e.kind {
            Kind::Section { name, index } if name == section => Some((e, *index)),
            _ => None,
        })?;
        let (header, index) = last_header;
        let last_assignment = self.entries.iter().rfind(
            |e| matches!(&e.kind, Kind::Assignment { section_index: Some(i), .. } if *i == index),
        );
        Some(last_assignment.unwrap_or(header).end - 1)
    }

    /// Inserts `new` (bodies without line endings) after physical line `after`, giving the
    /// last of them the ending that line had (so a file without a final newline keeps none).
    fn insert_after(&mut self, after: usize, new: Vec<String>) {
        if new.is_empty() {
            return;
        }
        let nl = self.newline.to_string();
        let old_end = std::mem::replace(&mut self.lines[after].1, nl.clone());
        let count = new.len();
        let mut rows: Vec<(String, String)> = new.into_iter().map(|b| (b, nl.clone())).collect();
        rows[count - 1].1 = if old_end.is_empty() {
            String::new()
        } else {
            old_end
        };
        let at = after + 1;
        self.lines.splice(at..at, rows);
    }
}

/// Splits physical lines into entries the way systemd's parser reads them.
fn classify(lines: &[(String, String)]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut section: Option<(String, usize)> = None;
    let mut headers = 0;
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let first = lines[i].0.trim();
        if first.is_empty() {
            entries.push(Entry {
                start,
                end: i + 1,
                kind: Kind::Blank,
            });
            i += 1;
            continue;
        }
        // A comment never continues, even when it ends in a backslash.
        if is_comment(first) {
            entries.push(Entry {
                start,
                end: i + 1,
                kind: Kind::Comment,
            });
            i += 1;
            continue;
        }
        // Join continued lines: the backslash becomes a space; comments inside are skipped.
        let mut logical = String::new();
        loop {
            let t = lines[i].0.trim();
            let inside = i > start;
            i += 1;
            if inside && is_comment(t) {
                if i < lines.len() {
                    continue;
                }
                break;
            }
            match t.strip_suffix('\\') {
                Some(head) if i < lines.len() => {
                    logical.push_str(head);
                    logical.push(' ');
                }
                // Ends inside a continuation: what was read is the line (systemd does the same).
                Some(head) => {
                    logical.push_str(head);
                    break;
                }
                None => {
                    logical.push_str(t);
                    break;
                }
            }
        }
        let line = logical.trim();
        let kind = if let Some(name) = line.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            if valid_name(name) {
                section = Some((name.to_string(), headers));
                headers += 1;
                Kind::Section {
                    name: name.to_string(),
                    index: headers - 1,
                }
            } else {
                Kind::Other
            }
        } else if let Some((key, value)) = line.split_once('=') {
            let key = key.trim();
            if valid_name(key) {
                Kind::Assignment {
                    section: section.as_ref().map(|(s, _)| s.clone()),
                    section_index: section.as_ref().map(|(_, i)| *i),
                    key: key.to_string(),
                    value: value.trim().to_string(),
                }
            } else {
                Kind::Other
            }
        } else {
            Kind::Other
        };
        entries.push(Entry {
            start,
            end: i,
            kind,
        });
    }
    entries
}

/// A value systemd would read back as written: one line, not continued.
pub(crate) fn check_value(value: &str) -> Result<()> {
    if value.contains(['\n', '\r']) {
        bail!("a value must be one line (it contains a line break)");
    }
    if value.trim_end().ends_with('\\') {
        bail!("a value may not end with `\\` (systemd would continue it on the next line)");
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        bail!("a value may not contain control characters");
    }
    Ok(())
}

/// `text` with `section`/`key` assigned exactly `values`, in order (none: unset), as the
/// module documentation describes. Values are trimmed, as systemd reads them.
pub(crate) fn set(text: &str, section: &str, key: &str, values: &[String]) -> Result<String> {
    if !valid_name(section) || !valid_name(key) {
        bail!("`{section}.{key}`: section and key names are letters, digits, `-`, `_`, `.`, `@`");
    }
    let values: Vec<&str> = values.iter().map(|v| v.trim()).collect();
    for v in &values {
        check_value(v)?;
    }
    let mut doc = Document::parse(text);
    let existing: Vec<Entry> = doc.assignments(section, key).cloned().collect();

    // Back to front, so earlier line numbers stay valid.
    let last_existing = existing.last().map(|e| e.end - 1);
    let extra: Vec<String> = values
        .iter()
        .skip(existing.len())
        .map(|v| format!("{key}={v}"))
        .collect();
    if !extra.is_empty() {
        match last_existing.or_else(|| doc.insertion_point(section)) {
            Some(after) => doc.insert_after(after, extra),
            None => append_section(&mut doc, section, extra),
        }
    }
    for (i, entry) in existing.iter().enumerate().rev() {
        let current = match &entry.kind {
            Kind::Assignment { value, .. } => value.as_str(),
            _ => unreachable!("only assignments are collected"),
        };
        match values.get(i) {
            Some(v) if *v == current => {}
            Some(v) => {
                let prefix = assignment_prefix(&doc.lines[entry.start].0);
                let ending = doc.lines[entry.end - 1].1.clone();
                doc.lines
                    .splice(entry.start..entry.end, [(format!("{prefix}{v}"), ending)]);
            }
            None => {
                let ending_lost = doc.lines[entry.end - 1].1.is_empty();
                doc.lines.drain(entry.start..entry.end);
                // The removed lines ended the file without a newline: so does the new last line.
                if ending_lost && entry.start > 0 && entry.start == doc.lines.len() {
                    doc.lines[entry.start - 1].1.clear();
                }
            }
        }
    }
    Ok(doc.render())
}

/// `text` with every assignment for which `drop(section, key)` holds turned into comment lines
/// (each physical line prefixed with `# `), after a comment line `# {note}`. The rest stays as
/// it was.
pub(crate) fn comment_out(text: &str, drop: impl Fn(&str, &str) -> bool, note: &str) -> String {
    let mut doc = Document::parse(text);
    let entries = doc.entries.clone();
    for e in entries.iter().rev() {
        let Kind::Assignment {
            section: Some(section),
            key,
            ..
        } = &e.kind
        else {
            continue;
        };
        if !drop(section, key) {
            continue;
        }
        for line in &mut doc.lines[e.start..e.end] {
            line.0 = format!("# {}", line.0);
        }
        let nl = doc.newline.to_string();
        doc.lines.insert(e.start, (format!("# {note}"), nl));
    }
    doc.render()
}

/// `Key = ` as the line spells it: everything up to the `=` and the blanks after it.
fn assignment_prefix(line: &str) -> String {
    let Some(eq) = line.find('=') else {
        return line.to_string();
    };
    let rest = &line[eq + 1..];
    let blanks = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    line[..eq + 1 + blanks].to_string()
}

/// Appends `[section]` with `rows` at the end, after a blank line when the file has text.
fn append_section(doc: &mut Document, section: &str, rows: Vec<String>) {
    let mut new = Vec::new();
    let ends_blank = doc.lines.last().is_none_or(|(b, _)| b.trim().is_empty());
    if !ends_blank {
        new.push(String::new());
    }
    new.push(format!("[{section}]"));
    new.extend(rows);
    if doc.lines.is_empty() {
        let nl = doc.newline.to_string();
        doc.lines = new.into_iter().map(|b| (b, nl.clone())).collect();
        return;
    }
    let last = doc.lines.len() - 1;
    doc.insert_after(last, new);
}

#[cfg(test)]
mod tests;
