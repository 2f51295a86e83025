use user_service::Config;

use common::config::Settings as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("user", "info");
    let config = Config::from_env()?;
    // `user-service staff grant|revoke|list`: an operator's command, not the service.
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("staff", rest)) = arguments.split_first().map(|(first, rest)| (first.as_str(), rest)) {
        let command = user_service::staff::StaffCommand::parse(rest)?;
        println!("{}", user_service::staff::run(&config.database_url, &command).await?);
        return Ok(());
    }
    // `user-service keys rotate|list|remove`: the key directory's (JWT_KEY_DIR) operator commands.
    if let Some(("keys", rest)) = arguments.split_first().map(|(first, rest)| (first.as_str(), rest)) {
        let command = user_service::keys::KeysCommand::parse(rest)?;
        let user_service::SigningKeySource::Directory(directory) = &config.signing_key else {
            anyhow::bail!(
                "the keys commands work on a key directory: set JWT_KEY_DIR (a single key, JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_PATH, cannot rotate)"
            );
        };
        println!("{}", user_service::keys::run(directory, config.token_lifetime(), &command).await?);
        return Ok(());
    }
    let application = user_service::build(config).await?;
    let outcome = application.run_until_stopped(common::shutdown::signal()).await;
    common::telemetry::shutdown();
    outcome
}
