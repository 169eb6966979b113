//! Tests of validate/docs.rs: the extraction and each check on small inline markdown samples,
//! and the repository's own docs.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use super::*;

fn facts(inventory: &[&str]) -> Facts {
    Facts {
        operations: [
            ("get", "/v1/quizzes/{id}"),
            ("post", "/v1/quizzes"),
            ("post", "/api/analyze"),
        ]
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .collect(),
        settings: settings_keys(
            "[llm]\nmodel = \"x\"\n\n[llm.prices.gpt-4o]\nprompt_per_million = 1.0\n[http]\nport = 1\n",
        ),
        fields: struct_fields(
            "pub struct Settings {\n    pub llm: LlmSettings,\n    pub http: common::HttpSettings,\n}\n\
             pub struct LlmSettings {\n    pub dialect: Option<Dialect>,\n    pub jwt: Option<JwtSettings>,\n}\n\
             pub struct JwtSettings {\n    pub secret_file: Option<PathBuf>,\n}\n",
        ),
        literals: ["QUIZSTATS_ENV".to_owned(), "QUIZSTATS_LLM__API_KEY".to_owned()].into(),
        inventory: inventory
            .iter()
            .map(|command| ((*command).to_owned(), "CI".to_owned()))
            .collect(),
    }
}

fn problems(markdown: &str, inventory: &[&str]) -> Vec<String> {
    let facts = facts(inventory);
    extract_commands("doc.md", markdown)
        .iter()
        .flat_map(|command| check_command(command, &facts))
        .collect()
}

#[test]
fn extraction_joins_continuations_and_drops_comments_and_other_blocks() {
    let markdown = "text `cargo xtask nope`\n```sh\n# a comment\ncargo xtask up   # start\ncurl -s localhost:8080/v1/quizzes \\\n  -d '{\n \"a\": 1\n}'\nKEY=$(cat key) && echo \"$KEY\" | wc -c\n```\n```json\n{\"not\": \"a command\"}\n```\n   ```console\n   $ cargo xtask down\n   stopped\n   ```\n";
    let commands = extract_commands("doc.md", markdown);
    let texts: Vec<&str> = commands.iter().map(|command| command.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "cargo xtask up",
            "curl -s localhost:8080/v1/quizzes -d '{ \"a\": 1 }'",
            "KEY=$(cat key) && echo \"$KEY\" | wc -c",
            "cargo xtask down"
        ]
    );
    assert_eq!(
        commands.iter().map(|command| command.line).collect::<Vec<_>>(),
        [4, 5, 9, 15]
    );
    assert_eq!(commands[1].simple[0].last().unwrap(), "{\n \"a\": 1\n}");
    assert_eq!(
        commands[2].simple,
        [vec!["KEY=$(cat key)"], vec!["echo", "$KEY"], vec!["wc", "-c"]]
    );
}

#[test]
fn placeholders_with_a_bar_are_one_word_and_a_bar_between_words_is_a_pipe() {
    let commands = extract_commands(
        "doc.md",
        "```sh\ncargo xtask dlq requeue <n|id>\ncargo xtask bench gateway|broadcaster\n```\n",
    );
    assert_eq!(
        commands[0].simple,
        [vec!["cargo", "xtask", "dlq", "requeue", "<n|id>"]]
    );
    assert_eq!(commands[1].simple.len(), 2);
}

fn check_xtask_strict(args: &[&str]) -> Result<(), String> {
    check_xtask(args, false)
}

#[test]
fn inline_xtask_spans_are_found_outside_blocks_and_may_name_a_group() {
    let markdown = "Run `cargo xtask dlq` or `cargo xtask soak --minutes N`, not `cargo test`.\n```sh\n`cargo xtask in-a-block`\n```\nand `cargo xtask validate --fast`\n";
    let found = inline_xtask_commands(markdown);
    assert_eq!(
        found,
        [
            (1, "cargo xtask dlq".to_owned()),
            (1, "cargo xtask soak --minutes N".to_owned()),
            (5, "cargo xtask validate --fast".to_owned())
        ]
    );
    assert_eq!(check_xtask(&["dlq"], true), Ok(()));
    assert!(check_xtask(&["dlq"], false).is_err());
    assert!(check_xtask(&["validate", "--fast"], true).is_err());
}

#[test]
fn xtask_commands_must_parse_with_the_real_cli() {
    assert_eq!(check_xtask_strict(&["validate", "--live"]), Ok(()));
    assert_eq!(check_xtask_strict(&["dlq", "--help"]), Ok(()));
    assert_eq!(check_xtask_strict(&["soak", "--minutes", "N"]), Ok(()));
    assert_eq!(check_xtask_strict(&["dlq", "requeue", "<n|id>"]), Ok(()));
    assert_eq!(check_xtask_strict(&["bench", "<name>"]), Ok(()));
    assert!(check_xtask_strict(&["validate", "--offline"]).is_err());
    assert!(check_xtask_strict(&["deploy"]).is_err());
    assert!(check_xtask_strict(&["dlq", "purge", "--force"]).is_err());
    assert!(
        check_xtask_strict(&["bench", "nginx"])
            .unwrap_err()
            .contains("no such benchmark")
    );
    assert!(check_xtask_strict(&["chaos", "--profile", "huge"]).is_err());
}

#[test]
fn curl_paths_and_methods_must_be_in_the_openapi_document() {
    let operations = facts(&[]).operations;
    let curl = |args: &[&str]| check_curl(args, &operations);
    assert_eq!(
        curl(&["-s", "localhost:8080/v1/quizzes/<id>", "-H", "a: b"]),
        Ok(())
    );
    assert_eq!(
        curl(&["-s", "http://localhost:8080/v1/quizzes", "-d", "{}"]),
        Ok(())
    );
    assert_eq!(curl(&["localhost:8080/v1/quizzes?limit=2", "-X", "POST"]), Ok(()));
    assert!(curl(&["-s", "localhost:8080/v1/quizzes/<id>", "-X", "DELETE"]).is_err());
    assert!(curl(&["-s", "localhost:8080/v1/quiz", "-d", "{}"]).is_err());
    assert!(
        curl(&["-s", "localhost:8080/api/analyze"]).is_err(),
        "GET of a POST-only path"
    );
}

#[test]
fn variables_must_be_settings_or_read_by_the_code() {
    let facts = facts(&[]);
    for real in [
        "QUIZSTATS_LLM__MODEL",
        "QUIZSTATS_ANALYZER__HTTP__PORT",
        "QUIZSTATS_LLM__DIALECT",
        "QUIZSTATS_LLM__JWT__SECRET_FILE",
        "QUIZSTATS_LLM__PRICES",
        "QUIZSTATS_LLM__API_KEY_FILE",
        "QUIZSTATS_ENV",
        "QUIZSTATS_LLM__",
        "QUIZSTATS_GATEWAY__",
        "QUIZSTATS_",
    ] {
        assert!(variable_is_real(real, &facts), "{real}");
    }
    for unreal in [
        "QUIZSTATS_LLM__MODE",
        "QUIZSTATS_HTTP__DIALECT",
        "QUIZSTATS_LLM__JWT__SECRET_PATH",
        "QUIZSTATS_LLM_MODEL",
        "QUIZSTATS_HTTP__PORT_FILE",
        "QUIZSTATS_NOPE__",
        "QUIZSTATS_PROFILE",
    ] {
        assert!(!variable_is_real(unreal, &facts), "{unreal}");
    }
    let found = check_variables(
        "doc.md",
        "ok QUIZSTATS_LLM__MODEL\nbad `QUIZSTATS_LLM__MODLE=x`\n",
        &facts,
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("doc.md:2: QUIZSTATS_LLM__MODLE "),
        "{found:?}"
    );
}

#[test]
fn a_command_missing_from_the_inventory_fails_naming_file_and_line() {
    let markdown = "# t\n\n```bash\ncargo xtask up\nkubectl apply -f -\n```\n";
    assert_eq!(
        problems(markdown, &["cargo xtask up", "kubectl apply -f -"]),
        Vec::<String>::new()
    );
    let missing = problems(markdown, &["cargo xtask up"]);
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with("doc.md:5: `kubectl apply -f -` is not in"),
        "{missing:?}"
    );
    let wrong = problems(
        "```sh\ncargo xtask validate --fast\n```\n",
        &["cargo xtask validate --fast"],
    );
    assert!(
        wrong[0].starts_with("doc.md:2: `cargo xtask validate --fast` is not a valid"),
        "{wrong:?}"
    );
}

#[test]
fn inventory_rows_come_from_the_shell_block_section_only() {
    let markdown = format!(
        "# Inventory\n\n{INVENTORY_SECTION}\n\n| command | where | covered by |\n|---|---|---|\n| `a \\| b` | x.md | CI |\n| `c` | y.md |  |\n\n## Inline commands\n\n| `d` | z.md | CI |\n"
    );
    assert_eq!(
        inventory_rows(&markdown),
        [
            ("a | b".to_owned(), "CI".to_owned()),
            ("c".to_owned(), String::new())
        ]
    );
}

#[test]
fn settings_keys_has_tables_and_keys() {
    let keys = settings_keys("# c = 1\n[amqp]\nurl = \"x\"\n[llm.prices.gpt-4o]\nprompt_per_million = 2.5\n");
    let expected = [
        "amqp",
        "amqp.url",
        "llm",
        "llm.prices",
        "llm.prices.gpt-4o",
        "llm.prices.gpt-4o.prompt_per_million",
    ];
    assert_eq!(keys.into_iter().collect::<Vec<_>>(), expected);
}

/// The repository's own docs pass: `cargo test -p xtask docs` runs the check without the
/// tools the rest of `cargo xtask validate` installs.
#[test]
fn the_repository_docs_pass() {
    if let Err(error) = check_docs(&crate::util::workspace_root()) {
        panic!("{error:#}");
    }
}

/// The whole check on a small repository: a missing row, a stale row, a wrong path and a
/// wrong variable each fail, and the fixed docs pass.
#[test]
fn check_docs_reads_a_repository_end_to_end() {
    let root = std::env::temp_dir().join(format!("xtask-docs-check-{}", std::process::id()));
    let write = |relative: &str, text: &str| {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("crates/common/src/settings.rs", "let env = \"QUIZSTATS_ENV\";\n");
    write(
        "services/gateway/src/settings.rs",
        "pub struct Settings {\n    pub http: HttpSettings,\n}\n",
    );
    write("config/example.toml", "[http]\nport = 8080\n");
    write("docs/openapi.json", r#"{"paths": {"/v1/quizzes": {"post": {}}}}"#);
    let inventory = |rows: &str| {
        format!(
            "# Inventory\n\n{INVENTORY_SECTION}\n\n| command | where | covered by |\n|---|---|---|\n{rows}"
        )
    };
    write(
        INVENTORY,
        &inventory(
            "| `cargo xtask up` | README.md | .ci/run |\n| `cargo xtask down` | README.md | .ci/run |\n",
        ),
    );
    write(
        "README.md",
        "Set QUIZSTATS_HTTP__PORTS.\n\n```sh\ncargo xtask up\ncurl -s localhost:8080/v1/quizz -d '{}'\n```\n",
    );
    let error = format!("{:#}", check_docs(&root).unwrap_err());
    for expected in [
        "README.md:1: QUIZSTATS_HTTP__PORTS is neither",
        "README.md:5: `curl -s localhost:8080/v1/quizz -d '{}'` is not in docs/operations/doc-commands.md",
        "README.md:5: `POST /v1/quizz`",
        "docs/operations/doc-commands.md: `cargo xtask down` is listed but no doc shows it",
    ] {
        assert!(error.contains(expected), "{expected:?} missing from:\n{error}");
    }
    assert_eq!(error.lines().count(), 4, "{error}");

    write(
        "README.md",
        "Set QUIZSTATS_HTTP__PORT or QUIZSTATS_ENV.\n\n```sh\ncargo xtask up\ncurl -s localhost:8080/v1/quizzes -d '{}'\n```\n",
    );
    write(
        INVENTORY,
        &inventory(
            "| `cargo xtask up` | README.md | .ci/run |\n| `curl -s localhost:8080/v1/quizzes -d '{}'` | README.md | system-tests |\n",
        ),
    );
    let outcome = check_docs(&root);
    fs::remove_dir_all(&root).unwrap();
    assert_eq!(outcome.unwrap(), "2 commands in 2 docs covered");
}
