//! The Redis pool on a real Redis: connections are not pinged on every checkout, so one
//! that failed must still never be handed out again.

use common::settings::RedisSettings;

async fn client_id(connection: &mut common::redis::Connection) -> redis::RedisResult<i64> {
    redis::cmd("CLIENT").arg("ID").query_async(connection).await
}

#[tokio::test]
async fn a_connection_that_failed_is_replaced_not_reused() {
    let pool = common::redis::pool(&RedisSettings {
        pool_size: 1,
        ..RedisSettings::default()
    })
    .unwrap();
    let mut connection = pool.get().await.unwrap();
    let first = client_id(&mut connection).await.unwrap();

    // Kill the pooled connection from another one, as a Redis restart or a dropped socket
    // would; its next command fails.
    let killer = redis::Client::open(RedisSettings::default().url).unwrap();
    let mut killer = killer.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(first)
        .query_async(&mut killer)
        .await
        .unwrap();
    assert!(
        client_id(&mut connection).await.is_err(),
        "the killed connection still answered"
    );
    drop(connection);

    // The pool holds one connection: taken again at once (no idle ping), it must be a new one.
    let mut again = pool.get().await.unwrap();
    let second = client_id(&mut again).await.unwrap();
    assert_ne!(first, second);
}
