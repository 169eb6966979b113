//! The gateway's OpenAPI document: docs/openapi.json is what the code generates (regenerate with
//! `UPDATE_EXPECT=1 cargo test -p system-tests openapi`), the running gateway serves exactly that
//! at `GET /openapi.json` without a key, and its real answers have the shapes the document gives.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use system_tests::spawn_app;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[test]
fn committed_document_matches_the_code() {
    let generated = gateway::openapi::document_json();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `UPDATE_EXPECT=1 cargo test -p system-tests openapi`"
    );
}

fn document() -> Value {
    serde_json::from_str(&gateway::openapi::document_json()).unwrap()
}

/// Every route the gateway serves, as `METHOD path`, from the document.
fn documented_operations(document: &Value) -> BTreeSet<String> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations
}

#[test]
fn the_document_covers_every_route_and_error() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let expected: BTreeSet<String> = [
        "POST /v1/quizzes",
        "GET /v1/quizzes",
        "GET /v1/quizzes/{id}",
        "DELETE /v1/quizzes/{id}",
        "POST /v1/extract",
        "POST /api/analyze",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(documented_operations(&document), expected);

    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");

    // What each API call can answer besides its success (docs/api.md's table).
    let errors: &[(&str, &str, &[&str])] = &[
        (
            "/v1/quizzes",
            "post",
            &["400", "401", "403", "409", "413", "415", "422", "429", "503"],
        ),
        ("/v1/quizzes", "get", &["400", "401", "403", "429", "503"]),
        ("/v1/quizzes/{id}", "get", &["401", "403", "404", "429", "503"]),
        (
            "/v1/quizzes/{id}",
            "delete",
            &["401", "403", "404", "409", "429", "503"],
        ),
        (
            "/v1/extract",
            "post",
            &[
                "400", "401", "403", "413", "415", "422", "429", "502", "503", "504",
            ],
        ),
        (
            "/api/analyze",
            "post",
            &[
                "400", "401", "403", "404", "413", "415", "422", "429", "503", "504",
            ],
        ),
    ];
    for (path, method, statuses) in errors {
        let operation = &document["paths"][path][method];
        assert_eq!(
            operation["security"],
            json!([{"bearer": []}, {"api_key": []}]),
            "{method} {path}"
        );
        for status in *statuses {
            let response = resolve(&document, &operation["responses"][status]);
            assert!(
                response["content"]["application/problem+json"]["schema"]["$ref"]
                    == "#/components/schemas/Problem",
                "{method} {path} {status} is not a problem document: {response}"
            );
        }
        let documented: BTreeSet<&str> = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|status| !status.starts_with('2'))
            .collect();
        assert_eq!(documented, statuses.iter().copied().collect(), "{method} {path}");
    }
    let rate_limited = resolve(
        &document,
        &document["paths"]["/v1/quizzes"]["get"]["responses"]["429"],
    );
    for header in ["Retry-After", "RateLimit", "RateLimit-Policy"] {
        assert_eq!(rate_limited["headers"][header]["required"], true, "429 {header}");
    }
    let create = &document["paths"]["/v1/quizzes"]["post"];
    assert_eq!(create["parameters"][0]["name"], "Idempotency-Key");
    assert_eq!(create["parameters"][0]["in"], "header");
    assert_eq!(
        create["responses"]["202"]["headers"]["Location"]["required"],
        true
    );
    let list = &document["paths"]["/v1/quizzes"]["get"];
    let names: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|parameter| parameter["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["limit", "cursor", "status"]);
}

/// A response object, following a `$ref` to `#/components/responses/…`.
fn resolve<'a>(document: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/responses/");
            &document["components"]["responses"][name]
        }
        None => response,
    }
}

#[tokio::test]
async fn the_gateway_serves_the_committed_document_without_a_key() {
    let app = spawn_app().await.unwrap();
    let response = app
        .http
        .get(app.gateway_url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    let committed = std::fs::read_to_string(COMMITTED).unwrap();
    assert_eq!(served, committed);
    app.stop().await.unwrap();
}

async fn json_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    response.json().await.unwrap()
}

/// The answers the handlers build with `json!` read into the document's types, which refuse
/// unknown fields: a field added to a handler and not to the document fails here.
#[tokio::test]
async fn real_answers_have_the_documented_shapes() {
    use gateway::openapi::schemas::{Accepted, Health, LegacyAnswer, QuizView, Ready};

    let app = spawn_app().await.unwrap();
    let quiz = json!({
        "questions": [
            {"text": "2 + 2 = ?", "options": ["3", "4"]},
            {"text": "Which are even?", "options": ["2", "3", "4"], "kind": "multiple"}
        ],
        "answer_key": [[1], [0, 2]]
    });
    let accepted = json_of(app.post_json("/v1/quizzes", &quiz).await.unwrap(), 202).await;
    let accepted: Accepted = serde_json::from_value(accepted).unwrap();
    let finished = app
        .wait_finished(&accepted.id, Duration::from_secs(30))
        .await
        .unwrap();
    let view: QuizView = serde_json::from_value(finished).unwrap();
    assert_eq!(view.questions.len(), 2);
    assert!(
        view.questions.iter().all(|question| question.key.is_some()
            && (question.answer.is_some() || question.error.is_some())),
        "{view:?}"
    );

    let page = app
        .gateway_request(Method::GET, "/v1/quizzes?limit=1")
        .send()
        .await
        .unwrap();
    let page: gateway::listing::Page = serde_json::from_value(json_of(page, 200).await).unwrap();
    assert_eq!(page.items.len(), 1);
    let _: gateway::openapi::schemas::SummaryLinks =
        serde_json::from_value(page.items[0].links.clone()).unwrap();

    let legacy = json!({"questions": [{"question": "2 + 2 = ?", "answers": ["3", "4"]}]});
    let legacy = json_of(app.post_json("/api/analyze", &legacy).await.unwrap(), 200).await;
    let legacy: LegacyAnswer = serde_json::from_value(legacy).unwrap();
    assert_eq!(legacy.question_count, 1);

    let health = app.http.get(app.gateway_url("/healthz")).send().await.unwrap();
    let _: Health = serde_json::from_value(json_of(health, 200).await).unwrap();
    let ready = app.http.get(app.gateway_url("/readyz")).send().await.unwrap();
    let _: Ready = serde_json::from_value(json_of(ready, 200).await).unwrap();

    let invalid = app
        .post_json("/v1/quizzes", &json!({"questions": []}))
        .await
        .unwrap();
    assert_eq!(invalid.headers()["content-type"], common::problem::PROBLEM_JSON);
    let _: common::problem::Problem = serde_json::from_value(json_of(invalid, 422).await).unwrap();
    app.stop().await.unwrap();
}

/// A method a route does not serve is 405 problem+json naming those it does in `Allow`
/// (RFC 9110 §15.5.6; found by schemathesis: actix's own 405 had no `Allow`).
#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = spawn_app().await.unwrap();
    for (method, path, allow) in [
        (Method::PUT, "/v1/quizzes", "GET, POST"),
        (Method::PATCH, "/v1/quizzes/some-id", "GET, DELETE"),
        (Method::GET, "/api/analyze", "POST"),
        (Method::PUT, "/v1/extract", "POST"),
        (Method::DELETE, "/openapi.json", "GET"),
        (Method::POST, "/healthz", "GET"),
        (Method::PUT, "/readyz", "GET"),
        (Method::DELETE, "/metrics", "GET"),
    ] {
        let response = app.gateway_request(method.clone(), path).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        assert_eq!(response.headers()["content-type"], common::problem::PROBLEM_JSON);
        let problem: common::problem::Problem = response.json().await.unwrap();
        assert_eq!(problem.status, 405);
    }
    app.stop().await.unwrap();
}
