"""Customize, seen from a native client: an admin in Chromium publishes a new job field placed in the
technicians' layout and a new object type; a technician's native client (the uniffi surface the iOS
app calls) shows both without a restart (latency printed), its offline edit made meanwhile survives
and syncs, and it writes the new field and a record of the new type. A rollback takes both away
again on the native client."""

import sqlite3
import time

from conftest import native, wait

cb = native.cb
core = native.core


PUBLISH = """async ([add]) => {
  const draft = await window.moat.customization();
  const jobs = draft.object_types.find((t) => t.object_type === "jobs");
  if (add === "field") {
    jobs.fields.push({ name: "warranty_expires", label: "Warranty expires", type: "date", required: false });
    const tech = draft.layouts.find((l) => l.object_type === "jobs" && l.role === "technician");
    tech.sections[0].fields.push({ field: "warranty_expires", widget: "date" });
  } else {
    draft.object_types.push({ object_type: "vehicles", table_name: "vehicles", label: "Vehicle",
      label_plural: "Vehicles", icon: "truck", sort_order: 9, title_field: "plate",
      list_columns: ["plate", "model"], search_fields: ["plate"], default_sort: null,
      fields: [{ name: "plate", label: "Plate", type: "text", required: true },
               { name: "model", label: "Model", type: "text", required: false },
               { name: "next_service", label: "Next service", type: "date", required: false }] });
    draft.layouts.push({ object_type: "vehicles", name: "detail", role: null, sections: [{ id: "van",
      label: "Vehicle", columns: 2, fields: [{ field: "plate", widget: "text" }, { field: "model", widget: "text" },
      { field: "next_service", widget: "date" }] }] });
  }
  return window.moat.customize({ action: "publish", customization: draft, destroy: false });
}"""


def test_a_native_client_follows_an_admins_customization(server, chromium, tmp_path):
    page = chromium.new_context().new_page()
    page.goto(server.http + "/")
    page.get_by_test_id("signin-alice").click()
    page.wait_for_selector('[data-testid="status"][data-phase="live"]', timeout=60_000)

    tom = native.Device(server, tmp_path / "tom.db", "tom", "company-a", "technician")
    phone = native.Device(server, tmp_path / "phone.db", "tom", "company-a", "technician")
    tom.wait_live()
    phone.wait_live()
    job = tom.client.list_view("jobs", None, None, True, 0, 1).rows[0].id

    def fields(device):
        return [f.field for s in device.client.detail_view("jobs", job).sections for f in s.fields]

    def types(device):
        return [t.object_type for t in device.client.object_types()]

    assert "warranty_expires" not in fields(tom)
    # The phone is offline with an edit waiting.
    phone.client.go_offline()
    wait("the phone offline", lambda: phone.client.status().phase == core.Phase.OFFLINE)
    phone.client.edit_text("jobs", job, "notes", "written offline during a customization", None)
    assert phone.client.status().pending == 1

    started = time.monotonic()
    answer = page.evaluate(PUBLISH, ["field"])
    assert answer["result"] == "published", answer
    wait("the new field on the native client", lambda: "warranty_expires" in fields(tom))
    print(f"\n   field published → on the native detail view: {(time.monotonic() - started) * 1000:.0f} ms")
    label = [f.label for s in tom.client.detail_view("jobs", job).sections for f in s.fields
             if f.field == "warranty_expires"]
    assert label == ["Warranty expires"]

    # The admin's next draft starts from the published field (a draft read before it would be refused
    # as stale rather than undo it).
    wait("the published field in the admin's own draft", lambda: page.evaluate("""async () =>
        (await window.moat.customization()).object_types.find((t) => t.object_type === "jobs")
            .fields.some((f) => f.name === "warranty_expires")"""))
    started = time.monotonic()
    answer = page.evaluate(PUBLISH, ["type"])
    assert answer["result"] == "published", answer
    wait("the new object type on the native client", lambda: "vehicles" in types(tom))
    print(f"   object type published → in the native object list: {(time.monotonic() - started) * 1000:.0f} ms")
    vehicle = tom.client.new_record("vehicles")
    assert [f.field for s in vehicle.sections for f in s.fields] == ["plate", "model", "next_service"]

    # The native client writes the new field and a record of the new type; the server keeps both.
    tom.wait_live()
    tom.client.edit_text("jobs", job, "warranty_expires", "2027-01-31", None)
    van = tom.client.create("vehicles", [core.FieldInput(field="plate", text="AB-123"),
                                         core.FieldInput(field="next_service", text="2027-03-01")])
    tom.wait_live(pending=0)
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        assert db.execute("SELECT warranty_expires FROM jobs WHERE id = ?", (job,)).fetchone() == ("2027-01-31",)
        assert db.execute("SELECT plate FROM vehicles WHERE id = ?", (van,)).fetchone() == ("AB-123",)

    # The phone comes back: its offline edit is kept, synced onto the new schema, and it shows both.
    phone.client.go_online()
    phone.wait_live(pending=0)
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        assert db.execute("SELECT notes FROM jobs WHERE id = ?", (job,)).fetchone() == (
            "written offline during a customization",)
    assert "warranty_expires" in fields(phone) and "vehicles" in types(phone)
    assert phone.client.rejected() == []

    # A rollback to the metadata as it was (the van and the date go, confirmed): both devices follow.
    answer = page.evaluate("() => window.moat.customize({ action: 'rollback', version: 1, destroy: true })")
    assert answer["result"] == "published", answer
    wait("the rollback on the native client", lambda: "vehicles" not in types(tom) and "warranty_expires" not in fields(tom))
    wait("the rollback on the phone", lambda: "vehicles" not in types(phone))
    tom.client.close()
    phone.client.close()
