//! `cargo xtask dlq list|show|requeue|purge`: the operators' view of `{prefix}.dead`.
//!
//! How dead letters flow (crates/common/src/bus/topology.rs): a job past its delivery
//! limit, or rejected as unprocessable, goes through `{p}.dlx` to two queues. The
//! analyzer consumes `{p}.dead.watch` and fails the job's quiz at once, telling clients;
//! `{p}.dead` keeps the letter for operators, and is what this tool reads. So by the time
//! an operator looks, the quiz of a dead job is normally `failed`, and the analyzer skips
//! jobs of finished quizzes: `requeue` therefore re-opens a failed quiz (status back to
//! `queued`, its `quiz.failed` dropped from the log) and forgets the job's de-duplication
//! claim before republishing, so the job really runs again.
//!
//! Only AMQP `basic.get`, never a consumer: browsing takes every letter unacknowledged and
//! returns the ones it does not settle (quorum queues keep their order). The prefix and
//! connection come from the analyzer's configuration (config/, `QUIZSTATS_*`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::bus::Topology;
use common::settings::{AmqpSettings, RedisSettings, Sources};
use common::store::QuizStore;
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use prost::Message;
use proto::v1;
use serde::{Deserialize, Serialize};

#[derive(clap::Subcommand)]
pub enum Action {
    /// How many dead letters there are, and one line about each
    List,
    /// Headers and decoded body of one dead letter: its number in `list`, or its message id
    Show { which: String },
    /// Republish dead letters to the exchange and routing key they died from, then remove them
    Requeue {
        /// Every dead letter
        #[arg(long, conflicts_with = "which")]
        all: bool,
        /// One dead letter: its number in `list`, or its message id
        which: Option<String>,
    },
    /// Delete every dead letter
    Purge {
        /// Do it; without it, only say how many would go
        #[arg(long)]
        yes: bool,
    },
}

/// The settings the tool shares with the analyzer, which owns the dead-letter queues.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DlqSettings {
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
}

impl DlqSettings {
    pub fn load() -> Result<Self> {
        let sources = Sources {
            config_dir: std::env::var_os("QUIZSTATS_CONFIG_DIR")
                .map_or_else(|| crate::util::workspace_root().join("config"), Into::into),
            profile: std::env::var("QUIZSTATS_ENV").unwrap_or_else(|_| "dev".to_owned()),
            service: "analyzer".to_owned(),
        };
        Ok(common::settings::load(&sources)?)
    }
}

pub fn run(action: Action) -> Result<()> {
    let settings = DlqSettings::load()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dlq = Dlq::connect(&settings).await?;
        let report = match action {
            Action::List => dlq.list().await?,
            Action::Show { which } => dlq.show(&which).await?,
            Action::Requeue { all, which } => match (all, which) {
                (true, _) => dlq.requeue(None).await?,
                (false, Some(which)) => dlq.requeue(Some(&which)).await?,
                (false, None) => {
                    bail!("say which dead letter to requeue (its number or message id), or --all")
                }
            },
            Action::Purge { yes } => dlq.purge(yes).await?,
        };
        println!("{report}");
        dlq.close().await;
        Ok(())
    })
}

/// One dead letter, decoded as far as it goes.
pub struct DeadLetter {
    pub message: BasicGetMessage,
    pub message_id: String,
    pub quiz_id: Option<String>,
    pub deaths: Vec<Death>,
}

/// One `x-death` entry: where and why the letter died, how often, and when first.
#[derive(Debug, Clone, Default)]
pub struct Death {
    pub reason: String,
    pub queue: String,
    pub exchange: String,
    pub routing_keys: Vec<String>,
    pub count: i64,
    pub time_secs: u64,
}

/// Every job opens with `Meta` (field 1), whatever its type.
#[derive(Clone, PartialEq, Message)]
struct MetaOnly {
    #[prost(message, optional, tag = "1")]
    meta: Option<v1::Meta>,
}

pub struct Dlq {
    connection: Connection,
    channel: Channel,
    topology: Topology,
    store: QuizStore,
}

/// An AMQP connection with the services' settings, named `name` in the broker's UI, within
/// the configured connect timeout.
pub async fn connect_broker(amqp: &AmqpSettings, name: &str) -> Result<Connection> {
    tokio::time::timeout(
        Duration::from_millis(amqp.connect_timeout_ms),
        Connection::connect(
            &amqp.url,
            ConnectionProperties::default().with_connection_name(name.into()),
        ),
    )
    .await
    .context("broker did not answer in time")?
    .context("cannot connect to the broker")
}

impl Dlq {
    pub async fn connect(settings: &DlqSettings) -> Result<Self> {
        let connection = connect_broker(&settings.amqp, "quizstats-xtask-dlq").await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let topology = Topology::new(&settings.amqp);
        let pool = common::redis::pool(&settings.redis)?;
        let store = QuizStore::new(
            pool,
            common::keys::Keys::new(settings.redis.key_prefix.clone()),
            settings.redis.quiz_ttl_secs,
        );
        Ok(Self {
            connection,
            channel,
            topology,
            store,
        })
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }

    /// Dead letters waiting in `{p}.dead`, without taking them.
    pub async fn count(&self) -> Result<u32> {
        let queue = self
            .channel
            .queue_declare(
                self.topology.dead_letter_queue().as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!(
                    "no queue {}: has an analyzer ever run with amqp.prefix = {:?}?",
                    self.topology.dead_letter_queue(),
                    self.topology.dead_letter_queue().trim_end_matches(".dead")
                )
            })?;
        Ok(queue.message_count())
    }

    /// Takes every dead letter, unacknowledged; settle each with [`Self::give_back`] or ack.
    async fn take_all(&self) -> Result<Vec<DeadLetter>> {
        self.count().await?;
        let mut letters = Vec::new();
        while let Some(message) = self
            .channel
            .basic_get(
                self.topology.dead_letter_queue().as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await?
        {
            letters.push(decode(message));
        }
        Ok(letters)
    }

    async fn give_back(&self, letters: Vec<DeadLetter>) -> Result<()> {
        for letter in letters {
            letter
                .message
                .delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?;
        }
        Ok(())
    }

    pub async fn list(&self) -> Result<String> {
        let letters = self.take_all().await?;
        let mut report = format!(
            "{} dead letter(s) in {}\n",
            letters.len(),
            self.topology.dead_letter_queue()
        );
        let mut by_reason = std::collections::BTreeMap::<String, usize>::new();
        for letter in &letters {
            let reason = letter.deaths.first().map_or("?", |death| death.reason.as_str());
            *by_reason.entry(reason.to_owned()).or_default() += 1;
        }
        for (reason, count) in &by_reason {
            report.push_str(&format!("  {count} {reason}\n"));
        }
        for (position, letter) in (1..).zip(&letters) {
            report.push_str(&format!("{position:>3}  {}\n", summary(letter)));
        }
        self.give_back(letters).await?;
        Ok(report.trim_end().to_owned())
    }

    pub async fn show(&self, which: &str) -> Result<String> {
        let mut letters = self.take_all().await?;
        let Some(found) = pick(&letters, which) else {
            let known = letters.len();
            self.give_back(letters).await?;
            bail!("no dead letter {which:?} among {known}");
        };
        let letter = letters.swap_remove(found);
        let report = details(&letter);
        letters.push(letter);
        self.give_back(letters).await?;
        Ok(report)
    }

    /// Republishes one dead letter (`which`) or all of them to where they died from,
    /// waits for the broker's confirm, then acks the dead letter.
    pub async fn requeue(&self, which: Option<&str>) -> Result<String> {
        let letters = self.take_all().await?;
        let chosen = match which {
            None => (0..letters.len()).collect::<Vec<_>>(),
            Some(which) => match pick(&letters, which) {
                Some(found) => vec![found],
                None => {
                    let known = letters.len();
                    self.give_back(letters).await?;
                    bail!("no dead letter {which:?} among {known}");
                }
            },
        };
        let mut report = String::new();
        let mut kept = Vec::new();
        let mut failure = None;
        for (position, letter) in letters.into_iter().enumerate() {
            if !chosen.contains(&position) || failure.is_some() {
                kept.push(letter);
                continue;
            }
            match self.republish(&letter).await {
                Ok(line) => {
                    letter
                        .message
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await?;
                    report.push_str(&line);
                    report.push('\n');
                }
                Err(error) => {
                    failure = Some(error.context(format!("requeue of {} failed", letter.message_id)));
                    kept.push(letter);
                }
            }
        }
        self.give_back(kept).await?;
        match failure {
            Some(error) => Err(error),
            None if report.is_empty() => Ok("nothing to requeue".to_owned()),
            None => Ok(report.trim_end().to_owned()),
        }
    }

    async fn republish(&self, letter: &DeadLetter) -> Result<String> {
        let death = letter
            .deaths
            .last()
            .context("no x-death header: not a dead letter, left in place")?;
        let routing_key = death
            .routing_keys
            .first()
            .cloned()
            .unwrap_or_else(|| letter.message.delivery.routing_key.to_string());
        // The analyzer skips jobs of finished quizzes: re-open the quiz the dead-letter
        // watch failed, and forget the job's claim, before the job can arrive.
        let mut reopened = false;
        if let Some(quiz_id) = &letter.quiz_id {
            reopened = self.store.reopen(quiz_id).await?;
            let claim = self.store.keys().message_claim(&letter.message_id);
            let mut connection = self.store.pool().get().await?;
            deadpool_redis::redis::cmd("DEL")
                .arg(claim)
                .query_async::<()>(&mut connection)
                .await?;
        }
        let properties = fresh_properties(&letter.message.delivery.properties);
        let confirm = self
            .channel
            .basic_publish(
                death.exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &letter.message.delivery.data,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            Confirmation::Ack(Some(_)) => bail!("no queue is bound to {} / {routing_key}", death.exchange),
            Confirmation::Nack(_) => bail!("the broker refused the republished message"),
        }
        Ok(format!(
            "requeued {} to {} / {routing_key}{}",
            letter.message_id,
            death.exchange,
            match (&letter.quiz_id, reopened) {
                (Some(quiz_id), true) => format!(" (quiz {quiz_id} re-opened)"),
                _ => String::new(),
            }
        ))
    }

    pub async fn purge(&self, yes: bool) -> Result<String> {
        let queue = self.topology.dead_letter_queue();
        if !yes {
            return Ok(format!(
                "{} dead letter(s) in {queue} would be deleted; run again with --yes to delete them",
                self.count().await?
            ));
        }
        let purged = self
            .channel
            .queue_purge(queue.as_str().into(), Default::default())
            .await?;
        Ok(format!("deleted {purged} dead letter(s) from {queue}"))
    }
}

fn decode(message: BasicGetMessage) -> DeadLetter {
    let properties = &message.delivery.properties;
    let meta = MetaOnly::decode(message.delivery.data.as_slice())
        .ok()
        .and_then(|job| job.meta);
    let message_id = meta
        .as_ref()
        .map(|meta| meta.message_id.clone())
        .or_else(|| properties.message_id().as_ref().map(|id| id.to_string()))
        .unwrap_or_else(|| "(no id)".to_owned());
    DeadLetter {
        quiz_id: meta.map(|meta| meta.quiz_id),
        message_id,
        deaths: deaths(properties),
        message,
    }
}

/// Every `x-death` entry, most recent first (as RabbitMQ orders them).
pub fn deaths(properties: &BasicProperties) -> Vec<Death> {
    let Some(AMQPValue::FieldArray(entries)) = header(properties, "x-death") else {
        return Vec::new();
    };
    entries
        .as_slice()
        .iter()
        .filter_map(|entry| match entry {
            AMQPValue::FieldTable(table) => Some(table),
            _ => None,
        })
        .map(|table| {
            let field = |name: &str| {
                table
                    .inner()
                    .iter()
                    .find(|(key, _)| key.as_str() == name)
                    .map(|(_, value)| value)
            };
            Death {
                reason: text(field("reason")),
                queue: text(field("queue")),
                exchange: text(field("exchange")),
                routing_keys: match field("routing-keys") {
                    Some(AMQPValue::FieldArray(keys)) => {
                        keys.as_slice().iter().map(|key| text(Some(key))).collect()
                    }
                    _ => Vec::new(),
                },
                count: match field("count") {
                    Some(AMQPValue::LongLongInt(count)) => *count,
                    Some(AMQPValue::LongInt(count)) => i64::from(*count),
                    _ => 0,
                },
                time_secs: match field("time") {
                    Some(AMQPValue::Timestamp(time)) => *time,
                    _ => 0,
                },
            }
        })
        .collect()
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties
        .headers()
        .as_ref()?
        .inner()
        .iter()
        .find(|(key, _)| key.as_str() == name)
        .map(|(_, value)| value)
}

fn text(value: Option<&AMQPValue>) -> String {
    match value {
        Some(AMQPValue::LongString(text)) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(text)) => text.as_str().to_owned(),
        _ => String::new(),
    }
}

/// The original properties without the broker's death bookkeeping, so the requeued job
/// starts a fresh delivery count, plus a note that an operator requeued it.
fn fresh_properties(original: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(old) = original.headers() {
        for (key, value) in old.inner() {
            let key_text = key.as_str();
            if key_text == "x-death"
                || key_text.starts_with("x-first-death")
                || key_text.starts_with("x-last-death")
                || key_text == "x-delivery-count"
            {
                continue;
            }
            headers.insert(key.clone(), value.clone());
        }
    }
    headers.insert(
        "x-quizstats-requeued-at-ms".into(),
        AMQPValue::LongLongInt(common::now_ms()),
    );
    original.clone().with_headers(headers)
}

/// A dead letter by its 1-based number in `list`, or by its message id.
fn pick(letters: &[DeadLetter], which: &str) -> Option<usize> {
    if let Ok(number) = which.parse::<usize>()
        && (1..=letters.len()).contains(&number)
    {
        return Some(number - 1);
    }
    letters.iter().position(|letter| letter.message_id == which)
}

fn summary(letter: &DeadLetter) -> String {
    let first = letter.deaths.last().cloned().unwrap_or_default();
    let latest = letter.deaths.first().cloned().unwrap_or_default();
    format!(
        "{}  {}  quiz {}  {} x{} from {}  first died {}",
        letter.message_id,
        letter.message.delivery.properties.kind().as_ref().map_or_else(
            || letter.message.delivery.routing_key.to_string(),
            |kind| kind.to_string()
        ),
        letter.quiz_id.as_deref().unwrap_or("?"),
        latest.reason,
        latest.count,
        latest.queue,
        utc(first.time_secs),
    )
}

fn details(letter: &DeadLetter) -> String {
    let delivery = &letter.message.delivery;
    let properties = &delivery.properties;
    let mut report = format!(
        "message id:   {}\nquiz id:      {}\ntype:         {}\nrouting key:  {}\ncontent type: {}\n",
        letter.message_id,
        letter.quiz_id.as_deref().unwrap_or("?"),
        properties
            .kind()
            .as_ref()
            .map_or("?".to_owned(), ToString::to_string),
        delivery.routing_key,
        properties
            .content_type()
            .as_ref()
            .map_or("?".to_owned(), ToString::to_string),
    );
    for death in &letter.deaths {
        report.push_str(&format!(
            "x-death:      {} x{} from {} (exchange {}, routing keys {:?}) at {}\n",
            death.reason,
            death.count,
            death.queue,
            death.exchange,
            death.routing_keys,
            utc(death.time_secs)
        ));
    }
    if let Some(headers) = properties.headers() {
        for (key, value) in headers.inner() {
            if key.as_str() != "x-death" {
                report.push_str(&format!(
                    "header:       {} = {}\n",
                    key.as_str(),
                    text(Some(value)).if_empty(|| format!("{value:?}"))
                ));
            }
        }
    }
    let data = delivery.data.as_slice();
    let kind = properties
        .kind()
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let body = match kind.as_str() {
        "quizstats.v1.AnalysisRequested" => {
            v1::AnalysisRequested::decode(data).map(|job| format!("{job:#?}"))
        }
        "quizstats.v1.ScrapeRequested" => v1::ScrapeRequested::decode(data).map(|job| format!("{job:#?}")),
        _ => MetaOnly::decode(data).map(|job| format!("{job:#?} (and {} bytes in all)", data.len())),
    };
    match body {
        Ok(body) => report.push_str(&format!("body:\n{body}")),
        Err(error) => report.push_str(&format!("body: {} bytes, not decodable: {error}", data.len())),
    }
    report
}

trait IfEmpty {
    fn if_empty(self, otherwise: impl FnOnce() -> String) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, otherwise: impl FnOnce() -> String) -> String {
        if self.is_empty() { otherwise() } else { self }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds, without a date crate
/// (Howard Hinnant's days-to-civil algorithm).
fn utc(seconds: u64) -> String {
    if seconds == 0 {
        return "?".to_owned();
    }
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
#[path = "dlq_tests.rs"]
mod tests;
