"""One life of an app, in its own process: sync, lose the network, edit, then die without closing
(os._exit), as when the OS kills the app. Used by test_native_client.py.

usage: offline_device.py DB URL TOKEN JOB"""

import os
import sys

from conftest import Listener, core, integer, text

import client_bridge as cb

db, url, token, job = sys.argv[1:5]
listener = Listener()
client = cb.MoatClient(db, url, token, listener)
listener.wait("live", lambda: client.status().phase == core.Phase.LIVE)
client.network_changed(False)
listener.wait("offline", lambda: client.status().phase == core.Phase.OFFLINE)
client.edit("jobs", job, "notes", text("gate code 1234"))
client.edit("jobs", job, "price_cents", integer(15000))
assert client.status().pending == 2
print("edited offline", flush=True)
os._exit(0)
