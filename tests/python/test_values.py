"""Values are read and formatted by the core, once for every client: a currency field's scale comes
from the synced metadata, and what the user types goes through the core (`edit_text`), the same call
the web app and the Swift app make. A scale of 0 and of 3 round-trip through an edit on one device and
arrive on another."""

import json

import client_bridge as cb
import pytest
from conftest import core, integer, jobs_fields

JOB = "job-a-00077"


def price_field(device):
    return next(f for s in device.client.detail_view("jobs", JOB).sections for f in s.fields if f.field == "price_cents")


def set_scale(admin, scale):
    # The metadata row is synced data: the admin rewrites the field's scale like any other write.
    fields = json.loads(jobs_fields(admin))
    for f in fields:
        if f["name"] == "price_cents":
            f["scale"] = scale
            # The demo's prices are at least 0; these cases show negative amounts too.
            f.pop("min", None)
    admin.client.update_row("object_metadata", "company-a:jobs", "fields", core.FieldValue.TEXT(json.dumps(fields)))


@pytest.mark.parametrize("scale, typed, stored, shown, edit_text", [
    (0, "250", 250, "$250", "250"),
    (0, "$1,250", 1250, "$1,250", "1250"),
    (3, "2.5", 2500, "$2.500", "2.500"),
    (3, "-0.125", -125, "-$0.125", "-0.125"),
    (2, "12.50", 1250, "$12.50", "12.50"),
])
def test_a_currency_scale_round_trips_through_an_edit(device, scale, typed, stored, shown, edit_text):
    alice = device("alice", "alice", "company-a", "admin")
    bob = device("bob", "bob", "company-a", "admin")
    alice.wait_live()
    bob.wait_live()
    set_scale(alice, scale)
    alice.wait_live(pending=0)
    bob.listener.wait("the new scale", lambda: price_field(bob).scale == scale)

    alice.client.edit_text("jobs", JOB, "price_cents", typed, None)
    field = price_field(alice)
    assert (field.cell.value, field.cell.display, field.cell.edit_text) == (integer(stored), shown, edit_text)
    alice.wait_live(pending=0)
    bob.listener.wait("the edit", lambda: price_field(bob).cell.value == integer(stored))
    field = price_field(bob)
    assert (field.cell.display, field.cell.edit_text) == (shown, edit_text)
    # What the editor starts from reads back to the same value.
    bob.client.edit_text("jobs", JOB, "price_cents", field.cell.edit_text, field.cell.value)
    assert price_field(bob).cell.value == integer(stored)
    assert bob.client.status().pending == 0, "an edit to the same value writes nothing"


@pytest.mark.parametrize("scale, typed, why", [
    (3, "1.2345", "Price: at most 3 decimal places"),
    (0, "12.5", "Price: whole amounts only"),
    (2, "twelve", "Price: not an amount"),
])
def test_input_the_field_cannot_hold_is_refused_with_its_reason(device, scale, typed, why):
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()
    set_scale(alice, scale)
    before = price_field(alice).cell.value
    with pytest.raises(cb.MoatError.Invalid) as e:
        alice.client.edit_text("jobs", JOB, "price_cents", typed, None)
    assert e.value.message == why
    assert price_field(alice).cell.value == before, "nothing was written, nothing rounded"


def notes(device, job):
    return next(f for s in device.client.detail_view("jobs", job).sections for f in s.fields if f.field == "notes")


def test_an_edit_is_not_written_over_a_change_that_arrived_while_typing(device):
    """Tom starts typing in Notes; Alice saves Notes meanwhile; when Tom leaves the field his text does
    not overwrite hers: the conflict alert is raised with what he started from, hers and his."""
    job = "job-a-00088"
    alice = device("alice", "alice", "company-a", "admin")
    tom = device("tom", "tom", "company-a", "technician")
    alice.wait_live()
    tom.wait_live()
    started = notes(tom, job).cell.value
    alice.client.edit("jobs", job, "notes", core.FieldValue.TEXT("Alice: gate code 4411"))
    tom.listener.wait("Alice's notes", lambda: notes(tom, job).cell.display == "Alice: gate code 4411")

    tom.client.edit_text("jobs", job, "notes", "Tom: dog is friendly", started)
    tom.listener.wait("the conflict alert", lambda: tom.listener.conflicts)
    [c] = tom.client.conflicts()
    [col] = c.columns
    assert (col.label, col.base, col.theirs_display, col.mine_display) == (
        "Notes", started, "Alice: gate code 4411", "Tom: dog is friendly")
    assert tom.client.status().pending == 0 and tom.client.status().conflicts == 1
    assert notes(tom, job).cell.display == "Alice: gate code 4411", "nothing was overwritten"

    tom.client.resolve(c.id, core.ConflictChoice.KEEP_MINE())
    tom.wait_live(pending=0)
    alice.listener.wait("Tom's notes, once he chose", lambda: notes(alice, job).cell.display == "Tom: dog is friendly")
