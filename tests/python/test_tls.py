"""The native client (the iOS app's core) over TLS: given an `https://` server it speaks `wss://`,
checks the certificate with the platform's verifier (the system trust store here, through
`SSL_CERT_FILE`; Security.framework on iOS) and syncs; a certificate from a CA it does not trust is
refused. The CA and the server's certificate are made here, with openssl."""

import os
import subprocess

import client_bridge as cb
from conftest import Device, Listener, Server, core, text

JOB = "job-a-00042"


def make_ca(tmp, name):
    key, cert = tmp / f"{name}-ca.key", tmp / f"{name}-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name} test CA"],
                   check=True, capture_output=True)
    return key, cert


def make_leaf(tmp, ca_key, ca_cert):
    key, csr, cert = tmp / "server.key", tmp / "server.csr", tmp / "server.pem"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    ext = tmp / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", cert, "-days", "1", "-extfile", ext], check=True, capture_output=True)
    return cert, key


def test_the_native_client_syncs_over_tls_with_a_ca_it_trusts(tmp_path):
    ca_key, ca_cert = make_ca(tmp_path, "moat")
    cert, key = make_leaf(tmp_path, ca_key, ca_cert)
    server = Server(tmp_path, tls=(cert, key))
    # The trust store the platform verifier reads on Linux (read once per process, at the first
    # TLS connection).
    os.environ["SSL_CERT_FILE"] = str(ca_cert)
    try:
        plain = Device(server, tmp_path / "plain.db", "amy", "company-a", "admin")
        tls_listener = Listener()
        secure = cb.MoatClient(str(tmp_path / "tls.db"), server.tls_url,
                               server.token("alice", "company-a", "admin"), tls_listener)
        tls_listener.wait("live over TLS", lambda: secure.status().phase == core.Phase.LIVE)
        assert [t.label_plural for t in secure.object_types()][0] == "Jobs"
        plain.wait_live()
        # Both ways: an edit over TLS reaches the plain client, and back.
        secure.edit("jobs", JOB, "notes", text("sent over wss"))
        plain.listener.wait("the TLS client's edit", lambda: plain.value("jobs", JOB, "notes") == text("sent over wss"))
        plain.client.edit("jobs", JOB, "notes", text("back over ws"))

        def arrived():
            for section in secure.detail_view("jobs", JOB).sections:
                for f in section.fields:
                    if f.field == "notes":
                        return f.cell.value == text("back over ws")
        tls_listener.wait("the plain client's edit", arrived)
        assert secure.status().pending == 0
        secure.close()
        plain.client.close()
    finally:
        server.stop()


def test_a_server_whose_ca_is_not_trusted_is_never_synced_with(tmp_path):
    ca_key, ca_cert = make_ca(tmp_path, "stranger")
    cert, key = make_leaf(tmp_path, ca_key, ca_cert)
    server = Server(tmp_path, tls=(cert, key))
    try:
        listener = Listener()
        client = cb.MoatClient(str(tmp_path / "tls.db"), server.tls_url,
                               server.token("alice", "company-a", "admin"), listener)
        # It works offline and keeps its edits; it never reaches Live with that server.
        import time
        time.sleep(1.5)
        status = client.status()
        assert status.phase != core.Phase.LIVE
        assert server.proc.poll() is None
        client.close()
    finally:
        server.stop()
