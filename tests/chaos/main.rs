//! The chaos run as a test target of its own (one test, no harness): `cargo test --workspace`
//! runs a short run with a fresh seed; `cargo xtask chaos [--seed N] [--operations M]` any run.
//! What it does and checks: see the library (lib.rs).

use shop_chaos::SHORT_RUN;

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    // cargo-nextest's protocol: the run is one test.
    if arguments.iter().any(|argument| argument == "--list") {
        if !arguments.iter().any(|argument| argument == "--ignored") {
            println!("chaos: test");
        }
        return;
    }
    let value_of = |flag: &str| -> Option<u64> {
        let position = arguments.iter().position(|argument| argument == flag)?;
        let value = arguments.get(position + 1).unwrap_or_else(|| panic!("{flag} needs a number"));
        Some(value.parse().unwrap_or_else(|_| panic!("{flag} needs a number, not {value:?}")))
    };
    let seed = value_of("--seed").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos() as u64).unwrap_or(1)
    });
    let operations = value_of("--operations").map(|count| count as usize).unwrap_or(SHORT_RUN);

    // SAFETY: no other thread exists yet; the runtime is built below.
    unsafe { shop_testkit::system::poison_service_environment() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let failed = runtime.block_on(shop_chaos::run(seed, operations));
    std::process::exit(if failed { 1 } else { 0 });
}
