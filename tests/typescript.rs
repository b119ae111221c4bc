//! The web SDK's TypeScript types are generated from the Rust types the wasm core hands it, so the two
//! cannot drift: this test writes them into one declaration file and fails when the checked-in
//! `web/src/sdk/types.ts` differs. `MOAT_BLESS=1 cargo test -p moat-tests --test typescript`
//! rewrites it after an intended change.

use std::path::PathBuf;

use client_bridge::driver::ClientEvent;
use sqlite_ext::ConflictKind;
use sqlite_ext::protocol::{CustomizationVersion, CustomizeAnswer, CustomizeRequest, DeviceRecord};
use sqlite_ext::sync::{Phase, Status};
use sqlite_ext::ui::customize::{Customization, LayoutDef, ObjectTypeDef, Plan, SortDef};
use sqlite_ext::ui::{
    CellView, Choice, ColumnValue, ColumnView, ConflictChoice, ConflictColumnView, ConflictView,
    DetailViewModel, FacetOption, FacetView, FieldInput, FieldKind, FieldMeta, FieldValue, FieldView,
    HistoryEntryView, KindChoice, LayoutField, LayoutSection, LineItemColumn, LineItemRow, LineItemsView,
    ListFilter, ListQuery, ListRowView, ListViewModel, ObjectTypeView, PendingView, RecordLink,
    ReferenceOption, RejectedView, SectionView,
};
use ts_rs::{Config, TS};

fn declare<T: TS>(cfg: &Config, out: &mut String) {
    if let Some(docs) = T::docs() {
        out.push_str(&docs);
    }
    out.push_str("export ");
    out.push_str(&T::decl(cfg));
    out.push_str("\n\n");
}

fn generated() -> String {
    // Every integer the core sends is far below 2^53 (counts, ids, minor units, milliseconds), and
    // JSON numbers arrive as JavaScript numbers: `number`, not ts-rs's default `bigint`.
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from the Rust types by `tests/typescript.rs` (MOAT_BLESS=1 rewrites it); do not edit.\n// The SDK adds its own event in `events.ts` and `MoatError` in `errors.ts`.\n\n",
    );
    let cfg = &cfg;
    declare::<FieldValue>(cfg, &mut out);
    declare::<FieldKind>(cfg, &mut out);
    declare::<Choice>(cfg, &mut out);
    declare::<ObjectTypeView>(cfg, &mut out);
    declare::<ColumnView>(cfg, &mut out);
    declare::<CellView>(cfg, &mut out);
    declare::<ListRowView>(cfg, &mut out);
    declare::<ListFilter>(cfg, &mut out);
    declare::<ListQuery>(cfg, &mut out);
    declare::<FacetOption>(cfg, &mut out);
    declare::<FacetView>(cfg, &mut out);
    declare::<ListViewModel>(cfg, &mut out);
    declare::<RecordLink>(cfg, &mut out);
    declare::<LineItemColumn>(cfg, &mut out);
    declare::<LineItemRow>(cfg, &mut out);
    declare::<LineItemsView>(cfg, &mut out);
    declare::<FieldView>(cfg, &mut out);
    declare::<SectionView>(cfg, &mut out);
    declare::<DetailViewModel>(cfg, &mut out);
    declare::<ConflictKind>(cfg, &mut out);
    declare::<ConflictColumnView>(cfg, &mut out);
    declare::<ConflictView>(cfg, &mut out);
    declare::<ConflictChoice>(cfg, &mut out);
    declare::<RejectedView>(cfg, &mut out);
    declare::<ColumnValue>(cfg, &mut out);
    declare::<FieldInput>(cfg, &mut out);
    declare::<ReferenceOption>(cfg, &mut out);
    declare::<PendingView>(cfg, &mut out);
    declare::<HistoryEntryView>(cfg, &mut out);
    declare::<Phase>(cfg, &mut out);
    declare::<Status>(cfg, &mut out);
    declare::<DeviceRecord>(cfg, &mut out);
    declare::<KindChoice>(cfg, &mut out);
    declare::<FieldMeta>(cfg, &mut out);
    declare::<LayoutField>(cfg, &mut out);
    declare::<LayoutSection>(cfg, &mut out);
    declare::<SortDef>(cfg, &mut out);
    declare::<ObjectTypeDef>(cfg, &mut out);
    declare::<LayoutDef>(cfg, &mut out);
    declare::<Customization>(cfg, &mut out);
    declare::<Plan>(cfg, &mut out);
    declare::<CustomizeRequest>(cfg, &mut out);
    declare::<CustomizationVersion>(cfg, &mut out);
    declare::<CustomizeAnswer>(cfg, &mut out);
    declare::<ClientEvent>(cfg, &mut out);
    out.trim_end().to_owned() + "\n"
}

#[test]
fn the_web_sdk_types_are_generated_from_rust() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/src/sdk/types.ts");
    let text = generated();
    if std::env::var_os("MOAT_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == text,
        "web/src/sdk/types.ts is out of date with the Rust types; run \
         `MOAT_BLESS=1 cargo test -p moat-tests --test typescript` and commit it"
    );
}
