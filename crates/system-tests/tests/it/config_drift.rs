//! `config/example.toml` is generated from the services' defaults; this test fails
//! when they drift apart. Regenerate with `UPDATE_EXPECT=1 cargo test -p system-tests config`.

const HEADER: &str = "\
# QuizStats configuration: every setting with its default.
# GENERATED from the services' Default impls by crates/system-tests/tests/it/config_drift.rs;
# regenerate with `UPDATE_EXPECT=1 cargo test -p system-tests config`. Do not edit by hand.
#
# Layers, lowest first: these defaults, config/base.toml, config/<QUIZSTATS_ENV>.toml,
# QUIZSTATS_* env (`__` nests: QUIZSTATS_REDIS__POOL_SIZE), QUIZSTATS_<SERVICE>__* env.
# Each service reads the sections it knows. [http] below shows the gateway; the others
# default to port 8081 (analyzer), 8082 (scraper-worker) and 8083 (stats-broadcaster).
# Secrets are never in files: QUIZSTATS_LLM__API_KEY or OPENAI_API_KEY (or *_FILE).

";

fn generated() -> String {
    let mut merged = toml::Table::new();
    let parts = [
        toml::Table::try_from(stats_broadcaster::Settings::default()).unwrap(),
        toml::Table::try_from(analyzer::Settings::default()).unwrap(),
        toml::Table::try_from(gateway::Settings::default()).unwrap(),
    ];
    for part in parts {
        merged.extend(part);
    }
    format!("{HEADER}{}", toml::to_string_pretty(&merged).unwrap())
}

#[test]
fn example_config_matches_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/example.toml");
    let expected = generated();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "config/example.toml is out of date: run `UPDATE_EXPECT=1 cargo test -p system-tests config`"
    );
}

#[test]
fn the_example_config_loads_for_every_service() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let gateway: gateway::Settings = toml::from_str(&text).unwrap();
    assert_eq!(gateway.http.port, 8080);
    let analyzer: analyzer::Settings = toml::from_str(&text).unwrap();
    assert_eq!(analyzer.llm.model, "smollm2");
    let _: stats_broadcaster::Settings = toml::from_str(&text).unwrap();
}
