use order_service::Config;

use common::config::Settings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("order", "info");
    let application = order_service::build(Config::from_env()?).await?;
    let outcome = application.run_until_stopped(common::shutdown::signal()).await;
    common::telemetry::shutdown();
    outcome
}
