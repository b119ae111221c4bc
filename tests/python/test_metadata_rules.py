"""The metadata's rules hold on the server too: writes that go past the app's own checks (raw
`update_row`, as a hostile or outdated client would send them) are rejected by the server with the
field named, nothing is stored, and the refused write stays listed on the device with that reason."""

import sqlite3

import pytest
from conftest import integer, text

JOB = "job-a-00042"


@pytest.mark.parametrize("column, value, why", [
    ("status", text("bogus-status"), 'Status: "bogus-status" is not one of the choices'),
    ("title", text(""), "Title: a value is required"),
    ("price_cents", integer(-500), "Price: must be at least 0.00"),
    ("line_items", text("not json"), "Line items"),
    ("customer_id", text("cust-does-not-exist"), "Customer"),
    ("scheduled_date", text("yesterday-ish"), "Scheduled"),
])
def test_a_raw_write_breaking_the_metadata_is_rejected_with_the_field_named(server, device, tmp_path, column, value, why):
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live()
    with sqlite3.connect(f"file:{tmp_path}/data/tenants/company-a.db?mode=ro", uri=True) as db:
        before = db.execute(f"SELECT {column} FROM jobs WHERE id = ?", (JOB,)).fetchone()
    alice.client.update_row("jobs", JOB, column, value)
    alice.listener.wait("the rejection", lambda: alice.listener.rejected)
    [(_, reason)] = alice.listener.rejected
    assert why in reason, reason
    [r] = alice.client.rejected()
    assert r.reason == reason and r.columns == [column]
    with sqlite3.connect(f"file:{tmp_path}/data/tenants/company-a.db?mode=ro", uri=True) as db:
        assert db.execute(f"SELECT {column} FROM jobs WHERE id = ?", (JOB,)).fetchone() == before
