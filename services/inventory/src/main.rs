use inventory_service::Config;

use common::config::Settings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("info");
    let application = inventory_service::build(Config::from_env()?).await?;
    application.run_until_stopped(common::shutdown::signal()).await
}
