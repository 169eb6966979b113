//! Accepting a quiz: record it, then publish its analysis request with a confirm.
//! A quiz the broker did not confirm is removed again and the caller gets 503, so
//! nothing is ever accepted that cannot finish. The quiz belongs to the submitting API key.

use common::bus::{Outgoing, routing};
use common::views::{self, QuizSpec};

use crate::error::ApiError;
use crate::input::Submission;
use crate::state::AppState;

/// Records and enqueues a validated quiz owned by the key `owner`; returns its id.
#[tracing::instrument(skip_all, fields(quiz_id = tracing::field::Empty, key_id = owner))]
pub async fn submit(
    state: &AppState,
    submission: &Submission,
    owner: &str,
    before_publish: impl FnOnce(&str),
) -> Result<String, ApiError> {
    // A scraped quiz starts with no questions; the scraper writes them back.
    let scraped;
    let spec = match submission {
        Submission::Questions(spec) => spec,
        Submission::Scrape { votes, .. } => {
            scraped = QuizSpec {
                questions: Vec::new(),
                answer_key: None,
                votes: *votes,
            };
            &scraped
        }
    };
    let quiz_id = uuid::Uuid::now_v7().to_string();
    tracing::Span::current().record("quiz_id", quiz_id.as_str());
    // The quiz and its owner in one atomic step: a listing never meets one without the other.
    state
        .store
        .create_with(&quiz_id, spec, |pipe| {
            state.owners.add_record(pipe, &quiz_id, owner, common::now_ms());
        })
        .await
        .map_err(ApiError::StoreUnavailable)?;
    before_publish(&quiz_id);
    let meta = views::new_meta(&quiz_id);
    let (job, source_label) = match submission {
        Submission::Questions(spec) => (
            Outgoing::new(
                state.bus.topology().jobs_exchange(),
                routing::ANALYSIS_REQUESTED,
                &meta.message_id,
                &spec.to_analysis_request(meta.clone()),
            ),
            "json",
        ),
        Submission::Scrape { source, votes } => (
            Outgoing::new(
                state.bus.topology().jobs_exchange(),
                routing::SCRAPE_REQUESTED,
                &meta.message_id,
                &proto::v1::ScrapeRequested {
                    meta: Some(meta.clone()),
                    source: Some(proto::v1::Source {
                        source: Some(source.clone()),
                    }),
                    votes: *votes,
                },
            ),
            match source {
                proto::v1::source::Source::Url(_) => "url",
                proto::v1::source::Source::Html(_) => "html",
            },
        ),
    };
    let job = job.mandatory();
    let event_meta = views::new_meta(&quiz_id);
    let submitted = proto::v1::QuizSubmitted {
        n_questions: u32::try_from(spec.questions.len()).unwrap_or(u32::MAX),
        source: source_label.to_owned(),
        has_answer_key: spec.answer_key.is_some(),
        owner: owner.to_owned(),
        meta: Some(event_meta.clone()),
    };
    let event = Outgoing::new(
        state.bus.topology().events_exchange(),
        routing::QUIZ_SUBMITTED,
        &event_meta.message_id,
        &submitted,
    );
    // One channel keeps the order (job, then event) and one confirm round trip covers both.
    if let Err(error) = state.bus.publish_all(vec![job, event]).await {
        tracing::warn!(%error, "analysis request not confirmed, refusing the quiz");
        discard(state, &quiz_id, owner).await;
        state.completions.forget(&quiz_id);
        return Err(ApiError::BrokerUnavailable(error));
    }
    tracing::info!(n_questions = spec.questions.len(), "quiz accepted");
    Ok(quiz_id)
}

/// Removes a refused quiz, its owner record and index entries; what cannot be removed expires
/// (or is pruned from the index when a listing meets it).
async fn discard(state: &AppState, quiz_id: &str, owner: &str) {
    if let Err(cleanup) = state.store.delete(quiz_id).await {
        tracing::warn!(error = %cleanup, "refused quiz could not be removed; it will expire");
    }
    if let Err(cleanup) = state.owners.forget(quiz_id, owner).await {
        tracing::warn!(error = %cleanup, "refused quiz's owner could not be removed; it will expire");
    }
}
