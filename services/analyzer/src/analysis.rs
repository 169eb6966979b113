//! Answering one quiz: cached answers first in one batch, then the misses through
//! the LLM; every outcome is recorded in Redis and published as an event, in
//! sequence-number order, before the quiz is marked finished.
//!
//! Idempotent under redelivery: questions that already have an outcome are
//! skipped, and a quiz already finished is acknowledged without work.

use std::collections::HashSet;
use std::sync::Arc;

use common::bus::consumer::{Delivered, Outcome};
use common::bus::{Bus, BusError};
use common::redis::RedisError;
use common::store::QuizStore;
use common::views::{AnswerView, QuestionOutcome, QuizSpec, QuizStatus};
use futures::StreamExt;
use proto::v1;
use tracing::Instrument;

use crate::cache::{AnswerCache, CacheKey, CachedAnswer};
use crate::llm::{LlmAnswer, LlmClient};
use crate::metrics;
use crate::single_flight::{Seen, SingleFlight};

/// Why a quiz's analysis stopped before it finished; the message is redelivered.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("quiz state could not be read or written")]
    Store(#[from] RedisError),
    #[error("event could not be published")]
    Bus(#[from] BusError),
}

impl From<common::relay::RelayError> for AnalyzeError {
    fn from(error: common::relay::RelayError) -> Self {
        match error {
            common::relay::RelayError::Store(error) => Self::Store(error),
            common::relay::RelayError::Bus(error) => Self::Bus(error),
        }
    }
}

pub struct Analyzer {
    pub store: QuizStore,
    pub cache: AnswerCache,
    pub llm: LlmClient,
    pub bus: Bus,
    pub flight: SingleFlight,
    /// LLM calls one quiz keeps in flight (the client caps the replica as a whole).
    pub per_quiz_concurrency: usize,
    /// Questions asked per LLM call (1 = one question per call).
    pub batch_size: usize,
    /// Disagreements at or above this confidence are disputed.
    pub dispute_confidence: f64,
    /// One delivery at a time per job, none once done (see `dedup`).
    pub claims: crate::dedup::MessageClaims,
}

/// One single-flight step: this caller's lease if it got it, and the cached answer if one
/// landed meanwhile.
type Lookup = Result<(Option<crate::single_flight::Lease>, Option<String>), RedisError>;

/// Where a missed question's answer came from.
enum Resolved {
    /// This caller paid for it.
    Fresh(LlmAnswer),
    /// Another caller's in-flight call answered it (single flight).
    Shared(CachedAnswer),
}

impl Analyzer {
    /// Consumer entry point: decode, analyse, and tell the runner how to settle.
    /// Runs inside the consumer's span, which carries `quiz_id` and `trace_id`.
    pub async fn handle(self: Arc<Self>, delivered: Delivered) -> Outcome {
        let request =
            match common::bus::decode::<v1::AnalysisRequested>(&delivered.properties, &delivered.data) {
                Ok(request) => request,
                Err(error) => {
                    tracing::error!(error = %error, "undecodable analysis request, dead-lettering it");
                    return Outcome::Reject;
                }
            };
        let meta = match common::bus::check_meta(request.meta.as_ref()) {
            Ok(meta) => meta,
            Err(error) => {
                tracing::error!(error = %error, "unusable analysis request, dead-lettering it");
                return Outcome::Reject;
            }
        };
        tracing::Span::current().record("quiz_id", meta.quiz_id.as_str());
        let claim = match self.claims.claim(&meta.message_id).await {
            Ok(crate::dedup::Claim::Done) => {
                metrics::duplicate_job();
                tracing::info!("job already handled by an earlier delivery, acknowledging");
                return Outcome::Ack;
            }
            Ok(crate::dedup::Claim::Acquired(claim)) => Some(claim),
            Err(error) => {
                // Redis is away: the analysis below fails and requeues on its own.
                tracing::warn!(error = %error, "job claim unavailable");
                None
            }
        };
        match self.analyze(&meta.quiz_id, &request).await {
            Ok(()) => {
                if let Some(claim) = claim
                    && let Err(error) = claim.done().await
                {
                    // A later duplicate still finds the quiz ended and skips it.
                    tracing::warn!(error = %error, "job not remembered as done");
                }
                Outcome::Ack
            }
            Err(error) => {
                if let Some(claim) = claim {
                    claim.release().await;
                }
                // Requeueing at once would burn the delivery limit in a second during a
                // short Redis or broker blip; wait a little longer each time instead.
                let delay = redelivery_delay(delivered.delivery_count);
                tracing::warn!(
                    error = %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    deliveries = delivered.delivery_count,
                    delay_ms = delay.as_millis() as u64,
                    "analysis interrupted, requeueing"
                );
                tokio::time::sleep(delay).await;
                Outcome::Retry
            }
        }
    }

    async fn analyze(&self, quiz_id: &str, request: &v1::AnalysisRequested) -> Result<(), AnalyzeError> {
        let spec = QuizSpec::from_analysis_request(request);
        let model = self.llm.model_for(spec.votes);
        let keys: Vec<CacheKey> = spec
            .questions
            .iter()
            .map(|question| CacheKey::new(self.store.keys(), &model, question, spec.votes))
            .collect();
        // Independent reads and writes in one round of concurrent round trips: the status
        // (moved to `analyzing` unless the quiz ended or is gone, which the same script
        // reports), events another delivery of this job (a redelivery, or a duplicate that
        // took over a dead holder's claim) logged but never published, the questions
        // already answered, and the cache for every question (on a redelivery a few are
        // answered already; reading theirs too costs less than another round trip). For a
        // quiz that already ended, the reads are wasted, and that is rare.
        let (found, republished, recorded, cached) = tokio::join!(
            self.store.set_status(quiz_id, QuizStatus::Analyzing, None),
            common::relay::republish(&self.store, &self.bus, quiz_id),
            self.store.outcomes(quiz_id),
            self.cache.get_many(&keys),
        );
        match found? {
            None => {
                tracing::info!("quiz no longer exists (deleted or expired), skipping");
                return Ok(());
            }
            Some(status) if status.is_terminal() => {
                tracing::info!(
                    status = status.as_str(),
                    "quiz already finished, skipping redelivery"
                );
                // An earlier delivery may have ended the quiz and died (or lost the broker)
                // before its last events were confirmed: the republish above sent them.
                republished?;
                return Ok(());
            }
            Some(_) => {}
        }
        republished?;
        let done: HashSet<u32> = recorded?.iter().map(|outcome| outcome.index).collect();
        let cached = match cached {
            Ok(cached) => cached,
            Err(error) => {
                // Answering without the cache costs money but keeps quizzes moving.
                tracing::warn!(error = %error, "answer cache unavailable, asking the llm for every question");
                metrics::cache_lookups("error", keys.len().saturating_sub(done.len()));
                vec![None; keys.len()]
            }
        };
        let pending = (0u32..)
            .zip(keys)
            .zip(cached)
            .filter(|((index, _), _)| !done.contains(index));
        let mut hits = Vec::new();
        let mut misses = Vec::new();
        for ((index, key), entry) in pending {
            match entry.and_then(|entry| Some((key.from_canonical(&entry.canonical_selected)?, entry))) {
                Some((selected, entry)) => hits.push(self.outcome_from_cache(&spec, index, selected, entry)),
                None => misses.push((index, key)),
            }
        }
        metrics::cache_lookups("hit", hits.len());
        metrics::cache_lookups("miss", misses.len());
        if misses.is_empty() {
            // Nothing to ask: the cached answers end the quiz, in one write and one publish.
            return self.finish(quiz_id, &spec, hits).await;
        }
        if !hits.is_empty() {
            self.emit(quiz_id, hits).await?;
        }

        // Votes need one call per sample, so they never share a call with other questions.
        let batch_size = if spec.votes > 1 { 1 } else { self.batch_size.max(1) };
        let chunks: Vec<Vec<(u32, CacheKey)>> = misses.chunks(batch_size).map(<[_]>::to_vec).collect();
        // Answering and recording run side by side: if each answer were recorded before
        // the stream was polled again, every finished call would hold back the next ones
        // by a Redis and a broker round trip. The recorder takes whatever has arrived,
        // so answers that finish together share one emit.
        let (finished, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<Vec<QuestionOutcome>>();
        let concurrency = self.per_quiz_concurrency.max(1);
        let answering = async move {
            // A lone question's single-flight lookup (lease and cache read, one Redis round
            // trip) is taken up to `concurrency` questions ahead, while earlier calls are in
            // flight, so a freed slot goes straight to the LLM. The lookups run as tasks of
            // their own: `buffer_unordered` polls the stream above it only when a slot frees,
            // so a lookup that were a plain future would not move until then, and every
            // call would wait one Redis round trip. A lease held ahead renews itself.
            futures::stream::iter(chunks)
                .map(|chunk| {
                    let lookup = match chunk.as_slice() {
                        [(_, key)] => {
                            let (flight, key) = (self.flight.clone(), key.clone());
                            Some(tokio::spawn(
                                async move { flight.acquire_or_read(&key.digest, &key.redis_key).await }
                                    .in_current_span(),
                            ))
                        }
                        _ => None,
                    };
                    async move {
                        // A lookup task that did not finish (the runtime is stopping) is
                        // taken again on the answering path.
                        let lookup = match lookup {
                            Some(task) => task.await.ok(),
                            None => None,
                        };
                        (chunk, lookup)
                    }
                })
                .buffered(concurrency)
                .map(|(chunk, lookup)| self.answer_chunk(&spec, chunk, lookup))
                .buffer_unordered(concurrency)
                .for_each(|outcomes| {
                    let _ = finished.send(outcomes);
                    futures::future::ready(())
                })
                .await;
            Ok::<_, AnalyzeError>(spec)
        };
        let recording = async {
            while let Some(mut outcomes) = arrivals.recv().await {
                while let Ok(more) = arrivals.try_recv() {
                    outcomes.extend(more);
                }
                if arrivals.is_closed() && arrivals.is_empty() {
                    // The last answers: they are logged and published with the quiz's end,
                    // which saves the quiz a write and a publish confirm on its way out.
                    return Ok::<_, AnalyzeError>(outcomes);
                }
                self.emit(quiz_id, outcomes).await?;
            }
            Ok(Vec::new())
        };
        let (spec, last) = tokio::try_join!(answering, recording)?;
        self.finish(quiz_id, &spec, last).await
    }

    fn outcome_from_cache(
        &self,
        spec: &QuizSpec,
        index: u32,
        selected: Vec<u32>,
        entry: CachedAnswer,
    ) -> QuestionOutcome {
        metrics::question_finished("cached");
        let agrees_with_key = agreement(spec, index, &selected);
        QuestionOutcome {
            index,
            answer: Some(AnswerView {
                selected,
                confidence: entry.confidence,
                confidence_source: entry.confidence_source,
                rationale: entry.rationale,
                model: entry.model,
                cached: true,
                prompt_tokens: entry.prompt_tokens,
                completion_tokens: entry.completion_tokens,
                latency_ms: 0,
                cost_usd: 0.0,
            }),
            error: None,
            agrees_with_key,
        }
    }

    async fn answer_with_llm(
        &self,
        spec: &QuizSpec,
        index: u32,
        key: CacheKey,
        lookup: Option<Lookup>,
    ) -> QuestionOutcome {
        let Some(question) = spec.questions.get(index as usize) else {
            return QuestionOutcome {
                index,
                answer: None,
                error: Some("question missing".into()),
                agrees_with_key: None,
            };
        };
        let resolved = self.resolve(question, spec.votes, &key, lookup).await;
        self.outcome_from_resolved(spec, index, &key, resolved)
    }

    /// Several questions in one LLM call, each falling back to its own call when the
    /// batch reply leaves it out or gets it wrong. Questions another caller is already
    /// asking take the single path, which waits for that caller's answer.
    /// `lookup` is a lone question's single-flight step, when it was taken ahead.
    async fn answer_chunk(
        &self,
        spec: &QuizSpec,
        chunk: Vec<(u32, CacheKey)>,
        mut lookup: Option<Lookup>,
    ) -> Vec<QuestionOutcome> {
        if chunk.len() <= 1 {
            let mut outcomes = Vec::with_capacity(1);
            for (index, key) in chunk {
                outcomes.push(self.answer_with_llm(spec, index, key, lookup.take()).await);
            }
            return outcomes;
        }
        let mut leased = Vec::new();
        let mut others = Vec::new();
        for (index, key) in chunk {
            match self.flight.try_acquire(&key.digest).await {
                Ok(Some(lease)) => leased.push((index, key, lease)),
                Ok(None) | Err(_) => others.push((index, key)),
            }
        }
        let mut outcomes = Vec::new();
        // Someone may have finished some of them between our cache lookup and the leases.
        let keys: Vec<CacheKey> = leased.iter().map(|(_, key, _)| key.clone()).collect();
        let cached = self
            .cache
            .get_many(&keys)
            .await
            .unwrap_or_else(|_| vec![None; keys.len()]);
        let mut to_ask = Vec::new();
        for ((index, key, lease), entry) in leased.into_iter().zip(cached) {
            match entry {
                Some(entry) => {
                    lease.release().await;
                    metrics::coalesced();
                    outcomes.push(self.outcome_from_resolved(spec, index, &key, Ok(Resolved::Shared(entry))));
                }
                None => to_ask.push((index, key, lease)),
            }
        }
        let questions: Vec<&common::views::QuestionSpec> = to_ask
            .iter()
            .filter_map(|(index, _, _)| spec.questions.get(*index as usize))
            .collect();
        // Each question's share of a batch call that came back, charged to the answer a
        // fallback call finds when the batch's own entry was unusable.
        let mut share = (0, 0);
        let batch: Vec<Option<Result<LlmAnswer, String>>> =
            if questions.len() == to_ask.len() && !questions.is_empty() {
                match self.llm.answer_batch(&questions).await {
                    Ok(reply) => {
                        share = reply.share();
                        reply.answers.into_iter().map(Some).collect()
                    }
                    Err(error) => {
                        tracing::info!(error = %error, "batch call failed, asking one question per call");
                        vec![None; to_ask.len()]
                    }
                }
            } else {
                vec![None; to_ask.len()]
            };
        for ((index, key, lease), result) in to_ask.into_iter().zip(batch) {
            let resolved = match result {
                Some(Ok(answer)) => {
                    self.cache_answer(&key, &answer).await;
                    Ok(answer)
                }
                Some(Err(reason)) => {
                    tracing::debug!(%reason, index, "batch answer unusable, asking alone");
                    let alone = self.ask_alone(spec, index, &key).await;
                    alone.map(|answer| self.llm.charge_batch_share(answer, share))
                }
                None => self.ask_alone(spec, index, &key).await,
            };
            if let Err(reason) = &resolved
                && let Err(error) = self.flight.record_failure(&key.digest, reason).await
            {
                tracing::warn!(error = %error, "failure not shared with waiters");
            }
            lease.release().await;
            outcomes.push(self.outcome_from_resolved(spec, index, &key, resolved.map(Resolved::Fresh)));
        }
        for (index, key) in others {
            outcomes.push(self.answer_with_llm(spec, index, key, None).await);
        }
        outcomes
    }

    async fn ask_alone(&self, spec: &QuizSpec, index: u32, key: &CacheKey) -> Result<LlmAnswer, String> {
        match spec.questions.get(index as usize) {
            Some(question) => self.ask(question, 1, key).await,
            None => Err("question missing".into()),
        }
    }

    fn outcome_from_resolved(
        &self,
        spec: &QuizSpec,
        index: u32,
        key: &CacheKey,
        resolved: Result<Resolved, String>,
    ) -> QuestionOutcome {
        match resolved {
            Ok(Resolved::Fresh(answer)) => {
                metrics::question_finished("answered");
                let agrees_with_key = agreement(spec, index, &answer.reply.selected);
                QuestionOutcome {
                    index,
                    answer: Some(AnswerView {
                        selected: answer.reply.selected,
                        confidence: answer.confidence,
                        confidence_source: answer.confidence_source.map(str::to_owned),
                        rationale: answer.reply.rationale,
                        model: answer.model,
                        cached: false,
                        prompt_tokens: answer.prompt_tokens,
                        completion_tokens: answer.completion_tokens,
                        latency_ms: answer.latency_ms,
                        cost_usd: answer.cost_usd,
                    }),
                    error: None,
                    agrees_with_key,
                }
            }
            Ok(Resolved::Shared(entry)) => match key.from_canonical(&entry.canonical_selected) {
                Some(selected) => self.outcome_from_cache(spec, index, selected, entry),
                None => QuestionOutcome {
                    index,
                    answer: None,
                    error: Some("shared answer does not fit this question".into()),
                    agrees_with_key: None,
                },
            },
            Err(reason) => {
                metrics::question_finished("failed");
                tracing::warn!(reason = %reason, index, "question failed");
                QuestionOutcome {
                    index,
                    answer: None,
                    error: Some(reason),
                    agrees_with_key: None,
                }
            }
        }
    }

    /// Asks the LLM unless another caller already is; then waits for its answer. `first`
    /// is the first single-flight lookup when it was taken ahead.
    async fn resolve(
        &self,
        question: &common::views::QuestionSpec,
        votes: u32,
        key: &CacheKey,
        mut first: Option<Lookup>,
    ) -> Result<Resolved, String> {
        loop {
            let lookup = match first.take() {
                Some(lookup) => lookup,
                None => self.flight.acquire_or_read(&key.digest, &key.redis_key).await,
            };
            let (lease, cached) = match lookup {
                Ok(found) => found,
                Err(error) => {
                    // Without Redis there is no coordination; answering beats stalling.
                    tracing::warn!(error = %error, "single flight unavailable, asking the llm directly");
                    return self.ask(question, votes, key).await.map(Resolved::Fresh);
                }
            };
            // Someone may have finished between our cache lookup and the lease.
            if let Some(entry) = cached.and_then(|text| serde_json::from_str::<CachedAnswer>(&text).ok()) {
                if let Some(lease) = lease {
                    lease.release_in_background();
                }
                metrics::coalesced();
                return Ok(Resolved::Shared(entry));
            }
            if let Some(lease) = lease {
                let result = self
                    .llm
                    .answer_with_votes(question, votes)
                    .await
                    .map_err(|error| error.to_string());
                // Caching, sharing a failure and giving the lease up happen off the
                // answering path, in that order, so waiters see the answer before the lease
                // goes and this slot's next call does not wait for two more round trips.
                let entry = result.as_ref().ok().map(|answer| self.cache_entry(key, answer));
                let failure = result.as_ref().err().cloned();
                let (cache, flight, key) = (self.cache.clone(), self.flight.clone(), key.clone());
                tokio::spawn(async move {
                    if let Some(entry) = entry
                        && let Err(error) = cache.put(&key, &entry).await
                    {
                        tracing::warn!(error = %error, "answer not cached");
                    }
                    if let Some(reason) = failure
                        && let Err(error) = flight.record_failure(&key.digest, &reason).await
                    {
                        tracing::warn!(error = %error, "failure not shared with waiters");
                    }
                    lease.release().await;
                });
                return result.map(Resolved::Fresh);
            }
            loop {
                tokio::time::sleep(self.flight.poll).await;
                if let Ok(Some(entry)) = self.cache.get(key).await {
                    metrics::coalesced();
                    return Ok(Resolved::Shared(entry));
                }
                match self.flight.look(&key.digest).await {
                    Ok(Seen::Busy) => {}
                    Ok(Seen::Failed(reason)) => return Err(reason),
                    // The holder finished without an answer or died: try to take over.
                    Ok(Seen::Free) | Err(_) => break,
                }
            }
        }
    }

    /// One paid answer, cached on success.
    async fn ask(
        &self,
        question: &common::views::QuestionSpec,
        votes: u32,
        key: &CacheKey,
    ) -> Result<LlmAnswer, String> {
        let answer = self
            .llm
            .answer_with_votes(question, votes)
            .await
            .map_err(|error| error.to_string())?;
        self.cache_answer(key, &answer).await;
        Ok(answer)
    }

    async fn cache_answer(&self, key: &CacheKey, answer: &LlmAnswer) {
        if let Err(error) = self.cache.put(key, &self.cache_entry(key, answer)).await {
            tracing::warn!(error = %error, "answer not cached");
        }
    }

    fn cache_entry(&self, key: &CacheKey, answer: &LlmAnswer) -> CachedAnswer {
        CachedAnswer {
            canonical_selected: key.to_canonical(&answer.reply.selected),
            confidence: answer.confidence,
            confidence_source: answer.confidence_source.map(str::to_owned),
            rationale: answer.reply.rationale.clone(),
            model: answer.model.clone(),
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            written_at_ms: common::now_ms(),
        }
    }
}

/// 0.5 s, 1 s, 2 s, … capped at 10 s: the pause before a failed delivery goes back to the queue.
fn redelivery_delay(previous_deliveries: i64) -> std::time::Duration {
    let exponent = u32::try_from(previous_deliveries.clamp(0, 5)).unwrap_or(5);
    std::time::Duration::from_millis((500u64 << exponent).min(10_000))
}

/// Whether `selected` matches the author's key for question `index`; `None` without a key.
fn agreement(spec: &QuizSpec, index: u32, selected: &[u32]) -> Option<bool> {
    let key = spec.answer_key.as_ref()?.get(index as usize)?;
    let mut expected = key.clone();
    expected.sort_unstable();
    expected.dedup();
    Some(expected == selected)
}
