"""Records through the native client's uniffi surface, against a real server: a new record's form,
create and delete (offline too, sent once), the reference picker, line items with amounts and a
total, lists with "Assigned to me", filters and counts, and the pending-changes list. Every call the
iOS app makes for these is exercised here."""

import sqlite3

import client_bridge as cb
import pytest
from conftest import core, text


def fields_of(view):
    return {f.field: f for s in view.sections for f in s.fields}


def server_rows(server_tmp, sql, *args):
    db = sqlite3.connect(f"file:{server_tmp / 'data' / 'tenants' / 'company-a.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def test_create_pick_and_delete_online_and_offline(device, tmp_path):
    alice = device("alice", "alice", "company-a", "admin")
    amy = device("amy", "amy", "company-a", "admin")
    alice.wait_live()
    amy.wait_live()
    jobs = next(t for t in alice.client.object_types() if t.object_type == "jobs")
    assert jobs.can_create and jobs.can_delete

    form = alice.client.new_record("jobs")
    assert form.title == "New Job"
    assert fields_of(form)["status"].cell.edit_text == "open", "the metadata's default"

    picked = alice.client.reference_options("jobs", "customer_id", "maple", 5)
    assert 0 < len(picked) <= 5 and all("maple" in o.title.lower() for o in picked)
    assert all(o.detail for o in picked), "a phone number tells same-named customers apart"
    new_id = alice.client.create("jobs", [
        core.FieldInput(field="title", text="Fit a new boiler"),
        core.FieldInput(field="customer_id", text=picked[0].id),
        core.FieldInput(field="price_cents", text="1,250.50"),
        core.FieldInput(field="assignee", text="tom"),
    ])
    assert len(new_id) == 20
    alice.wait_live(pending=0)
    amy.listener.wait("the new job", lambda: amy.value("jobs", new_id, "title") == text("Fit a new boiler"))
    seen = fields_of(amy.client.detail_view("jobs", new_id))
    assert seen["customer_id"].cell.display == picked[0].title
    assert seen["customer_id"].link.object_type == "customers" and seen["customer_id"].link.id == picked[0].id
    assert seen["assignee"].cell.display == "Tom Technician"
    assert seen["price_cents"].cell.display == "$1,250.50"
    assert server_rows(tmp_path, "SELECT tenant_id, price_cents FROM jobs WHERE id = ?", new_id) == [("company-a", 125050)]

    with pytest.raises(cb.MoatError.Invalid) as e:
        alice.client.create("jobs", [core.FieldInput(field="price_cents", text="10")])
    assert e.value.message == "Title: a value is required"

    # Offline: a created and a deleted record wait, listed in the user's words, and arrive once.
    amy.client.go_offline()
    amy.listener.wait("offline", lambda: amy.client.status().phase == core.Phase.OFFLINE)
    offline_id = amy.client.create("inventory_items", [
        core.FieldInput(field="sku", text="SKU-99999"), core.FieldInput(field="name", text="Gasket kit"),
        core.FieldInput(field="quantity", text="12")])
    amy.client.delete("jobs", new_id)
    with pytest.raises(cb.MoatError.NotFound):
        amy.client.detail_view("jobs", new_id)
    waiting = amy.client.pending()
    assert [(p.action, p.object_label, p.title) for p in waiting] == [
        ("Created", "Inventory item", "Gasket kit"), ("Deleted", "Job", "Fit a new boiler")]
    assert waiting[0].object_type == "inventory_items" and waiting[0].record_id == offline_id
    assert waiting[0].created_ms > 0
    assert alice.value("jobs", new_id, "title") == text("Fit a new boiler"), "not sent yet"
    amy.client.go_online()
    amy.wait_live(pending=0)
    assert amy.client.pending() == []
    alice.listener.wait("the delete", lambda: _gone(alice, new_id))
    alice.listener.wait("the new item", lambda: _exists(alice, "inventory_items", offline_id))
    assert server_rows(tmp_path, "SELECT count(*) FROM inventory_items WHERE id = ?", offline_id) == [(1,)]
    assert server_rows(tmp_path, "SELECT count(*) FROM jobs WHERE id = ?", new_id) == [(0,)]


def _gone(d, record_id):
    try:
        d.client.detail_view("jobs", record_id)
        return False
    except cb.MoatError.NotFound:
        return True


def _exists(d, object_type, record_id):
    try:
        d.client.detail_view(object_type, record_id)
        return True
    except cb.MoatError.NotFound:
        return False


def test_a_technician_creates_only_what_the_role_may_write(device):
    tom = device("tom", "tom", "company-a", "technician")
    tom.wait_live()
    can = {t.object_type: (t.can_create, t.can_delete) for t in tom.client.object_types()}
    assert can["customers"] == (False, False) and can["jobs"] == (False, False)
    assert can["inventory_items"] == (True, True)
    with pytest.raises(cb.MoatError.Invalid) as e:
        tom.client.create("customers", [core.FieldInput(field="name", text="New customer")])
    assert e.value.message == "Customers are read-only for your role"
    with pytest.raises(cb.MoatError.Invalid):
        tom.client.delete("customers", "cust-a-0001")


def test_line_items_amounts_total_and_edit(device):
    tom = device("tom", "tom", "company-a", "technician")
    tom.wait_live()
    job = "job-a-00002"
    li = fields_of(tom.client.detail_view("jobs", job))["line_items"].line_items
    assert [c.label for c in li.columns] == ["SKU", "Qty", "Unit price"]
    assert li.columns[2].kind == core.FieldKind.CURRENCY and li.columns[2].scale == 2
    assert (li.rows[0].amount, li.total) == ("$22.86", "$22.86")
    rows = [[c.edit_text for c in r.cells] for r in li.rows] + [["Labour", "1.5", "80"]]
    json_text = tom.client.line_items_text("jobs", "line_items", rows)
    # Offline, so that the edit is still on the device when it is read back (live, its ack may
    # already have come).
    tom.client.go_offline()
    tom.listener.wait("offline", lambda: tom.client.status().phase == core.Phase.OFFLINE)
    tom.client.edit_text("jobs", job, "line_items", json_text, None)
    after = fields_of(tom.client.detail_view("jobs", job))["line_items"]
    assert after.line_items.total == "$142.86" and after.pending
    tom.client.go_online()
    tom.wait_live(pending=0)
    after = fields_of(tom.client.detail_view("jobs", job))["line_items"]
    assert after.line_items.total == "$142.86" and not after.pending
    with pytest.raises(cb.MoatError.Invalid) as e:
        tom.client.line_items_text("jobs", "line_items", [["x", "1", "0.001"]])
    assert e.value.message == "Line items, item 1: Unit price: at most 2 decimal places"


def test_assigned_to_me_filters_and_counts(device):
    tom = device("tom", "tom", "company-a", "technician")
    tom.wait_live()
    q = core.ListQuery(object_type="jobs", search=None, sort_field=None, ascending=None, offset=None,
                       limit=None, mine=True, filters=None)
    mine = tom.client.query(q)
    assert (mine.total, mine.mine_count, mine.all_count) == (1250, 1250, 5000)
    status = next(f for f in mine.facets if f.field == "status")
    assert sum(o.count for o in status.options) == 1250
    open_count = next(o.count for o in status.options if o.value == "open")
    q.filters = [core.ListFilter(field="status", equals="open", min=None, max=None)]
    assert tom.client.query(q).total == open_count
    q.filters = [core.ListFilter(field="scheduled_date", equals=None, min="2026-10-01", max="2026-10-31")]
    october = tom.client.query(q)
    assert october.total > 0 and all(r.cells[2].value.value.startswith("2026-10") and r.cells[2].display.endswith("Oct 2026")
                                   for r in october.rows)


def test_a_records_history_names_people_and_fields(device):
    alice = device("alice", "alice", "company-a", "admin")
    tom = device("tom", "tom", "company-a", "technician")
    alice.wait_live()
    tom.wait_live()
    job = "job-a-00005"
    alice.client.edit_text("jobs", job, "notes", "Bring the long ladder", None)
    alice.client.edit_text("jobs", job, "internal_notes", "Margin is fine", None)
    alice.wait_live(pending=0)
    tom.listener.wait("the edit", lambda: tom.value("jobs", job, "notes") == text("Bring the long ladder"))
    tom.client.request_history("jobs", job)
    got = tom.listener.wait("the history", lambda: tom.listener.histories)
    object_type, record_id, entries = got[-1]
    assert (object_type, record_id) == ("jobs", job)
    # The demo's seeded rows have no history of their own; the internal notes, hidden from
    # technicians, are not in theirs.
    assert [(e.action, e.who, e.labels) for e in entries] == [("Changed", "Alice Admin", ["Notes"])]
    assert entries[0].at_ms > 0
    alice.client.request_history("jobs", job)
    got = alice.listener.wait("alice's history", lambda: alice.listener.histories)
    assert [(e.who, e.labels) for e in got[-1][2]] == [("Alice Admin", ["Internal notes"]), ("Alice Admin", ["Notes"])]


def test_a_refused_change_is_tried_again_once_the_rule_allows_it(device, tmp_path):
    import json
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()
    job = "job-a-00008"
    # Past the UI model: a status the metadata does not offer; the server refuses it.
    alice.client.update_row("jobs", job, "status", text("waiting_parts"))
    alice.listener.wait("the rejection", lambda: alice.listener.rejected)
    [r] = alice.client.rejected()
    assert 'Status: "waiting_parts" is not one of the choices' in r.reason
    with pytest.raises(cb.MoatError.Invalid):
        alice.client.retry_rejected(r.mutation_id)
    # An admin adds the choice; the device gets the new metadata; trying again now goes through.
    [(fields,)] = server_rows(tmp_path, "SELECT fields FROM object_metadata WHERE id = 'company-a:jobs'")
    fields = json.loads(fields)
    status = next(f for f in fields if f["name"] == "status")
    status["options"].append({"value": "waiting_parts", "label": "Waiting for parts"})
    alice.client.update_row("object_metadata", "company-a:jobs", "fields", text(json.dumps(fields)))
    alice.wait_live(pending=0)
    alice.client.retry_rejected(r.mutation_id)
    assert alice.client.rejected() == []
    alice.wait_live(pending=0)
    assert server_rows(tmp_path, "SELECT status FROM jobs WHERE id = ?", job) == [("waiting_parts",)]
    assert fields_of(alice.client.detail_view("jobs", job))["status"].cell.display == "Waiting for parts"
