//! The `quizstats` CLI, run in-process against the real services: submit with the live
//! stream, get, watch, and the exit codes scripts rely on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use quizstats_cli::{Console, exit};
use serde_json::{Value, json};
use system_tests::{TestApp, spawn_app};
use testkit::scripted_llm::Reply;

/// A port nothing listens on: a stream URL that cannot be used.
const DEAD_STREAM: &str = "ws://127.0.0.1:1/v1/ws";

/// What one `quizstats` run gave back.
struct Ran {
    code: ExitCode,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not JSON ({error}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `quizstats --gateway … --stream … --api-key <key> <args>` against `app`.
async fn quizstats_with(app: &TestApp, stream: &str, key: &str, args: &[&str]) -> Ran {
    let mut argv = vec![
        "quizstats".to_owned(),
        "--gateway".to_owned(),
        app.gateway_url(""),
        "--stream".to_owned(),
        stream.to_owned(),
        "--api-key".to_owned(),
        key.to_owned(),
    ];
    argv.extend(args.iter().map(|arg| (*arg).to_owned()));
    let (mut console, captured) = Console::captured();
    let code = tokio::time::timeout(Duration::from_secs(60), quizstats_cli::run(argv, &mut console))
        .await
        .expect("quizstats did not finish within 60 s")
        .expect("the captured console cannot fail");
    Ran {
        code,
        stdout: captured.stdout(),
        stderr: captured.stderr(),
    }
}

async fn quizstats(app: &TestApp, args: &[&str]) -> Ran {
    let stream = format!("ws://{}/v1/ws", app.broadcaster);
    quizstats_with(app, &stream, &app.api_keys.submit_read, args).await
}

fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}

fn sample_quiz() -> Value {
    json!({
        "questions": [
            {"text": "What is the capital of France?", "options": ["Berlin", "Paris", "Rome"], "kind": "single"},
            {"text": "Which are prime numbers?", "options": ["2", "4", "5", "9"], "kind": "multiple"},
            {"text": "The Earth orbits the Sun.", "options": ["True", "False"], "kind": "true_false"}
        ],
        "answer_key": [[1], [0, 2], [0]]
    })
}

fn script_answers(app: &TestApp) {
    let llm = app.scripted();
    llm.answer("What is the capital of France?", &[1]);
    llm.answer("Which are prime numbers?", &[0, 3]);
    llm.answer("The Earth orbits the Sun.", &[0]);
}

/// Writes `quiz` to a file of its own under the temp dir; removed by the caller.
fn quiz_file(app: &TestApp, name: &str, quiz: &Value) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}-{name}.json", app.prefix));
    std::fs::write(&path, serde_json::to_vec_pretty(quiz).unwrap()).unwrap();
    path
}

fn selected(quiz: &Value) -> Vec<Value> {
    quiz["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|question| question["answer"]["selected"].clone())
        .collect()
}

#[tokio::test]
async fn submit_json_follows_the_stream_and_prints_every_answer() {
    let app = spawn_app().await.unwrap();
    script_answers(&app);
    // Slow answers: the CLI is subscribed while the quiz runs, so it follows live events.
    app.scripted().set_latency(Duration::from_millis(200));
    let file = quiz_file(&app, "submit", &sample_quiz());

    let ran = quizstats(&app, &["submit", file.to_str().unwrap(), "--json"]).await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    // No progress in --json, and no warning: the stream was used, not the polling fallback.
    assert_eq!(ran.stderr, "");
    let quiz = ran.json();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    assert_eq!(selected(&quiz), vec![json!([1]), json!([0, 3]), json!([0])]);
    for question in quiz["questions"].as_array().unwrap() {
        assert_eq!(question["answer"]["cached"], false);
        assert!(
            question["answer"]["confidence"].as_f64().is_some(),
            "{question:#}"
        );
    }
    assert_eq!(quiz["questions"][1]["agrees_with_key"], false);
    assert_eq!(quiz["stats"]["answered"], 3);
    assert_eq!(quiz["stats"]["disagreements"], json!([1]));
    assert_eq!(app.scripted().calls(), 3);
    // What it printed is the gateway's record of the quiz.
    let id = quiz["id"].as_str().unwrap();
    assert_eq!(quiz, app.get_quiz(id).await.unwrap());

    std::fs::remove_file(file).unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn submit_prints_a_table_and_no_wait_prints_only_the_id() {
    let app = spawn_app().await.unwrap();
    script_answers(&app);
    let file = quiz_file(&app, "table", &sample_quiz());

    let ran = quizstats(&app, &["submit", file.to_str().unwrap()]).await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines[0].contains("model answer") && lines[0].contains("agrees with key"),
        "{}",
        ran.stdout
    );
    assert!(
        lines[1].contains("What is the capital of France?") && lines[1].contains("Paris"),
        "{}",
        ran.stdout
    );
    assert!(
        lines[2].contains("2, 9") && lines[2].trim_end().ends_with("no"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("completed: 3 of 3 answered, 0 failed"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("agreement with the key: 67%, disagrees on 2"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("tokens: 150 prompt + 36 completion"),
        "{}",
        ran.stdout
    );
    // Not a terminal: no progress bar, only the one line naming the quiz.
    assert!(
        ran.stderr.starts_with("submitted ") && ran.stderr.lines().count() == 1,
        "{}",
        ran.stderr
    );

    let ran = quizstats(&app, &["submit", file.to_str().unwrap(), "--no-wait"]).await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    let id = ran.stdout.trim();
    assert_eq!(ran.stdout.lines().count(), 1, "{}", ran.stdout);
    let quiz = app.wait_finished(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(quiz["status"], "completed");
    // The same questions again: all three from the cache, no new LLM call.
    assert_eq!(quiz["stats"]["cache_hits"], 3);
    assert_eq!(app.scripted().calls(), 3);

    std::fs::remove_file(file).unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn get_and_watch_print_a_finished_quiz_without_the_stream() {
    let app = spawn_app().await.unwrap();
    script_answers(&app);
    let id = app.submit(&sample_quiz()).await.unwrap();
    let record = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();

    let ran = quizstats(&app, &["get", &id, "--json"]).await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    assert_eq!(ran.json(), record);

    let ran = quizstats(&app, &["get", &id]).await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    assert!(ran.stdout.contains("Paris"), "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains(&format!("quiz {id} completed: 3 of 3 answered")),
        "{}",
        ran.stdout
    );

    // A finished quiz is printed from the gateway at once: a dead stream URL does not matter.
    let ran = quizstats_with(
        &app,
        DEAD_STREAM,
        &app.api_keys.submit_read,
        &["watch", &id, "--json"],
    )
    .await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    assert_eq!(ran.stderr, "");
    assert_eq!(ran.json(), record);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn watch_attaches_to_a_running_quiz_and_follows_it_to_the_end() {
    let app = spawn_app().await.unwrap();
    script_answers(&app);
    app.scripted().set_latency(Duration::from_millis(400));
    let id = app.submit(&sample_quiz()).await.unwrap();

    let ran = quizstats(&app, &["watch", &id]).await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    assert_eq!(ran.stderr, "", "the stream worked, so nothing to warn about");
    assert!(
        ran.stdout
            .contains(&format!("quiz {id} completed: 3 of 3 answered")),
        "{}",
        ran.stdout
    );
    for text in [
        "What is the capital of France?",
        "Which are prime numbers?",
        "The Earth orbits the Sun.",
    ] {
        assert!(ran.stdout.contains(text), "{}", ran.stdout);
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn timeout_gives_up_with_its_own_code_and_names_the_quiz() {
    let app = spawn_app().await.unwrap();
    // Longer than --timeout, shorter than the analyzer's LLM timeout (2 s).
    app.scripted().set_latency(Duration::from_millis(1_500));
    let file = quiz_file(
        &app,
        "slow",
        &json!({"questions": [{"text": "Slow?", "options": ["a", "b"]}]}),
    );

    let ran = quizstats(
        &app,
        &["submit", file.to_str().unwrap(), "--timeout", "1", "--json"],
    )
    .await;
    assert_eq!(ran.code, code(exit::TIMED_OUT), "stderr: {}", ran.stderr);
    assert_eq!(ran.stdout, "");
    assert!(
        ran.stderr.contains("is still analyzing after 1 s"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("quizstats watch "), "{}", ran.stderr);
    // The quiz itself carries on.
    let id = ran.stderr.split_whitespace().nth(2).unwrap();
    let quiz = app.wait_finished(id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(quiz["status"], "completed");

    std::fs::remove_file(file).unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_and_followed_to_the_end() {
    use testkit::fault_proxy::FaultProxy;
    let app = spawn_app().await.unwrap();
    // The two answers arrive about 0.7 s and 1.4 s after submission (both under the
    // analyzer's 2 s LLM timeout): the stream is cut in between.
    app.scripted().push([
        Reply::Delay(Duration::from_millis(700)),
        Reply::Delay(Duration::from_millis(1_400)),
    ]);
    let proxy = FaultProxy::start(app.broadcaster).await.unwrap();
    let stream = format!("ws://{}/v1/ws", proxy.address());
    let id = app
        .submit(
            &json!({"questions": [{"text": "Fast or slow one?", "options": ["a", "b"]},
                                      {"text": "Slow or fast one?", "options": ["a", "b"]}]}),
        )
        .await
        .unwrap();

    let args = ["watch", id.as_str(), "--json"];
    let watching = quizstats_with(&app, &stream, &app.api_keys.submit_read, &args);
    let cutting = async {
        // Half answered: the CLI, connected for about 0.7 s by now, has that event.
        let at_cut = testkit::eventually(Duration::from_secs(10), || async {
            let quiz = app.get_quiz(&id).await.ok()?;
            (quiz["stats"]["answered"] == 1).then_some(quiz)
        })
        .await
        .unwrap();
        // Drop the connection; new ones get through again at once.
        proxy.cut();
        proxy.restore();
        at_cut
    };
    let (ran, at_cut) = tokio::join!(watching, cutting);
    assert_eq!(
        at_cut["status"], "analyzing",
        "the cut must come while the quiz runs"
    );
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    assert!(
        ran.stderr.starts_with("warning: stream interrupted"),
        "{}",
        ran.stderr
    );
    assert_eq!(
        ran.stderr.lines().count(),
        1,
        "resumed at the first retry: {}",
        ran.stderr
    );
    let quiz = ran.json();
    assert_eq!(quiz["status"], "completed");
    assert_eq!(quiz["stats"]["answered"], 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_usable_stream_the_cli_polls_the_gateway_and_says_so() {
    let app = spawn_app().await.unwrap();
    script_answers(&app);
    let file = quiz_file(&app, "polled", &sample_quiz());

    let ran = quizstats_with(
        &app,
        DEAD_STREAM,
        &app.api_keys.submit_read,
        &["submit", file.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(ran.code, ExitCode::SUCCESS, "stderr: {}", ran.stderr);
    assert!(
        ran.stderr.starts_with("warning: cannot connect to the stream"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("polling the gateway"), "{}", ran.stderr);
    let quiz = ran.json();
    assert_eq!(quiz["status"], "completed");
    assert_eq!(selected(&quiz), vec![json!([1]), json!([0, 3]), json!([0])]);

    std::fs::remove_file(file).unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn api_errors_exit_with_the_api_code_and_one_clear_line() {
    let app = spawn_app().await.unwrap();
    let file = quiz_file(&app, "refused", &sample_quiz());
    let stream = format!("ws://{}/v1/ws", app.broadcaster);

    let ran = quizstats_with(
        &app,
        &stream,
        "not-a-key",
        &["submit", file.to_str().unwrap(), "--json"],
    )
    .await;
    assert_eq!(ran.code, code(exit::API), "stderr: {}", ran.stderr);
    assert_eq!(ran.stdout, "");
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr
            .starts_with("error: the gateway answered 401 to /v1/quizzes"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("the API key is not valid"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("(the key came from --api-key)"),
        "{}",
        ran.stderr
    );

    // A read-only key may not submit: 403, naming the scope.
    let ran = quizstats_with(
        &app,
        &stream,
        &app.api_keys.read_only,
        &["submit", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(ran.code, code(exit::API), "stderr: {}", ran.stderr);
    assert!(
        ran.stderr.contains("403") && ran.stderr.contains("`submit` scope"),
        "{}",
        ran.stderr
    );

    // Every refused field, on one line.
    let invalid = quiz_file(
        &app,
        "invalid",
        &json!({"questions": [{"text": "One option?", "options": ["only"]}, {"text": "", "options": ["a", "b"]}]}),
    );
    let ran = quizstats(&app, &["submit", invalid.to_str().unwrap()]).await;
    assert_eq!(ran.code, code(exit::API), "stderr: {}", ran.stderr);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("422"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("/questions/0/options") && ran.stderr.contains("/questions/1/text"),
        "{}",
        ran.stderr
    );

    // Another key's quiz reads as missing.
    let id = app.submit(&sample_quiz()).await.unwrap();
    let ran = quizstats_with(&app, &stream, &app.api_keys.read_only, &["get", &id]).await;
    assert_eq!(ran.code, code(exit::API), "stderr: {}", ran.stderr);
    assert!(ran.stderr.contains("404"), "{}", ran.stderr);
    app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();

    std::fs::remove_file(file).unwrap();
    std::fs::remove_file(invalid).unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_quiz_exits_with_the_quiz_failed_code() {
    let app = spawn_app().await.unwrap();
    // The only question gets a 400, which is not retried: the quiz fails.
    app.scripted().push([Reply::Status {
        status: 400,
        message: "scripted refusal".into(),
        retry_after_secs: None,
    }]);
    let file = quiz_file(
        &app,
        "failing",
        &json!({"questions": [{"text": "Doomed?", "options": ["a", "b"]}]}),
    );

    let ran = quizstats(&app, &["submit", file.to_str().unwrap(), "--json"]).await;
    assert_eq!(ran.code, code(exit::QUIZ_FAILED), "stderr: {}", ran.stderr);
    let quiz = ran.json();
    assert_eq!(quiz["status"], "failed", "{quiz:#}");
    assert!(
        quiz["questions"][0]["error"].as_str().unwrap().contains("400"),
        "{quiz:#}"
    );
    let id = quiz["id"].as_str().unwrap();
    assert!(
        ran.stderr.starts_with(&format!("error: quiz {id} failed: ")),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("400"), "{}", ran.stderr);

    // The same through `watch` and `get`, as a table naming the question's error.
    for command in ["watch", "get"] {
        let ran = quizstats(&app, &[command, id]).await;
        assert_eq!(ran.code, code(exit::QUIZ_FAILED), "{command}: {}", ran.stderr);
        assert!(ran.stdout.contains("question 1 failed: "), "{}", ran.stdout);
        assert!(
            ran.stdout.contains(&format!("quiz {id} failed")),
            "{}",
            ran.stdout
        );
    }

    std::fs::remove_file(file).unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn usage_errors_exit_with_the_usage_code_before_calling_anything() {
    let app = spawn_app().await.unwrap();
    let missing = std::env::temp_dir().join(format!("{}-missing.json", app.prefix));
    let ran = quizstats(&app, &["submit", missing.to_str().unwrap()]).await;
    assert_eq!(ran.code, code(exit::USAGE), "stderr: {}", ran.stderr);
    assert!(ran.stderr.starts_with("error: cannot read "), "{}", ran.stderr);
    assert_eq!(ran.stdout, "");

    let ran = quizstats(&app, &["submit"]).await;
    assert_eq!(ran.code, code(exit::USAGE), "stderr: {}", ran.stderr);
    let ran = quizstats(&app, &["get", "x", "--no-such-flag"]).await;
    assert_eq!(ran.code, code(exit::USAGE), "stderr: {}", ran.stderr);
    let ran = quizstats_with(
        &app,
        "http://not-a-ws-url",
        &app.api_keys.submit_read,
        &["watch", "x"],
    )
    .await;
    assert_eq!(ran.code, code(exit::USAGE), "stderr: {}", ran.stderr);
    assert!(ran.stderr.contains("ws:// or wss://"), "{}", ran.stderr);
    assert_eq!(app.scripted().calls(), 0);
    app.stop().await.unwrap();
}
