"""The iOS client's Swift side, as far as Linux can check it: the committed Swift bindings match the
Rust API, every Swift file parses (tree-sitter's Swift grammar; no Swift compiler exists here), and
every uniffi method the Swift code calls is exercised by this Python suite against a real server."""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IOS = os.path.join(ROOT, "ios")
GENERATED = os.path.join(IOS, "Sources", "MoatKit", "Generated", "client_bridge.swift")
# The core's types (view models, status, values) are a uniffi component of their own.
GENERATED_CORE = os.path.join(IOS, "Sources", "MoatKit", "Generated", "sqlite_ext.swift")


def swift_files():
    for d, _, files in os.walk(os.path.join(IOS, "Sources")):
        for f in files:
            if f.endswith(".swift"):
                yield os.path.join(d, f)
    yield os.path.join(IOS, "Package.swift")


def bindings_check(*args):
    return subprocess.run([os.path.join(ROOT, "scripts", "swift-bindings"), "--check", *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_committed_swift_bindings_match_the_rust_api():
    r = bindings_check()
    assert r.returncode == 0, r.stderr


def test_the_stale_check_fails_when_the_api_moved_on(tmp_path):
    # Committed bindings from before a method existed: what a Rust change without regeneration leaves.
    for f in ("client_bridgeFFI.h", "client_bridgeFFI.modulemap", "sqlite_extFFI.h", "sqlite_extFFI.modulemap"):
        shutil.copy(os.path.join(IOS, "Generated", f), tmp_path)
    shutil.copy(GENERATED_CORE, tmp_path)
    with open(GENERATED) as src:
        swift = src.read()
    older = re.sub(r"open func dismissRejected\(.*?\n\}\n", "", swift, count=1, flags=re.S)
    assert older != swift
    (tmp_path / "client_bridge.swift").write_text(older)
    r = bindings_check("--committed", str(tmp_path))
    assert r.returncode == 1
    assert "stale Swift bindings" in r.stderr and "client_bridge.swift" in r.stderr
    assert "sqlite_ext" not in r.stderr, "only the file that moved on is named"


@pytest.fixture(scope="module")
def swift_parser():
    import tree_sitter
    import tree_sitter_swift
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))


def errors(parser, source):
    tree = parser.parse(source)
    found = []
    stack = [tree.root_node]
    while stack:
        n = stack.pop()
        if n.type == "ERROR" or n.is_missing:
            found.append(f"line {n.start_point[0] + 1}: {source[n.start_byte:n.end_byte][:60]!r}")
        stack.extend(n.children)
    return found


def test_every_hand_written_swift_file_parses(swift_parser):
    # The generated bindings are left out: uniffi's own CI compiles them with swiftc, and tree-sitter's
    # Swift grammar misreads two of their `#if swift(>=5.8) @_documentation(...) #endif` attributes.
    files = [f for f in swift_files() if f not in (GENERATED, GENERATED_CORE)]
    assert len(files) >= 10
    bad = {f: e for f in files if (e := errors(swift_parser, open(f, "rb").read()))}
    assert bad == {}


def test_the_syntax_check_catches_a_broken_file(swift_parser):
    assert errors(swift_parser, b"struct A { let x: Int = 1 }") == []
    assert errors(swift_parser, b"struct A { func f( { return } }") != []


def client_methods():
    with open(GENERATED) as f:
        swift = f.read()
    body = swift[swift.index("open class MoatClient"):swift.index("public struct FfiConverterTypeMoatClient")]
    return set(re.findall(r"open func (\w+)\(", body))


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_uniffi_call_the_swift_code_makes_is_exercised_by_the_python_suite():
    methods = client_methods()
    assert {"listView", "detailView", "edit", "resolve", "status"} <= methods
    hand_written = "".join(open(f).read() for f in swift_files() if f not in (GENERATED, GENERATED_CORE))
    called = {m for m in methods if re.search(rf"\.{m}\(", hand_written)}
    assert called, "the Swift code calls the client"
    here = os.path.dirname(__file__)
    python = "".join(open(os.path.join(here, f)).read() for f in os.listdir(here)
                     if f.endswith(".py") and f != os.path.basename(__file__))
    missing = sorted(m for m in called if not re.search(rf"\.{snake(m)}\(", python))
    assert missing == []
    assert "MoatClient(dbPath:" in hand_written and "cb.MoatClient(" in python
