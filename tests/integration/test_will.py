"""Will messages (MQTT 3.1.1 section 3.1.2.5; MQTT 5.0 sections 3.1.2.5, 3.1.3.2, 3.14.2.1)."""

import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, raw


def _watch(broker, flt="will/#"):
    w = raw(broker, "watcher", version=V5)
    w.subscribe([(flt, M.sub_options(qos=1, retain_as_published=True))])
    return w


@pytest.mark.parametrize("version", [V311, V5])
def test_will_sent_on_socket_close(broker, version):
    # [MQTT-3.1.2-8]: network connection closed without DISCONNECT -> will published
    w = _watch(broker)
    c = raw(broker, "dying", version=version,
            will={"topic": "will/a", "payload": b"bye", "qos": 1})
    c.close()
    got = w.recv_publishes(1)
    assert (got[0].topic, got[0].payload) == ("will/a", b"bye")


def test_will_sent_on_reset(broker):
    # [MQTT-3.1.2-8]: an I/O error / reset also publishes the will
    w = _watch(broker)
    c = raw(broker, "reset", version=V311, will={"topic": "will/rst", "payload": b"rst"})
    c.abort()
    assert w.recv_publishes(1)[0].payload == b"rst"


def test_will_sent_on_protocol_error(broker):
    # [MQTT-3.1.2-8]: server closes the connection because of a protocol error -> will
    w = _watch(broker)
    c = raw(broker, "bad", version=V311, will={"topic": "will/err", "payload": b"err"})
    c.send(bytes([0x00, 0x00]))      # reserved packet type 0
    assert c.wait_closed(T(5))
    assert w.recv_publishes(1)[0].payload == b"err"


@pytest.mark.parametrize("version", [V311, V5])
def test_will_not_sent_on_normal_disconnect(broker, version):
    # [MQTT-3.1.2-10] (3.1.1) / [MQTT-3.1.2-10] 5.0: DISCONNECT 0x00 deletes the will
    w = _watch(broker)
    c = raw(broker, "polite", version=version, will={"topic": "will/n", "payload": b"no"})
    c.disconnect(rc=0 if version == V5 else None)
    assert w.drain(0.8) == []


def test_v5_will_sent_on_disconnect_0x04(broker):
    # 5.0 3.14.2.1: 0x04 Disconnect with Will Message
    w = _watch(broker)
    c = raw(broker, "withwill", version=V5, will={"topic": "will/4", "payload": b"four"})
    c.disconnect(rc=0x04)
    assert w.recv_publishes(1)[0].payload == b"four"


@pytest.mark.parametrize("version", [V311, V5])
def test_will_retain(broker, version):
    # [MQTT-3.1.2-17]: will retain 1 -> published as a retained message
    c = raw(broker, "wr", version=version,
            will={"topic": "will/ret", "payload": b"ret", "qos": 1, "retain": True})
    c.close()
    time.sleep(0.5)
    s = raw(broker, "late", version=V5)
    s.subscribe([("will/ret", 1)])
    got = s.recv_publishes(1)
    assert got[0].payload == b"ret" and got[0].retain


def test_will_qos(broker):
    # [MQTT-3.1.2-? ] will published with the Will QoS
    w = raw(broker, "watcher", version=V5)
    w.subscribe([("will/q", 2)])
    c = raw(broker, "wq", version=V5, will={"topic": "will/q", "payload": b"q", "qos": 2})
    c.close()
    got = w.recv_publishes(1)
    assert got[0].qos == 2


def test_v5_will_properties_forwarded(broker):
    # 5.0 3.1.3.2: will properties are sent with the will message
    w = _watch(broker)
    wp = [(M.CONTENT_TYPE, "application/json"),
          (M.RESPONSE_TOPIC, "resp/here"),
          (M.CORRELATION_DATA, b"\x00\x01corr"),
          (M.PAYLOAD_FORMAT_INDICATOR, 1),
          (M.USER_PROPERTY, ("first", "1")),
          (M.USER_PROPERTY, ("second", "2")),
          (M.USER_PROPERTY, ("first", "3"))]
    c = raw(broker, "wprops", version=V5,
            will={"topic": "will/p", "payload": b'{"x":1}', "qos": 1, "props": wp})
    c.close()
    got = w.recv_publishes(1)[0]
    assert got.props.get(M.CONTENT_TYPE) == "application/json"
    assert got.props.get(M.RESPONSE_TOPIC) == "resp/here"
    assert got.props.get(M.CORRELATION_DATA) == b"\x00\x01corr"
    assert got.props.get(M.PAYLOAD_FORMAT_INDICATOR) == 1
    assert got.props.getall(M.USER_PROPERTY) == [("first", "1"), ("second", "2"), ("first", "3")]


def test_v5_will_delay_interval(broker):
    # 5.0 3.1.3.2.2: will published after the Will Delay Interval
    w = _watch(broker)
    c = raw(broker, "delayed", version=V5, clean=False,
            props={M.SESSION_EXPIRY_INTERVAL: 30},
            will={"topic": "will/d", "payload": b"late", "props": {M.WILL_DELAY_INTERVAL: 2}})
    t0 = time.monotonic()
    c.close()
    got = w.recv_publishes(1, timeout=T(6))
    elapsed = time.monotonic() - t0
    assert got[0].payload == b"late"
    assert elapsed >= 1.5, "will sent before its delay (%.2f s)" % elapsed


def test_v5_will_delay_cancelled_by_reconnect(broker):
    # 5.0 [MQTT-3.1.3-9]: new connection to the session before the delay -> no will
    w = _watch(broker)
    will = {"topic": "will/c", "payload": b"cancel", "props": {M.WILL_DELAY_INTERVAL: 2}}
    c = raw(broker, "back", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 30},
            will=will)
    c.close()
    time.sleep(0.5)
    d = raw(broker, "back", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 30})
    assert d.connack.session_present
    assert w.drain(2.5) == []
    d.disconnect(rc=0)


def test_v5_will_sent_when_session_expires_before_delay(broker):
    # 5.0 3.1.3.2.2: published when the delay passes or the session ends, whichever first
    w = _watch(broker)
    c = raw(broker, "short", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 1},
            will={"topic": "will/s", "payload": b"early", "props": {M.WILL_DELAY_INTERVAL: 30}})
    t0 = time.monotonic()
    c.close()
    got = w.recv_publishes(1, timeout=T(5))
    assert got[0].payload == b"early"
    assert time.monotonic() - t0 < 4.0


def test_v5_will_immediate_with_session_expiry_zero(broker):
    # 5.0 3.1.3.2.2: session ends at close (expiry 0) -> will not delayed by Will Delay
    w = _watch(broker)
    c = raw(broker, "zero", version=V5,
            will={"topic": "will/z", "payload": b"now", "props": {M.WILL_DELAY_INTERVAL: 30}})
    t0 = time.monotonic()
    c.close()
    assert w.recv_publishes(1, timeout=T(4))[0].payload == b"now"
    assert time.monotonic() - t0 < 3.0


def test_will_on_takeover(broker):
    # 5.0 3.1.4: on session takeover the will of the old connection is published
    # (unless the will delay lets the new connection cancel it)
    w = _watch(broker)
    raw(broker, "tk", version=V5, will={"topic": "will/tk", "payload": b"old"})
    raw(broker, "tk", version=V5)
    assert w.recv_publishes(1)[0].payload == b"old"


def test_will_not_sent_twice(broker):
    # will is deleted once published
    w = _watch(broker)
    c = raw(broker, "once", version=V311, will={"topic": "will/o", "payload": b"o"})
    c.close()
    assert len(w.recv_publishes(1)) == 1
    assert w.drain(0.8) == []


def test_will_topic_with_wildcard_rejected(broker):
    # [MQTT-3.1.3-? ] will topic is a topic name: wildcards not allowed -> refused
    c = raw_will_conn(broker, "will/#")
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.CONNACK and p.rc != 0


def raw_will_conn(broker, topic):
    from helpers import raw_socket
    c = raw_socket(broker, version=V5)
    c.send(M.connect_packet("wt", version=5, will={"topic": topic, "payload": b"x"}))
    return c
