//! uniffi's binding generator, pinned to the crate's uniffi version:
//! `cargo run -p client-bridge --bin uniffi-bindgen -- generate --library <lib> --language python|swift --out-dir <dir>`.
fn main() {
    uniffi::uniffi_bindgen_main()
}
