"""The durable store (docs/storage.md): sessions, subscriptions, queued and
in-flight messages, inbound QoS 2 state and retained messages survive a
restart and kill -9; a store that cannot be opened stops startup with a
clear error."""

import os
import subprocess
import threading
import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, raw

STORE = "persistence true\npersistence_location store/\n"


@pytest.fixture
def durable(make_broker):
    return make_broker(STORE + "durability sync\n")


def expiring(broker, cid, clean=False, expiry=3600, version=V5):
    if version == V5:
        return raw(broker, cid, version=V5, clean=clean, props={M.SESSION_EXPIRY_INTERVAL: expiry})
    return raw(broker, cid, version=V311, clean=clean)


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill9"])
def test_session_and_subscription_survive(durable, kill):
    # 5.0 4.1: the session state is kept for its expiry, here across a restart
    a = expiring(durable, "dur-sub")
    a.subscribe([("dur/t", 1)])
    a.disconnect()
    if kill:
        durable.kill9()
    durable.restart()
    pub = Paho(durable, "dur-pub")
    pub.publish("dur/t", b"after", qos=1)
    b = expiring(durable, "dur-sub")
    assert b.connack.session_present
    got = b.recv_publishes(1)
    assert got[0].payload == b"after"


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill9"])
def test_queued_messages_survive_in_order(durable, kill):
    # Every QoS 1/2 message acknowledged to the publisher reaches the
    # persistent subscriber after the broker restarts, in order, QoS 2 once.
    a = expiring(durable, "dur-q", version=V311)
    a.subscribe([("dur/q/1", 1), ("dur/q/2", 2)])
    a.disconnect()
    pub = raw(durable, "dur-qpub", version=V311)
    for i in range(20):
        pub.publish("dur/q/%d" % (1 + i % 2), b"m%02d" % i, qos=1 + i % 2)
    if kill:
        durable.kill9()
    durable.restart()
    b = expiring(durable, "dur-q", version=V311)
    assert b.connack.session_present
    got = b.recv_publishes(20)
    assert [p.payload for p in got] == [b"m%02d" % i for i in range(20)]
    assert [p.qos for p in got] == [1 + i % 2 for i in range(20)]
    assert b.drain(0.5) == []


def test_inflight_resent_with_same_packet_id_after_kill9(durable):
    # [MQTT-4.4.0-1]: unacknowledged PUBLISH packets are re-sent with their
    # original packet identifiers, here after a crash of the broker.
    a = expiring(durable, "dur-if")
    a.subscribe([("dur/if", 2)])
    pub = Paho(durable, "dur-ifpub")
    pub.publish("dur/if", b"one", qos=2)
    first = a.recv_publishes(1, ack=False)[0]
    durable.kill9()
    durable.restart()
    b = expiring(durable, "dur-if")
    assert b.connack.session_present
    again = b.recv_publishes(1, ack=False)[0]
    assert again.payload == b"one"
    assert again.pid == first.pid
    assert again.dup
    # PUBREC now; after another crash the broker continues with PUBREL.
    b.send(M.ack_packet(M.PUBREC, again.pid))
    rel = b.expect(M.PUBREL)
    assert rel.pid == again.pid
    durable.kill9()
    durable.restart()
    c = expiring(durable, "dur-if")
    rel2 = c.expect(M.PUBREL)
    assert rel2.pid == again.pid
    c.send(M.ack_packet(M.PUBCOMP, rel2.pid))
    assert c.drain(0.5) == []


def test_inbound_qos2_state_survives(durable):
    # [MQTT-4.3.3-9]: a PUBLISH whose PUBREC went out is not delivered again
    # when the client re-sends it after the broker restarted.
    sub = Paho(durable, "dur-q2sub")
    sub.subscribe("dur/in", qos=2)
    a = expiring(durable, "dur-q2")
    a.send(M.publish_packet("dur/in", b"once", qos=2, pid=7))
    assert a.expect(M.PUBREC).pid == 7
    assert sub.expect_one().payload == b"once"
    durable.kill9()
    durable.restart()
    sub = Paho(durable, "dur-q2sub2")
    sub.subscribe("dur/in", qos=2)
    b = expiring(durable, "dur-q2")
    assert b.connack.session_present
    b.send(M.publish_packet("dur/in", b"once", qos=2, pid=7, dup=True))
    assert b.expect(M.PUBREC).pid == 7
    b.send(M.ack_packet(M.PUBREL, 7))
    assert b.expect(M.PUBCOMP).rc == 0
    assert sub.nothing(0.5)


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill9"])
def test_retained_messages_survive(durable, kill):
    pub = Paho(durable, "dur-rpub")
    pub.publish("dur/r/a", b"A", qos=1, retain=True)
    pub.publish("dur/r/b", b"B", qos=1, retain=True)
    pub.publish("dur/r/b", b"", qos=1, retain=True)  # cleared
    pub.publish("dur/r/c", b"C", qos=1, retain=True)
    if kill:
        durable.kill9()
    durable.restart()
    sub = Paho(durable, "dur-rsub")
    sub.subscribe("dur/r/#", qos=1)
    got = sorted((m.topic, m.payload) for m in sub.expect(2))
    assert got == [("dur/r/a", b"A"), ("dur/r/c", b"C")]
    assert sub.nothing(0.3)


def test_session_expiry_counts_while_down(durable):
    # 5.0 3.1.2.11.2: the interval is wall-clock time, also while the broker
    # is not running.
    a = expiring(durable, "dur-exp", expiry=2)
    a.subscribe([("dur/exp", 1)])
    a.disconnect()
    durable.stop()
    time.sleep(2.5)
    durable.start()
    b = expiring(durable, "dur-exp", expiry=2)
    assert not b.connack.session_present


def test_will_delay_due_while_down_is_published(durable):
    # 5.0 3.1.3.2.2: a will whose delay ran out while the broker was down is
    # published after the restart, to persistent subscribers too.
    watcher = expiring(durable, "dur-watch")
    watcher.subscribe([("dur/will", 1)])
    watcher.disconnect()
    will = {"topic": "dur/will", "payload": b"gone", "qos": 1,
            "props": {M.WILL_DELAY_INTERVAL: 1}}
    c = raw(durable, "dur-willc", version=V5, clean=False,
            props={M.SESSION_EXPIRY_INTERVAL: 60}, will=will)
    c.close()  # no DISCONNECT: the will waits for its delay
    time.sleep(0.3)
    durable.stop()
    time.sleep(1.5)
    durable.start()
    w = expiring(durable, "dur-watch")
    got = w.recv_publishes(1, timeout=T(5))
    assert got[0].payload == b"gone"


def test_non_persistent_sessions_are_not_stored(durable):
    a = raw(durable, "dur-clean", version=V5, clean=True)
    a.subscribe([("dur/clean", 1)])
    durable.restart()
    b = raw(durable, "dur-clean", version=V5, clean=False)
    assert not b.connack.session_present


def test_clean_start_removes_stored_session(durable):
    a = expiring(durable, "dur-cs")
    a.subscribe([("dur/cs", 1)])
    a.disconnect()
    b = expiring(durable, "dur-cs", clean=True, expiry=0)
    b.disconnect()
    durable.restart()
    c = expiring(durable, "dur-cs")
    assert not c.connack.session_present


def start_fails(petrel_bin, tmp_path, extra):
    """Run petrel with extra config; it must exit non-zero. Returns its output."""
    conf = tmp_path / "fail.conf"
    conf.write_text("listener 0 127.0.0.1\nallow_anonymous true\n" + extra)
    r = subprocess.run([petrel_bin, "-c", str(conf)], capture_output=True, timeout=T(20),
                       stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    assert r.returncode != 0
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def test_unusable_store_directory_stops_startup(petrel_bin, tmp_path):
    (tmp_path / "afile").write_text("x")
    out = start_fails(petrel_bin, tmp_path, "persistence true\npersistence_location afile/sub\n")
    assert "persistence_location" in out or "cannot open the store" in out


def test_mosquitto_db_file_is_refused_with_a_clear_error(petrel_bin, tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mosquitto.db").write_bytes(b"\x00\xb5\x00mosquitto db")
    out = start_fails(petrel_bin, tmp_path, STORE + "persistence_file mosquitto.db\n")
    assert "not a Petrel store" in out


def test_damaged_store_stops_startup(petrel_bin, tmp_path):
    # A store whose files are garbage: a clear error, no crash.
    d = tmp_path / "store" / "petrel.db"
    d.mkdir(parents=True)
    (d / "CURRENT").write_text("MANIFEST-000099\n")
    (d / "MANIFEST-000099").write_bytes(os.urandom(4096))
    out = start_fails(petrel_bin, tmp_path, STORE)
    assert "cannot open the store" in out


def test_qos1_under_load_kill9_loses_nothing_acknowledged(make_broker):
    # Under load: every message the broker acknowledged is delivered to
    # the persistent subscriber after kill -9 and restart. (The queue limit
    # is raised so that it drops nothing: its drops are not the store's.)
    durable = make_broker(STORE + "durability sync\nmax_queued_messages 1000000\n")
    sub = expiring(durable, "dur-load", version=V311)
    sub.subscribe([("dur/load", 1)])
    sub.close()
    acked = []
    stop = threading.Event()

    def publisher():
        p = raw(durable, "dur-loadpub", version=V311)
        i = 0
        try:
            while not stop.is_set():
                p.publish("dur/load", b"%06d" % i, qos=1)
                acked.append(i)
                i += 1
        except Exception:
            pass  # the broker went away mid-exchange

    t = threading.Thread(target=publisher)
    t.start()
    time.sleep(1.0)
    durable.kill9()
    stop.set()
    t.join(T(10))
    assert len(acked) > 50
    durable.start()
    b = expiring(durable, "dur-load", version=V311)
    got = b.drain(1.0, limit=1000000)
    seen = {int(p.payload) for p in got}
    missing = [i for i in acked if i not in seen]
    assert not missing, "acknowledged but lost: %r" % missing[:10]
    print("acknowledged before kill -9: %d, delivered after restart: %d" % (len(acked), len(seen)))

