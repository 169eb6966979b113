//! The stats-broadcaster binary: load settings, start telemetry, run until SIGTERM.

use stats_broadcaster::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    common::telemetry::init("stats-broadcaster", &settings.telemetry);
    let application = Application::build(settings).await?;
    tracing::info!(address = %application.local_addr(), "stats-broadcaster listening");
    application.run_until_stopped(common::shutdown::on_signal()).await
}
