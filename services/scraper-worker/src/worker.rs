//! The consumer of `scrape.requested`: extract the page, store the questions, hand them to the
//! analyzer; a page that can never work marks the quiz failed.

use std::io::Write;

use common::bus::consumer::{Delivered, Outcome};
use common::bus::{Bus, Outgoing, check_meta, decode, routing};
use common::store::QuizStore;
use common::views::{self, QuizStatus};
use proto::v1;

use crate::browser::BrowserPool;
use crate::error::ScrapeError;
use crate::extract::ExtractedQuiz;
use crate::scrape::scrape_page;
use crate::settings::ScrapeSettings;
use crate::spec_store::write_spec;

/// Everything a scrape job needs; shared by all deliveries.
pub struct ScrapeWorker {
    pub store: QuizStore,
    pub bus: Bus,
    /// Sessions for URL jobs.
    pub url_pool: BrowserPool,
    /// Sessions without network, for raw HTML jobs.
    pub html_pool: BrowserPool,
    pub budgets: ScrapeSettings,
}

impl ScrapeWorker {
    pub async fn handle(&self, delivered: Delivered) -> Outcome {
        let previous_deliveries = delivered.delivery_count;
        let outcome = self.handle_once(delivered).await;
        if outcome == Outcome::Retry {
            // Requeueing at once burned the delivery limit in 20 ms during a 2 s Redis restart
            // (found by `cargo xtask chaos`); wait a little longer each time, as the analyzer does.
            tokio::time::sleep(redelivery_delay(previous_deliveries)).await;
        }
        outcome
    }

    #[tracing::instrument(skip_all, fields(quiz_id = tracing::field::Empty, message_id = tracing::field::Empty))]
    async fn handle_once(&self, delivered: Delivered) -> Outcome {
        let request: v1::ScrapeRequested = match decode(&delivered.properties, &delivered.data) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(%error, "undecodable scrape request");
                return Outcome::Reject;
            }
        };
        let Ok(meta) = check_meta(request.meta.as_ref()) else {
            tracing::error!("scrape request without valid meta");
            return Outcome::Reject;
        };
        let quiz_id = meta.quiz_id.clone();
        let span = tracing::Span::current();
        span.record("quiz_id", quiz_id.as_str());
        span.record("message_id", meta.message_id.as_str());
        match self.store.status(&quiz_id).await {
            Ok(Some(status)) if status.is_terminal() => return Outcome::Ack,
            Ok(None) => {
                tracing::warn!("quiz record is gone, dropping its scrape job");
                return Outcome::Ack;
            }
            Ok(Some(_)) => {}
            Err(error) => {
                tracing::warn!(%error, "redis unavailable");
                return Outcome::Retry;
            }
        }
        if let Err(error) = self.store.set_status(&quiz_id, QuizStatus::Scraping, None).await {
            tracing::warn!(%error, "cannot mark the quiz scraping");
            return Outcome::Retry;
        }
        match self
            .extract(request.source.and_then(|source| source.source))
            .await
        {
            Ok(quiz) if quiz.questions.is_empty() => self.fail(&quiz_id, &ScrapeError::NoQuestions).await,
            Ok(quiz) => self.hand_over(&quiz_id, &quiz, request.votes).await,
            Err(error) if error.is_permanent() => self.fail(&quiz_id, &error).await,
            Err(error) => {
                tracing::warn!(%error, "transient scrape failure, retrying");
                Outcome::Retry
            }
        }
    }

    /// Extracts the quiz of a URL (under the egress policy) or of raw HTML (offline).
    pub(crate) async fn extract(
        &self,
        source: Option<v1::source::Source>,
    ) -> Result<ExtractedQuiz, ScrapeError> {
        match source {
            Some(v1::source::Source::Url(url)) => {
                let parsed = url::Url::parse(&url)
                    .map_err(|error| ScrapeError::UrlNotAllowed(format!("{url}: {error}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(ScrapeError::UrlNotAllowed(format!(
                        "scheme {} is not http(s)",
                        parsed.scheme()
                    )));
                }
                self.run(&self.url_pool, parsed.as_str()).await
            }
            Some(v1::source::Source::Html(html)) => {
                // Raw HTML is opened as a file in a session with no network at all.
                let mut file = tempfile::Builder::new()
                    .suffix(".html")
                    .tempfile()
                    .map_err(|error| ScrapeError::SourceFile {
                        path: "<html>".into(),
                        reason: error.to_string(),
                    })?;
                file.write_all(html.as_bytes())
                    .map_err(|error| ScrapeError::SourceFile {
                        path: "<html>".into(),
                        reason: error.to_string(),
                    })?;
                let url = url::Url::from_file_path(file.path()).map_err(|()| ScrapeError::SourceFile {
                    path: "<html>".into(),
                    reason: "not a file url".into(),
                })?;
                let mut quiz = self.run(&self.html_pool, url.as_str()).await?;
                quiz.url = None;
                Ok(quiz)
            }
            None => Err(ScrapeError::UrlNotAllowed("the job has no source".to_owned())),
        }
    }

    async fn run(&self, pool: &BrowserPool, url: &str) -> Result<ExtractedQuiz, ScrapeError> {
        let pooled = pool.acquire().await?;
        let result = scrape_page(&pooled.session, url, &self.budgets).await;
        pool.release(pooled, result.as_ref().err()).await;
        result
    }

    /// Stores the questions and asks the analyzer to answer them.
    async fn hand_over(&self, quiz_id: &str, quiz: &ExtractedQuiz, votes: u32) -> Outcome {
        let spec = quiz.to_spec(votes);
        if let Err(error) = write_spec(&self.store, quiz_id, &spec).await {
            tracing::warn!(%error, "cannot store the extracted questions");
            return Outcome::Retry;
        }
        if let Err(error) = self.store.set_status(quiz_id, QuizStatus::Analyzing, None).await {
            tracing::warn!(%error, "cannot mark the quiz analyzing");
            return Outcome::Retry;
        }
        let meta = views::new_meta(quiz_id);
        let message = Outgoing::new(
            self.bus.topology().jobs_exchange(),
            routing::ANALYSIS_REQUESTED,
            &meta.message_id,
            &spec.to_analysis_request(meta.clone()),
        )
        .mandatory();
        match self.bus.publish(message).await {
            Ok(()) => {
                tracing::info!(n_questions = quiz.questions.len(), "quiz extracted");
                Outcome::Ack
            }
            Err(error) => {
                tracing::warn!(%error, "cannot publish the analysis request");
                Outcome::Retry
            }
        }
    }

    /// Marks the quiz failed with the reason and tells every listener.
    async fn fail(&self, quiz_id: &str, cause: &ScrapeError) -> Outcome {
        let reason = cause.to_string();
        tracing::info!(%reason, "scrape failed permanently");
        let result = common::lifecycle::fail_quiz(&self.store, &self.bus, quiz_id, &reason).await;
        match result {
            Ok(_) => Outcome::Ack,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "cannot record the failure");
                Outcome::Retry
            }
        }
    }
}

/// 0.5 s, 1 s, 2 s, … capped at 10 s: the pause before a failed delivery goes back to the queue
/// (the analyzer's `redelivery_delay`), so six deliveries span about 25 s of outage.
fn redelivery_delay(previous_deliveries: i64) -> std::time::Duration {
    let exponent = u32::try_from(previous_deliveries.clamp(0, 5)).unwrap_or(5);
    std::time::Duration::from_millis((500u64 << exponent).min(10_000))
}
