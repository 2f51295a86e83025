//! Tracing set-up: one line per event, human-readable by default, JSON with `LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (several services in one test process) are
/// harmless no-ops.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour only on a terminal: a log file or a container's log gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    let result = if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Err only means a subscriber is installed already, which is what we want.
    drop(result);
}
