//! The Redis connection pool.
//!
//! deadpool-redis checks every connection with an `UNWATCH`+`PING` round trip each time it is
//! taken from the pool, so every command cost two round trips. This pool keeps deadpool and
//! deadpool-redis's connections, and checks instead what a check is for: a connection whose
//! last command failed in a way that leaves it unusable (dropped, I/O error, timeout) is
//! discarded when it comes back, and one nobody took for [`IDLE_CHECK`] (Redis may have
//! restarted meanwhile) is pinged first, as before.

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleError, RecycleResult};
use deadpool_redis::Runtime;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::settings::RedisSettings;

/// A connection idle longer than this is pinged before it is handed out again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The Redis pool every service shares its connections through.
pub type Pool = managed::Pool<Manager, Connection>;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis pool could not be built")]
    Build(#[from] managed::BuildError),
    #[error("no redis connection available")]
    Pool(#[from] managed::PoolError<redis::RedisError>),
    #[error("redis command failed")]
    Command(#[from] redis::RedisError),
    #[error("stored value is not valid json")]
    Json(#[from] serde_json::Error),
    /// A value this code built does not have the shape a script relies on (a bug).
    #[error("value not storable: {0}")]
    Unstorable(String),
}

/// Builds the pool; it connects lazily, so building succeeds while Redis is down.
pub fn pool(settings: &RedisSettings) -> Result<Pool, RedisError> {
    let timeout = Some(Duration::from_millis(settings.timeout_ms));
    let manager = Manager {
        inner: deadpool_redis::Manager::new(settings.url.as_str())?,
    };
    Ok(Pool::builder(manager)
        .config(managed::PoolConfig {
            max_size: settings.pool_size,
            timeouts: managed::Timeouts {
                wait: timeout,
                create: timeout,
                recycle: timeout,
            },
            ..managed::PoolConfig::default()
        })
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// True when a `PING` round trip succeeds; used by `/readyz`.
pub async fn ping(pool: &Pool) -> bool {
    let Ok(mut connection) = pool.get().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .is_ok()
}

/// deadpool-redis's manager, with the cheaper check described in the module docs.
pub struct Manager {
    inner: deadpool_redis::Manager,
}

/// A multiplexed connection and whether a command on it failed for good.
pub struct Tracked {
    connection: MultiplexedConnection,
    broken: bool,
}

impl managed::Manager for Manager {
    type Type = Tracked;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<Tracked, redis::RedisError> {
        Ok(Tracked {
            connection: managed::Manager::create(&self.inner).await?,
            broken: false,
        })
    }

    async fn recycle(&self, tracked: &mut Tracked, metrics: &Metrics) -> RecycleResult<redis::RedisError> {
        if tracked.broken {
            return Err(RecycleError::message("a command on this connection failed"));
        }
        if metrics.last_used() < IDLE_CHECK {
            return Ok(());
        }
        managed::Manager::recycle(&self.inner, &mut tracked.connection, metrics).await
    }
}

/// A connection taken from the [`Pool`]; it goes back when dropped.
pub struct Connection {
    object: Object<Manager>,
}

impl From<Object<Manager>> for Connection {
    fn from(object: Object<Manager>) -> Self {
        Self { object }
    }
}

impl Connection {
    /// Remembers a failure that leaves the connection unusable, so the pool drops it.
    fn note<T>(&mut self, result: &redis::RedisResult<T>) {
        if let Err(error) = result
            && (error.is_connection_dropped()
                || error.is_io_error()
                || error.is_timeout()
                || error.is_unrecoverable_error())
        {
            self.object.broken = true;
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.object.connection.req_packed_command(cmd).await;
            self.note(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .object
                .connection
                .req_packed_commands(cmd, offset, count)
                .await;
            self.note(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.object.connection.get_db()
    }
}
