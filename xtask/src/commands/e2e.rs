//! `cargo xtask e2e [--containers] [--name REGEX] [--tags EXPRESSION] [-- CUCUMBER OPTIONS]`:
//! the whole test suite, ending with `fuzz`, the alert rules' tests (`alerts`), the Kubernetes
//! manifests' checks (`manifests`) and one summary line.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cargo;
use crate::servers;
use crate::shell::say;

/// What `cargo xtask e2e` was asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// The servers in containers started for the run.
    pub containers: bool,
    /// Cucumber's arguments; empty for the whole suite.
    pub feature_arguments: Vec<String>,
}

impl Options {
    pub fn parse(arguments: &[String]) -> anyhow::Result<Self> {
        let containers = arguments.iter().any(|argument| argument == "--containers");
        let rest: Vec<String> = arguments.iter().filter(|argument| *argument != "--containers").cloned().collect();
        Ok(Self { containers, feature_arguments: feature_arguments(&rest)? })
    }
}

/// Runs every test of the workspace and ends with one line: `e2e: N passed, M failed`.
///
/// With a filter (`--name REGEX`, `--tags EXPRESSION`, or cucumber's own options after `--`),
/// only the features run, filtered: `cargo xtask e2e --tags @serial`,
/// `cargo xtask e2e --name "Step 1.1"`, `cargo xtask e2e -- --fail-fast`.
///
/// With `--containers`, PostgreSQL, MongoDB and RabbitMQ are containers started with
/// testcontainers for this run (the Docker engine installed and started if need be, local images
/// built where the official ones cannot be pulled), handed to every test target and to the
/// fuzzing's system, and removed at the end, also after a failure or a Ctrl-C.
pub fn end_to_end(arguments: &[String]) -> anyhow::Result<ExitCode> {
    let Options { containers, feature_arguments } = Options::parse(arguments)?;
    // A Ctrl-C reaches the tests too (one process group); this command outlives it, to remove
    // what it started. A SIGTERM meant for this command alone stops the tests first.
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupted))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&interrupted))?;
    let servers = if containers { servers::Servers::Containers } else { servers::Servers::Local };
    let mut prepared = servers::prepare(servers)?;
    let outcome = run_suite(&prepared, &feature_arguments, &interrupted);
    prepared.stop();
    outcome
}

fn run_suite(
    prepared: &servers::Prepared,
    feature_arguments: &[String],
    interrupted: &Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    let mut command = cargo();
    command.args(["test", "--workspace", "--no-fail-fast"]);
    if feature_arguments.is_empty() {
        say("running the whole test suite: cargo test --workspace --no-fail-fast (unit, integration, features)");
    } else {
        say(&format!("running the features only, filtered: {}", feature_arguments.join(" ")));
        command.args(["--test", "features", "--"]).args(feature_arguments);
    }
    command.stdout(Stdio::piped()).envs(prepared.environment());
    // The features write it afresh; one left by an earlier run must not be read as this one's.
    let junit = junit_path();
    let _ = std::fs::remove_file(&junit);
    let mut child = command.spawn().context("failed to run cargo test")?;
    let watcher = stop_on_signal(child.id(), interrupted);
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let line = line?;
        println!("{line}");
        totals.read(&line);
    }
    let status = child.wait()?;
    watcher.store(true, Ordering::Relaxed);
    // A failure that produced no test line (a compile error, a crashed binary) still counts.
    if !status.success() && totals.failed == 0 {
        totals.failed += 1;
    }
    let mut success = status.success();
    // The whole suite ends with the API fuzzing: schemathesis against every service's OpenAPI,
    // on the system as `cargo xtask up` runs it (counted as one test).
    if feature_arguments.is_empty() && !interrupted.load(Ordering::Relaxed) {
        say("fuzzing every service's API: cargo xtask fuzz");
        let fuzzed = super::fuzz::fuzz_on(&[], &prepared.servers).unwrap_or_else(|error| {
            eprintln!("xtask: fuzz: {error:#}");
            ExitCode::FAILURE
        });
        if fuzzed == ExitCode::SUCCESS {
            totals.passed += 1;
        } else {
            totals.failed += 1;
            success = false;
        }
    }
    // And with the checks of what deploys it, each counted as one test: the alert rules' unit
    // tests, and the Kubernetes manifests checked offline.
    type Check = fn() -> anyhow::Result<bool>;
    let deployment_checks: [(&str, Check); 2] = [("alerts", super::alerts::check), ("manifests", super::manifests::check)];
    for (name, check) in deployment_checks {
        if !feature_arguments.is_empty() || interrupted.load(Ordering::Relaxed) {
            break;
        }
        say(&format!("cargo xtask {name}"));
        if check().unwrap_or_else(|error| {
            eprintln!("xtask: {name}: {error:#}");
            false
        }) {
            totals.passed += 1;
        } else {
            totals.failed += 1;
            success = false;
        }
    }
    // A failed scenario's reason is far above, among thousands of lines: said again here, at the
    // end, where a log cut to its tail (a CI summary) still shows it.
    for failure in std::fs::read_to_string(&junit).map(|xml| failed_scenarios(&xml)).unwrap_or_default() {
        println!("e2e: failed: {failure}");
    }
    println!("e2e: {} passed, {} failed", totals.passed, totals.failed);
    Ok(if success { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Where the features write their JUnit report (`E2E_JUNIT`, as tests/features.rs reads it).
fn junit_path() -> std::path::PathBuf {
    std::env::var_os("E2E_JUNIT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/cucumber-junit.xml"))
}

/// Each failed scenario in cucumber's JUnit report: its name, what failed (a step or a hook) and
/// the first lines of the panic, unescaped.
fn failed_scenarios(xml: &str) -> Vec<String> {
    let attribute = |element: &str, name: &str| -> String {
        // `split` below leaves a test case's first attribute with no space before it.
        let element = format!(" {element}");
        let Some(start) = element.find(&format!(" {name}=\"")) else { return String::new() };
        let value = &element[start + name.len() + 3..];
        let value = &value[..value.find('"').unwrap_or(value.len())];
        value
            .replace("&#10;", "\n")
            .replace("&#xA;", "\n")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    };
    xml.split("<testcase ")
        .skip(1)
        .filter_map(|case| {
            let case = &case[..case.find("</testcase>").unwrap_or(case.len())];
            let failure = &case[case.find("<failure")?..];
            let failure = &failure[..failure.find('>').unwrap_or(failure.len())];
            let message = attribute(failure, "message");
            let message: Vec<&str> = message.lines().take(40).collect();
            Some(format!("{} ({}): {}", attribute(case, "name"), attribute(failure, "type"), message.join("\n    ")))
        })
        .collect()
}

/// Sends SIGTERM to `child` when this command is interrupted; the returned flag ends the watch.
fn stop_on_signal(child: u32, interrupted: &Arc<AtomicBool>) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let (interrupted, finished) = (Arc::clone(interrupted), Arc::clone(&done));
    std::thread::spawn(move || {
        while !finished.load(Ordering::Relaxed) {
            if interrupted.load(Ordering::Relaxed) {
                let _ = Command::new("kill").arg("-TERM").arg(child.to_string()).status();
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    done
}

/// The cucumber arguments in `cargo xtask e2e`'s arguments: `--name`/`-n` and `--tags`/`-t`
/// with their values, and everything after `--`. Anything else is a mistake, said at once.
fn feature_arguments(arguments: &[String]) -> anyhow::Result<Vec<String>> {
    let mut feature_arguments = Vec::new();
    let mut rest = arguments.iter();
    while let Some(argument) = rest.next() {
        match argument.as_str() {
            "--" => {
                feature_arguments.extend(rest.by_ref().cloned());
                break;
            }
            "--name" | "-n" | "--tags" | "-t" => {
                let value = rest.next().with_context(|| format!("{argument} needs a value"))?;
                feature_arguments.extend([argument.clone(), value.clone()]);
            }
            other if other.starts_with("--name=") || other.starts_with("--tags=") => feature_arguments.push(other.to_owned()),
            other => {
                bail!(
                    "unknown argument {other:?}: cargo xtask e2e [--containers] [--name REGEX] [--tags EXPRESSION] [-- CUCUMBER OPTIONS]"
                )
            }
        }
    }
    Ok(feature_arguments)
}

/// Counts from libtest's `test result:` lines and cucumber's `N scenarios (...)` summary.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    fn read(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("test result: ") {
            self.passed += number_before(rest, " passed");
            self.failed += number_before(rest, " failed");
        } else if line.contains(" scenario")
            && line.ends_with(')')
            && let Some((_, counts)) = line.split_once('(')
        {
            self.passed += number_before(counts, " passed");
            self.failed += number_before(counts, " failed");
        }
    }
}

/// The number right before `label` in `text` (`"5 passed; 0 failed"`, `" failed"` → 0).
fn number_before(text: &str, label: &str) -> u64 {
    text.find(label)
        .and_then(|end| {
            text[..end].rsplit(|character: char| !character.is_ascii_digit()).next().and_then(|digits| digits.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_failed_scenario_is_named_with_what_failed_and_why() {
        let xml = concat!(
            r#"<testsuites><testsuite name="Feature: A"><testcase name="Scenario: fine: features/a.feature:3:3" time="1">"#,
            r#"<system-out>ok</system-out></testcase><testcase name="Scenario: broken: features/a.feature:9:3" time="2">"#,
            r#"<failure type="Hook Panicked" message="teardown: 1 WARN line&#10;[DependencyTrouble] &quot;x&quot; &lt;y&gt; &amp; z"/>"#,
            r#"<system-out>x</system-out></testcase></testsuite></testsuites>"#
        );
        assert_eq!(
            failed_scenarios(xml),
            vec![
                "Scenario: broken: features/a.feature:9:3 (Hook Panicked): teardown: 1 WARN line\n    [DependencyTrouble] \"x\" <y> & z"
            ]
        );
        assert!(failed_scenarios("<testsuites></testsuites>").is_empty());
    }

    #[test]
    fn no_arguments_is_the_whole_suite_on_local_servers() {
        assert_eq!(Options::parse(&[]).unwrap(), Options { containers: false, feature_arguments: vec![] });
    }

    #[test]
    fn filters_and_everything_after_the_separator_go_to_cucumber() {
        let options = Options::parse(&words("--containers --name Step.1 -t @stock -- --fail-fast --containers")).unwrap();
        assert!(options.containers);
        // `--containers` is xtask's wherever it stands; `--` itself is not cucumber's.
        assert_eq!(options.feature_arguments, words("--name Step.1 -t @stock --fail-fast"));
    }

    #[test]
    fn the_equals_forms_of_the_filters_are_kept_whole() {
        assert_eq!(Options::parse(&words("--tags=@serial")).unwrap().feature_arguments, words("--tags=@serial"));
    }

    #[test]
    fn a_filter_without_its_value_and_an_unknown_argument_are_refused() {
        assert!(Options::parse(&words("--name")).unwrap_err().to_string().contains("--name needs a value"));
        assert!(Options::parse(&words("--release")).unwrap_err().to_string().contains("unknown argument \"--release\""));
    }

    #[test]
    fn the_summary_counts_libtest_and_cucumber_lines() {
        let mut totals = Totals::default();
        totals.read("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
        totals.read("test result: FAILED. 3 passed; 2 failed; 0 ignored");
        totals.read("140 scenarios (139 passed, 1 failed)");
        totals.read("an unrelated line (5 passed)");
        assert_eq!((totals.passed, totals.failed), (154, 3));
    }
}
