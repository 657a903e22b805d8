//! A YAML tree that keeps what composition must not lose: each scalar's exact text and whether
//! it was plain, and each node's file and line.
//!
//! Why not a serde `Value`: cloud-init reads YAML 1.1 (PyYAML), every maintained Rust parser
//! reads YAML 1.2, and the two disagree about plain scalars: `permissions: 0644` is octal 420 to
//! cloud-init but decimal 644 to a YAML 1.2 reader, `yes`/`on` are booleans only in 1.1. A
//! round trip through typed values would silently change such files. Here nothing is typed:
//! a plain scalar is written back plain and byte for byte, so cloud-init reads the composed
//! file exactly as it would have read each input. Quoted and block scalars are strings in both
//! versions and are written back as double-quoted or literal-block strings.
//!
//! Comments and flow style are not kept (the output is block style). Aliases are expanded into
//! copies, with a node budget so that a "billion laughs" file fails instead of eating memory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Result, bail};
use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

/// Nodes a document may expand to, aliases included.
pub const MAX_NODES: usize = 100_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    /// The tag as written back (`!!str`, `!foo`), if any.
    pub tag: Option<String>,
    /// The file this node came from, as named in messages.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Scalar(String, Style),
    Seq(Vec<Node>),
    /// Entries in document order; keys are scalars.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Written without quotes: its meaning is up to the reader's schema, so it is kept verbatim.
    Plain,
    /// Single- or double-quoted: a string.
    Quoted,
    /// A literal or folded block: a string (the text after folding).
    Block,
}

impl Node {
    pub fn scalar(value: &str, style: Style, file: &Arc<str>, line: usize) -> Node {
        Node {
            kind: Kind::Scalar(value.to_string(), style),
            tag: None,
            file: file.clone(),
            line,
        }
    }

    pub fn map(entries: Vec<(Node, Node)>, file: &Arc<str>, line: usize) -> Node {
        Node {
            kind: Kind::Map(entries),
            tag: None,
            file: file.clone(),
            line,
        }
    }

    /// `file:line`, for messages.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// What kind of node this is, for messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(..) => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    /// The scalar text of a key.
    pub fn key_text(&self) -> &str {
        match &self.kind {
            Kind::Scalar(s, _) => s,
            _ => "",
        }
    }

    fn count(&self) -> usize {
        1 + match &self.kind {
            Kind::Scalar(..) => 0,
            Kind::Seq(items) => items.iter().map(Node::count).sum(),
            Kind::Map(entries) => entries.iter().map(|(k, v)| k.count() + v.count()).sum(),
        }
    }
}

fn tag_text(t: &Tag) -> String {
    if t.is_yaml_core_schema() {
        format!("!!{}", t.suffix)
    } else if t.handle == "!" {
        format!("!{}", t.suffix)
    } else if t.handle.is_empty() && t.suffix == "!" {
        "!".to_string()
    } else {
        format!("!<{}{}>", t.handle, t.suffix)
    }
}

enum Frame {
    Seq {
        node: Node,
        items: Vec<Node>,
        anchor: usize,
    },
    Map {
        node: Node,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        seen: HashSet<String>,
        anchor: usize,
    },
}

/// Turns parser events into a tree.
struct Builder {
    file: Arc<str>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    budget: usize,
}

impl Builder {
    /// A node is finished: record its anchor and hang it under its parent.
    fn complete(&mut self, node: Node, anchor: usize, line: usize) -> Result<()> {
        let size = node.count();
        if size > self.budget {
            bail!(
                "{}:{line}: the document expands to more than {MAX_NODES} nodes (aliases?)",
                self.file
            );
        }
        self.budget -= size;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, key, seen, ..
            }) => match key.take() {
                None => {
                    if !matches!(node.kind, Kind::Scalar(..)) {
                        bail!("{}: only scalar map keys are supported", node.place());
                    }
                    if !seen.insert(node.key_text().to_string()) {
                        let first = entries
                            .iter()
                            .find(|(k, _)| k.key_text() == node.key_text());
                        bail!(
                            "{}: duplicate key `{}` (first at line {})",
                            node.place(),
                            node.key_text(),
                            first.map_or(0, |(k, _)| k.line)
                        );
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

/// Parses one YAML document. `None` when the text holds no document (empty or comments only).
/// Errors name `file:line`.
pub fn parse(text: &str, file: &str) -> Result<Option<Node>> {
    let file: Arc<str> = Arc::from(file);
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        budget: MAX_NODES,
    };
    let mut documents = 0;

    while let Some(event) = parser.next_event() {
        let (event, span) = match event {
            Ok(e) => e,
            Err(e) => bail!(
                "{file}:{}:{}: invalid YAML: {}",
                e.marker().line(),
                e.marker().col() + 1,
                e.info()
            ),
        };
        let line = span.start.line();
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    bail!(
                        "{file}:{line}: more than one YAML document (`---`); a template file holds one"
                    );
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let mut node = Node::scalar(&value, style, &file, line);
                node.tag = tag.as_deref().map(tag_text);
                b.complete(node, anchor, line)?;
            }
            Event::Alias(id) => {
                let Some(node) = b.anchors.get(&id).cloned() else {
                    bail!("{file}:{line}: alias to an unknown anchor");
                };
                b.complete(node, 0, line)?;
            }
            Event::SequenceStart(anchor, tag) => {
                let mut node = Node {
                    kind: Kind::Seq(Vec::new()),
                    tag: None,
                    file: file.clone(),
                    line,
                };
                node.tag = tag.as_deref().map(tag_text);
                b.stack.push(Frame::Seq {
                    node,
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, tag) => {
                let mut node = Node::map(Vec::new(), &file, line);
                node.tag = tag.as_deref().map(tag_text);
                b.stack.push(Frame::Map {
                    node,
                    entries: Vec::new(),
                    key: None,
                    seen: HashSet::new(),
                    anchor,
                });
            }
            Event::SequenceEnd => match b.stack.pop() {
                Some(Frame::Seq {
                    mut node,
                    items,
                    anchor,
                }) => {
                    node.kind = Kind::Seq(items);
                    b.complete(node, anchor, line)?;
                }
                _ => bail!("{file}:{line}: unbalanced sequence end"),
            },
            Event::MappingEnd => match b.stack.pop() {
                Some(Frame::Map {
                    mut node,
                    entries,
                    anchor,
                    ..
                }) => {
                    node.kind = Kind::Map(entries);
                    b.complete(node, anchor, line)?;
                }
                _ => bail!("{file}:{line}: unbalanced mapping end"),
            },
        }
    }
    Ok(b.root)
}

/// Writes `root` as a block-style YAML document body (no `---`, no header line).
pub fn emit(root: &Node) -> String {
    let mut out = String::new();
    match &root.kind {
        Kind::Map(entries) if !entries.is_empty() && root.tag.is_none() => {
            emit_entries(entries, 0, &mut out)
        }
        Kind::Seq(items) if !items.is_empty() && root.tag.is_none() => {
            emit_items(items, 0, &mut out)
        }
        _ => {
            emit_value(root, 0, &mut out);
            // emit_value starts with the separator after `key:`; a root has no key.
            out = out.trim_start().to_string();
        }
    }
    out
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn emit_entries(entries: &[(Node, Node)], indent: usize, out: &mut String) {
    for (k, v) in entries {
        pad(out, indent);
        if let Some(tag) = &k.tag {
            out.push_str(tag);
            out.push(' ');
        }
        match &k.kind {
            Kind::Scalar(s, Style::Plain) if plain_ok(s) => out.push_str(s),
            Kind::Scalar(s, _) => out.push_str(&double_quoted(s)),
            _ => out.push_str("\"\""),
        }
        out.push(':');
        emit_value(v, indent, out);
    }
}

fn emit_items(items: &[Node], indent: usize, out: &mut String) {
    for item in items {
        match &item.kind {
            Kind::Map(entries) if !entries.is_empty() && item.tag.is_none() => {
                // The first entry shares the line with `- `; the rest line up under it.
                let mut buf = String::new();
                emit_entries(entries, indent + 2, &mut buf);
                pad(out, indent);
                out.push_str("- ");
                out.push_str(&buf[indent + 2..]);
            }
            _ => {
                pad(out, indent);
                out.push('-');
                emit_value(item, indent, out);
            }
        }
    }
}

/// Writes what follows `key:` or `-` for a node whose line starts at `indent`.
fn emit_value(node: &Node, indent: usize, out: &mut String) {
    if let Some(tag) = &node.tag {
        out.push(' ');
        out.push_str(tag);
    }
    match &node.kind {
        Kind::Scalar(s, style) => {
            if s.is_empty() && *style == Style::Plain {
                // An empty plain scalar is null; `key:` alone says the same.
            } else if *style == Style::Plain && plain_ok(s) {
                out.push(' ');
                out.push_str(s);
            } else if *style == Style::Block && literal_ok(s) {
                emit_literal(s, indent + 2, out);
                return;
            } else {
                out.push(' ');
                out.push_str(&double_quoted(s));
            }
            out.push('\n');
        }
        Kind::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Kind::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Kind::Seq(items) => {
            out.push('\n');
            emit_items(items, indent + 2, out);
        }
        Kind::Map(entries) => {
            out.push('\n');
            emit_entries(entries, indent + 2, out);
        }
    }
}

fn emit_literal(s: &str, indent: usize, out: &mut String) {
    let body = s.trim_end_matches('\n');
    let chomp = match s.len() - body.len() {
        0 => "-",
        1 => "",
        _ => "+",
    };
    out.push_str(" |");
    out.push_str(chomp);
    out.push('\n');
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
    // Keep-chomping: the extra trailing newlines are empty lines of the block.
    for _ in 1..(s.len() - body.len()) {
        out.push('\n');
    }
}

/// Characters that only a double-quoted scalar can carry (tab and newline are handled apart).
fn is_special(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n')
        || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}' | '\u{85}')
}

/// Whether `s` reads back as the same plain scalar in block context.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let second = s.chars().nth(1);
    let indicator_start = "-?:,[]{}#&*!|>'\"%@`".contains(first)
        && !(matches!(first, '-' | '?' | ':') && second.is_some_and(|c| !c.is_whitespace()));
    !indicator_start
        && !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(":\t")
        && !s.contains(" #")
        && !s.contains("\t#")
        && !s.starts_with("---")
        && !s.starts_with("...")
        && !s.chars().any(|c| is_special(c) || c == '\t' || c == '\n')
}

/// Whether `s` can be written as a literal block and read back unchanged.
fn literal_ok(s: &str) -> bool {
    let body = s.trim_end_matches('\n');
    body.contains('\n')
        && !s.chars().any(|c| is_special(c) || c == '\r')
        && body
            .split('\n')
            .find(|l| !l.is_empty())
            .is_some_and(|l| !l.starts_with([' ', '\t']))
        && body
            .split('\n')
            .all(|l| l.is_empty() || !l.trim().is_empty())
}

/// A YAML double-quoted scalar; the escapes are ones YAML 1.1 and 1.2 share.
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if is_special(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_special(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
