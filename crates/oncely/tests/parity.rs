//! The Rust column of the API parity table (`tests/parity/api.tsv`): every name there exists in
//! the core's source. A simple text scan of `src/**/*.rs`: `Type::member` is found as
//! `pub fn member` / `pub async fn member` / `pub const fn member` in an `impl … Type` block, as
//! `fn member` in a trait impl for `Type` or in `trait Type`, as a `pub member:` field of
//! `struct Type`, or as a variant `member` of `enum Type`. A row marked `known_gap` (6th column)
//! may say `-`; any other empty or `-` cell fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq)]
enum Kind {
    Impl,
    TraitImpl,
    Trait,
    Struct,
    Enum,
}

struct Block {
    kind: Kind,
    /// The body's lines, each with its brace depth inside the block (1 = directly inside).
    lines: Vec<(usize, String)>,
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The line without comments, string and char literals (so that their braces do not count).
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            '\'' => {
                // A char literal such as '{' (a lifetime `'a` has no closing quote right after).
                let rest: String = chars.clone().take(3).collect();
                if rest.len() >= 2 && rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                } else if rest.starts_with('\\') && rest.chars().nth(2) == Some('\'') {
                    chars.next();
                    chars.next();
                    chars.next();
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The last path segment of a type, without generics: `crate::x::Inbox<S>` -> `Inbox`.
fn base_name(t: &str) -> String {
    let t = t.trim();
    let t = t.split('<').next().unwrap_or(t);
    let t = t.rsplit("::").next().unwrap_or(t);
    t.trim().trim_end_matches('{').trim().to_string()
}

/// Strips a leading `<...>` generic list (balanced) from `s`.
fn skip_generics(s: &str) -> &str {
    let s = s.trim_start();
    if !s.starts_with('<') {
        return s;
    }
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return &s[i + 1..];
                }
            }
            _ => {}
        }
    }
    s
}

/// The kind and type name of a block header line, if it is one.
fn header(code: &str) -> Option<(Kind, String)> {
    let t = code.trim();
    if let Some(rest) = t.strip_prefix("impl") {
        if !(rest.starts_with('<') || rest.starts_with(' ')) {
            return None;
        }
        let rest = skip_generics(rest);
        let rest = rest.split(" where ").next().unwrap_or(rest);
        return Some(match rest.split_once(" for ") {
            Some((_, target)) => (Kind::TraitImpl, base_name(target)),
            None => (Kind::Impl, base_name(rest)),
        });
    }
    let t = t.strip_prefix("pub ")?;
    for (kw, kind) in [("struct ", Kind::Struct), ("enum ", Kind::Enum), ("trait ", Kind::Trait)] {
        if let Some(rest) = t.strip_prefix(kw) {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            return Some((kind, name));
        }
    }
    None
}

fn blocks(files: &[String]) -> BTreeMap<String, Vec<Block>> {
    let mut out: BTreeMap<String, Vec<Block>> = BTreeMap::new();
    for text in files {
        let code: Vec<String> = text.lines().map(code_of).collect();
        for (i, line) in code.iter().enumerate() {
            let Some((kind, name)) = header(line) else { continue };
            // The block runs from its first `{` to the matching `}`.
            let mut depth = 0usize;
            let mut opened = false;
            let mut lines = Vec::new();
            'scan: for (j, l) in code.iter().enumerate().skip(i) {
                let at = depth;
                for c in l.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => {
                            depth = depth.saturating_sub(1);
                            if opened && depth == 0 {
                                break 'scan;
                            }
                        }
                        ';' if !opened => break 'scan, // `pub struct X;` / `pub struct X(u8);`
                        _ => {}
                    }
                }
                if j > i {
                    lines.push((at, l.trim().to_string()));
                }
            }
            if opened {
                out.entry(name).or_default().push(Block { kind, lines });
            }
        }
    }
    out
}

fn starts_ident(line: &str, prefix: &str, name: &str) -> bool {
    line.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix(name))
        .is_some_and(|r| r.is_empty() || !(r.starts_with(|c: char| c.is_alphanumeric() || c == '_')))
}

fn has_member(b: &Block, member: &str) -> bool {
    b.lines.iter().filter(|(d, _)| *d == 1).any(|(_, l)| match b.kind {
        Kind::Impl => {
            ["pub fn ", "pub async fn ", "pub const fn "].iter().any(|p| starts_ident(l, p, member))
        }
        Kind::TraitImpl | Kind::Trait => {
            ["fn ", "async fn ", "pub fn ", "pub async fn "].iter().any(|p| starts_ident(l, p, member))
        }
        Kind::Struct => {
            starts_ident(l, "pub ", member) && l[4 + member.len()..].trim_start().starts_with(':')
        }
        Kind::Enum => starts_ident(l, "", member),
    })
}

#[test]
fn every_rust_name_of_the_table_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = root.join("../../tests/parity/api.tsv");
    let text = fs::read_to_string(&table).unwrap_or_else(|e| panic!("{}: {e}", table.display()));
    let mut paths = Vec::new();
    sources(&root.join("src"), &mut paths);
    let files: Vec<String> = paths.iter().map(|p| fs::read_to_string(p).unwrap()).collect();
    let blocks = blocks(&files);
    let top_level = |name: &str| {
        files.iter().flat_map(|f| f.lines()).any(|l| {
            let l = l.trim();
            ["pub fn ", "pub async fn ", "pub const fn "].iter().any(|p| starts_ident(l, p, name))
        })
    };

    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("operation\trust\tpython\tnode\tkotlin"));
    let mut problems = Vec::new();
    let mut rows = 0;
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        rows += 1;
        let cells: Vec<&str> = line.split('\t').collect();
        let at = format!("api.tsv line {}: {}", n + 2, cells[0]);
        if !(cells.len() == 5 || (cells.len() == 6 && cells[5] == "known_gap")) {
            problems.push(format!("{at}: a row has 5 cells, or 6 with `known_gap` last"));
            continue;
        }
        let cell = cells[1];
        if cells.len() == 6 && cell == "-" {
            continue;
        }
        if cell.is_empty() || cell == "-" {
            problems.push(format!("{at}: no Rust name"));
            continue;
        }
        for name in cell.split('|').map(str::trim) {
            let found = match name.split_once("::") {
                Some(("module", f)) => top_level(f),
                Some((ty, member)) => {
                    blocks.get(ty).is_some_and(|bs| bs.iter().any(|b| has_member(b, member)))
                }
                None => false,
            };
            if !found {
                problems.push(format!("{at}: `{name}` not found in crates/oncely/src"));
            }
        }
    }
    assert!(rows > 50, "{rows} rows");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
