"""Access control files in Mosquitto's format (docs/security.md): user,
anonymous and pattern rules, deny, SUBACK 0x87 / 0x80, PUBACK 0x87 (5.0)
or a silent drop (3.1.1), and the read check on every delivery, retained
messages included."""

import os
import signal
import subprocess
import time

import pytest

import mqttraw as M
from conftest import PETREL_BIN
from helpers import T, V311, V5, free_port, raw

TOOL = os.path.join(os.path.dirname(PETREL_BIN), "petrel-passwd")

ACL = """\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic read feed/#
topic deny feed/private

user bob
topic write feed/#
topic write public/#

pattern readwrite clients/%c/#
pattern read users/%u/#
"""


@pytest.fixture
def acl_broker(make_broker, tmp_path):
    pw = str(tmp_path / "passwd")
    subprocess.run([TOOL, "-c", "-b", pw, "alice", "a"], check=True, timeout=T(30))
    subprocess.run([TOOL, "-b", pw, "bob", "b"], check=True, timeout=T(30))
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return make_broker("allow_anonymous true\npassword_file %s\nacl_file %s\n" % (pw, acl))


def alice(b, cid="alice-1", version=V5, **kw):
    return raw(b, cid, version=version, username="alice", password=b"a", **kw)


def bob(b, cid="bob-1", version=V5, **kw):
    return raw(b, cid, version=version, username="bob", password=b"b", **kw)


def suback(c, filt, qos=1):
    return c.subscribe([(filt, qos)]).reason_codes[0]


@pytest.mark.parametrize("version,denied", [(V5, 0x87), (V311, 0x80)])
def test_subscribe_needs_read_access(acl_broker, version, denied):
    anon = raw(acl_broker, "anon", version=version)
    assert suback(anon, "public/#") == 1
    assert suback(anon, "public/+/x") == 1      # inside public/#
    assert suback(anon, "alice/#") == denied
    assert suback(anon, "#") == denied
    a = alice(acl_broker, version=version)
    assert suback(a, "alice/#") == 1
    assert suback(a, "public/#") == denied       # the anonymous rules are not alice's
    assert suback(a, "$share/g/alice/x") == 1
    assert suback(a, "$share/g/bob/x") == denied


def test_publish_needs_write_access(acl_broker):
    watch = bob(acl_broker, "watcher")
    a = alice(acl_broker)
    assert suback(a, "alice/#") == 1
    # 5.0: PUBACK / PUBREC 0x87.
    anon = raw(acl_broker, "anon-pub")
    assert anon.publish("public/x", b"no", qos=1).rc == 0x87
    assert anon.publish("public/x", b"no", qos=2).rc == 0x87
    assert a.publish("alice/own", b"yes", qos=1).rc == 0
    assert a.next_publish().payload == b"yes"
    # 3.1.1: acknowledged as usual, and dropped.
    old = raw(acl_broker, "anon-311", version=V311)
    assert old.publish("alice/x", b"dropped", qos=1).rc == 0
    old.publish("alice/x", b"dropped2", qos=2)
    old.publish("alice/x", b"dropped0", qos=0)
    assert a.drain(0.5) == []
    del watch


def test_every_delivery_is_checked_retained_included(acl_broker):
    b = bob(acl_broker)
    b.publish("feed/private", b"retained secret", qos=1, retain=True)
    b.publish("feed/open", b"retained open", qos=1, retain=True)
    a = alice(acl_broker)
    assert suback(a, "feed/#") == 1
    assert [p.payload for p in a.drain(0.5)] == [b"retained open"]
    b.publish("feed/private", b"secret", qos=1)
    b.publish("feed/open", b"open", qos=1)
    assert [p.payload for p in a.drain(0.5)] == [b"open"]


def test_patterns_fill_in_client_id_and_username(acl_broker):
    dev = bob(acl_broker, "dev1")
    assert dev.publish("clients/dev1/state", b"up", qos=1).rc in (0, 0x10)  # no subscriber
    assert dev.publish("clients/dev2/state", b"up", qos=1).rc == 0x87
    assert suback(dev, "users/bob/#") == 1
    assert suback(dev, "users/alice/#") == 0x87
    # Without a username, %u matches nothing; %c still applies.
    anon = raw(acl_broker, "dev3")
    assert suback(anon, "users/+/x") == 0x87
    assert suback(anon, "clients/dev3/#") == 1
    # A client id with a '/' (or a wildcard) is not filled in: "a/b" would
    # otherwise reach into clients/a/.
    odd = raw(acl_broker, "a/b")
    assert suback(odd, "clients/a/b/#") == 0x87


def test_will_needs_write_access(acl_broker):
    watch = alice(acl_broker, "will-watch")
    assert suback(watch, "alice/#") == 1
    w = raw(acl_broker, "anon-will", will=dict(topic="alice/will", payload=b"gone", qos=1))
    w.sock.close()
    assert watch.drain(1.0) == []
    assert "will on alice/will ignored" in acl_broker.log()


def test_bad_acl_file_stops_startup(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic read a/#\nuser x\ntopik read b\n")
    conf = tmp_path / "bad.conf"
    conf.write_text("listener %d 127.0.0.1\nacl_file %s\n" % (free_port(), acl))
    p = subprocess.run([PETREL_BIN, "-c", str(conf)], capture_output=True, text=True,
                       timeout=T(20))
    assert p.returncode != 0
    assert "line 3: unknown keyword 'topik'" in p.stdout + p.stderr


def test_sighup_reads_the_acl_again(acl_broker, tmp_path):
    anon = raw(acl_broker, "anon-old")
    assert suback(anon, "news/#") == 0x87
    (tmp_path / "acl").write_text(ACL.replace("topic read public/#", "topic read public/#\n"
                                              "topic read news/#"))
    os.kill(acl_broker.pid, signal.SIGHUP)
    deadline = time.time() + T(10)
    while "ACL file" not in acl_broker.log().split("read again")[0] or \
            "read again" not in acl_broker.log():
        assert time.time() < deadline
        time.sleep(0.05)
    assert suback(raw(acl_broker, "anon-new"), "news/#") == 1
    assert suback(anon, "news/#") == 0x87  # connections keep the rules they got
