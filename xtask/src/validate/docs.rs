//! Every command a doc shows is run by CI or xtask (issue #8): the commands of the fenced shell
//! blocks in README.md and docs/**/*.md must be listed in docs/operations/doc-commands.md with
//! what covers them, every `cargo xtask …` must parse with xtask's own clap definitions, every
//! `curl` path must be in docs/openapi.json with its method, and every `QUIZSTATS_*` variable
//! anywhere in the docs must name a real setting (config/example.toml) or a variable the code reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;

/// The inventory: what runs each command shown, or why it cannot run in CI.
pub(super) const INVENTORY: &str = "docs/operations/doc-commands.md";
/// The heading of the inventory's table the check reads (the fenced commands).
const INVENTORY_SECTION: &str = "## Commands in shell blocks";
/// Info strings of the fenced blocks whose lines are commands (`console`: only `$ ` lines).
const SHELL_LANGS: &[&str] = &["sh", "bash", "shell", "zsh", "console"];
/// `QUIZSTATS_<SERVICE>__*` scopes a variable to one service (crates/common/src/settings.rs).
const SERVICES: &[&str] = &["GATEWAY", "ANALYZER", "SCRAPER_WORKER", "STATS_BROADCASTER"];

/// One logical command of a shell block: continuations joined, comments dropped.
#[derive(Debug, PartialEq)]
pub(super) struct Shown {
    pub file: String,
    pub line: usize,
    /// The command with every run of whitespace collapsed: the inventory's key.
    pub text: String,
    /// Its simple commands (split at `|`, `||`, `&&`, `;`, `&`), as unquoted words.
    pub simple: Vec<Vec<String>>,
}

/// What the checks compare against, read once from the repository.
pub(super) struct Facts {
    /// `(method, path template)` from docs/openapi.json, method lower case.
    pub operations: BTreeSet<(String, String)>,
    /// Tables (`llm`, `llm.prices`) and keys (`llm.model`) of config/example.toml.
    pub settings: BTreeSet<String>,
    /// Struct → field → field type, of every struct in a settings.rs: the keys example.toml
    /// cannot show (an `Option` without a default is left out of it).
    pub fields: BTreeMap<String, BTreeMap<String, String>>,
    /// `"QUIZSTATS_…"` string literals in the Rust sources: variables read directly.
    pub literals: BTreeSet<String>,
    /// Normalised command → its coverage, from the inventory's shell-block table.
    pub inventory: Vec<(String, String)>,
}

pub(super) fn check_docs(root: &Path) -> Result<String> {
    let facts = read_facts(root)?;
    let mut docs = vec![root.join("README.md")];
    collect_files(&root.join("docs"), "md", &mut docs)?;
    docs.sort();
    let mut problems = Vec::new();
    let mut shown = Vec::new();
    for path in &docs {
        let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let relative = path.strip_prefix(root).unwrap_or(path).display().to_string();
        problems.extend(check_variables(&relative, &text, &facts));
        for (line, command) in inline_xtask_commands(&text) {
            let args: Vec<&str> = command.split_whitespace().skip(2).collect();
            if let Err(problem) = check_xtask(&args, true) {
                problems.push(format!("{relative}:{line}: {problem}"));
            }
        }
        shown.extend(extract_commands(&relative, &text));
    }
    for command in &shown {
        problems.extend(check_command(command, &facts));
    }
    for (listed, _) in &facts.inventory {
        if !shown.iter().any(|command| &command.text == listed) {
            problems.push(format!(
                "{INVENTORY}: `{listed}` is listed but no doc shows it; remove the row"
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(format!("{} commands in {} docs covered", shown.len(), docs.len()))
}

/// Every problem with one shown command, each naming its file and line.
pub(super) fn check_command(command: &Shown, facts: &Facts) -> Vec<String> {
    let at = format!("{}:{}", command.file, command.line);
    let mut problems = Vec::new();
    match facts.inventory.iter().find(|(listed, _)| listed == &command.text) {
        None => problems.push(format!(
            "{at}: `{}` is not in {INVENTORY}; add a row saying what runs it in CI",
            command.text
        )),
        Some((_, coverage)) if coverage.trim().is_empty() => {
            problems.push(format!("{at}: `{}` has no coverage in {INVENTORY}", command.text))
        }
        Some(_) => {}
    }
    for words in &command.simple {
        let words: Vec<&str> = words
            .iter()
            .map(String::as_str)
            .skip_while(|word| is_assignment(word))
            .collect();
        let problem = match words.as_slice() {
            ["cargo", "xtask", args @ ..] => check_xtask(args, false).err(),
            ["curl", args @ ..] => check_curl(args, &facts.operations).err(),
            _ => None,
        };
        problems.extend(problem.map(|problem| format!("{at}: {problem}")));
    }
    problems
}

/// `cargo xtask <args>` must parse with xtask's own clap definitions; placeholders (`<id>`,
/// `N`) stand for any value. A benchmark or chaos profile must be one that exists. Prose may
/// name a command group without its subcommand (`cargo xtask dlq`): `partial` allows that.
pub(super) fn check_xtask(args: &[&str], partial: bool) -> Result<(), String> {
    let argv = std::iter::once("cargo xtask")
        .chain(args.iter().map(|arg| if is_placeholder(arg) { "1" } else { arg }));
    let cli = match crate::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        // `cargo xtask validate --help` is a command that works.
        Err(error) if error.kind() == clap::error::ErrorKind::DisplayHelp => return Ok(()),
        Err(error)
            if partial
                && matches!(
                    error.kind(),
                    clap::error::ErrorKind::MissingSubcommand
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                ) =>
        {
            return Ok(());
        }
        Err(error) => {
            let first = error.to_string().lines().next().unwrap_or("").to_owned();
            return Err(format!(
                "`cargo xtask {}` is not a valid xtask command: {first}",
                args.join(" ")
            ));
        }
    };
    match cli.task {
        crate::Task::Bench { name }
            if !args.iter().any(|arg| is_placeholder(arg))
                && !crate::bench::NAMES.contains(&name.as_str()) =>
        {
            return Err(format!(
                "`cargo xtask bench {name}`: there is no such benchmark (there are: {})",
                crate::bench::NAMES.join(", ")
            ));
        }
        crate::Task::Chaos { profile, .. } if !["ci", "full"].contains(&profile.as_str()) => {
            return Err(format!(
                "`cargo xtask chaos --profile {profile}`: the profiles are ci and full"
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The URL of a `curl` must be an operation of docs/openapi.json, with the method it sends.
pub(super) fn check_curl(args: &[&str], operations: &BTreeSet<(String, String)>) -> Result<(), String> {
    let mut method = None;
    let mut sends_body = false;
    let mut url = None;
    let mut words = args.iter();
    while let Some(&word) = words.next() {
        match word {
            "-X" | "--request" => method = words.next().map(|method| method.to_lowercase()),
            "-d" | "--data" | "--data-raw" | "--data-binary" | "--json" | "-F" | "--form" => {
                sends_body = true;
                words.next();
            }
            "-H" | "--header" | "-o" | "--output" | "-u" | "--user" | "-m" | "--max-time" => {
                words.next();
            }
            "-I" | "--head" => method = Some("head".to_owned()),
            _ if !word.starts_with('-') && url.is_none() => url = Some(word),
            _ => {}
        }
    }
    let Some(url) = url else {
        return Err("a curl without a URL".to_owned());
    };
    let method = method.unwrap_or_else(|| if sends_body { "post" } else { "get" }.to_owned());
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |start| &after_scheme[start..]);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let known = operations
        .iter()
        .any(|(known_method, template)| known_method == &method && path_matches(template, path));
    if known {
        Ok(())
    } else {
        Err(format!(
            "`{} {path}` (curl {url}) is not an operation in docs/openapi.json",
            method.to_uppercase()
        ))
    }
}

/// `/v1/quizzes/{id}` matches `/v1/quizzes/<id>` and `/v1/quizzes/0193…`.
fn path_matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(expected, actual)| expected == actual || (expected.starts_with('{') && !actual.is_empty()))
}

/// Every `QUIZSTATS_*` variable in a doc (prose too) must be a setting or a variable the code reads.
pub(super) fn check_variables(file: &str, text: &str, facts: &Facts) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("QUIZSTATS_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            if !variable_is_real(name, facts) {
                problems.push(format!(
                    "{file}:{}: {name} is neither a key of config/example.toml nor a variable the code reads",
                    index + 1
                ));
            }
            rest = &tail[end..];
        }
    }
    problems
}

pub(super) fn variable_is_real(name: &str, facts: &Facts) -> bool {
    let rest = name.trim_start_matches("QUIZSTATS_");
    if rest.is_empty() || facts.literals.contains(name) {
        return true;
    }
    // A secret read from a file: `secret_from_env(NAME)` also reads `NAME_FILE`.
    if let Some(base) = name.strip_suffix("_FILE")
        && facts.literals.contains(base)
    {
        return true;
    }
    let mut segments: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if segments.len() > 1
        && SERVICES
            .iter()
            .any(|service| service.eq_ignore_ascii_case(&segments[0]))
    {
        segments.remove(0);
    }
    if segments.last().is_some_and(String::is_empty) {
        // A prefix such as `QUIZSTATS_REDIS__` or `QUIZSTATS_GATEWAY__`: a table or a service.
        segments.pop();
        return segments.is_empty() || facts.settings.contains(&segments.join("."));
    }
    facts.settings.contains(&segments.join(".")) || field_path_exists(&facts.fields, &segments)
}

/// True when `llm.dialect` is a chain of settings fields: some struct has a field `llm`, whose
/// type has a field `dialect`.
fn field_path_exists(fields: &BTreeMap<String, BTreeMap<String, String>>, segments: &[String]) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return false;
    };
    let mut types: BTreeSet<&String> = fields
        .values()
        .filter_map(|struct_fields| struct_fields.get(first))
        .collect();
    for segment in rest {
        types = types
            .iter()
            .filter_map(|type_name| fields.get(*type_name)?.get(segment))
            .collect();
    }
    !types.is_empty()
}

/// `(line, text)` of the inline code spans outside fenced blocks that are `cargo xtask …`.
pub(super) fn inline_xtask_commands(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_block = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        // Between the backticks of a line, every other piece is code.
        for span in line.split('`').skip(1).step_by(2) {
            if span.starts_with("cargo xtask ") || span == "cargo xtask" {
                found.push((index + 1, span.to_owned()));
            }
        }
    }
    found
}

/// A fenced block being read: its language, where its body starts, its fence's indent.
struct Block {
    is_shell: bool,
    is_console: bool,
    first_line: usize,
    indent: usize,
    body: String,
}

/// The logical commands of every fenced shell block of one markdown file. In a `console`
/// block only the `$ ` lines are commands; the rest is output.
pub(super) fn extract_commands(file: &str, markdown: &str) -> Vec<Shown> {
    let mut commands = Vec::new();
    let mut block: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        if let Some(info) = fence.strip_prefix("```") {
            block = match block.take() {
                Some(done) => {
                    if done.is_shell {
                        commands.extend(lex(file, done.first_line, &done.body));
                    }
                    None
                }
                None => {
                    let lang = info.split([' ', ',', '{']).next().unwrap_or("").to_lowercase();
                    Some(Block {
                        is_shell: SHELL_LANGS.contains(&lang.as_str()),
                        is_console: lang == "console",
                        first_line: index + 2,
                        indent: line.len() - fence.len(),
                        body: String::new(),
                    })
                }
            };
            continue;
        }
        if let Some(block) = &mut block {
            // A fence inside a list item is indented; its lines are read without that indent.
            let indent = line.len() - line.trim_start().len();
            let content = &line[indent.min(block.indent)..];
            if !block.is_console {
                block.body.push_str(content);
            } else if let Some(command) = content.strip_prefix("$ ") {
                block.body.push_str(command);
            }
            block.body.push('\n');
        }
    }
    commands
}

/// A small shell lexer: quotes, `\` continuations, `$( … )`, `# comments`, `<placeholders>`.
/// `first_line` is the line number of the block's first line.
pub(super) fn lex(file: &str, first_line: usize, body: &str) -> Vec<Shown> {
    let mut commands = Vec::new();
    let mut line = first_line;
    let mut start_line = first_line;
    let (mut text, mut word) = (String::new(), String::new());
    let (mut simple, mut words): (Vec<Vec<String>>, Vec<String>) = (Vec::new(), Vec::new());
    let mut in_word = false;
    let mut chars = body.chars().peekable();
    let end_word = |word: &mut String, words: &mut Vec<String>, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
                line += 1;
                end_word(&mut word, &mut words, &mut in_word);
                text.push(' ');
            }
            '\'' | '"' => {
                in_word = true;
                text.push(c);
                while let Some(inner) = chars.next() {
                    text.push(inner);
                    if inner == '\n' {
                        line += 1;
                    }
                    if inner == c {
                        break;
                    }
                    if c == '"' && inner == '\\' {
                        if let Some(escaped) = chars.next() {
                            text.push(escaped);
                            word.push(escaped);
                        }
                        continue;
                    }
                    word.push(inner);
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                let mut depth = 0;
                for inner in std::iter::once(c).chain(chars.by_ref()) {
                    text.push(inner);
                    word.push(inner);
                    depth += i32::from(inner == '(') - i32::from(inner == ')');
                    if inner == ')' && depth == 0 {
                        break;
                    }
                }
            }
            '<' if !in_word => {
                // `<id>`, `<URL|FILE>`: a placeholder, not a redirection.
                let rest: String = chars.clone().take_while(|next| !next.is_whitespace()).collect();
                in_word = true;
                text.push(c);
                word.push(c);
                if let Some(close) = rest.find('>') {
                    for inner in chars.by_ref().take(close + 1) {
                        text.push(inner);
                        word.push(inner);
                    }
                }
            }
            '#' if !in_word => {
                while chars.peek().is_some_and(|next| *next != '\n') {
                    chars.next();
                }
            }
            '|' | '&' | ';' => {
                end_word(&mut word, &mut words, &mut in_word);
                if chars.peek() == Some(&c) {
                    chars.next();
                    text.push(c);
                }
                text.push(c);
                if !words.is_empty() {
                    simple.push(std::mem::take(&mut words));
                }
            }
            '\n' => {
                end_word(&mut word, &mut words, &mut in_word);
                if !words.is_empty() {
                    simple.push(std::mem::take(&mut words));
                }
                let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !simple.is_empty() {
                    commands.push(Shown {
                        file: file.to_owned(),
                        line: start_line,
                        text: collapsed,
                        simple: std::mem::take(&mut simple),
                    });
                }
                text.clear();
                line += 1;
                start_line = line;
            }
            c if c.is_whitespace() => {
                end_word(&mut word, &mut words, &mut in_word);
                text.push(c);
            }
            c => {
                in_word = true;
                text.push(c);
                word.push(c);
            }
        }
    }
    commands
}

/// `VAR=value` before a command.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// `<id>`, `<n|id>`, `N`, `URL`: a value the reader fills in.
fn is_placeholder(word: &str) -> bool {
    (word.starts_with('<') && word.ends_with('>'))
        || (!word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase()))
}

fn read_facts(root: &Path) -> Result<Facts> {
    let read = |relative: &str| {
        fs::read_to_string(root.join(relative)).with_context(|| format!("reading {relative}"))
    };
    let openapi: serde_json::Value =
        serde_json::from_str(&read("docs/openapi.json")?).context("parsing docs/openapi.json")?;
    let mut operations = BTreeSet::new();
    for (path, item) in openapi["paths"]
        .as_object()
        .context("docs/openapi.json has no paths")?
    {
        for method in item.as_object().into_iter().flat_map(|item| item.keys()) {
            operations.insert((method.to_lowercase(), path.clone()));
        }
    }
    let mut sources = Vec::new();
    collect_files(&root.join("crates"), "rs", &mut sources)?;
    collect_files(&root.join("services"), "rs", &mut sources)?;
    let (mut fields, mut literals) = (BTreeMap::new(), BTreeSet::new());
    for path in &sources {
        let source = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if path.file_name().is_some_and(|name| name == "settings.rs") {
            // Every service has its own `Settings`: same-named structs pool their fields.
            for (name, found) in struct_fields(&source) {
                fields.entry(name).or_insert_with(BTreeMap::new).extend(found);
            }
        }
        for piece in source.split("\"QUIZSTATS_").skip(1) {
            if let Some((name, _)) = piece.split_once('"') {
                literals.insert(format!("QUIZSTATS_{name}"));
            }
        }
    }
    Ok(Facts {
        operations,
        settings: settings_keys(&read("config/example.toml")?),
        fields,
        literals,
        inventory: inventory_rows(&read(INVENTORY)?),
    })
}

/// Tables and dotted keys of a TOML file such as config/example.toml.
pub(super) fn settings_keys(toml: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut table = String::new();
    for line in toml.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|line| line.strip_suffix(']')) {
            table = header.trim_matches(['[', ']']).to_owned();
            let parts: Vec<&str> = table.split('.').collect();
            keys.extend((1..=parts.len()).map(|n| parts[..n].join(".")));
        } else if let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            keys.insert(
                format!("{table}.{}", key.trim())
                    .trim_start_matches('.')
                    .to_owned(),
            );
        }
    }
    keys
}

/// `pub struct Name { pub field: Type, … }` of a source, as name → field → type, the type
/// without `Option<…>` and without its module path.
pub(super) fn struct_fields(source: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut structs = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            current = Some(name);
        } else if line == "}" {
            current = None;
        } else if let Some(name) = &current
            && let Some((field, field_type)) =
                line.strip_prefix("pub ").and_then(|line| line.split_once(": "))
        {
            let field_type = field_type.trim_end_matches(',');
            let field_type = field_type
                .strip_prefix("Option<")
                .and_then(|inner| inner.strip_suffix('>'))
                .unwrap_or(field_type);
            let field_type = field_type.rsplit("::").next().unwrap_or(field_type);
            structs
                .entry(name.clone())
                .or_insert_with(BTreeMap::new)
                .insert(field.to_owned(), field_type.to_owned());
        }
    }
    structs
}

/// `(command, coverage)` of each row of the inventory's shell-block table; `\|` is a `|`.
pub(super) fn inventory_rows(markdown: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut in_section = false;
    for line in markdown.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == INVENTORY_SECTION;
            continue;
        }
        if !in_section || !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<String> = line
            .replace("\\|", "\u{0}")
            .split('|')
            .map(|cell| cell.replace('\u{0}', "|").trim().to_owned())
            .collect();
        // `| command | where shown | what runs it in CI |`
        if let [_, command, _, coverage, ..] = cells.as_slice() {
            let command = command
                .trim_matches('`')
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            rows.push((command, coverage.clone()));
        }
    }
    rows
}

fn collect_files(dir: &Path, extension: &str, into: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            collect_files(&path, extension, into)?;
        } else if path.extension().is_some_and(|found| found == extension) {
            into.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "docs_tests.rs"]
mod tests;
