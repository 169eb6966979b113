//! `quizstats submit <file.json | URL>`: send the quiz, then follow it to its end.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::{Context, show, wait};
use crate::args::SubmitArgs;
use crate::console::Console;
use crate::error::CliError;

pub async fn run(context: &Context, args: SubmitArgs, console: &mut Console) -> Result<ExitCode, CliError> {
    let mut body = request_body(&args.source)?;
    if let Some(votes) = args.votes {
        body["votes"] = json!(votes);
    }
    // A bad --stream is a usage error before anything is submitted, not after.
    let stream = if args.no_wait {
        None
    } else {
        Some(crate::stream::StreamEndpoint::parse(&context.stream_url)?)
    };
    let (accepted, raw) = context.gateway.submit(&body).await?;
    let Some(stream) = stream else {
        if context.json {
            let text = serde_json::to_string_pretty(&raw).map_err(|error| {
                CliError::UnexpectedResponse(format!("cannot print the reply as JSON: {error}"))
            })?;
            console.write_out(&format!("{text}\n"))?;
        } else {
            console.write_out(&format!("{}\n", accepted.id))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !context.json {
        console.write_err(&format!("submitted {} as quiz {}\n", args.source, accepted.id))?;
    }
    let quiz = wait::until_done(context, &stream, &accepted.id, args.wait.timeout, console).await?;
    show(context, &quiz, console)
}

/// The `POST /v1/quizzes` body: `{"source": {"url": …}}` for an http(s) URL, otherwise
/// the JSON object in the file (or on stdin for `-`), as it is: the gateway validates it
/// and names every field it refuses.
fn request_body(source: &str) -> Result<Value, CliError> {
    let lowered = source.to_ascii_lowercase();
    if lowered.starts_with("http://") || lowered.starts_with("https://") {
        let url = url::Url::parse(source)
            .map_err(|error| CliError::Usage(format!("{source:?} is not a valid URL: {error}")))?;
        return Ok(json!({"source": {"url": url.as_str()}}));
    }
    let (name, text) = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| CliError::Usage(format!("cannot read the quiz from stdin: {error}")))?;
        ("stdin".to_owned(), text)
    } else {
        let path = Path::new(source);
        let text = std::fs::read_to_string(path)
            .map_err(|error| CliError::Usage(format!("cannot read {}: {error}", path.display())))?;
        (path.display().to_string(), text)
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|error| CliError::Usage(format!("{name} is not JSON: {error}")))?;
    if !value.is_object() {
        return Err(CliError::Usage(format!(
            "{name} must hold a JSON object with \"questions\" (see docs/api.md), not {}",
            kind_of(&value)
        )));
    }
    Ok(value)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn urls_become_a_source_and_files_are_sent_as_they_are() {
        assert_eq!(
            request_body("HTTPS://quiz.example/lesson-3").unwrap(),
            json!({"source": {"url": "https://quiz.example/lesson-3"}})
        );
        let path = std::env::temp_dir().join(format!("quizstats-cli-submit-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"questions": [{"text": "Q?", "options": ["a", "b"]}], "extra": 1}"#,
        )
        .unwrap();
        let body = request_body(path.to_str().unwrap()).unwrap();
        assert_eq!(body["extra"], 1, "unknown fields are the gateway's to refuse");
        std::fs::write(&path, "[1, 2]").unwrap();
        let error = request_body(path.to_str().unwrap()).unwrap_err();
        assert!(
            matches!(&error, CliError::Usage(message) if message.contains("not an array")),
            "{error}"
        );
        std::fs::write(&path, "{oops").unwrap();
        let error = request_body(path.to_str().unwrap()).unwrap_err();
        assert!(
            matches!(&error, CliError::Usage(message) if message.contains("is not JSON")),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            request_body("/no/such/quiz.json"),
            Err(CliError::Usage(_))
        ));
    }
}
