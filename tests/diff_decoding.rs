//! Bad input to the JSON diff decoder: every refusal is a typed error naming the problem, never a
//! panic. Also replays every input the fuzzer ever kept (`sqlite-ext/fuzz/regressions/`).

use sqlite_ext::{Diff, Error, Schema};

fn decode(json: &str) -> Result<Diff, Error> {
    Diff::from_json(json, &Schema::demo())
}

fn update(cols: &str) -> String {
    format!(r#"{{"changes":[{{"table":"jobs","op":"update","pk":{{"id":"job-1"}},"cols":{cols}}}]}}"#)
}

#[test]
fn a_good_diff_decodes() {
    decode(&update(r#"{"status":{"old":"open","new":"done"}}"#)).unwrap();
}

#[test]
fn malformed_json_and_shapes_are_malformed() {
    for bad in [
        "",
        "{",
        "null",
        "[]",
        r#"{"changes":{}}"#,
        r#"{"changes":[],"extra":1}"#,
        r#"{"changes":[{"table":"jobs","op":"upsert","pk":{"id":"j"},"cols":{}}]}"#,
        r#"{"changes":[{"table":"jobs","op":"update","pk":{"id":"j"}}]}"#,
        &update(r#"{"status":{"old":"open","new":"done","was":"x"}}"#),
        &update(r#"{"status":{"old":"open","new":"done"},"status":{"old":"open","new":"x"}}"#),
        &update(r#"{"price_cents":{"old":1,"new":2.5}}"#),
        &update(r#"{"price_cents":{"old":1,"new":9007199254740993}}"#),
        &update(r#"{"price_cents":{"old":1,"new":{"int":"2"}}}"#),
        &update(r#"{"notes":{"old":"a","new":{"blob":"not base64!"}}}"#),
        &update(r#"{"notes":{"old":"a","new":true}}"#),
    ] {
        let err = decode(bad).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{bad}: {err:?}");
        assert!(err.is_permanent());
    }
}

#[test]
fn unknown_names_are_named_in_the_error() {
    let err =
        decode(r#"{"changes":[{"table":"users","op":"delete","pk":{"id":"u"},"cols":{}}]}"#).unwrap_err();
    assert!(matches!(&err, Error::UnknownTable(t) if t == "users"), "{err:?}");

    let err = decode(&update(r#"{"salary":{"old":1,"new":2}}"#)).unwrap_err();
    assert!(matches!(&err, Error::UnknownColumn { table, column } if table == "jobs" && column == "salary"));

    let err =
        decode(r#"{"changes":[{"table":"jobs","op":"update","pk":{"uuid":"j"},"cols":{}}]}"#).unwrap_err();
    assert!(matches!(err, Error::UnknownColumn { .. }), "{err:?}");

    let injection =
        r#"{"changes":[{"table":"jobs\"; DROP TABLE jobs; --","op":"delete","pk":{"id":"j"},"cols":{}}]}"#;
    assert!(matches!(decode(injection), Err(Error::UnknownTable(_))));
}

#[test]
fn rule_breaking_diffs_are_invalid() {
    for (bad, why) in [
        (update(r#"{}"#), "must change a column"),
        (update(r#"{"status":{"old":"open","new":"open"}}"#), "does not change"),
        (update(r#"{"status":{"new":"done"}}"#), "\"old\" and \"new\""),
        (update(r#"{"id":{"old":"a","new":"b"}}"#), "belongs in \"pk\""),
        (update(r#"{"price_cents":{"old":1,"new":"free"}}"#), "takes non-null Integer"),
        (update(r#"{"title":{"old":"a","new":null}}"#), "takes non-null Text"),
        (
            r#"{"changes":[{"table":"jobs","op":"update","pk":{"id":null},"cols":{"notes":{"old":"a","new":"b"}}}]}"#.into(),
            "non-null",
        ),
        (r#"{"changes":[{"table":"jobs","op":"update","pk":{},"cols":{}}]}"#.into(), "key has"),
        (
            r#"{"changes":[{"table":"jobs","op":"insert","pk":{"id":"j"},"cols":{"title":{"new":"t"}}}]}"#.into(),
            "every column must be given",
        ),
        (
            r#"{"changes":[{"table":"inventory_items","op":"delete","pk":{"id":"i"},"cols":{"sku":{"new":"s"}}}]}"#.into(),
            "\"old\" only",
        ),
        (
            format!(
                r#"{{"changes":[{0},{0}]}}"#,
                r#"{"table":"jobs","op":"update","pk":{"id":"j"},"cols":{"notes":{"old":"a","new":"b"}}}"#
            ),
            "two changes to row",
        ),
    ] {
        let err = decode(&bad).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{bad}: {err:?}");
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
}

/// Every input the fuzzer kept as a regression decodes to a result (either way) without panicking,
/// and whatever decodes round-trips through a changeset and through JSON (the fuzz target's checks).
#[test]
fn fuzz_regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sqlite-ext/fuzz/regressions");
    let schema = Schema::demo();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Ok(diff) = Diff::from_json(text, &schema)
        {
            let cs = diff.to_changeset(&schema).unwrap();
            assert_eq!(Diff::from_changeset(&schema, &cs).unwrap(), diff);
            assert_eq!(Diff::from_json(&diff.to_json(), &schema).unwrap(), diff);
        }
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
