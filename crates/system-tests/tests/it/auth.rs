//! API keys, scopes, ownership and rate limits at the gateway, through real HTTP.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use system_tests::{Options, TestApp, spawn_app, spawn_app_with};

fn quiz() -> Value {
    json!({"questions": [{"text": "Who owns this quiz?", "options": ["me", "you"]}]})
}

/// Asserts a problem+json answer with `status` and returns its `type` suffix.
async fn problem(response: reqwest::Response, status: u16) -> (reqwest::header::HeaderMap, String) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    let kind = body["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:quizstats:problem:")
        .to_owned();
    (headers, kind)
}

fn with_key(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.http.request(method, app.gateway_url(path)).bearer_auth(key)
}

#[tokio::test]
async fn keys_scopes_and_ownership() {
    let app = spawn_app().await.unwrap();
    let keys = app.api_keys.clone();

    // No key: 401 with a Bearer challenge, on every API route.
    let no_key = app
        .http
        .post(app.gateway_url("/v1/quizzes"))
        .json(&quiz())
        .send()
        .await
        .unwrap();
    let (headers, kind) = problem(no_key, 401).await;
    assert_eq!(kind, "unauthenticated");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let no_key = app
        .http
        .get(app.gateway_url("/v1/quizzes/anything"))
        .send()
        .await
        .unwrap();
    problem(no_key, 401).await;
    let no_key = app
        .http
        .post(app.gateway_url("/api/analyze"))
        .json(&json!({"questions": []}))
        .send()
        .await
        .unwrap();
    problem(no_key, 401).await;

    // An unknown key: 401, whichever header carries it.
    let unknown = with_key(&app, Method::POST, "/v1/quizzes", "not-a-key")
        .json(&quiz())
        .send()
        .await
        .unwrap();
    let (headers, _) = problem(unknown, 401).await;
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let unknown = app
        .http
        .post(app.gateway_url("/v1/quizzes"))
        .header("x-api-key", "not-a-key")
        .json(&quiz())
        .send()
        .await
        .unwrap();
    problem(unknown, 401).await;

    // Bearer and X-API-Key are both accepted; success carries the RateLimit headers.
    let by_bearer = app.post_json("/v1/quizzes", &quiz()).await.unwrap();
    assert_eq!(by_bearer.status(), 202);
    let policy = by_bearer.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("\"default\";q=") && policy.contains("\"submit\";q="),
        "{policy}"
    );
    assert!(
        by_bearer.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains("\"submit\";r=")
    );
    let id: String = by_bearer.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_header = app
        .http
        .post(app.gateway_url("/v1/quizzes"))
        .header("x-api-key", &keys.submit_read)
        .json(&quiz())
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 202);

    // A read-only key may not submit, on either contract.
    let read_only = with_key(&app, Method::POST, "/v1/quizzes", &keys.read_only)
        .json(&quiz())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(read_only, 403).await.1, "forbidden");
    let read_only = with_key(&app, Method::POST, "/api/analyze", &keys.read_only)
        .json(&json!({"questions": [{"question": "q", "answers": ["a", "b"]}]}))
        .send()
        .await
        .unwrap();
    problem(read_only, 403).await;

    // The owner reads its quiz; another key gets 404 as if it did not exist; admin reads it.
    assert_eq!(app.get_quiz(&id).await.unwrap()["id"], id.as_str());
    let other = with_key(&app, Method::GET, &format!("/v1/quizzes/{id}"), &keys.read_only)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(other, 404).await.1, "quiz-not-found");
    let admin = with_key(&app, Method::GET, &format!("/v1/quizzes/{id}"), &keys.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let admin: Value = admin.json().await.unwrap();
    assert_eq!(admin["id"], id.as_str());
    // The owner record lives next to the quiz, with its retention.
    let mut redis = deadpool_redis::Config::from_url(system_tests::redis_url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap()
        .get()
        .await
        .unwrap();
    let owner_key = format!("{}quiz:{id}:owner", app.keys.prefix());
    let (owner, ttl): (String, i64) = deadpool_redis::redis::pipe()
        .get(&owner_key)
        .ttl(&owner_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(owner, "submit-read");
    assert!(ttl > 0);

    // Operations endpoints stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.http.get(app.gateway_url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }

    app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_submission_burst_gets_429_with_rate_limit_headers() {
    let app = spawn_app_with(Options {
        tune_gateway: Some(|settings| {
            settings.rate_limit.submissions_per_minute = 1;
            settings.rate_limit.submission_burst = 2;
        }),
        ..Default::default()
    })
    .await
    .unwrap();

    let first = app.submit(&quiz()).await.unwrap();
    app.submit(&quiz()).await.unwrap();
    let refused = app.post_json("/v1/quizzes", &quiz()).await.unwrap();
    let (headers, kind) = problem(refused, 429).await;
    assert_eq!(kind, "rate-limited");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let policy = headers["ratelimit-policy"].to_str().unwrap();
    assert!(policy.contains("\"submit\";q=1;w=60"), "{policy}");
    let current = headers["ratelimit"].to_str().unwrap();
    assert!(
        current.contains(&format!("\"submit\";r=0;t={retry_after}")),
        "{current}"
    );
    // The legacy contract draws from the same budget.
    let legacy = app
        .post_json(
            "/api/analyze",
            &json!({"questions": [{"question": "q", "answers": ["a", "b"]}]}),
        )
        .await
        .unwrap();
    problem(legacy, 429).await;

    // Budgets are per key, and reading is not a submission.
    let other = with_key(&app, Method::POST, "/v1/quizzes", &app.api_keys.admin)
        .json(&quiz())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 202);
    assert_eq!(app.get_quiz(&first).await.unwrap()["id"], first.as_str());
    app.stop().await.unwrap();
}

/// A test-only HS256 secret shared with the "identity provider" below; not a real credential.
const JWT_SECRET: &str = "system-tests-only-hs256-secret-0123456789";
const JWT_ISSUER: &str = "https://idp.test.invalid";

fn token(subject: &str, scope: &str, expires_in: i64, audience: &str) -> String {
    token_signed_with(JWT_SECRET, subject, scope, expires_in, audience)
}

fn token_signed_with(secret: &str, subject: &str, scope: &str, expires_in: i64, audience: &str) -> String {
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
    let claims = json!({
        "sub": subject,
        "iss": JWT_ISSUER,
        "aud": audience,
        "exp": now + expires_in,
        "scope": scope,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_from_an_identity_provider_get_the_same_rules_as_keys() {
    let app = spawn_app_with(Options {
        tune_gateway: Some(|settings| {
            settings.auth.jwt = Some(common::auth::JwtSettings {
                issuer: JWT_ISSUER.to_owned(),
                audience: "quizstats".to_owned(),
                secret: Some(JWT_SECRET.to_owned().into()),
                ..Default::default()
            });
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = token("alice", "submit read", 600, "quizstats");
    let bob = token("bob", "read", 600, "quizstats");
    let auditor = token("auditor", "admin", 600, "quizstats");

    // A token with the submit scope creates a quiz that belongs to its subject.
    let created = with_key(&app, Method::POST, "/v1/quizzes", &alice)
        .json(&quiz())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/quizzes/{id}");
    let own = with_key(&app, Method::GET, &path, &alice).send().await.unwrap();
    assert_eq!(own.status(), 200);
    let listed: Value = with_key(&app, Method::GET, "/v1/quizzes", &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str(), "{listed}");

    // Another subject does not see it; an admin token does; API keys keep working alongside.
    let other = with_key(&app, Method::GET, &path, &bob).send().await.unwrap();
    assert_eq!(problem(other, 404).await.1, "quiz-not-found");
    let admin = with_key(&app, Method::GET, &path, &auditor).send().await.unwrap();
    assert_eq!(admin.status(), 200);
    let by_key = with_key(&app, Method::GET, &path, &app.api_keys.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), 200);
    let read_only = with_key(&app, Method::POST, "/v1/quizzes", &bob)
        .json(&quiz())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(read_only, 403).await.1, "forbidden");

    // Failed checks: 401 problem+json saying which check failed, with an invalid_token challenge.
    for (bad, reason) in [
        (token("alice", "submit read", -120, "quizstats"), "expired"),
        (token("alice", "submit read", 600, "another-api"), "audience"),
        (
            token_signed_with(
                "a-forger-s-secret-of-sufficient-length-42",
                "alice",
                "admin",
                600,
                "quizstats",
            ),
            "signature",
        ),
    ] {
        let refused = with_key(&app, Method::GET, &path, &bad).send().await.unwrap();
        let challenge = refused.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("invalid_token"), "{challenge}");
        assert_eq!(refused.status(), 401);
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains(reason),
            "{reason}: {body}"
        );
    }

    // The owner sees it through to the end.
    testkit::eventually(Duration::from_secs(20), || async {
        let quiz: Value = with_key(&app, Method::GET, &path, &alice)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (quiz["status"] == "completed").then_some(())
    })
    .await
    .unwrap();
    app.stop().await.unwrap();
}
