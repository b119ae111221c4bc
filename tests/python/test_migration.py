"""A schema migration reaches native clients: the server is migrated (`moat migrate up`, the demo's
migrations) while two apps stay open, one of them offline with pending edits. Both end on the new
schema (the new field on the job page, the new object type), and every pending edit arrives.
`live`: applied inside the running server (`--server`), clients connected; `restart`: the server is
stopped, migrated and started again."""

import os
import sqlite3
import subprocess

import pytest
from conftest import MOAT, ROOT, core, text


@pytest.mark.parametrize("mode", ["live", "restart"])
def test_a_migration_reaches_open_apps_and_no_pending_edit_is_lost(server, tmp_path, device, mode):
    alice = device("alice", "alice", "company-a", "admin")
    amy = device("amy", "amy", "company-a", "admin")
    alice.wait_live()
    amy.wait_live()
    job = "job-a-00042"
    fields = lambda d: [f.field for s in d.client.detail_view("jobs", job).sections for f in s.fields]  # noqa: E731
    assert "priority" not in fields(alice)

    amy.client.go_offline()
    amy.listener.wait("offline", lambda: amy.client.status().phase == core.Phase.OFFLINE)
    amy.client.edit("jobs", job, "notes", text("written offline before the migration"))
    amy.client.edit("jobs", job, "status", text("on_hold"))
    assert amy.client.status().pending == 2

    def migrate(*live):
        out = subprocess.run([MOAT, "migrate", "--data", str(tmp_path / "data"),
                              "--dir", os.path.join(ROOT, "schemas", "migrations"), "up", *live],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr + out.stdout
        assert "[2/2] 0002_vehicles applied" in out.stdout, out.stdout

    if mode == "live":
        migrate("--server", f"http://{server.addr}", "--demo")
    else:
        server.restart(tmp_path, between=migrate)

    # The online app reconnects by itself and takes the new schema, rows and layout. Each migration
    # is its own commit on the server, caught up in order: the job's new field may show a moment
    # before the new object type does.
    types = lambda: [t.label_plural for t in alice.client.object_types()]  # noqa: E731
    alice.listener.wait("the new schema", lambda: "priority" in fields(alice) and "Vehicles" in types(), timeout=40)
    assert types() == ["Jobs", "Inventory", "Customers", "Vehicles", "People"]
    assert alice.client.list_view("vehicles", None, None, True, 0, 50).total == 12
    priority = next(f for s in alice.client.detail_view("jobs", job).sections for f in s.fields
                    if f.field == "priority")
    assert (priority.widget, [o.value for o in priority.options]) == (
        core.FieldKind.CHOICE, ["low", "normal", "high"])

    # The offline app comes back: it migrates, its two edits go through, and it shows the new field.
    amy.client.go_online()
    amy.wait_live(pending=0)
    assert amy.client.rejected() == []
    assert "priority" in fields(amy)
    alice.listener.wait("amy's offline edits", lambda: alice.value("jobs", job, "notes")
                        == text("written offline before the migration"))
    assert alice.value("jobs", job, "status") == text("on_hold")
    alice.client.edit("jobs", job, "priority", text("high"))
    amy.listener.wait("an edit of the new field", lambda: amy.value("jobs", job, "priority") == text("high"))
    with sqlite3.connect(tmp_path / "data" / "tenants" / "company-a.db") as db:
        assert db.execute("SELECT notes, status, priority FROM jobs WHERE id = ?", (job,)).fetchone() == (
            "written offline before the migration", "on_hold", "high")
        assert db.execute("SELECT count(*) FROM moat_mutations WHERE user_id = 'amy'").fetchone()[0] == 2
