// `sqlx::migrate!` embeds the migrations folder at compile time; without this, a new migration
// file is not picked up until something else in the crate changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
