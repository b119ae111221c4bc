//! Fuzzes the JSON diff decoder against the demo schema. Whatever it accepts must round-trip exactly
//! through the binary changeset and through JSON text; whatever it refuses must be a typed error.
//! Inputs worth keeping go to `../regressions/`, which `tests/diff_decoding.rs` replays on every run.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sqlite_ext::{Diff, Schema};

static SCHEMA: LazyLock<Schema> = LazyLock::new(Schema::demo);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(diff) = Diff::from_json(text, &SCHEMA) else { return };
    let bytes = diff.to_changeset(&SCHEMA).expect("a valid diff always encodes");
    let back = Diff::from_changeset(&SCHEMA, &bytes).expect("our own changeset always decodes");
    assert_eq!(back, diff);
    let again = Diff::from_json(&diff.to_json(), &SCHEMA).expect("our own JSON always decodes");
    assert_eq!(again, diff);
});
