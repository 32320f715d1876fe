"""The durable store (docs/storage.md): sessions, subscriptions, queued and
in-flight messages, inbound QoS 2 state and retained messages survive a
restart and kill -9; a store that cannot be opened stops startup with a
clear error."""

import errno
import os
import shutil
import subprocess
import threading
import time

import pytest

import mqttraw as M
from conftest import PETREL_BIN
from helpers import SANITIZED, T, V311, V5, Paho, raw, rss_kib

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


@pytest.mark.parametrize("workers", [1, 2])
def test_inflight_resent_with_same_packet_id_after_kill9(make_broker, workers):
    # [MQTT-4.4.0-1]: unacknowledged PUBLISH packets are re-sent with their
    # original packet identifiers, here after a crash of the broker. (With
    # one worker the packet id is stored in the same iteration as the
    # message.)
    durable = make_broker(STORE + "durability sync\nworkers %d\n" % workers)
    a = expiring(durable, "dur-if")
    a.subscribe([("dur/if", 2)])
    pub = Paho(durable, "dur-ifpub")
    for i in range(4):  # so that the one left in flight is not packet id 1
        pub.publish("dur/if", b"done%d" % i, qos=2)
    assert len(a.recv_publishes(4)) == 4
    pub.publish("dur/if", b"one", qos=2)
    first = a.recv_publishes(1, ack=False)[0]
    assert first.pid != 1
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


class Receiver:
    """A persistent QoS 1/2 subscriber that keeps its side of the protocol
    across connections: at QoS 2 a packet id stays "received" from PUBREC
    until PUBREL, and a PUBLISH with such an id is not counted again
    (MQTT 5.0 4.3.3, method B). counts: payload -> times delivered."""

    def __init__(self, broker, cid, topic, qos):
        self.broker, self.cid, self.topic, self.qos = broker, cid, topic, qos
        self.counts = {}
        self.awaiting_rel = set()
        self.conn = None

    def connect(self, subscribe=False):
        self.conn = expiring(self.broker, self.cid, version=V311)
        if subscribe:
            self.conn.subscribe([(self.topic, self.qos)])
        return self.conn

    def pump(self, quiet):
        """Handle packets until none arrives for quiet seconds or the
        connection closes."""
        c = self.conn
        while True:
            try:
                pkt = c.recv_packet(quiet)
            except (M.Timeout, M.Closed, OSError):
                return
            if pkt.type == M.PUBREL:
                self.awaiting_rel.discard(pkt.pid)
                c.try_send(M.ack_packet(M.PUBCOMP, pkt.pid, version=V311))
            elif pkt.type == M.PUBLISH:
                if pkt.qos == 2:
                    if pkt.pid not in self.awaiting_rel:
                        self.awaiting_rel.add(pkt.pid)
                        self.counts[pkt.payload] = self.counts.get(pkt.payload, 0) + 1
                    c.try_send(M.ack_packet(M.PUBREC, pkt.pid, version=V311))
                else:
                    self.counts[pkt.payload] = self.counts.get(pkt.payload, 0) + 1
                    c.try_send(M.ack_packet(M.PUBACK, pkt.pid, version=V311))


@pytest.mark.parametrize("mode", ["sync", "periodic"])
@pytest.mark.parametrize("qos", [1, 2])
def test_under_load_kill9_loses_nothing_acknowledged(make_broker, qos, mode):
    # Under load, with the subscriber online and acknowledging: every
    # message the broker acknowledged (PUBACK, or PUBREC at QoS 2) reaches
    # the persistent subscriber after kill -9 and restart, exactly once at
    # QoS 2, and the in-flight exchanges resume on both sides. In periodic
    # mode too: a crash of the broker process alone loses nothing
    # committed. (The queue limit is raised so that it drops nothing: its
    # drops are not the store's.)
    durable = make_broker(STORE + "durability %s\nmax_queued_messages 1000000\n" % mode)
    rx = Receiver(durable, "dur-load", "dur/load", qos)
    rx.connect(subscribe=True)
    acked = []
    stop = threading.Event()

    def publisher():
        p = raw(durable, "dur-loadpub", version=V311)
        i = 0
        try:
            while not stop.is_set():
                p.send(M.publish_packet("dur/load", b"%06d" % i, qos, pid=i % 65535 + 1,
                                        version=V311))
                p.expect(M.PUBACK if qos == 1 else M.PUBREC)
                acked.append(i)
                if qos == 2:
                    p.send(M.ack_packet(M.PUBREL, i % 65535 + 1, version=V311))
                    p.expect(M.PUBCOMP)
                i += 1
        except Exception:
            pass  # the broker went away mid-exchange

    t = threading.Thread(target=publisher)
    t.start()
    rx_thread = threading.Thread(target=rx.pump, args=(T(5),))
    rx_thread.start()
    time.sleep(1.0)
    durable.kill9()
    stop.set()
    t.join(T(10))
    rx_thread.join(T(10))
    assert len(acked) > 50
    durable.start()
    rx.connect()
    assert rx.conn.connack.session_present
    rx.pump(T(1.0))
    missing = [i for i in acked if rx.counts.get(b"%06d" % i, 0) == 0]
    assert not missing, "acknowledged but lost: %r" % missing[:10]
    if qos == 2:
        twice = [k for k, n in rx.counts.items() if n > 1]
        assert not twice, "delivered more than once at QoS 2: %r" % twice[:10]
    assert not rx.awaiting_rel, "PUBREL never came for %r" % sorted(rx.awaiting_rel)[:10]
    print("acknowledged before kill -9: %d, delivered: %d" % (len(acked), len(rx.counts)))


@pytest.mark.parametrize("acker", [0, 1])
def test_shared_message_survives_when_one_session_acked(durable, acker):
    # A message for two persistent sessions is stored once: inside the
    # first delivery's record, plus a record of its own for the second.
    # Whichever of the two acknowledges before the crash, the other still
    # gets every message after it.
    subs = []
    for cid in ("dur-sh0", "dur-sh1"):
        c = expiring(durable, cid)
        c.subscribe([("dur/sh", 1)])
        subs.append(c)
    pub = raw(durable, "dur-shpub")
    for i in range(5):
        pub.publish("dur/sh", b"s%d" % i, qos=1)
    assert [p.payload for p in subs[acker].recv_publishes(5)] == [b"s%d" % i for i in range(5)]
    subs[acker].send(M.pingreq_packet())  # its answer leaves after the acks are stored
    subs[acker].expect(M.PINGRESP)
    subs[acker].disconnect()
    subs[1 - acker].abort()
    durable.kill9()
    durable.restart()
    other = expiring(durable, "dur-sh%d" % (1 - acker))
    assert [p.payload for p in other.recv_publishes(5)] == [b"s%d" % i for i in range(5)]
    assert other.drain(0.3) == []
    done = expiring(durable, "dur-sh%d" % acker)
    assert done.connack.session_present
    assert done.drain(0.3) == []


@pytest.mark.parametrize("while_down", [False, True], ids=["due_after", "due_while_down"])
def test_delayed_publish_survives_kill9(durable, while_down):
    # A $delayed publish the broker accepted goes out once after a crash:
    # when it falls due, or at once if it fell due while the broker was down.
    sub = expiring(durable, "dly-sub")
    sub.subscribe([("dly/t", 1)])
    sub.disconnect()
    pub = raw(durable, "dly-pub")
    t0 = time.monotonic()
    assert pub.publish("$delayed/2/dly/t", b"later", qos=1).rc == 0
    durable.kill9()
    if while_down:
        time.sleep(2.5)
    durable.restart()
    back = expiring(durable, "dly-sub")
    got = back.recv_publishes(1, timeout=T(10))
    assert got[0].payload == b"later"
    assert time.monotonic() - t0 >= 2.0
    assert back.drain(1.0) == []
    # Gone from the store once published.
    back.disconnect()
    durable.restart()
    assert expiring(durable, "dly-sub").drain(2.5) == []


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


@pytest.mark.parametrize("version", [1, 2])
def test_previous_format_store(make_broker, tmp_path, version):
    # A store written by an earlier format version (made by
    # tests/fixtures/make_store.py) is read by this build: sessions,
    # subscriptions, in-flight and queued deliveries (one message shared by
    # two sessions), inbound QoS 2 state and a retained message.
    shutil.copytree(os.path.join(FIXTURES, "store-v%d" % version),
                    str(tmp_path / "store" / "petrel.db"))
    b = make_broker(STORE + "durability sync\n")
    # fx-a: the in-flight message again with DUP and its packet id, then
    # the queue in order with the QoS of each subscription.
    a = expiring(b, "fx-a", version=V311)
    assert a.connack.session_present
    got = a.recv_publishes(5)
    assert [(p.topic, p.payload, p.qos) for p in got] == [
        ("fx/inflight", b"m0", 1), ("fx/q", b"m1", 1), ("fx2/q", b"m2", 2), ("fx/q", b"m3", 1),
        ("fx/retained", b"r1", 1)]
    assert got[0].dup and got[0].pid == 1
    assert a.drain(0.3) == []
    # fx-b: its subscription identifier is still attached.
    fb = expiring(b, "fx-b", expiry=0xFFFFFFFF)
    assert fb.connack.session_present
    got = fb.recv_publishes(3)
    assert [(p.payload, p.qos) for p in got] == [(b"m1", 1), (b"m3", 2), (b"r1", 1)]
    assert [p.props.get(M.SUBSCRIPTION_IDENTIFIER) for p in got] == [7, 7, 7]
    # fx-q2: packet id 9 still awaits PUBREL (0x92 would mean it was lost).
    q = expiring(b, "fx-q2", expiry=0xFFFFFFFF)
    assert q.connack.session_present
    q.send(M.ack_packet(M.PUBREL, 9))
    assert q.expect(M.PUBCOMP).rc == 0
    # The retained message.
    r = raw(b, "fx-r")
    r.subscribe([("fx/retained", 1)])
    p = r.next_publish()
    assert (p.payload, p.retain) == (b"r1", True)
    # Restarted on the same store, now written by this build: still there.
    b.restart()
    r = raw(b, "fx-r2")
    r.subscribe([("fx/retained", 1)])
    assert r.next_publish().payload == b"r1"


def private_tmpfs_available():
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


def small_disk_broker(make_broker, tmp_path, min_free):
    # The store on a 24 MiB tmpfs mounted in the broker's own mount
    # namespace (seen from here under /proc/PID/root).
    mnt = tmp_path / "disk"
    mnt.mkdir()
    wrap = ["unshare", "-m", "sh", "-c",
            'mount -t tmpfs -o size=24m tmpfs "$0" && exec "$@"', str(mnt)]
    b = make_broker("persistence true\npersistence_location %s\nstore_cache_size 4194304\n"
                    "store_min_free %d\nmax_queued_messages 1000000\nmax_queued_bytes 0\n"
                    % (mnt, min_free), wrap=wrap)
    return b, mnt


def offline_subscriber(b, name):
    # NAME-sub subscribed to NAME/t at QoS 1 and gone; returns NAME-pub.
    sub = expiring(b, name + "-sub")
    sub.subscribe([(name + "/t", 1)])
    sub.disconnect()
    return raw(b, name + "-pub")


@pytest.mark.skipif(not private_tmpfs_available(), reason="needs unshare -m (root)")
def test_disk_nearly_full_refuses_with_quota_exceeded(make_broker, tmp_path):
    # Once free space drops below store_min_free, QoS 1/2 PUBLISH is
    # refused (5.0: PUBACK 0x97 Quota exceeded; 3.1.1: the connection is
    # closed without PUBACK), everything acknowledged before is kept, and
    # the rest of the broker goes on serving.
    b, _ = small_disk_broker(make_broker, tmp_path, 8388608)
    pub = offline_subscriber(b, "full")
    payload = b"x" * 8192
    acked, refused = [], None
    for i in range(4000):  # 32 MiB: more than the disk holds
        ack = pub.publish("full/t", b"%05d" % i + payload, qos=1)
        if ack.rc != 0:
            refused = ack.rc
            break
        acked.append(i)
    assert refused == 0x97, "never refused: %d acknowledged" % len(acked)
    print("acknowledged before the refusal: %d" % len(acked))
    assert len(acked) > 100
    assert "below store_min_free" in b.log()
    # 3.1.1 has no reason codes: the publisher is disconnected. (The engine
    # may free some space meanwhile, by flushing its log: it is refused
    # again as soon as it fills up again.)
    old = raw(b, "full-pub311", version=V311)
    with pytest.raises((M.Closed, OSError)):
        for i in range(4000):
            old.send(M.publish_packet("full/other", payload, 1, pid=i % 65535 + 1,
                                      version=V311))
            old.expect(M.PUBACK)
    # QoS 0 still flows, and every acknowledged message is delivered.
    watch = raw(b, "full-watch")
    watch.subscribe([("full/q0", 0)])
    pub.publish("full/q0", b"q0")
    assert watch.next_publish().payload == b"q0"
    got = receive_all(b, "full-sub", acked, T(30))
    assert [g for g in dict.fromkeys(got)] == acked
    assert b.alive()


def receive_all(broker, cid, want, timeout):
    # Every message numbered in want, reconnecting when the broker closes
    # the connection meanwhile: if the engine does meet a full disk after
    # all (its compactions need room too), the connections whose commit
    # failed are closed, and QoS 1 messages may then come twice.
    seen = []
    deadline = time.time() + timeout
    while not set(want) <= set(seen):
        assert time.time() < deadline, "%d of %d received" % (len(set(seen)), len(want))
        try:
            drain_into(expiring(broker, cid), seen)
        except (M.Closed, OSError):
            time.sleep(0.2)
    return seen


def drain_into(client, seen, quiet=1.0):
    # One at a time, so that what arrived before the connection is closed
    # is counted (it was acknowledged).
    while True:
        got = client.drain(quiet=quiet, limit=1)
        if not got:
            return
        seen.append(int(got[0].payload[:5]))


def fill_disk(path, leave=65536):
    # Fill the filesystem, then give back `leave` bytes: store_min_free (1
    # byte in these tests) is not reached, and the engine's next writes
    # beyond what it has reserved fail.
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        f.truncate(max(0, f.tell() - leave))


@pytest.mark.skipif(not private_tmpfs_available(), reason="needs unshare -m (root)")
def test_engine_meets_full_disk_and_recovers(make_broker, tmp_path):
    # Something else fills the disk, and the engine's own writes fail
    # (store_min_free is 1 byte here, so nothing holds them back before).
    # The broker goes on running and refuses QoS 1/2 with 0x97 while the
    # disk is full; once there is room again it reopens the engine and
    # accepts them again; every acknowledged message is delivered.
    b, mnt = small_disk_broker(make_broker, tmp_path, 1)
    pub = offline_subscriber(b, "efull")
    body = b"x" * 1000
    acked, unconfirmed = [], []
    for i in range(100):
        assert pub.publish("efull/t", b"%05d" % i + body, qos=1).rc == 0
        acked.append(i)
    # The broker's filesystem, as seen from its own mount namespace.
    filler = "/proc/%d/root%s/filler" % (b.pid, mnt)
    fill_disk(filler)
    refused = None
    for i in range(100, 5000):
        try:
            rc = pub.publish("efull/t", b"%05d" % i + body, qos=1).rc
        except (M.Closed, OSError):
            # The commit that failed held this acknowledgement: the broker
            # withholds it and closes the connection.
            unconfirmed.append(i)
            pub = raw(b, "efull-pub")
            continue
        if rc:
            refused = rc
            break
        acked.append(i)
    assert refused == 0x97, "never refused: %d acknowledged" % len(acked)
    assert b.alive()
    assert "No space left on device" in b.log()
    # QoS 0 goes on meanwhile.
    watch = raw(b, "efull-watch")
    watch.subscribe([("efull/q0", 0)])
    pub.publish("efull/q0", b"q0")
    assert watch.next_publish().payload == b"q0"
    os.unlink(filler)
    deadline = time.time() + T(20)
    n = 10000
    while True:
        rc = pub.publish("efull/t", b"%05d" % n + body, qos=1).rc
        if rc == 0:
            acked.append(n)
            break
        assert rc == 0x97
        assert time.time() < deadline, "never accepted again"
        n += 1
        time.sleep(0.1)
    assert "engine reopened" in b.log()
    got = []
    drain_into(expiring(b, "efull-sub"), got, quiet=T(2))
    assert len(set(got)) == len(got), "duplicates"
    assert [g for g in got if g in set(acked)] == acked
    assert set(got) <= set(acked) | set(unconfirmed)
    b.restart()
    assert raw(b, "efull-after").connack.rc == 0


@pytest.mark.skipif(not private_tmpfs_available(), reason="needs unshare -m (root)")
def test_engine_full_disk_while_delivering(make_broker, tmp_path):
    # The disk fills up while a subscriber drains its queue: its
    # connection is closed when a commit fails, and once there is room
    # again it gets the rest. Acknowledgements whose deletion could not be
    # stored may bring a message again after a restart (QoS 1 allows it).
    b, mnt = small_disk_broker(make_broker, tmp_path, 1)
    pub = offline_subscriber(b, "dfull")
    n = 500
    for i in range(n):
        assert pub.publish("dfull/t", b"%05d" % i + b"x" * 1000, qos=1).rc == 0
    sub = expiring(b, "dfull-sub")
    seen = [int(p.payload[:5]) for p in sub.recv_publishes(100)]
    filler = "/proc/%d/root%s/filler" % (b.pid, mnt)
    fill_disk(filler)
    # More messages until the engine's writes fail.
    for i in range(n, n + 5000):
        try:
            if pub.publish("dfull/t", b"%05d" % i + b"x" * 1000, qos=1).rc:
                break
        except (M.Closed, OSError):
            break
        n += 1
    assert "No space left on device" in b.log()
    try:
        drain_into(sub, seen)
    except (M.Closed, OSError):
        pass
    os.unlink(filler)
    deadline = time.time() + T(20)
    while "engine reopened" not in b.log():
        assert time.time() < deadline, "the engine was not reopened"
        time.sleep(0.2)
    while not set(seen) >= set(range(n)):
        assert time.time() < deadline, "%d of %d received" % (len(set(seen)), n)
        try:
            drain_into(expiring(b, "dfull-sub"), seen)
        except (M.Closed, OSError):
            pass
    # (Plus, perhaps, the message whose acknowledgement was withheld.)
    assert [s for s in dict.fromkeys(seen)][:n] == list(range(n))
    assert set(seen) <= set(range(n + 1))
    b.restart()
    again = []
    drain_into(expiring(b, "dfull-sub"), again)
    assert set(again) <= set(range(n + 1))


# A budget small enough that a few hundred messages exceed it (per worker:
# the value divided by the number of workers).
SMALL_QUEUE_MEMORY = "store_queue_memory 65536\nmax_queued_messages 1000000\n"


@pytest.mark.parametrize("restart", ["none", "kill9"])
def test_queue_beyond_memory_budget_is_delivered_in_order(make_broker, restart):
    # Past store_queue_memory, an offline session's queue stays on disk
    # only and comes back as it is sent: every message arrives once, in
    # order, at its QoS, also across a crash while most of it is on disk.
    b = make_broker(STORE + SMALL_QUEUE_MEMORY)
    sub = expiring(b, "cold-sub", version=V311)
    sub.subscribe([("cold/1", 1), ("cold/2", 2)])
    sub.disconnect()
    pub = raw(b, "cold-pub", version=V311)
    n = 3000
    for i in range(n):
        pub.publish("cold/%d" % (1 + i % 2), b"%05d" % i + b"." * 200, qos=1 + i % 2)
    pub.disconnect()
    if restart == "kill9":
        b.kill9()
        b.restart()
        assert "queued on disk only" in b.log()
    back = expiring(b, "cold-sub", version=V311)
    assert back.connack.session_present
    got = back.recv_publishes(n, timeout=T(60))
    assert [int(p.payload[:5]) for p in got] == list(range(n))
    assert [p.qos for p in got] == [1 + i % 2 for i in range(n)]
    assert back.drain(0.5) == []
    # Nothing is left on disk for it: a second reconnect gets nothing.
    back.disconnect()
    b.restart()
    again = expiring(b, "cold-sub", version=V311)
    assert again.drain(0.5) == []


def test_retained_feed_keeps_its_order_across_kill9(make_broker):
    # Retained messages handed out after a newer message was routed to the
    # session still sort before it in the store, so after a crash the
    # in-flight messages are re-sent in the order they were first sent.
    durable = make_broker(STORE + "max_inflight_messages 100\n")
    filler = raw(durable, "feed-fill")
    for i in range(200):
        filler.publish("feed/%03d" % i, b"r%03d" % i, qos=1, retain=True)
    sub = raw(durable, "feed-sub", version=V5, clean=False,
              props={M.SESSION_EXPIRY_INTERVAL: 3600, M.RECEIVE_MAXIMUM: 100})
    sub.send(M.subscribe_packet(1, [("feed/#", 1)]))
    sub.expect_skip(M.SUBACK)
    first = sub.recv_publishes(100, ack=False)
    filler.publish("feed/live", b"live", qos=1)  # queued behind the feed
    for p in first:
        sub.ack(p)
    second = sub.recv_publishes(100, ack=False)
    for p in second[:50]:
        sub.ack(p)
    live = sub.recv_publishes(1, ack=False)
    assert live[0].payload == b"live"
    sent = [p.payload for p in second[50:]] + [b"live"]
    sub.send(M.pingreq_packet())  # the acknowledgements are stored
    sub.expect(M.PINGRESP)
    durable.kill9()
    durable.restart()
    back = raw(durable, "feed-sub", version=V5, clean=False,
               props={M.SESSION_EXPIRY_INTERVAL: 3600})
    assert back.connack.session_present
    again = back.recv_publishes(51, ack=True)
    assert [p.payload for p in again] == sent
    assert all(p.dup for p in again)


def test_queue_on_disk_kept_when_session_stops_being_stored(make_broker):
    # An MQTT 5 client resumes its session with Session Expiry 0: the
    # session is no longer stored, and what waited on disk only comes back
    # into memory first instead of being deleted with its records.
    b = make_broker(STORE + SMALL_QUEUE_MEMORY)
    sub = expiring(b, "cold-v5")
    sub.subscribe([("coldv5/t", 1)])
    sub.disconnect()
    pub = raw(b, "cold-v5pub")
    n = 2000
    for i in range(n):
        pub.publish("coldv5/t", b"%05d" % i + b"." * 200, qos=1)
    back = raw(b, "cold-v5", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 0})
    assert back.connack.session_present
    got = back.recv_publishes(n, timeout=T(60))
    assert [int(p.payload[:5]) for p in got] == list(range(n))
    assert back.drain(0.5) == []


@pytest.mark.skipif(SANITIZED, reason="the sanitizer's quarantine keeps freed memory")
def test_queue_beyond_memory_budget_keeps_rss_bounded(make_broker):
    # 60 MiB queued for an offline session with a 4 MiB budget and an 8 MiB
    # engine cache: the broker's memory grows by a fraction of that.
    b = make_broker(STORE + "store_queue_memory 4194304\nstore_cache_size 8388608\n"
                    "max_queued_messages 1000000\ndurability periodic\n")
    sub = expiring(b, "rss-sub", version=V311)
    sub.subscribe([("bt/#", 1)])
    sub.disconnect()
    before = rss_kib(b.pid)
    bench_bin = os.path.join(os.path.dirname(PETREL_BIN), "petrel-bench")
    p = subprocess.run([bench_bin, "pub", "-P", "4", "-q", "1", "-s", "1024", "-L", "15000",
                        "-p", str(b.port), "--topic", "bt"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=T(120))
    assert p.returncode == 0, p.stderr
    grown = rss_kib(b.pid) - before
    print("RSS grew by %d KiB for 60,000 queued messages of 1 KiB" % grown)
    assert grown < 30 * 1024, "RSS grew by %d KiB" % grown
    back = expiring(b, "rss-sub", version=V311)
    got = back.drain(1.0, limit=100000, max_time=T(120))
    assert len(got) == 60000


@pytest.mark.skipif(SANITIZED, reason="the sanitizer's quarantine keeps freed memory")
def test_retained_on_disk_keep_rss_bounded(make_broker):
    # 40,000 retained messages of 2 KiB (80 MiB) with an 8 MiB engine
    # cache: they live in the store, the broker's memory grows by a
    # fraction of that, also while a subscription to '#' takes them all
    # and after a restart; the count in $SYS includes them.
    b = make_broker(STORE + "store_cache_size 8388608\ndurability periodic\n")
    before = rss_kib(b.pid)
    n = 40000
    pub = raw(b, "rrss-pub", version=V311)
    body = b"r" * 2048
    for start in range(0, n, 1000):
        pub.send(b"".join(M.publish_packet("rrss/%d/%d" % (i // 100, i), b"%05d" % i + body, 0,
                                           retain=True, version=V311)
                          for i in range(start, start + 1000)))
    pub.send(M.pingreq_packet())
    pub.expect(M.PINGRESP, timeout=T(60))
    grown = rss_kib(b.pid) - before
    print("RSS grew by %d KiB for %d retained messages of 2 KiB" % (grown, n))
    assert grown < 40 * 1024, "RSS grew by %d KiB" % grown
    sub = raw(b, "rrss-sub", version=V311)
    sub.subscribe([("#", 0)])
    got = sub.drain(2.0, limit=n + 10, max_time=T(120))
    assert sorted(int(p.payload[:5]) for p in got) == list(range(n))
    assert all(p.retain for p in got)
    grown = rss_kib(b.pid) - before
    assert grown < 40 * 1024, "RSS grew by %d KiB after '#'" % grown
    b.restart()
    s = raw(b, "rrss-sys", version=V311)
    assert "%d retained" % n in b.log()
    s.subscribe([("$SYS/broker/retained messages/count", 0)])
    assert int(s.next_publish(timeout=T(20)).payload) >= n
    e = raw(b, "rrss-one", version=V311)
    e.subscribe([("rrss/7/777", 0)])
    assert e.next_publish().payload[:5] == b"00777"


def test_retained_set_just_before_a_subscribe_on_another_worker(make_broker):
    # A retained PUBLISH followed at once by a SUBSCRIBE from another client
    # (often on the other worker): the subscriber gets the new value, live
    # or retained, even though the publisher's commit may not have landed
    # when the subscription was added.
    b = make_broker(STORE + "workers 2\n")
    pub = raw(b, "race-pub")
    pub.publish("race/t", b"0", qos=1, retain=True)
    for i in range(1, 41):
        s = raw(b, "race-sub%d" % i)
        pub.send(M.publish_packet("race/t", b"%d" % i, 1, True, False, i, 5))
        s.send(M.subscribe_packet(1, [("race/t", 0)], 5))
        got = [p.payload for p in s.collect(quiet=0.15) if p.type == M.PUBLISH]
        assert b"%d" % i in got, "trial %d got %r" % (i, got)
        s.close()
        pub.collect(quiet=0.0)
