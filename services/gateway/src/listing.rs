//! `GET /v1/quizzes`: the caller's quizzes (every quiz for admin keys), newest first, a page at
//! a time.
//!
//! The index is a sorted set of quiz ids scored by creation time (see `owners`). A page walks
//! it from the cursor downwards a batch at a time: one pipelined round trip reads each quiz's
//! status and owner, dropping (and pruning from the index) quizzes that expired or left the
//! owner and skipping those the `status` filter excludes; a second reads the spec and answer
//! count of the quizzes shown only. The cursor names the last entry examined, `(score, id)`, so
//! quizzes created while a client pages never shift the pages it has not read yet; ties in the
//! score (quizzes created in the same millisecond) are ordered by id.

use common::keys::Keys;
use common::problem::FieldIssue;
use common::redis::Pool;
use common::redis::RedisError;
use common::views::QuizStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Index entries one request examines at most: a selective `status` filter over a long history
/// returns a short (even empty) page with a `next_cursor` instead of scanning everything.
const MAX_EXAMINED: usize = 1_000;

/// Entries read at once when a `status` filter may skip many.
const FILTERED_BATCH: usize = 100;

/// Entries sharing the cursor's millisecond fetched at most (more quizzes than this created by
/// one key in one millisecond would be skipped past).
const MAX_TIES: isize = 1_000;

/// `?limit=&cursor=&status=`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub cursor: Option<Cursor>,
    pub status: Option<QuizStatus>,
}

/// A position in the index: the last entry a page examined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    score: i64,
    id: String,
}

impl Cursor {
    /// Opaque to clients: hex of `v1:{score}:{id}`.
    pub fn encode(&self) -> String {
        hex::encode(format!("v1:{}:{}", self.score, self.id))
    }

    fn decode(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix("v1:")?;
        let (score, id) = rest.split_once(':')?;
        let valid_id =
            !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid_id {
            return None;
        }
        Some(Self {
            score: score.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

impl ListQuery {
    /// Parses the query string; every bad or unknown parameter is reported.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut parsed = Self {
            limit: DEFAULT_LIMIT,
            cursor: None,
            status: None,
        };
        let mut issues = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" => match value.parse::<usize>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => parsed.limit = limit,
                    _ => issues.push(FieldIssue::new(
                        "?limit",
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {value:?}"),
                    )),
                },
                "cursor" => match Cursor::decode(&value) {
                    Some(cursor) => parsed.cursor = Some(cursor),
                    None => issues.push(FieldIssue::new(
                        "?cursor",
                        "not a cursor this API handed out; pass next_cursor back unchanged",
                    )),
                },
                "status" => match QuizStatus::parse(&value) {
                    Some(status) => parsed.status = Some(status),
                    None => issues.push(FieldIssue::new(
                        "?status",
                        format!(
                            "status must be one of queued, scraping, analyzing, completed, failed; got {value:?}"
                        ),
                    )),
                },
                other => issues.push(FieldIssue::new(
                    format!("?{other}"),
                    "unknown parameter; this call takes limit, cursor and status",
                )),
            }
        }
        if issues.is_empty() {
            Ok(parsed)
        } else {
            Err(ApiError::InvalidQuery(issues))
        }
    }
}

/// One quiz in a listing: what the store knows without reading its answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuizSummary {
    pub id: String,
    pub status: QuizStatus,
    pub created_at_ms: i64,
    /// Questions in the quiz (0 while a scraped quiz's page is still being read).
    pub n_questions: usize,
    /// Questions with an outcome so far: an answer, or an error.
    pub n_outcomes: usize,
    #[schema(value_type = crate::openapi::schemas::SummaryLinks)]
    pub links: Value,
}

/// A page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page {
    pub items: Vec<QuizSummary>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Whose quizzes a listing shows.
pub enum Scope<'a> {
    Owner(&'a str),
    Everyone,
}

/// Only the length of `questions` matters for a summary; nothing else is kept.
#[derive(Deserialize)]
struct QuestionCount {
    #[serde(default)]
    questions: Vec<serde::de::IgnoredAny>,
}

pub async fn list(pool: &Pool, keys: &Keys, scope: Scope<'_>, query: &ListQuery) -> Result<Page, RedisError> {
    let (index, owner) = match scope {
        Scope::Owner(key_id) => (keys.owner_quizzes(key_id), Some(key_id)),
        Scope::Everyone => (keys.all_quizzes(), None),
    };
    let mut connection = pool.get().await?;
    let mut items = Vec::with_capacity(query.limit);
    let mut position = query.cursor.clone();
    let mut examined = 0;
    // The last entry shown; the next page starts after it.
    let mut last_shown: Option<Cursor> = None;
    // A filter may skip most entries: read more at once (statuses are cheap, specs are read
    // only for the quizzes shown).
    let batch = if query.status.is_some() {
        (query.limit + 1).max(FILTERED_BATCH)
    } else {
        query.limit + 1
    };
    let batch = isize::try_from(batch).unwrap_or(isize::MAX);
    loop {
        let entries = fetch_after(&mut connection, &index, position.as_ref(), batch).await?;
        if entries.is_empty() {
            // The index is exhausted: this is the last page.
            return Ok(Page {
                items,
                next_cursor: None,
            });
        }
        let heads = read_heads(&mut connection, keys, &entries, owner).await?;
        let mut stale = Vec::new();
        let mut chosen = Vec::new();
        let mut more = false;
        for (entry, head) in entries.into_iter().zip(heads) {
            match head {
                None => stale.push(entry.id.clone()),
                Some(head) if query.status.is_none_or(|wanted| wanted == head.status) => {
                    if items.len() + chosen.len() == query.limit {
                        // One more quiz to show exists: there is a next page.
                        more = true;
                        break;
                    }
                    chosen.push((entry.clone(), head));
                }
                Some(_) => {}
            }
            examined += 1;
            position = Some(entry);
        }
        prune(&mut connection, &index, &stale).await?;
        let details = read_details(&mut connection, keys, &chosen).await?;
        for ((entry, head), detail) in chosen.into_iter().zip(details) {
            // Gone since its status was read (deleted meanwhile): not shown.
            let Some((n_questions, n_outcomes)) = detail else {
                continue;
            };
            items.push(QuizSummary {
                links: serde_json::json!({"self": format!("/v1/quizzes/{}", entry.id)}),
                id: entry.id.clone(),
                status: head.status,
                created_at_ms: head.created_at_ms.unwrap_or(entry.score),
                n_questions,
                n_outcomes,
            });
            last_shown = Some(entry);
        }
        if more {
            // The next page starts after the last quiz shown (after the last examined if the
            // quizzes chosen for this page all vanished meanwhile).
            return Ok(Page {
                items,
                next_cursor: last_shown.or(position).map(|cursor| cursor.encode()),
            });
        }
        if examined >= MAX_EXAMINED {
            // Stop scanning; the client continues from the last entry examined.
            return Ok(Page {
                items,
                next_cursor: position.map(|cursor| cursor.encode()),
            });
        }
    }
}

/// A sorted-set member with its score, as `ZRANGE … WITHSCORES` gives it.
type Scored = (String, f64);

/// The next `count` entries below `position` (all of them from the top without one), newest first.
async fn fetch_after(
    connection: &mut common::redis::Connection,
    index: &str,
    position: Option<&Cursor>,
    count: isize,
) -> Result<Vec<Cursor>, RedisError> {
    let Some(position) = position else {
        let entries: Vec<Scored> = redis::cmd("ZRANGE")
            .arg(index)
            .arg("+inf")
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .arg("WITHSCORES")
            .query_async(connection)
            .await?;
        return Ok(entries.into_iter().map(to_cursor).collect());
    };
    // Same score as the position: those with a smaller id come next (REV orders ties by id,
    // descending). Then the strictly older ones.
    let (ties, older): (Vec<Scored>, Vec<Scored>) = redis::pipe()
        .cmd("ZRANGE")
        .arg(index)
        .arg(position.score)
        .arg(position.score)
        .arg("BYSCORE")
        .arg("REV")
        .arg("LIMIT")
        .arg(0)
        .arg(MAX_TIES)
        .arg("WITHSCORES")
        .cmd("ZRANGE")
        .arg(index)
        .arg(format!("({}", position.score))
        .arg("-inf")
        .arg("BYSCORE")
        .arg("REV")
        .arg("LIMIT")
        .arg(0)
        .arg(count)
        .arg("WITHSCORES")
        .query_async(connection)
        .await?;
    Ok(ties
        .into_iter()
        .filter(|(id, _)| id.as_str() < position.id.as_str())
        .chain(older)
        .map(to_cursor)
        .take(usize::try_from(count).unwrap_or(usize::MAX))
        .collect())
}

fn to_cursor((id, score): Scored) -> Cursor {
    // Scores are integral milliseconds, exact in an f64 until the year 287,396.
    #[allow(clippy::cast_possible_truncation, reason = "integral ms, see above")]
    let score = score as i64;
    Cursor { score, id }
}

/// What a listing needs to know before it decides to show a quiz.
struct Head {
    status: QuizStatus,
    created_at_ms: Option<i64>,
}

/// Each entry's status, or `None` for a quiz that is gone (or, in an owner's listing, is no
/// longer readable by that owner: its owner record expired first).
async fn read_heads(
    connection: &mut common::redis::Connection,
    keys: &Keys,
    entries: &[Cursor],
    owner: Option<&str>,
) -> Result<Vec<Option<Head>>, RedisError> {
    let mut pipe = redis::pipe();
    for entry in entries {
        pipe.cmd("HMGET")
            .arg(keys.quiz(&entry.id))
            .arg(&["status", "created_at_ms"])
            .get(keys.quiz_owner(&entry.id));
    }
    let raw: Vec<redis::Value> = pipe.query_async(connection).await?;
    let mut heads = Vec::with_capacity(entries.len());
    for reply in raw.chunks(2) {
        let [fields, stored_owner] = reply else {
            heads.push(None);
            continue;
        };
        let (status, created_at_ms): (Option<String>, Option<i64>) =
            redis::from_redis_value_ref(fields).map_err(redis::RedisError::from)?;
        let stored_owner: Option<String> =
            redis::from_redis_value_ref(stored_owner).map_err(redis::RedisError::from)?;
        let visible = owner.is_none_or(|owner| stored_owner.as_deref() == Some(owner));
        heads.push(match status {
            Some(status) if visible => Some(Head {
                status: QuizStatus::parse(&status).unwrap_or(QuizStatus::Queued),
                created_at_ms,
            }),
            _ => None,
        });
    }
    Ok(heads)
}

/// For each quiz to show: its number of questions and of outcomes, `None` if it is gone.
async fn read_details(
    connection: &mut common::redis::Connection,
    keys: &Keys,
    chosen: &[(Cursor, Head)],
) -> Result<Vec<Option<(usize, usize)>>, RedisError> {
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (entry, _) in chosen {
        pipe.hget(keys.quiz(&entry.id), "spec")
            .hlen(keys.quiz_answers(&entry.id));
    }
    let raw: Vec<(Option<String>, usize)> = {
        let values: Vec<redis::Value> = pipe.query_async(connection).await?;
        values
            .chunks(2)
            .map(|pair| match pair {
                [spec, n_outcomes] => Ok((
                    redis::from_redis_value_ref(spec)?,
                    redis::from_redis_value_ref(n_outcomes)?,
                )),
                _ => Ok((None, 0)),
            })
            .collect::<Result<_, redis::ParsingError>>()
            .map_err(redis::RedisError::from)?
    };
    raw.into_iter()
        .map(|(spec, n_outcomes)| match spec {
            Some(spec) => Ok(Some((
                serde_json::from_str::<QuestionCount>(&spec)?.questions.len(),
                n_outcomes,
            ))),
            None => Ok(None),
        })
        .collect()
}

/// Removes the entries of quizzes that are gone, so later pages do not meet them again.
async fn prune(
    connection: &mut common::redis::Connection,
    index: &str,
    stale: &[String],
) -> Result<(), RedisError> {
    if stale.is_empty() {
        return Ok(());
    }
    redis::cmd("ZREM")
        .arg(index)
        .arg(stale)
        .query_async::<()>(connection)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn queries_are_checked_and_cursors_round_trip() {
        let cursor = Cursor {
            score: 1_795_658_711_182,
            id: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        };
        let query =
            ListQuery::parse(&format!("limit=5&status=completed&cursor={}", cursor.encode())).unwrap();
        assert_eq!(
            query,
            ListQuery {
                limit: 5,
                cursor: Some(cursor),
                status: Some(QuizStatus::Completed)
            }
        );
        assert_eq!(ListQuery::parse("").unwrap().limit, DEFAULT_LIMIT);
        let Err(ApiError::InvalidQuery(issues)) = ListQuery::parse("limit=0&cursor=zz&status=done&page=2")
        else {
            panic!("expected invalid query");
        };
        let pointers: Vec<&str> = issues.iter().map(|issue| issue.pointer.as_str()).collect();
        assert_eq!(pointers, ["?limit", "?cursor", "?status", "?page"]);
        assert!(ListQuery::parse("limit=101").is_err());
        assert!(ListQuery::parse(&format!("cursor={}", hex::encode("v1:12:a b"))).is_err());
    }
}
