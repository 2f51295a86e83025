//! `dead-letters list | show [QUEUE] [--limit N] | replay [QUEUE]` against the broker at
//! `RABBITMQ_URL`. Run it as `cargo xtask dlq list|show|replay [--queue Q]`; see
//! `common::messaging::dead_letters`.
//!
//! Without `RABBITMQ_URL`, the local broker `cargo xtask up` uses: `list` as its administrator
//! (guest), and `show` and `replay` of a queue as the service that consumes it, with its
//! development password: a replayed message is taken only from that service's own user (or the
//! event's owner). With `RABBITMQ_URL`, give the consuming service's credentials to replay.

use std::process::ExitCode;

use common::messaging::dead_letters;
use common::messaging::topology::{self, QUEUES};

const USAGE: &str = "usage: dead-letters list | show [QUEUE] [--limit N] | replay [QUEUE]  (no QUEUE: every queue)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let given = common::config::Environment::Process.get("RABBITMQ_URL");
    match run(given.as_deref(), &arguments).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dead-letters: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The URL to reach `queue` by: the one given, else the local broker as its consumer.
fn url_for(given: Option<&str>, queue: &str) -> String {
    match (given, topology::consumer(queue.strip_suffix(".dead_letter").unwrap_or(queue))) {
        (Some(url), _) => url.to_owned(),
        (None, Some(consumer)) => common::config::default_rabbitmq_url(consumer),
        (None, None) => LOCAL_ADMINISTRATOR.to_owned(),
    }
}

const LOCAL_ADMINISTRATOR: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn run(given: Option<&str>, arguments: &[String]) -> anyhow::Result<()> {
    let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["list"] => {
            println!("{:<22} {:>8}", "queue", "dead");
            for (queue, count) in dead_letters::counts(given.unwrap_or(LOCAL_ADMINISTRATOR)).await? {
                println!("{queue:<22} {count:>8}");
            }
        }
        ["show", rest @ ..] => {
            let (queues, rest) = match rest {
                [queue, rest @ ..] if !queue.starts_with("--") => (vec![*queue], rest),
                rest => (QUEUES.to_vec(), rest),
            };
            let limit = match rest {
                [] => 10,
                ["--limit", limit] => limit.parse().map_err(|_| anyhow::anyhow!("--limit takes a number"))?,
                _ => anyhow::bail!(USAGE),
            };
            for queue in queues {
                show(&url_for(given, queue), queue, limit).await?;
            }
        }
        ["replay"] => {
            for queue in QUEUES {
                report(queue, dead_letters::replay(&url_for(given, queue), queue).await?);
            }
        }
        ["replay", queue] => report(queue, dead_letters::replay(&url_for(given, queue), queue).await?),
        _ => anyhow::bail!(USAGE),
    }
    Ok(())
}

async fn show(url: &str, queue: &str, limit: usize) -> anyhow::Result<()> {
    let letters = dead_letters::peek(url, queue, limit).await?;
    if letters.is_empty() {
        println!("{queue}: nothing is dead-lettered");
    }
    for (number, letter) in letters.iter().enumerate() {
        let reason = letter.reason.as_deref().unwrap_or("no x-death record");
        println!("{queue} #{}: {reason} (from {})", number + 1, letter.from_queue.as_deref().unwrap_or(queue));
        println!(
            "   message id {}, correlation id {}, request id {}, attempts {}",
            letter.message_id.as_deref().unwrap_or("-"),
            letter.correlation_id.as_deref().unwrap_or("-"),
            letter.request_id.as_deref().unwrap_or("-"),
            letter.attempts.map_or_else(|| "1".to_owned(), |attempts| attempts.to_string())
        );
        println!("   {}", letter.payload);
    }
    Ok(())
}

fn report(queue: &str, replayed: usize) {
    println!("{queue}: {replayed} message(s) handed back to their consumer");
}
