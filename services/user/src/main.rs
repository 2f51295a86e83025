use user_service::Config;

use common::config::Settings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("user", "info");
    let application = user_service::build(Config::from_env()?).await?;
    let outcome = application.run_until_stopped(common::shutdown::signal()).await;
    common::telemetry::shutdown();
    outcome
}
