//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!` embeds `migrations/<engine>/` at
//! compile time, and cargo does not otherwise know to look there.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
