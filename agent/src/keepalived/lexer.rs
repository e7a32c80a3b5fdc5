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

struct Lexer<'a> {
    files: &'a dyn Files,
    events: Vec<Event>,
    warnings: Vec<Warning>,
    params: HashMap<String, String>,
    files_read: usize,
    /// The `@id` prefix of the line being read, for its first statement.
    cond: Option<String>,
}

/// Read `text` (named `origin`, in directory `dir` for relative includes) into a tree.
pub(crate) fn parse(
    files: &dyn Files,
    text: &str,
    origin: &str,
    dir: Option<&Path>,
) -> Result<(Vec<Node>, Vec<Warning>), ImportError> {
    let mut lx = Lexer {
        files,
        events: Vec::new(),
        warnings: Vec::new(),
        params: HashMap::new(),
        files_read: 1,
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
        let mut lines = text.lines().enumerate().peekable();
        while let Some((i, first)) = lines.next() {
            let loc = Loc {
                file: file.clone(),
                line: i + 1,
            };
            // A trailing backslash continues the line.
            let mut line = first.to_string();
            while line.trim_end().ends_with('\\') {
                let keep = line.trim_end().len() - 1;
                line.truncate(keep);
                match lines.next() {
                    Some((_, next)) => {
                        line.push(' ');
                        line.push_str(next);
                    }
                    None => break,
                }
            }
            let trimmed = line.trim_start();
            // `$NAME=value` defines a parameter; `$NAME` and `${NAME}` use it.
            if let Some(def) = trimmed.strip_prefix('$')
                && let Some((name, value)) = def.split_once('=')
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                self.params
                    .insert(name.to_string(), value.trim().to_string());
                continue;
            }
            let line = if self.params.is_empty() || !line.contains('$') {
                line
            } else {
                substitute(&line, &self.params)
            };
            // `@id` / `@^id` lines apply only to some keepalived config ids. They are
            // read (so their braces still balance) and dropped with a warning later.
            let mut body = line.as_str();
            let trimmed = body.trim_start();
            if trimmed.starts_with('@') {
                let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
                self.cond = Some(trimmed[..end].to_string());
                body = &trimmed[end..];
            }
            self.lex_line(body, &loc, dir, depth)?;
            self.cond = None;
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
                '#' | '!' => break,
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

/// Replace `$NAME` and `${NAME}` by defined parameters; unknown names stay as written.
fn substitute(line: &str, params: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, used) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match params.get(name) {
            Some(v) if !name.is_empty() => {
                out.push_str(v);
                rest = &after[used..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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
                "conditional on keepalived config id (`{cond}`); not carried over, add it by hand on the node it is for"
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
        parse(&NoFiles, text, "t.conf", None).unwrap().0
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
        let e = parse(&NoFiles, "a {\n b \"x\n}", "t.conf", None).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unterminated quoted string")
        );
        let e = parse(&NoFiles, "a {\n b {\n}", "t.conf", None).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (1, "`{` is never closed"));
        let e = parse(&NoFiles, "a { }\n}", "t.conf", None).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn includes_warn_when_not_followed() {
        let (n, w) = parse(
            &NoFiles,
            "include /etc/keepalived/*.conf\nx",
            "t.conf",
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
        )
        .unwrap();
        assert_eq!(shape(&n), "priority 100");
        assert_eq!(w[0].line, 1);
        assert_eq!(w[0].keyword, "priority");
        assert_eq!(w[1].line, 3);
    }
}
