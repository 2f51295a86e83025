//! `sqlx::migrate!()` embeds `migrations/` at compile time; without this, cargo would not notice
//! a new or changed migration and the binary would silently run the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
