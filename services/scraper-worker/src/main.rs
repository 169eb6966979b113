//! The scraper-worker binary: with no subcommand, run the service until SIGTERM; `extract` prints one page's quiz.

use clap::Parser;
use scraper_worker::cli::{Cli, Command};
use scraper_worker::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load()?;
    match cli.command {
        None => {
            common::telemetry::init("scraper-worker", &settings.telemetry);
            let application = Application::build(settings).await?;
            tracing::info!(address = %application.local_addr(), "scraper-worker listening");
            application.run_until_stopped(common::shutdown::on_signal()).await
        }
        Some(Command::Extract {
            source,
            webdriver,
            chromium,
            chromedriver,
        }) => {
            if let Some(url) = webdriver {
                settings.webdriver.url = url;
            }
            if let Some(path) = chromium {
                settings.webdriver.chromium = path;
            }
            if let Some(path) = chromedriver {
                settings.webdriver.chromedriver = path;
            }
            settings.webdriver.pool_size = 1;
            match scraper_worker::cli::extract(settings, &source).await {
                Ok(quiz) => {
                    let json = serde_json::to_string_pretty(&quiz)?;
                    #[allow(
                        clippy::print_stdout,
                        reason = "the extract subcommand's output is the JSON on stdout"
                    )]
                    {
                        println!("{json}");
                    }
                    Ok(())
                }
                Err(error) => {
                    eprintln!("scraper-worker: {error}");
                    std::process::exit(1);
                }
            }
        }
    }
}
