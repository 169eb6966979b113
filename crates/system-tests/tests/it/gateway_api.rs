//! The gateway's list, delete, `Idempotency-Key`, CORS and security headers, through real HTTP
//! against real RabbitMQ and Redis.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use system_tests::{Options, TestApp, spawn_app_with};

/// A second `submit` + `read` key, so two ordinary keys can be compared.
const OTHER_KEY: &str = "other-submitter-key-of-the-gateway-api-tests";

fn with_other_key(settings: &mut gateway::Settings) {
    use gateway::settings::{ApiKeyEntry, Scope};
    settings.auth.keys.push(ApiKeyEntry {
        id: "other".to_owned(),
        sha256: gateway::auth::key_ring::sha256_hex(OTHER_KEY).into(),
        scopes: vec![Scope::Submit, Scope::Read],
    });
}

async fn spawn() -> TestApp {
    spawn_app_with(Options {
        tune_gateway: Some(with_other_key),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn quiz(text: &str) -> Value {
    json!({"questions": [{"text": text, "options": ["yes", "no"]}]})
}

/// A scraped quiz: with no scraper-worker running it stays `queued`.
fn page_quiz(title: &str) -> Value {
    json!({"source": {"html": format!("<html><body><h1>{title}</h1></body></html>")}})
}

fn request(app: &TestApp, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
    app.http.request(method, app.gateway_url(path)).bearer_auth(key)
}

async fn submit_as(app: &TestApp, key: &str, body: &Value) -> String {
    let response = request(app, Method::POST, "/v1/quizzes", key)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Polls `GET /v1/quizzes/{id}` as `key` until the quiz completed or failed.
async fn wait_finished_as(app: &TestApp, key: &str, id: &str) -> Value {
    testkit::eventually(Duration::from_secs(20), || async {
        let response = request(app, Method::GET, &format!("/v1/quizzes/{id}"), key)
            .send()
            .await
            .ok()?;
        let quiz: Value = response.json().await.ok()?;
        matches!(quiz["status"].as_str(), Some("completed" | "failed")).then_some(quiz)
    })
    .await
    .unwrap()
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

/// Every page of `GET /v1/quizzes{query}` as `key`, following `next_cursor`.
async fn list_all(app: &TestApp, key: &str, query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let separator = if query.is_empty() { "?" } else { "&" };
        let path = match &cursor {
            Some(cursor) => format!("/v1/quizzes{query}{separator}cursor={cursor}"),
            None => format!("/v1/quizzes{query}"),
        };
        let response = request(app, Method::GET, &path, key).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let page: Value = response.json().await.unwrap();
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (items, pages),
        }
        assert!(pages < 50, "paging does not end");
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn redis() -> common::redis::Connection {
    let settings = common::settings::RedisSettings {
        url: system_tests::redis_url(),
        ..Default::default()
    };
    common::redis::pool(&settings).unwrap().get().await.unwrap()
}

async fn exists(connection: &mut common::redis::Connection, key: &str) -> bool {
    deadpool_redis::redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(connection)
        .await
        .unwrap()
        == 1
}

/// Keys matching `pattern`, by a full SCAN (the server is shared; one call may not cover it).
async fn count_keys(connection: &mut common::redis::Connection, pattern: &str) -> usize {
    let mut cursor: u64 = 0;
    let mut found = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = deadpool_redis::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(connection)
            .await
            .unwrap();
        found += keys.len();
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

async fn indexed(connection: &mut common::redis::Connection, index: &str, id: &str) -> bool {
    deadpool_redis::redis::cmd("ZSCORE")
        .arg(index)
        .arg(id)
        .query_async::<Option<f64>>(connection)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn listing_pages_filters_and_keeps_keys_apart() {
    let app = spawn().await;
    let keys = app.api_keys.clone();
    // Submitted one after another, so creation order is submission order.
    let mut mine = Vec::new();
    for n in 0..5 {
        mine.push(submit_as(&app, &keys.submit_read, &quiz(&format!("Listed question {n}?"))).await);
    }
    let mut scraped = Vec::new();
    for n in 0..2 {
        let id = submit_as(&app, &keys.submit_read, &page_quiz(&format!("page {n}"))).await;
        mine.push(id.clone());
        scraped.push(id);
    }
    let theirs = vec![
        submit_as(&app, OTHER_KEY, &quiz("Someone else's first?")).await,
        submit_as(&app, OTHER_KEY, &quiz("Someone else's second?")).await,
    ];
    for id in &mine[..5] {
        app.wait_finished(id, Duration::from_secs(20)).await.unwrap();
    }

    // Three pages of three, newest first, each quiz exactly once.
    let (items, pages) = list_all(&app, &keys.submit_read, "?limit=3").await;
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = mine.iter().rev().cloned().collect();
    assert_eq!(ids(&items), newest_first);
    let created: Vec<i64> = items
        .iter()
        .map(|item| item["created_at_ms"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|pair| pair[0] >= pair[1]), "{created:?}");
    let completed = &items[2];
    assert_eq!(completed["status"], "completed");
    assert_eq!(
        (
            completed["n_questions"].as_u64(),
            completed["n_outcomes"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(completed["links"]["self"], format!("/v1/quizzes/{}", mine[4]));
    assert_eq!(items[0]["status"], "queued");
    assert_eq!(items[0]["n_questions"], 0);

    // The default page holds them all; the status filter pages too.
    let first = request(&app, Method::GET, "/v1/quizzes", &keys.submit_read)
        .send()
        .await
        .unwrap();
    assert_eq!(first.headers()["cache-control"], "no-store");
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 7);
    assert_eq!(first["next_cursor"], Value::Null);
    let (queued, _) = list_all(&app, &keys.submit_read, "?status=queued").await;
    let mut expected_queued = scraped.clone();
    expected_queued.reverse();
    assert_eq!(ids(&queued), expected_queued);
    let (done, pages) = list_all(&app, &keys.submit_read, "?status=completed&limit=2").await;
    assert_eq!(pages, 3);
    assert_eq!(ids(&done), newest_first[2..].to_vec());
    let (failed, _) = list_all(&app, &keys.submit_read, "?status=failed").await;
    assert!(failed.is_empty());

    // Other keys see only their own; a key that created nothing sees nothing; admin sees all.
    let (other, _) = list_all(&app, OTHER_KEY, "").await;
    assert_eq!(ids(&other), theirs.iter().rev().cloned().collect::<Vec<_>>());
    let (nothing, _) = list_all(&app, &keys.read_only, "").await;
    assert!(nothing.is_empty());
    let (everything, _) = list_all(&app, &keys.admin, "?limit=4").await;
    let everything: HashSet<String> = ids(&everything).into_iter().collect();
    let expected: HashSet<String> = mine.iter().chain(&theirs).cloned().collect();
    assert_eq!(everything, expected);

    // Quizzes created in the same millisecond page by id, still each exactly once.
    let mut connection = redis().await;
    for id in &mine {
        deadpool_redis::redis::cmd("ZADD")
            .arg(app.keys.owner_quizzes("submit-read"))
            .arg("XX")
            .arg(1_795_000_000_000_i64)
            .arg(id)
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
    }
    let (tied, pages) = list_all(&app, &keys.submit_read, "?limit=2").await;
    assert_eq!(pages, 4);
    let mut by_id_descending = mine.clone();
    by_id_descending.sort_unstable_by(|left, right| right.cmp(left));
    assert_eq!(ids(&tied), by_id_descending);

    // A quiz that expired is dropped from the listing and pruned from the index.
    deadpool_redis::redis::cmd("DEL")
        .arg(app.keys.quiz(&theirs[0]))
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    let (other, _) = list_all(&app, OTHER_KEY, "").await;
    assert_eq!(ids(&other), vec![theirs[1].clone()]);
    assert!(!indexed(&mut connection, &app.keys.owner_quizzes("other"), &theirs[0]).await);
    assert!(indexed(&mut connection, &app.keys.owner_quizzes("other"), &theirs[1]).await);

    // Bad parameters are 400 problem+json naming each one; no key is 401.
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "cursor=nonsense",
        "status=done",
        "page=2",
    ] {
        let response = request(
            &app,
            Method::GET,
            &format!("/v1/quizzes?{query}"),
            &keys.submit_read,
        )
        .send()
        .await
        .unwrap();
        let (_, kind) = problem(response, 400).await;
        assert_eq!(kind, "invalid-query", "{query}");
    }
    let anonymous = app.http.get(app.gateway_url("/v1/quizzes")).send().await.unwrap();
    problem(anonymous, 401).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn deleting_removes_a_finished_quiz_for_its_owner_or_an_admin() {
    let app = spawn().await;
    let keys = app.api_keys.clone();
    let id = submit_as(&app, &keys.submit_read, &quiz("Will this quiz be deleted?")).await;
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(finished["status"], "completed");
    let mut connection = redis().await;
    let quiz_keys = [
        app.keys.quiz(&id),
        app.keys.quiz_answers(&id),
        app.keys.quiz_events(&id),
        app.keys.quiz_seq(&id),
        app.keys.quiz_owner(&id),
    ];
    for key in &quiz_keys {
        assert!(exists(&mut connection, key).await, "{key} before the delete");
    }
    let cached_before = count_keys(&mut connection, &format!("{}answer:v1:*", app.keys.prefix())).await;
    assert!(cached_before >= 1, "the answer was cached");

    // Another key, and a key without the submit scope, cannot delete it.
    let other = request(&app, Method::DELETE, &format!("/v1/quizzes/{id}"), OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(other, 404).await.1, "quiz-not-found");
    let read_only = request(
        &app,
        Method::DELETE,
        &format!("/v1/quizzes/{id}"),
        &keys.read_only,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(problem(read_only, 403).await.1, "forbidden");
    assert_eq!(app.get_quiz(&id).await.unwrap()["id"], id.as_str());

    // The owner can: 204, then it is gone everywhere but the shared answer cache.
    let deleted = request(
        &app,
        Method::DELETE,
        &format!("/v1/quizzes/{id}"),
        &keys.submit_read,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.headers()["x-content-type-options"], "nosniff");
    let read = request(&app, Method::GET, &format!("/v1/quizzes/{id}"), &keys.submit_read)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(read, 404).await.1, "quiz-not-found");
    let admin_read = request(&app, Method::GET, &format!("/v1/quizzes/{id}"), &keys.admin)
        .send()
        .await
        .unwrap();
    problem(admin_read, 404).await;
    let again = request(
        &app,
        Method::DELETE,
        &format!("/v1/quizzes/{id}"),
        &keys.submit_read,
    )
    .send()
    .await
    .unwrap();
    problem(again, 404).await;
    for key in &quiz_keys {
        assert!(!exists(&mut connection, key).await, "{key} after the delete");
    }
    assert!(!indexed(&mut connection, &app.keys.owner_quizzes("submit-read"), &id).await);
    assert!(!indexed(&mut connection, &app.keys.all_quizzes(), &id).await);
    let (listed, _) = list_all(&app, &keys.submit_read, "").await;
    assert!(!ids(&listed).contains(&id));
    let (listed, _) = list_all(&app, &keys.admin, "").await;
    assert!(!ids(&listed).contains(&id));
    let cached_after = count_keys(&mut connection, &format!("{}answer:v1:*", app.keys.prefix())).await;
    assert_eq!(
        cached_after, cached_before,
        "cached answers are shared, they stay"
    );

    // An admin can delete another key's quiz, which leaves that key's listing too.
    let theirs = submit_as(&app, OTHER_KEY, &quiz("An admin removes this one?")).await;
    wait_finished_as(&app, OTHER_KEY, &theirs).await;
    let by_admin = request(
        &app,
        Method::DELETE,
        &format!("/v1/quizzes/{theirs}"),
        &keys.admin,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(by_admin.status(), 204);
    let (listed, _) = list_all(&app, OTHER_KEY, "").await;
    assert!(listed.is_empty());
    assert!(!exists(&mut connection, &app.keys.quiz_owner(&theirs)).await);

    // A quiz still running is not deleted: 409, and it is still there.
    let running = submit_as(&app, &keys.submit_read, &page_quiz("still queued")).await;
    let refused = request(
        &app,
        Method::DELETE,
        &format!("/v1/quizzes/{running}"),
        &keys.submit_read,
    )
    .send()
    .await
    .unwrap();
    let (headers, kind) = problem(refused, 409).await;
    assert_eq!(kind, "quiz-in-progress");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(app.get_quiz(&running).await.unwrap()["status"], "queued");
    let (listed, _) = list_all(&app, &keys.submit_read, "").await;
    assert_eq!(ids(&listed), vec![running]);
    app.stop().await.unwrap();
}

async fn post_with_key(app: &TestApp, api_key: &str, idempotency_key: &str, body: &str) -> reqwest::Response {
    request(app, Method::POST, "/v1/quizzes", api_key)
        .header("idempotency-key", idempotency_key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer() {
    let app = spawn().await;
    let keys = app.api_keys.clone();
    let body = r#"{"questions": [{"text": "Asked once?", "options": ["yes", "no"]}], "votes": 1}"#;
    // The same JSON with other key order and spacing.
    let same_body = r#"{"votes":1,"questions":[{"options":["yes","no"],"text":"Asked once?"}]}"#;

    let first = post_with_key(&app, &keys.submit_read, "order-7f3a", body).await;
    assert_eq!(first.status(), 202);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();

    let replay = post_with_key(&app, &keys.submit_read, "order-7f3a", same_body).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.headers()["location"], location);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay, first);
    // The quoted (structured-field) form is the same key.
    let quoted = post_with_key(&app, &keys.submit_read, "\"order-7f3a\"", body).await;
    assert_eq!(quoted.json::<Value>().await.unwrap()["id"], id.as_str());

    // The same key with another body is a conflict.
    let other_body = r#"{"questions": [{"text": "Asked twice?", "options": ["yes", "no"]}]}"#;
    let reused = post_with_key(&app, &keys.submit_read, "order-7f3a", other_body).await;
    assert_eq!(problem(reused, 409).await.1, "idempotency-key-reused");

    // Keys are per API key: another key's "order-7f3a" is another quiz.
    let theirs = post_with_key(&app, OTHER_KEY, "order-7f3a", body).await;
    assert_eq!(theirs.status(), 202);
    let theirs: Value = theirs.json().await.unwrap();
    assert_ne!(theirs["id"], id.as_str());

    // A source body works the same way.
    let page = page_quiz("idempotent page").to_string();
    let page_first: Value = post_with_key(&app, &keys.submit_read, "page-1", &page)
        .await
        .json()
        .await
        .unwrap();
    let page_again = post_with_key(&app, &keys.submit_read, "page-1", &page).await;
    assert_eq!(page_again.status(), 202);
    assert_eq!(page_again.json::<Value>().await.unwrap(), page_first);

    // An invalid body claims nothing: the key still works for a valid one.
    let invalid = post_with_key(&app, &keys.submit_read, "fixed-later", r#"{"questions": []}"#).await;
    assert_eq!(problem(invalid, 422).await.1, "validation");
    let fixed = post_with_key(&app, &keys.submit_read, "fixed-later", body).await;
    assert_eq!(fixed.status(), 202);

    // Bad keys are 400.
    for bad in ["", "has space", "semi;colon", &"k".repeat(256)] {
        let response = post_with_key(&app, &keys.submit_read, bad, body).await;
        assert_eq!(
            problem(response, 400).await.1,
            "invalid-idempotency-key",
            "{bad:?}"
        );
    }

    // Concurrent duplicates: one quiz; every answer names it (or asks to retry).
    let before = list_all(&app, &keys.submit_read, "").await.0.len();
    let racing = r#"{"questions": [{"text": "Raced?", "options": ["yes", "no"]}]}"#;
    let answers =
        futures::future::join_all((0..8).map(|_| post_with_key(&app, &keys.submit_read, "race-1", racing)))
            .await;
    let mut raced_ids = HashSet::new();
    for answer in answers {
        match answer.status().as_u16() {
            202 => {
                let body: Value = answer.json().await.unwrap();
                raced_ids.insert(body["id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(problem(answer, 409).await.1, "idempotency-in-progress"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(raced_ids.len(), 1, "{raced_ids:?}");
    let after = list_all(&app, &keys.submit_read, "").await.0;
    assert_eq!(after.len(), before + 1);
    assert!(ids(&after).contains(raced_ids.iter().next().unwrap()));
    app.stop().await.unwrap();
}

fn with_cors_and_hsts(settings: &mut gateway::Settings) {
    settings.cors.allowed_origins = vec!["https://quiz.example.com".to_owned()];
    settings.security_headers.hsts_max_age_secs = 600;
}

fn preflight(app: &TestApp, origin: &str) -> reqwest::RequestBuilder {
    app.http
        .request(Method::OPTIONS, app.gateway_url("/v1/quizzes"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, idempotency-key",
        )
}

fn assert_security_headers(headers: &reqwest::header::HeaderMap, what: &str) {
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
}

#[tokio::test]
async fn cors_allow_list_and_security_headers() {
    let app = spawn_app_with(Options {
        tune_gateway: Some(with_cors_and_hsts),
        ..Default::default()
    })
    .await
    .unwrap();

    // A listed origin's preflight is allowed, with the methods and headers the API uses.
    let allowed = preflight(&app, "https://quiz.example.com").send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://quiz.example.com");
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed_headers.contains("idempotency-key"), "{allowed_headers}");
    assert!(!headers.contains_key("access-control-allow-credentials"));
    assert_security_headers(headers, "preflight");

    // Another origin's preflight is refused as problem+json, without an allow header.
    let denied = preflight(&app, "https://evil.example").send().await.unwrap();
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    assert_security_headers(denied.headers(), "refused preflight");
    problem(denied, 400).await;

    // Actual requests: the listed origin may read the answer, another gets no allow header.
    let listed = app
        .gateway_request(Method::GET, "/v1/quizzes")
        .header("origin", "https://quiz.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://quiz.example.com"
    );
    let exposed = listed.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("location") && exposed.contains("ratelimit"),
        "{exposed}"
    );
    let unlisted = app
        .gateway_request(Method::GET, "/v1/quizzes")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!unlisted.headers().contains_key("access-control-allow-origin"));

    // Security headers on every gateway answer: success, 401, actix's own 404, problem+json.
    for (path, status) in [("/healthz", 200), ("/v1/quizzes", 401), ("/no/such/route", 404)] {
        let response = app.http.get(app.gateway_url(path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_security_headers(response.headers(), path);
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=600; includeSubDomains",
            "{path}: configured here"
        );
        // JSON is not HTML: no CSP needed.
        assert!(
            !response.headers().contains_key("content-security-policy"),
            "{path}"
        );
    }

    // The other services get them too (through common::http::serve), without HSTS unless
    // configured; the dashboard, an HTML page, carries a Content-Security-Policy.
    let dashboard = app
        .http
        .get(format!("http://{}/", app.broadcaster))
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), 200);
    assert!(
        dashboard.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_security_headers(dashboard.headers(), "dashboard");
    let policy = dashboard.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("frame-ancestors 'none'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    assert!(!dashboard.headers().contains_key("strict-transport-security"));
    for address in [app.analyzer, app.broadcaster] {
        let missing = app
            .http
            .get(format!("http://{address}/no/such/route"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        assert_security_headers(missing.headers(), "analyzer/broadcaster 404");
    }
    app.stop().await.unwrap();

    // Without a list, no origin is allowed; `allow_any_origin` (the dev profile) allows all.
    let strict = spawn_app_with(Options::default()).await.unwrap();
    let refused = preflight(&strict, "https://quiz.example.com")
        .send()
        .await
        .unwrap();
    problem(refused, 400).await;
    strict.stop().await.unwrap();
    let open = spawn_app_with(Options {
        tune_gateway: Some(|settings: &mut gateway::Settings| settings.cors.allow_any_origin = true),
        ..Default::default()
    })
    .await
    .unwrap();
    let anyone = preflight(&open, "https://anyone.example").send().await.unwrap();
    assert_eq!(anyone.status(), 200);
    assert_eq!(anyone.headers()["access-control-allow-origin"], "*");
    open.stop().await.unwrap();
}

/// Finished quizzes are served from memory (crate `gateway::finished`): the owner check still
/// applies to every caller, and a deletion through this gateway takes effect at once.
#[tokio::test]
async fn finished_quizzes_read_from_memory_keep_owners_apart_and_go_with_a_delete() {
    let app = spawn().await;
    let owner_key = app.api_keys.submit_read.clone();
    let id = submit_as(&app, &owner_key, &quiz("Read me from memory?")).await;
    let finished = wait_finished_as(&app, &owner_key, &id).await;
    assert_eq!(finished["status"], "completed", "{finished:#}");
    let path = format!("/v1/quizzes/{id}");
    let read = |key: &str| request(&app, Method::GET, &path, key).send();

    // The admin's read fills the cache; every later read must still check the owner.
    let by_admin: Value = read(&app.api_keys.admin).await.unwrap().json().await.unwrap();
    assert_eq!(by_admin, finished);
    problem(read(OTHER_KEY).await.unwrap(), 404).await;
    problem(read(&app.api_keys.read_only).await.unwrap(), 404).await;
    let again = read(&owner_key).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["cache-control"], "no-store");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.json::<Value>().await.unwrap(), finished);

    let deleted = request(&app, Method::DELETE, &path, &owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    problem(read(&owner_key).await.unwrap(), 404).await;
    problem(read(&app.api_keys.admin).await.unwrap(), 404).await;
    app.stop().await.unwrap();
}

/// A deletion through another gateway replica (here: the quiz's record removed from Redis
/// behind this gateway's back) stops being served once the cached copy is past its TTL and
/// one read has checked; the reads meanwhile are served from memory, none waits on Redis.
#[tokio::test]
async fn a_cached_quiz_deleted_elsewhere_goes_after_one_check_past_the_ttl() {
    let app = spawn_app_with(Options {
        tune_gateway: Some(|settings| {
            with_other_key(settings);
            settings.read_cache.ttl_ms = 300;
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let owner_key = app.api_keys.submit_read.clone();
    let id = submit_as(&app, &owner_key, &quiz("Deleted elsewhere?")).await;
    let finished = wait_finished_as(&app, &owner_key, &id).await;
    assert_eq!(finished["status"], "completed", "{finished:#}");
    let path = format!("/v1/quizzes/{id}");
    let read = || request(&app, Method::GET, &path, &owner_key).send();
    assert_eq!(read().await.unwrap().status(), 200, "cached now");

    // Another replica's DELETE: the quiz record is gone from Redis.
    let mut connection = redis().await;
    let _: () = deadpool_redis::redis::cmd("DEL")
        .arg(app.keys.quiz(&id))
        .query_async(&mut connection)
        .await
        .unwrap();
    // Within the TTL the copy in memory is still served.
    assert_eq!(read().await.unwrap().status(), 200);
    // Past it, reads keep being served until the one background check finds it gone.
    tokio::time::sleep(Duration::from_millis(400)).await;
    testkit::eventually(Duration::from_secs(5), || async {
        let status = read().await.ok()?.status();
        assert!(status == 200 || status == 404, "{status}");
        (status == 404).then_some(())
    })
    .await
    .unwrap();
    app.stop().await.unwrap();
}
