"""The native client (the surface the iOS app calls) end to end against a real server, driven
through uniffi's Python bindings."""

import os
import sqlite3
import statistics
import subprocess
import sys
import time

import client_bridge as cb
import pytest
from conftest import Device, core, integer, jobs_fields, replica_rows, text

JOB = "job-a-00042"


def test_object_types_and_views_come_from_synced_metadata(device):
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()
    types = [(t.label_plural, t.count) for t in alice.client.object_types()]
    assert types == [("Jobs", 5000), ("Inventory", 400), ("Customers", 200), ("People", 5)]
    page = alice.client.list_view("jobs", None, None, True, 0, 20)
    assert page.title == "Jobs" and page.total == 5000 and len(page.rows) == 20
    assert [c.label for c in page.columns] == ["Title", "Status", "Scheduled", "Assignee", "Price"]
    dates = [r.cells[2].value.value for r in page.rows]
    assert dates == sorted(dates, reverse=True), "the metadata's default sort: newest first"
    cheap = alice.client.list_view("jobs", "boiler", "price_cents", True, 0, 5)
    prices = [r.cells[4].value.value for r in cheap.rows]
    assert prices == sorted(prices) and all("boiler" in r.title for r in cheap.rows)
    assert cheap.rows[0].cells[4].display.startswith("$")
    detail = alice.client.detail_view("jobs", JOB)
    assert [s.label for s in detail.sections] == ["Summary", "Work"]
    with pytest.raises(cb.MoatError.Invalid):
        alice.client.edit("jobs", JOB, "status", text("exploded"))


def test_an_edit_reaches_the_other_client_through_its_callback(device):
    alice = device("alice", "alice", "company-a", "admin")
    amy = device("amy", "amy", "company-a", "admin")
    alice.wait_live()
    amy.wait_live()
    latencies = []
    for i in range(60):
        note = f"note {i}"
        seen = len(amy.listener.tables)
        start = time.monotonic()
        alice.client.edit("jobs", JOB, "notes", text(note))
        amy.listener.wait(f"edit {i}", lambda: len(amy.listener.tables) > seen and amy.value("jobs", JOB, "notes") == text(note))
        # The latency is the callback's time: the edit was in amy's database when it fired.
        arrived = next(t for t, tables in amy.listener.tables[seen:] if "jobs" in tables)
        latencies.append((arrived - start) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nedit → other client's callback over {len(latencies)} edits: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert amy.client.status().pending == 0


@pytest.mark.parametrize("choice", ["keep_mine", "take_theirs", "edit"])
def test_offline_edits_survive_a_restart_and_a_conflict_is_resolved(server, tmp_path, device, choice):
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()

    # Amy's first life, in its own process: sync, go offline, edit notes and the price, be killed.
    amy_db = tmp_path / "amy.db"
    life = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "offline_device.py"), str(amy_db), server.url,
         server.token("amy", "company-a", "admin"), JOB],
        capture_output=True, text=True, timeout=60, cwd=os.path.dirname(__file__))
    assert life.returncode == 0 and "edited offline" in life.stdout, life.stderr

    # Meanwhile alice changes the status and the price.
    alice.client.edit("jobs", JOB, "status", text("in_progress"))
    alice.client.edit("jobs", JOB, "price_cents", integer(12000))
    alice.wait_live(pending=0)

    # Amy's app starts again from its database file.
    amy = Device(server, amy_db, "amy", "company-a", "admin")
    try:
        assert amy.client.status().pending == 2, "the offline queue survived the process's death"
        assert amy.value("jobs", JOB, "notes") == text("gate code 1234"), "offline edits show after a restart"
        amy.wait_live(pending=0)
        amy.listener.wait("the conflict alert", lambda: amy.listener.conflicts)
        [conflict] = amy.client.conflicts()
        [col] = conflict.columns
        assert (col.column, col.base, col.theirs, col.mine) == (
            "price_cents", amy_base_price(tmp_path), integer(12000), integer(15000))
        # The alert's words come from the metadata: the type, the record's title, the field's label and
        # the values as the UI shows them.
        assert (conflict.object_label, col.label) == ("Job", "Price")
        assert conflict.title == amy.client.detail_view("jobs", JOB).title
        assert (col.theirs_display, col.mine_display) == ("$120.00", "$150.00")

        expected = {"keep_mine": 15000, "take_theirs": 12000, "edit": 13500}[choice]
        resolution = {
            "keep_mine": core.ConflictChoice.KEEP_MINE(),
            "take_theirs": core.ConflictChoice.TAKE_THEIRS(),
            # What the user types, in dollars: the core reads it with the field's scale.
            "edit": core.ConflictChoice.EDIT("price_cents", "135.00"),
        }[choice]
        amy.client.resolve(conflict.id, resolution)
        assert amy.client.conflicts() == []
        amy.wait_live(pending=0)
        for d in (alice, amy):
            d.listener.wait("convergence", lambda d=d: d.value("jobs", JOB, "price_cents") == integer(expected))
            assert d.value("jobs", JOB, "status") == text("in_progress")
            assert d.value("jobs", JOB, "notes") == text("gate code 1234")
    finally:
        amy.client.close()

    # Each of amy's writes reached the server once: two offline edits, plus the resolution's write.
    with sqlite3.connect(tmp_path / "data" / "tenants" / "company-a.db") as db:
        n = db.execute("SELECT count(*) FROM moat_mutations WHERE user_id = 'amy'").fetchone()[0]
    assert n == (2 if choice == "take_theirs" else 3)


def amy_base_price(_tmp_path):
    """The price schemas/demo_seed.sql gives job 42, which both sides started from."""
    return integer(5000 + (42 * 7919) % 150000)


def test_metadata_and_layout_changes_reach_a_connected_client(device):
    alice = device("alice", "alice", "company-a", "admin")
    tom = device("tom", "tom", "company-a", "technician")
    alice.wait_live()
    tom.wait_live()
    before = tom.client.detail_view("jobs", JOB)
    alice.client.update_row("object_metadata", "company-a:jobs", "label_plural", text("Visits"))
    tom.listener.wait("the new label", lambda: [t.label_plural for t in tom.client.object_types()][0] == "Visits")

    sections = '[{"id":"visit","label":"On site","columns":1,"fields":[{"field":"status","widget":"choice"},{"field":"assignee","widget":"text","read_only":true}]}]'
    alice.client.update_row("layout_definition", "company-a:jobs:detail:technician", "sections", text(sections))
    tom.listener.wait("the new layout", lambda: tom.client.detail_view("jobs", JOB).sections[0].label == "On site")
    after = tom.client.detail_view("jobs", JOB)
    assert [f.field for f in after.sections[0].fields] == ["status", "assignee"]
    assert after != before


def test_a_role_change_removes_the_old_channels_rows(server, tmp_path):
    path = tmp_path / "tom.db"

    def stored(sql):
        return replica_rows(path, sql)

    tom = Device(server, path, "tom", "company-a", "admin")
    tom.wait_live()
    tom.client.close()
    assert stored("SELECT internal_notes FROM jobs WHERE id = 'job-a-00004'") == [("Margin is thin on this one; no discounts.",)]
    assert stored("SELECT key FROM moat_meta WHERE key LIKE 'cursor:%'") == [("cursor:company-a/admin",)]

    tom = Device(server, path, "tom", "company-a", "technician")
    try:
        tom.wait_live()
        fields = [f.field for s in tom.client.detail_view("jobs", "job-a-00004").sections for f in s.fields]
        assert "internal_notes" not in fields
    finally:
        tom.client.close()
    assert stored("SELECT key FROM moat_meta WHERE key LIKE 'cursor:%'") == [("cursor:company-a/technician",)]
    assert stored("SELECT internal_notes FROM jobs WHERE id = 'job-a-00004'") == [(None,)]
    # The golden state: the new channel's row, or nothing while a first sync's copy is still to be
    # made at an idle turn (`golden_behind`: the projection is the golden state until then).
    behind = stored("SELECT count(*) FROM moat_meta WHERE key = 'golden_behind'")[0][0] == 1
    golden = stored("SELECT internal_notes FROM server_data_jobs WHERE id = 'job-a-00004'")
    assert golden == ([] if behind else [(None,)])
    assert stored("SELECT count(*) FROM jobs")[0][0] == 5000


def test_a_refused_write_stays_listed_with_its_reason_until_dismissed(device):
    tom = device("tom", "tom", "company-a", "technician")
    tom.wait_live()
    before = tom.value("jobs", JOB, "title")
    # The layout would refuse this edit; update_row goes past the UI model, and the server refuses it.
    tom.client.update_row("jobs", JOB, "title", text("Renamed by a technician"))
    tom.listener.wait("the rejection", lambda: tom.listener.rejected)
    [(mutation_id, reason)] = tom.listener.rejected
    [r] = tom.client.rejected()
    assert (r.mutation_id, r.reason, r.table, r.record_id, r.columns) == (
        mutation_id, reason, "jobs", JOB, ["title"])
    # In the user's words: the type, the record's title (its stored one), the field's label, the lost value.
    assert (r.object_label, r.title, r.labels, r.values) == ("Job", before.value, ["Title"], ["Renamed by a technician"])
    assert reason.endswith("Title is read-only for your role"), reason
    assert tom.client.status().rejected == 1 and tom.client.status().pending == 0
    # Trying again is checked on the device first: still refused, it stays listed, with the reason.
    with pytest.raises(cb.MoatError.Invalid) as e:
        tom.client.retry_rejected(mutation_id)
    assert e.value.message == "Title is read-only for your role"
    assert len(tom.client.rejected()) == 1
    assert tom.value("jobs", JOB, "title") == before, "a refused write is not part of the projection"
    tom.client.dismiss_rejected(mutation_id)
    assert tom.client.rejected() == [] and tom.client.status().rejected == 0


def test_going_offline_and_online_queues_then_sends(device):
    alice = device("alice", "alice", "company-a", "admin")
    amy = device("amy", "amy", "company-a", "admin")
    alice.wait_live()
    amy.wait_live()
    amy.client.go_offline()
    amy.listener.wait("offline", lambda: amy.client.status().phase == core.Phase.OFFLINE)
    amy.client.edit("jobs", JOB, "assignee", text("lena"))
    assert amy.client.status().pending == 1
    assert alice.value("jobs", JOB, "assignee") != text("lena")
    amy.client.go_online()
    amy.wait_live(pending=0)
    alice.listener.wait("the edit", lambda: alice.value("jobs", JOB, "assignee") == text("lena"))


def test_working_offline_is_remembered_when_the_app_opens_again(server, tmp_path, device):
    """The user's "Work offline" is kept in the replica: the app opens offline, says it is the user's
    choice, sends nothing, and goes online only when the user says so."""
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()
    path = tmp_path / "amy-phone.db"
    amy = Device(server, path, "amy", "company-a", "admin")
    amy.wait_live()
    # The network going away is not the user's choice: the status says so, and the switch offers
    # "Work offline" still (the UIs draw it from held_offline).
    amy.client.network_changed(False)
    amy.listener.wait("no network", lambda: amy.client.status().phase == core.Phase.OFFLINE)
    s = amy.client.status()
    assert (s.label, s.held_offline) == ("Offline", False)
    amy.client.network_changed(True)
    amy.wait_live()
    amy.client.go_offline()
    amy.listener.wait("offline", lambda: amy.client.status().label == "Working offline")
    assert amy.client.status().held_offline
    amy.client.edit("jobs", JOB, "notes", text("kept while working offline"))
    amy.client.close()

    amy = Device(server, path, "amy", "company-a", "admin")
    try:
        amy.listener.wait("opened offline", lambda: amy.client.status().label == "Working offline")
        s = amy.client.status()
        assert (s.phase, s.pending, s.held_offline) == (core.Phase.OFFLINE, 1, True)
        with sqlite3.connect(tmp_path / "data" / "tenants" / "company-a.db") as db:
            assert db.execute("SELECT count(*) FROM moat_mutations WHERE user_id = 'amy'").fetchone()[0] == 0
        amy.client.go_online()
        amy.wait_live(pending=0)
        alice.listener.wait("the edit", lambda: alice.value("jobs", JOB, "notes") == text("kept while working offline"))
    finally:
        amy.client.close()
    # Online is remembered too: opened again, it connects by itself.
    amy = Device(server, path, "amy", "company-a", "admin")
    try:
        amy.wait_live(pending=0)
    finally:
        amy.client.close()


def test_an_admin_sees_the_tenants_devices_and_what_waits_on_them(device):
    """Fleet health through the uniffi surface: each device reports (its platform and app version,
    what waits) in its hello and when that changes; an admin's `request_fleet` lists them."""
    alice = device("alice", "alice", "company-a", "admin")
    tom = device("tom", "tom", "company-a", "technician")
    alice.wait_live()
    tom.wait_live()
    tom.client.set_app("3.0.1", "ios")
    assert alice.client.status().admin and not tom.client.status().admin
    # Tom goes offline and edits: one write waits on his device; back online it is sent and acked.
    tom.client.go_offline()
    tom.listener.wait("offline", lambda: tom.client.status().phase == core.Phase.OFFLINE)
    tom.client.edit("jobs", JOB, "notes", text("waiting on the van"))
    tom.client.go_online()
    tom.wait_live(pending=0)

    def listed():
        alice.client.request_fleet()
        with alice.listener.cond:
            alice.listener.cond.wait(0.5)
        if not alice.listener.fleets:
            return None
        devices = {d.user: d for d in alice.listener.fleets[-1]}
        t = devices.get("tom")
        return devices if t and t.platform == "ios" and t.app_version == "3.0.1" else None

    devices = alice.listener.wait("tom's report in alice's device list", listed)
    assert devices["tom"].connected and devices["tom"].role == "technician"
    assert devices["alice"].platform == sys.platform.replace("darwin", "macos")
    # A technician asking gets nothing.
    tom.client.request_fleet()
    time.sleep(0.5)
    assert tom.listener.fleets == []


def test_what_the_role_may_not_write_is_drawn_read_only_and_refused_before_it_is_queued(device):
    """The welcome tells the client its role's rights: a technician's customer fields and the job
    fields the rules keep from technicians are read-only in the detail view, and an edit of them is
    refused on the device, in the user's words, before anything is queued."""
    tom = device("tom", "tom", "company-a", "technician")
    tom.wait_live()
    customer = tom.client.list_view("customers", None, None, True, 0, 1).rows[0].id
    fields = [f for s in tom.client.detail_view("customers", customer).sections for f in s.fields]
    assert fields and all(f.read_only for f in fields)
    with pytest.raises(cb.MoatError.Invalid) as refused:
        tom.client.edit("customers", customer, "phone", text("555-0000"))
    assert "Customers are read-only for your role" in str(refused.value)
    job = {f.field: f for s in tom.client.detail_view("jobs", JOB).sections for f in s.fields}
    assert job["price_cents"].read_only and not job["notes"].read_only
    assert tom.client.status().pending == 0
    # The admin's view of the same records is writable.
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()
    assert not any(f.read_only for s in alice.client.detail_view("customers", customer).sections for f in s.fields)


def test_a_stored_value_the_rules_no_longer_allow_is_shown_as_invalid_not_a_crash(device):
    """An admin removes a status option that jobs still hold: every client keeps showing those jobs,
    with the stored value and the rule it now breaks on the field; an edit to an allowed value fixes it."""
    import json as _json
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()
    status = {f.field: f for s in alice.client.detail_view("jobs", JOB).sections for f in s.fields}["status"]
    held = status.cell.value.value
    assert status.problem is None
    fields = _json.loads(jobs_fields(alice))
    for f in fields:
        if f["name"] == "status":
            f["options"] = [o for o in f["options"] if o["value"] != held]
    alice.client.update_row("object_metadata", "company-a:jobs", "fields", text(_json.dumps(fields)))
    alice.wait_live(pending=0)
    status = {f.field: f for s in alice.client.detail_view("jobs", JOB).sections for f in s.fields}["status"]
    assert status.cell.value.value == held, "the stored value is shown as it is"
    assert status.problem == f'Status: "{held}" is not one of the choices'
    other = next(o.value for o in status.options)
    alice.client.edit("jobs", JOB, "status", text(other))
    status = {f.field: f for s in alice.client.detail_view("jobs", JOB).sections for f in s.fields}["status"]
    assert status.problem is None
