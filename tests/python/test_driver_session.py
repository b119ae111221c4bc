"""One scripted session on the native client; the browser runs the same script
(web/tests/session.spec.ts) and both must report the events of tests/fixtures/driver/session.json:
both shells run the one driver, so neither can drift (a status after dismissing a refused write, the
offline switch, batching)."""

import json
import os

from conftest import ROOT, core, text

JOB = "job-a-00123"


def collapsed(log):
    out = []
    for kind, payload in log:
        if kind == "status":
            entry = (f"status {payload.phase.name.lower()} {payload.pending} {payload.conflicts} "
                     f"{payload.rejected}")
        else:
            entry = kind
        if not out or out[-1] != entry:
            out.append(entry)
    return out


def test_the_scripted_session_reports_what_the_web_client_reports(device):
    with open(os.path.join(ROOT, "tests", "fixtures", "driver", "session.json")) as f:
        expected = json.load(f)["events"]
    alice = device("alice", "alice", "company-a", "admin")
    alice.wait_live(pending=0)
    c, events = alice.client, alice.listener

    def reported_live():
        # Indexes built too (the status says when they are): the script starts from a quiet device.
        kind, last = events.log[-1] if events.log else (None, None)
        return kind == "status" and last.phase == core.Phase.LIVE and last.pending == 0 and not last.indexing

    events.wait("the live status reported", reported_live)
    start = len(events.log)

    def status_is(phase, pending, rejected=0):
        def check():
            s = c.status()
            return s.phase == phase and s.pending == pending and s.rejected == rejected
        events.wait(f"{phase} pending={pending} rejected={rejected}", check)

    c.edit("jobs", JOB, "notes", text("scripted session: online"))
    status_is(core.Phase.LIVE, 0)
    c.update_row("jobs", JOB, "tenant_id", text("company-b"))
    status_is(core.Phase.LIVE, 0, rejected=1)
    [refused] = c.rejected()
    c.dismiss_rejected(refused.mutation_id)
    status_is(core.Phase.LIVE, 0)
    events.wait("the status after dismissing", lambda: events.log[-1][1].rejected == 0)
    c.go_offline()
    status_is(core.Phase.OFFLINE, 0)
    c.edit("jobs", JOB, "notes", text("scripted session: offline"))
    status_is(core.Phase.OFFLINE, 1)
    c.go_online()
    status_is(core.Phase.LIVE, 0)
    events.wait("the last status", lambda: collapsed(events.log[start:])[-1:] == expected[-1:])

    assert collapsed(events.log[start:]) == expected
    assert events.errors == []
