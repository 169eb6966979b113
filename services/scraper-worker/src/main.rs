//! The scraper-worker binary: load settings, start telemetry, run until SIGTERM.

use scraper_worker::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    common::telemetry::init("scraper-worker", &settings.telemetry);
    let application = Application::build(settings).await?;
    tracing::info!(address = %application.local_addr(), "scraper-worker listening");
    application.run_until_stopped(common::shutdown::on_signal()).await
}
