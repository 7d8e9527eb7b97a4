//! A reader for the YAML subset the repository's monitoring files use (block mappings and
//! sequences, plain/quoted scalars, `|` block scalars, `[]`/`{}` and simple flow sequences,
//! comments, `---` documents). Enough to compare and inspect them without a YAML crate;
//! anything outside the subset is an error, never a silent misread.

#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Str(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
}

impl Yaml {
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Yaml::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn seq(&self, key: &str) -> &[Yaml] {
        match self.get(key) {
            Some(Yaml::Seq(items)) => items,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(String, Yaml)] {
        match self {
            Yaml::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The same document as JSON (every scalar a string), which YAML readers such as
    /// promtool's accept as it is: how a test writes a changed copy of a YAML file.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Yaml::Str(s) => serde_json::Value::String(s.clone()),
            Yaml::Seq(items) => items.iter().map(Yaml::to_json).collect(),
            Yaml::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses every `---`-separated document of `text`.
pub fn parse_all(text: &str) -> Result<Vec<Yaml>, String> {
    let mut docs = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(std::mem::take(&mut current));
        } else {
            current.push(line);
        }
    }
    docs.push(current);
    docs.into_iter()
        .filter(|lines| lines.iter().any(|l| significant(l)))
        .map(|lines| Parser::new(&lines).document())
        .collect()
}

/// Parses a single-document file.
pub fn parse(text: &str) -> Result<Yaml, String> {
    let mut docs = parse_all(text)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(format!("expected one YAML document, found {n}")),
    }
}

fn significant(line: &str) -> bool {
    let t = line.trim_start();
    !t.is_empty() && !t.starts_with('#')
}

struct Parser {
    /// (indent, text after the indent, original line number)
    lines: Vec<(usize, String, usize)>,
    raw: Vec<String>,
    pos: usize,
}

impl Parser {
    fn new(lines: &[&str]) -> Self {
        let raw: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let parsed = raw
            .iter()
            .enumerate()
            .map(|(n, l)| {
                let indent = l.len() - l.trim_start_matches(' ').len();
                (indent, l[indent..].trim_end().to_string(), n)
            })
            .collect();
        Parser {
            lines: parsed,
            raw,
            pos: 0,
        }
    }

    fn err<T>(&self, msg: impl AsRef<str>) -> Result<T, String> {
        let n = self
            .lines
            .get(self.pos)
            .map(|l| l.2 + 1)
            .unwrap_or(self.raw.len());
        Err(format!("line {n}: {}", msg.as_ref()))
    }

    fn skip_insignificant(&mut self) {
        while self.pos < self.lines.len() && !significant(&self.lines[self.pos].1) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<(usize, String)> {
        self.skip_insignificant();
        self.lines.get(self.pos).map(|(i, t, _)| (*i, t.clone()))
    }

    fn document(mut self) -> Result<Yaml, String> {
        let (indent, _) = self.peek().ok_or("empty document")?;
        let node = self.node(indent)?;
        if self.peek().is_some() {
            return self.err("unexpected content after the document");
        }
        Ok(node)
    }

    fn node(&mut self, indent: usize) -> Result<Yaml, String> {
        let (_, text) = self.peek().ok_or("expected a node")?;
        if is_seq_item(&text) {
            self.seq(indent)
        } else {
            self.map(indent)
        }
    }

    fn seq(&mut self, indent: usize) -> Result<Yaml, String> {
        let mut items = Vec::new();
        while let Some((i, text)) = self.peek() {
            if i != indent || !is_seq_item(&text) {
                if i > indent {
                    return self.err("unexpected indentation in a sequence");
                }
                break;
            }
            let rest = text[1..].trim_start().to_string();
            if rest.is_empty() {
                self.pos += 1;
                let (child, _) = self.peek().ok_or("sequence item without a value")?;
                if child <= indent {
                    return self.err("sequence item without a value");
                }
                items.push(self.node(child)?);
            } else if split_key(&rest).is_some() {
                // `- key: value` starts a mapping two columns in: re-read the line as that.
                let inner = indent + (text.len() - rest.len());
                self.lines[self.pos].0 = inner;
                self.lines[self.pos].1 = rest;
                items.push(self.map(inner)?);
            } else {
                self.pos += 1;
                items.push(scalar(&rest).or_else(|e| self.err(e))?);
            }
        }
        Ok(Yaml::Seq(items))
    }

    fn map(&mut self, indent: usize) -> Result<Yaml, String> {
        let mut entries: Vec<(String, Yaml)> = Vec::new();
        while let Some((i, text)) = self.peek() {
            if i != indent || is_seq_item(&text) {
                if i > indent {
                    return self.err("unexpected indentation in a mapping");
                }
                break;
            }
            let Some((key, value)) = split_key(&text) else {
                return self.err(format!("expected `key: value`, found {text:?}"));
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return self.err(format!("duplicate key {key:?}"));
            }
            self.pos += 1;
            let value = value.trim();
            let node = if value.is_empty() {
                match self.peek() {
                    Some((child, t)) if child > indent || (child == indent && is_seq_item(&t)) => {
                        self.node(child)?
                    }
                    _ => Yaml::Str(String::new()),
                }
            } else if value == "|" || value == "|-" {
                self.block(indent, value == "|")
            } else if value.starts_with('>')
                || value.starts_with('|')
                || value.starts_with('&')
                || value.starts_with('*')
            {
                return self.err(format!("unsupported YAML construct {value:?}"));
            } else {
                scalar(value).or_else(|e| self.err(e))?
            };
            entries.push((key, node));
        }
        Ok(Yaml::Map(entries))
    }

    fn block(&mut self, parent: usize, keep_newline: bool) -> Yaml {
        let mut body: Vec<&str> = Vec::new();
        let mut block_indent = None;
        while self.pos < self.lines.len() {
            let raw = &self.raw[self.lines[self.pos].2];
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            if !raw.trim().is_empty() && indent <= parent {
                break;
            }
            if !raw.trim().is_empty() && block_indent.is_none() {
                block_indent = Some(indent);
            }
            body.push(raw);
            self.pos += 1;
        }
        while body.last().is_some_and(|l| l.trim().is_empty()) {
            body.pop();
        }
        let cut = block_indent.unwrap_or(0);
        let mut text = body
            .iter()
            .map(|l| if l.len() >= cut { &l[cut..] } else { "" })
            .collect::<Vec<_>>()
            .join("\n");
        if keep_newline && !text.is_empty() {
            text.push('\n');
        }
        Yaml::Str(text)
    }
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Splits `key: value` (or `key:`), with the key plain or quoted; None for a plain scalar.
fn split_key(text: &str) -> Option<(String, String)> {
    if text.starts_with('"') || text.starts_with('\'') {
        let (key, used) = quoted(text).ok()?;
        let rest = &text[used..];
        if rest == ":" || rest.starts_with(": ") {
            return Some((key, rest[1..].to_string()));
        }
        return None;
    }
    if text.starts_with('[') || text.starts_with('{') {
        return None;
    }
    if let Some(k) = text.strip_suffix(':') {
        if !k.contains(": ") {
            return Some((k.to_string(), String::new()));
        }
    }
    let at = text.find(": ")?;
    Some((text[..at].to_string(), text[at + 2..].to_string()))
}

/// Reads a quoted scalar at the start of `text`: (value, bytes consumed).
fn quoted(text: &str) -> Result<(String, usize), String> {
    let q = text.chars().next().unwrap();
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if q == '\'' {
            if c == '\'' {
                if chars.peek().map(|&(_, n)| n) == Some('\'') {
                    chars.next();
                    out.push('\'');
                    continue;
                }
                return Ok((out, i + 1));
            }
            out.push(c);
        } else if c == '"' {
            return Ok((out, i + 1));
        } else if c == '\\' {
            let (_, e) = chars.next().ok_or("unterminated escape")?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'u' => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, h)| h))
                        .collect();
                    let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                    out.push(char::from_u32(code).ok_or("bad \\u escape")?);
                }
                other => return Err(format!("unsupported escape \\{other}")),
            }
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated quoted scalar {text:?}"))
}

fn scalar(text: &str) -> Result<Yaml, String> {
    if text.starts_with('"') || text.starts_with('\'') {
        let (value, used) = quoted(text)?;
        let rest = text[used..].trim();
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err(format!("text after a quoted scalar: {rest:?}"));
        }
        return Ok(Yaml::Str(value));
    }
    let text = match text.find(" #") {
        Some(at) => text[..at].trim_end(),
        None => text,
    };
    match text {
        "[]" => return Ok(Yaml::Seq(Vec::new())),
        "{}" => return Ok(Yaml::Map(Vec::new())),
        _ => {}
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        if inner.contains(['[', '{', '"', '\'']) {
            return Err(format!("unsupported flow sequence {text:?}"));
        }
        return Ok(Yaml::Seq(
            inner
                .split(',')
                .map(|s| Yaml::Str(s.trim().to_string()))
                .collect(),
        ));
    }
    if text.starts_with(['{', '&', '*', '!', '|', '>']) {
        return Err(format!("unsupported YAML construct {text:?}"));
    }
    Ok(Yaml::Str(text.to_string()))
}
