//! keepalived.conf syntax: lines, comments, quotes, braces, includes and `$NAME`
//! parameters, turned into a tree of statements.
//!
//! keepalived splits each line at `{` and `}`, so `track_script { chk }`, a `{` on the
//! line after its keyword, and a `}` after the last item all read the same; each
//! remaining run of words is one statement.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ImportError, Warning};

/// Where a statement came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One statement: its words and, for `keyword { ... }`, the block.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub loc: Loc,
    pub words: Vec<String>,
    pub block: Option<Vec<Node>>,
    /// `@id` / `@^id` prefix: the statement applies only to some keepalived config ids.
    pub cond: Option<String>,
}

impl Node {
    /// The keyword (first word), or "" for a block without one.
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// Words after the keyword.
    pub fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }
}

/// Access to included files; the in-memory importer (and the fuzzer) follows none.
pub(crate) trait Files {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
}

/// The real file system.
pub(crate) struct RealFiles;

impl Files for RealFiles {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let paths = glob::glob(pattern).map_err(|e| e.to_string())?;
        Ok(paths.filter_map(Result::ok).collect())
    }
}

/// No file system: includes are reported, not followed.
pub(crate) struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::other("includes are not followed here"))
    }
    fn glob(&self, _: &str) -> Result<Vec<PathBuf>, String> {
        Err("includes are not followed when importing from memory".to_string())
    }
}

enum Event {
    Words(Loc, Vec<String>, Option<String>),
    Open(Loc),
    Close(Loc),
}

/// Limits that keep hostile or looping input (include cycles, deep nesting) bounded.
const MAX_INCLUDE_DEPTH: usize = 8;
const MAX_FILES: usize = 256;
const MAX_NESTING: usize = 64;
const MAX_EXPANSION_DEPTH: usize = 16;
const MAX_EXPANDED_LINES: usize = 100_000;
/// ~SEQ values keepalived would make at most before the line limit stops them.
const MAX_SEQ_VALUES: usize = 10_000;

/// A `$NAME=value` definition: one line, or several (`\` at line ends).
#[derive(Debug, Clone)]
struct Param {
    lines: Vec<String>,
    multiline: bool,
}

struct Lexer<'a> {
    files: &'a dyn Files,
    events: Vec<Event>,
    warnings: Vec<Warning>,
    params: HashMap<String, Param>,
    files_read: usize,
    /// keepalived's `-i` config id: `@id` lines for it apply, others are dropped. `None`:
    /// every `@id` line is reported and left out.
    config_id: Option<String>,
    /// Lines read so far, expansions included.
    expanded: usize,
    /// The `@id` prefix of the line being read, for its first statement.
    cond: Option<String>,
}

/// Read `text` (named `origin`, in directory `dir` for relative includes) into a tree.
/// `config_id` is keepalived's `-i`: which `@id` lines apply.
pub(crate) fn parse(
    files: &dyn Files,
    text: &str,
    origin: &str,
    dir: Option<&Path>,
    config_id: Option<&str>,
) -> Result<(Vec<Node>, Vec<Warning>), ImportError> {
    let mut lx = Lexer {
        files,
        events: Vec::new(),
        warnings: Vec::new(),
        params: HashMap::new(),
        files_read: 1,
        config_id: config_id.map(str::to_string),
        expanded: 0,
        cond: None,
    };
    lx.lex(text, Arc::from(origin), dir, 0)?;
    let mut tree = build(lx.events)?;
    drop_conditional(&mut tree, &mut lx.warnings);
    Ok((tree, lx.warnings))
}

impl Lexer<'_> {
    fn warn(&mut self, loc: &Loc, keyword: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: loc.file.to_string(),
            line: loc.line,
            keyword: keyword.to_string(),
            message: message.into(),
        });
    }

    fn lex(
        &mut self,
        text: &str,
        file: Arc<str>,
        dir: Option<&Path>,
        depth: usize,
    ) -> Result<(), ImportError> {
        let mut lines = text.lines().enumerate();
        while let Some((i, first)) = lines.next() {
            let loc = Loc {
                file: file.clone(),
                line: i + 1,
            };
            let mut line = decomment(first);
            // `$NAME=value \` starts a definition of several lines, each a line of its
            // own where it is used; it ends at a line without the `\` or a blank one.
            if let Some((name, value)) = definition(&line)
                && let Some(head) = value.strip_suffix('\\')
            {
                let mut body = Vec::new();
                let head = head.trim_end();
                if !head.is_empty() {
                    body.push(head.to_string());
                }
                for (_, next) in lines.by_ref() {
                    let next = decomment(next);
                    if next.is_empty() {
                        break;
                    }
                    match next.strip_suffix('\\') {
                        Some(more) => {
                            let more = more.trim_end();
                            if !more.is_empty() {
                                body.push(more.to_string());
                            }
                        }
                        None => {
                            body.push(next);
                            break;
                        }
                    }
                }
                self.params.insert(
                    name,
                    Param {
                        lines: body,
                        multiline: true,
                    },
                );
                continue;
            }
            // Any other line ending in `\` goes on at the next one.
            while line.ends_with('\\') && definition(&line).is_none() {
                line.truncate(line.len() - 1);
                match lines.next() {
                    Some((_, next)) => {
                        line.push(' ');
                        line.push_str(&decomment(next));
                    }
                    None => break,
                }
            }
            self.logical_line(&line, &loc, dir, depth, 0)?;
        }
        Ok(())
    }

    /// One line after comments and continuations: `@id`, `$NAME=value`, `~SEQ`, then
    /// `$NAME` uses, in keepalived's order; a definition of several lines adds lines.
    fn logical_line(
        &mut self,
        line: &str,
        loc: &Loc,
        dir: Option<&Path>,
        depth: usize,
        nest: usize,
    ) -> Result<(), ImportError> {
        if nest > MAX_EXPANSION_DEPTH {
            self.warn(
                loc,
                "",
                format!("definitions and ~SEQ nested deeper than {MAX_EXPANSION_DEPTH}; the rest of the expansion is not read (a definition that uses itself?)"),
            );
            return Ok(());
        }
        self.expanded += 1;
        if self.expanded > MAX_EXPANDED_LINES {
            return Err(ImportError {
                file: loc.file.to_string(),
                line: loc.line,
                message: format!(
                    "definitions and ~SEQ expand to more than {MAX_EXPANDED_LINES} lines"
                ),
            });
        }
        let mut body = line.trim_start();
        // `@id` / `@^id`: the line applies only to some keepalived config ids.
        let mut cond = None;
        if let Some(tagged) = body.strip_prefix('@') {
            let end = tagged.find(char::is_whitespace).unwrap_or(tagged.len());
            let (id, reverse) = match tagged[..end].strip_prefix('^') {
                Some(id) => (id, true),
                None => (&tagged[..end], false),
            };
            let rest = tagged[end..].trim_start();
            // keepalived drops an `@id` with nothing after it.
            if rest.is_empty() {
                return Ok(());
            }
            match &self.config_id {
                Some(mine) if (mine == id) != reverse => body = rest,
                Some(_) => return Ok(()),
                None => {
                    cond = Some(format!("@{}", &tagged[..end]));
                    body = rest;
                }
            }
        }
        if let Some((name, value)) = definition(body) {
            match cond {
                Some(c) => self.warn(
                    loc,
                    &format!("${name}"),
                    format!("definition conditional on keepalived config id (`{c}`) not applied; give the id with --config-id to apply the lines for one node"),
                ),
                None => {
                    self.params.insert(
                        name,
                        Param {
                            lines: vec![value],
                            multiline: false,
                        },
                    );
                }
            }
            return Ok(());
        }
        if body.starts_with("~SEQ") {
            if let Some(c) = cond {
                self.warn(loc, "~SEQ", format!("conditional on keepalived config id (`{c}`); not expanded, give the id with --config-id"));
                return Ok(());
            }
            return self.seq(body, loc, dir, depth, nest);
        }
        if body.starts_with("~LST") {
            self.warn(
                loc,
                "~LST",
                "~LST lists are not expanded; the lines they would make are not carried over: write them out",
            );
            return Ok(());
        }
        let (first, more) = if body.contains('$') && !self.params.is_empty() {
            let sub = substitute(body, &self.params);
            for name in sub.missed {
                self.warn(
                    loc,
                    &format!("${name}"),
                    format!("keepalived does not replace `${name}` here (a bare name must be followed by a blank, `,`, `)` or the line's end), so neither does the import; write `${{{name}}}` if the definition is meant"),
                );
            }
            (sub.line, sub.more)
        } else {
            (body.to_string(), Vec::new())
        };
        // A use can make a new `@id`, definition or ~SEQ line: read it again, as keepalived
        // does.
        if first != body
            && let Some(again) = first.trim_start().chars().next()
            && (again == '@' || again == '~' || definition(first.trim_start()).is_some())
            && cond.is_none()
        {
            self.logical_line(&first, loc, dir, depth, nest + 1)?;
        } else {
            self.cond = cond;
            self.lex_line(&first, loc, dir, depth)?;
            self.cond = None;
        }
        for extra in more {
            self.logical_line(&extra, loc, dir, depth, nest + 1)?;
        }
        Ok(())
    }

    /// `~SEQ(VAR, [start, [step,]] end) TEXT`: TEXT once per value of `$VAR`.
    fn seq(
        &mut self,
        body: &str,
        loc: &Loc,
        dir: Option<&Path>,
        depth: usize,
        nest: usize,
    ) -> Result<(), ImportError> {
        let Some((var, values, hex, text)) = parse_seq(body, &self.params) else {
            self.warn(
                loc,
                "~SEQ",
                format!("`{body}` is not a valid ~SEQ(VAR, [start, [step,]] end) (keepalived rejects it too); nothing expanded"),
            );
            return Ok(());
        };
        for v in values {
            let value = if hex { format!("{v:x}") } else { v.to_string() };
            self.params.insert(
                var.clone(),
                Param {
                    lines: vec![value],
                    multiline: false,
                },
            );
            self.logical_line(&text, loc, dir, depth, nest + 1)?;
        }
        Ok(())
    }

    fn lex_line(
        &mut self,
        line: &str,
        loc: &Loc,
        dir: Option<&Path>,
        depth: usize,
    ) -> Result<(), ImportError> {
        let mut words: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    in_word = true;
                    let mut closed = false;
                    while let Some(q) = chars.next() {
                        match q {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => match chars.next() {
                                Some(n @ ('"' | '\\')) => cur.push(n),
                                Some(n) => {
                                    cur.push('\\');
                                    cur.push(n);
                                }
                                None => cur.push('\\'),
                            },
                            other => cur.push(other),
                        }
                    }
                    if !closed {
                        return Err(ImportError {
                            file: loc.file.to_string(),
                            line: loc.line,
                            message: "unterminated quoted string".to_string(),
                        });
                    }
                }
                '{' | '}' => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                    if !words.is_empty() {
                        self.statement(loc, std::mem::take(&mut words), dir, depth)?;
                    }
                    self.events.push(if c == '{' {
                        Event::Open(loc.clone())
                    } else {
                        Event::Close(loc.clone())
                    });
                }
                c if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    in_word = true;
                    cur.push(c);
                }
            }
        }
        if in_word {
            words.push(cur);
        }
        if !words.is_empty() {
            self.statement(loc, words, dir, depth)?;
        }
        Ok(())
    }

    fn statement(
        &mut self,
        loc: &Loc,
        words: Vec<String>,
        dir: Option<&Path>,
        depth: usize,
    ) -> Result<(), ImportError> {
        match words[0].as_str() {
            "include" | "includer" | "includem" | "includew" | "includeb" | "includea" => {
                self.include(loc, &words, dir, depth)
            }
            _ => {
                let cond = self.cond.take();
                self.events.push(Event::Words(loc.clone(), words, cond));
                Ok(())
            }
        }
    }

    fn include(
        &mut self,
        loc: &Loc,
        words: &[String],
        dir: Option<&Path>,
        depth: usize,
    ) -> Result<(), ImportError> {
        let kw = words[0].as_str();
        let Some(pattern) = words.get(1) else {
            self.warn(loc, kw, "no file named; nothing included");
            return Ok(());
        };
        if words.len() > 2 {
            self.warn(
                loc,
                kw,
                format!(
                    "extra words after the file name ignored: {}",
                    words[2..].join(" ")
                ),
            );
        }
        if depth >= MAX_INCLUDE_DEPTH {
            self.warn(
                loc,
                kw,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH}; `{pattern}` not read (an include loop?)"),
            );
            return Ok(());
        }
        // keepalived reads relative names from the including file's directory.
        let full = match dir {
            Some(d) if !Path::new(pattern).is_absolute() => d.join(pattern),
            _ => PathBuf::from(pattern),
        };
        let full_text = full.to_string_lossy().into_owned();
        let matches = match self.files.glob(&full_text) {
            Ok(m) => m,
            Err(e) => {
                self.warn(loc, kw, format!("`{pattern}` not read: {e}"));
                return Ok(());
            }
        };
        if matches.is_empty() {
            self.warn(
                loc,
                kw,
                format!("no file matches `{full_text}`; nothing included"),
            );
            return Ok(());
        }
        for path in matches {
            if self.files_read >= MAX_FILES {
                self.warn(
                    loc,
                    kw,
                    format!("more than {MAX_FILES} files; stopped including"),
                );
                return Ok(());
            }
            self.files_read += 1;
            let bytes = match self.files.read(&path) {
                Ok(b) => b,
                Err(e) => {
                    self.warn(loc, kw, format!("cannot read {}: {e}", path.display()));
                    continue;
                }
            };
            let name: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    self.warn(
                        loc,
                        kw,
                        format!("{name} is not UTF-8 text; invalid bytes replaced"),
                    );
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                }
            };
            let sub_dir = path.parent().map(Path::to_path_buf);
            self.lex(&text, name, sub_dir.as_deref(), depth + 1)?;
        }
        Ok(())
    }
}

/// keepalived's comment removal: leading and trailing blanks, and everything from a `#`
/// or `!` outside quotes; `\#` and `\!` outside quotes are the characters themselves.
fn decomment(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut quote = false;
    let mut chars = line.trim_start().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            '\\' => match chars.peek() {
                Some('#' | '!') if !quote => {
                    out.extend(chars.next());
                }
                Some(_) => {
                    out.push(c);
                    out.extend(chars.next());
                }
                None => out.push(c),
            },
            '#' | '!' if !quote => break,
            c => out.push(c),
        }
    }
    let keep = out.trim_end().len();
    out.truncate(keep);
    out
}

/// `$NAME=value` (blanks allowed before `=`): the name and the value, trimmed.
fn definition(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('$')?;
    let name_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..name_end];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let value = rest[name_end..].trim_start().strip_prefix('=')?;
    Some((name.to_string(), value.trim().to_string()))
}

/// `~SEQ[x](VAR, [start, [step,]] end) TEXT` as keepalived reads it: one number is the end
/// (from 1, or -1 when negative), two are start and end; `x` writes the values in hex.
fn parse_seq(
    body: &str,
    params: &HashMap<String, Param>,
) -> Option<(String, Vec<i64>, bool, String)> {
    let rest = body.strip_prefix("~SEQ")?;
    let (hex, rest) = match rest.strip_prefix('x') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start().strip_prefix('(')?;
    let close = rest.find(')')?;
    let (inside, text) = (&rest[..close], rest[close + 1..].trim_start());
    // The numbers may themselves be `$NAME`s.
    let inside = substitute(inside, params).line;
    let mut parts = inside.split(',').map(str::trim);
    let var = parts
        .next()
        .filter(|v| !v.is_empty() && !v.contains(char::is_whitespace))?;
    let nums: Vec<i64> = parts.map(parse_c_long).collect::<Option<_>>()?;
    let (start, step, end) = match nums[..] {
        [end] => (
            if end < 0 { -1 } else { 1 },
            if end < 1 { -1 } else { 1 },
            end,
        ),
        [start, end] => (start, if start <= end { 1 } else { -1 }, end),
        [start, step, end] => {
            if step == 0 || (start < end && step < 0) || (start > end && step > 0) {
                return None;
            }
            (start, step, end)
        }
        _ => return None,
    };
    if hex && (start < 0 || end < 0) {
        return None;
    }
    let mut values = Vec::new();
    let mut v = start;
    while (step > 0 && v <= end) || (step < 0 && v >= end) {
        if values.len() >= MAX_SEQ_VALUES {
            return None;
        }
        values.push(v);
        v = v.checked_add(step)?;
    }
    Some((var.to_string(), values, hex, text.to_string()))
}

/// A number as C's `strtol(s, _, 0)` reads it: decimal, `0x` hex or leading-zero octal.
fn parse_c_long(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Replace `$NAME` and `${NAME}` by their definitions, as keepalived does: a bare `$NAME`
/// only before a blank, `,`, `)` or the line's end; the replacement is read again for
/// further uses; a definition of several lines only as the last thing on the line, its
/// first line in place and the others returned as lines of their own. Unknown names stay
/// as written; a defined bare name left so (`$IF:1`) is listed, for a warning.
fn substitute(line: &str, params: &HashMap<String, Param>) -> Substituted {
    /// Bounds a definition that uses itself.
    const MAX_REPLACEMENTS: usize = 1000;
    let mut buf = line.to_string();
    let mut more = Vec::new();
    let mut missed = Vec::new();
    let mut pos = 0;
    let mut replaced = 0;
    while let Some(found) = buf[pos..].find('$') {
        let at = pos + found;
        let after = &buf[at + 1..];
        let (name, used) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let ends_well = after[end..]
                .chars()
                .next()
                .is_none_or(|c| matches!(c, ' ' | '\t' | ',' | ')'));
            if !ends_well && params.contains_key(&after[..end]) {
                missed.push(after[..end].to_string());
            }
            (if ends_well { &after[..end] } else { "" }, end)
        };
        let at_end = after[used.min(after.len())..].trim_end().is_empty();
        let param = params
            .get(name)
            .filter(|_| name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
            .filter(|p| !p.multiline || at_end);
        match param {
            Some(p) if replaced < MAX_REPLACEMENTS => {
                replaced += 1;
                let first = p.lines.first().map_or("", String::as_str);
                let tail = after[used..].to_string();
                buf.truncate(at);
                buf.push_str(first);
                buf.push_str(&tail);
                if p.multiline {
                    // Later lines come before any left from an outer expansion.
                    let rest: Vec<String> = p.lines.iter().skip(1).cloned().collect();
                    more.splice(0..0, rest);
                }
                // Read the replacement again: it may use other definitions.
                pos = at;
            }
            _ => pos = at + 1,
        }
    }
    Substituted {
        line: buf,
        more,
        missed,
    }
}

/// What [`substitute`] made of a line.
struct Substituted {
    /// The line with its uses replaced.
    line: String,
    /// Further lines from a definition of several lines.
    more: Vec<String>,
    /// Defined names written bare before a character that keeps keepalived from
    /// replacing them.
    missed: Vec<String>,
}

/// Remove `@id` statements (with their blocks), warning for each.
fn drop_conditional(nodes: &mut Vec<Node>, warnings: &mut Vec<Warning>) {
    nodes.retain(|n| {
        let Some(cond) = &n.cond else {
            return true;
        };
        warnings.push(Warning {
            file: n.loc.file.to_string(),
            line: n.loc.line,
            keyword: n.keyword().to_string(),
            message: format!(
                "conditional on keepalived config id (`{cond}`); not carried over: import with --config-id ID to apply the lines for one node, or add it by hand"
            ),
        });
        false
    });
    for n in nodes.iter_mut() {
        if let Some(b) = &mut n.block {
            drop_conditional(b, warnings);
        }
    }
}

/// Events → tree; braces must balance.
fn build(events: Vec<Event>) -> Result<Vec<Node>, ImportError> {
    // Each level: the nodes so far, and where its `{` was.
    let mut stack: Vec<(Vec<Node>, Option<Loc>)> = vec![(Vec::new(), None)];
    for ev in events {
        match ev {
            Event::Words(loc, words, cond) => {
                if let Some((level, _)) = stack.last_mut() {
                    level.push(Node {
                        loc,
                        words,
                        block: None,
                        cond,
                    });
                }
            }
            Event::Open(loc) => {
                if stack.len() > MAX_NESTING {
                    return Err(ImportError {
                        file: loc.file.to_string(),
                        line: loc.line,
                        message: format!("blocks nested deeper than {MAX_NESTING}"),
                    });
                }
                if let Some((level, _)) = stack.last_mut() {
                    // `{` belongs to the statement before it, unless that one already has
                    // a block: then it opens an anonymous block, reported by the converter.
                    if level.last().is_none_or(|n| n.block.is_some()) {
                        level.push(Node {
                            loc: loc.clone(),
                            words: Vec::new(),
                            block: None,
                            cond: None,
                        });
                    }
                }
                stack.push((Vec::new(), Some(loc)));
            }
            Event::Close(loc) => {
                if stack.len() == 1 {
                    return Err(ImportError {
                        file: loc.file.to_string(),
                        line: loc.line,
                        message: "`}` without a matching `{`".to_string(),
                    });
                }
                let Some((items, _)) = stack.pop() else {
                    break;
                };
                if let Some(owner) = stack.last_mut().and_then(|(level, _)| level.last_mut()) {
                    owner.block = Some(items);
                }
            }
        }
    }
    if stack.len() > 1 {
        let open = stack.last().and_then(|(_, l)| l.clone());
        let (file, line) = open.map_or((String::new(), 0), |l| (l.file.to_string(), l.line));
        return Err(ImportError {
            file,
            line,
            message: "`{` is never closed".to_string(),
        });
    }
    Ok(stack.pop().map(|(items, _)| items).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Vec<Node> {
        parse(&NoFiles, text, "t.conf", None, None).unwrap().0
    }

    fn shape(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| match &n.block {
                Some(b) => format!("{}{{{}}}", n.words.join(" "), shape(b)),
                None => n.words.join(" "),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    #[test]
    fn layouts_keepalived_accepts() {
        let a = "vrrp_instance A {\n  state MASTER\n  track_script {\n    chk\n  }\n}\n";
        let b = "vrrp_instance A\n{\nstate MASTER\ntrack_script { chk }\n}";
        let c = "vrrp_instance A { state MASTER\n track_script {\n chk } }";
        for t in [a, b, c] {
            assert_eq!(
                shape(&tree(t)),
                "vrrp_instance A{state MASTER;track_script{chk}}",
                "{t}"
            );
        }
    }

    #[test]
    fn comments_quotes_and_continuations() {
        let t = "! comment\n# comment\nvrrp_script s { # trailing\n script \"/bin/echo a#b {x}\" ! more\n interval \\\n 2\n}\n";
        let n = tree(t);
        let block = n[0].block.as_ref().unwrap();
        assert_eq!(block[0].words, vec!["script", "/bin/echo a#b {x}"]);
        assert_eq!(block[1].words, vec!["interval", "2"]);
        assert_eq!(block[1].loc.line, 5);
    }

    #[test]
    fn parameters() {
        let n = tree(
            "$IF=eth0\n$PRIO=150\nvrrp_instance A {\ninterface $IF\npriority ${PRIO}\nx $UNKNOWN\n}",
        );
        let b = n[0].block.as_ref().unwrap();
        assert_eq!(b[0].words, vec!["interface", "eth0"]);
        assert_eq!(b[1].words, vec!["priority", "150"]);
        assert_eq!(b[2].words, vec!["x", "$UNKNOWN"]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(&NoFiles, "a {\n b \"x\n}", "t.conf", None, None).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unterminated quoted string")
        );
        let e = parse(&NoFiles, "a {\n b {\n}", "t.conf", None, None).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (1, "`{` is never closed"));
        let e = parse(&NoFiles, "a { }\n}", "t.conf", None, None).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn includes_warn_when_not_followed() {
        let (n, w) = parse(
            &NoFiles,
            "include /etc/keepalived/*.conf\nx",
            "t.conf",
            None,
            None,
        )
        .unwrap();
        assert_eq!(shape(&n), "x");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].keyword, "include");
    }

    #[test]
    fn conditional_lines_are_reported() {
        let (n, w) = parse(
            &NoFiles,
            "@lb01 priority 150\npriority 100\n@^lb02 x {\n y\n}",
            "t.conf",
            None,
            None,
        )
        .unwrap();
        assert_eq!(shape(&n), "priority 100");
        assert_eq!(w[0].line, 1);
        assert_eq!(w[0].keyword, "priority");
        assert_eq!(w[1].line, 3);
    }

    fn tree_for(text: &str, id: &str) -> Vec<Node> {
        parse(&NoFiles, text, "t.conf", None, Some(id)).unwrap().0
    }

    #[test]
    fn conditional_lines_follow_the_config_id() {
        let t = "@lb01 priority 150\n@lb02 priority 100\n@^lb01 state BACKUP\n@lb01 $IF=eth1\n@lb02 $IF=eth2\ninterface $IF\n@lb01";
        assert_eq!(shape(&tree_for(t, "lb01")), "priority 150;interface eth1");
        assert_eq!(
            shape(&tree_for(t, "lb02")),
            "priority 100;state BACKUP;interface eth2"
        );
        // Without an id a conditional definition is reported, not applied.
        let (n, w) = parse(&NoFiles, t, "t.conf", None, None).unwrap();
        assert_eq!(shape(&n), "interface $IF");
        assert!(w.iter().any(|w| w.keyword == "$IF" && w.line == 4), "{w:?}");
    }

    #[test]
    fn definitions_of_several_lines_are_lines_of_their_own() {
        let t = "$VIPS=192.0.2.50/24 \\\n 192.0.2.51/24 dev eth1\nvirtual_ipaddress {\n $VIPS\n}\nx $VIPS y\n";
        assert_eq!(
            shape(&tree(t)),
            "virtual_ipaddress{192.0.2.50/24;192.0.2.51/24 dev eth1};x $VIPS y"
        );
    }

    #[test]
    fn seq_repeats_a_definition_with_its_variable() {
        let t = "$IF=eth0\n$INST=vrrp_instance VI_${N} { \\\n interface $IF \\\n virtual_router_id ${N} \\\n}\n~SEQ(N, 1, 2, 5) $INST\n~SEQx(H,10,11) h ${H}\n~SEQ(M,2) m ${M}\n";
        assert_eq!(
            shape(&tree(t)),
            "vrrp_instance VI_1{interface eth0;virtual_router_id 1};\
             vrrp_instance VI_3{interface eth0;virtual_router_id 3};\
             vrrp_instance VI_5{interface eth0;virtual_router_id 5};\
             h a;h b;m 1;m 2"
        );
        let (_, w) = parse(
            &NoFiles,
            "~SEQ(N, 1, -1, 5) x\n~LST(A, 1, 2) y",
            "t.conf",
            None,
            None,
        )
        .unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            (w[0].keyword.as_str(), w[1].keyword.as_str()),
            ("~SEQ", "~LST")
        );
    }

    #[test]
    fn uses_follow_keepalived_rules() {
        // A bare `$N` needs a blank, `,`, `)` or the end after it; a definition using
        // another is expanded where it is used; `\#` is a `#`.
        let t = "$N=7\n$B=x$N\n$A=$B\na $N/24 ${N}/24 $A\nb \\#1 \"c#d\" # comment\n$S=$S\ns $S\n";
        let (n, w) = parse(&NoFiles, t, "t.conf", None, None).unwrap();
        assert_eq!(shape(&n), "a $N/24 7/24 x7;b #1 c#d;s $S");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!((w[0].keyword.as_str(), w[0].line), ("$N", 4));
    }
}
