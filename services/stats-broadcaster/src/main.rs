//! The stats-broadcaster binary: load settings, start telemetry, run until SIGTERM.

use stats_broadcaster::{Application, Settings};

#[global_allocator]
static ALLOCATOR: stats_broadcaster::Allocator = stats_broadcaster::Allocator;

fn main() -> anyhow::Result<()> {
    stats_broadcaster::allocator::release_freed_pages_promptly()?;
    run()
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    common::telemetry::init("stats-broadcaster", &settings.telemetry);
    let application = Application::build(settings).await?;
    tracing::info!(address = %application.local_addr(), "stats-broadcaster listening");
    application.run_until_stopped(common::shutdown::on_signal()).await
}
