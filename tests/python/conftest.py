"""Shared by the native-client tests: a real `moat serve` on 127.0.0.1 (port 0) with the demo data,
tokens from `moat token`, and real native clients (the uniffi bindings over client-bridge) on real
SQLite files. `scripts/test` builds the library and generates the bindings into target/python."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "target", "python"))

import client_bridge as cb  # noqa: E402
import sqlite_ext as core  # noqa: E402  (the view models, status and values: the core's own types)

MOAT = os.path.join(ROOT, "target", "debug", "moat")


def replica_rows(path, sql):
    """The rows of `sql` on a client's replica file, read by another process. Not in this one: a
    second copy of SQLite here (Python's, beside the client library's) would drop the client's locks
    when it closes the file (POSIX locks belong to the process) and could take the log the client
    has mapped from under it: https://www.sqlite.org/howtocorrupt.html, section 2.2.1. (A test that
    did so while the client built its indexes saw "database disk image is malformed" and a bus
    error.)"""
    script = ("import json, sqlite3, sys\n"
              "db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)\n"
              "print(json.dumps(db.execute(sys.argv[2]).fetchall()))\n"
              "db.close()")
    out = subprocess.run([sys.executable, "-c", script, str(path), sql],
                         check=True, capture_output=True, text=True).stdout
    return [tuple(row) for row in json.loads(out)]


def jobs_fields(device):
    """The jobs' field definitions (JSON text) as `device` holds them, read from its database file."""
    [(fields,)] = replica_rows(device.path, "SELECT fields FROM object_metadata WHERE id = 'company-a:jobs'")
    return fields


class Server:
    def __init__(self, tmp, web_root=None, listen="127.0.0.1:0", tls=None):
        """`tls`: (certificate file, key file) for a TLS listener beside the plain one."""
        env = {**os.environ, "MOAT_LOG": "warn"}
        args = [MOAT, "serve", "--demo", "--listen", listen, "--data", str(tmp / "data"),
                "--migrations", os.path.join(ROOT, "schemas", "migrations"),
                "--web-root", web_root or str(tmp / "no-web")]
        if tls:
            args += ["--tls-listen", "127.0.0.1:0"]
            env.update(MOAT_TLS_CERT=str(tls[0]), MOAT_TLS_KEY=str(tls[1]))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline()
        addr = line.split("http://")[1].split("/")[0]
        self.addr = addr
        self.url = f"ws://{addr}/sync"
        if tls:
            tls_addr = self.proc.stdout.readline().split("https://")[1].split("/")[0]
            # As an app is given it: the https address (the client speaks wss:// to it).
            self.tls_url = f"https://{tls_addr}/sync"

    def token(self, user, tenant, role):
        out = subprocess.run([MOAT, "token", "--demo", "--user", user, "--tenant", tenant, "--role", role],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def restart(self, tmp, between=None):
        """Stops the server gracefully, runs `between()` (a migration), and starts it again on the
        same address and database, as an operator would."""
        self.proc.terminate()
        self.proc.wait()
        if between:
            between()
        self.__init__(tmp, listen=self.addr)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


class Listener(cb.MoatListener):
    """Records what the client reports; `wait` blocks until a condition holds, woken by callbacks."""

    def __init__(self):
        self.cond = threading.Condition()
        self.tables = []
        self.statuses = []
        self.conflicts = []
        self.rejected = []
        self.errors = []
        self.fleets = []
        self.histories = []
        # Every report but `tables`, in order, as (kind, payload).
        self.log = []

    def on_tables_changed(self, tables):
        with self.cond:
            self.tables.append((time.monotonic(), tables))
            self.cond.notify_all()

    def on_status(self, status):
        with self.cond:
            self.statuses.append(status)
            self.log.append(("status", status))
            self.cond.notify_all()

    def on_conflicts(self, conflicts):
        with self.cond:
            self.conflicts.append(conflicts)
            self.log.append(("conflicts", conflicts))
            self.cond.notify_all()

    def on_rejected(self, mutation_id, reason):
        with self.cond:
            self.rejected.append((mutation_id, reason))
            self.log.append(("rejected", reason))
            self.cond.notify_all()

    def on_error(self, message):
        with self.cond:
            self.errors.append(message)
            self.log.append(("error", message))
            self.cond.notify_all()

    def on_fleet(self, devices):
        with self.cond:
            self.fleets.append(devices)
            self.cond.notify_all()

    def on_history(self, object_type, record_id, entries):
        with self.cond:
            self.histories.append((object_type, record_id, entries))
            self.cond.notify_all()

    def wait(self, what, check, timeout=20.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                ok = check()
                if ok:
                    return ok
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self.cond.wait(min(left, 0.5))


class Device:
    """One app on one device: a native client over its own database file."""

    def __init__(self, server, path, user, tenant, role):
        self.listener = Listener()
        self.path = path
        self.client = cb.MoatClient(str(path), server.url, server.token(user, tenant, role), self.listener)

    def wait_live(self, pending=None):
        def live():
            s = self.client.status()
            return s.phase == core.Phase.LIVE and (pending is None or s.pending == pending)
        self.listener.wait("live", live)

    def value(self, object_type, record_id, field):
        """The field's value on this device, or None while the record is not (yet) there: a wait for a
        record another device wrote may look before its change has arrived."""
        try:
            detail = self.client.detail_view(object_type, record_id)
        except cb.MoatError.NotFound:
            return None
        for section in detail.sections:
            for f in section.fields:
                if f.field == field:
                    return f.cell.value
        raise KeyError(field)


@pytest.fixture
def device(server, tmp_path):
    made = []

    def make(name, user, tenant, role):
        d = Device(server, tmp_path / f"{name}.db", user, tenant, role)
        made.append(d)
        return d

    yield make
    for d in made:
        d.client.close()


def text(v):
    return core.FieldValue.TEXT(v)


def integer(v):
    return core.FieldValue.INTEGER(v)
