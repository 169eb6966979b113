//! The analyzer binary: load settings, start telemetry, run until SIGTERM.

use analyzer::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    common::telemetry::init("analyzer", &settings.telemetry);
    let application = Application::build(settings).await?;
    tracing::info!(address = %application.local_addr(), "analyzer listening");
    application.run_until_stopped(common::shutdown::on_signal()).await
}
