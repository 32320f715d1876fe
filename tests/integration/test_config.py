"""Configuration behaviour in a running broker (Mosquitto-compatible keys)."""

import os
import shutil
import socket
import tempfile
import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, free_port, ipv6_available, raw, still_serves, wait_for


class _At:
    def __init__(self, host, port):
        self.host, self.port = host, port


def test_several_listeners_share_one_broker(make_broker):
    p2 = free_port()
    b = make_broker("listener %d 127.0.0.1" % p2)
    sub = raw(_At("127.0.0.1", p2), "on-second", version=V5)
    sub.subscribe([("ml/t", 1)])
    raw(b, "on-first", version=V311).publish("ml/t", b"across", qos=1)
    assert sub.recv_publishes(1)[0].payload == b"across"


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_listener(make_broker):
    p6 = free_port(socket.AF_INET6, "::1")
    b = make_broker("listener %d ::1" % p6)
    deadline = time.monotonic() + T(5)
    while True:
        try:
            c6 = M.RawClient("::1", p6, timeout=T(5))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        assert c6.connect("v6client").rc == 0
        c6.subscribe([("v6/t", 1)])
        raw(b, "v4client", version=V5).publish("v6/t", b"six", qos=1)
        assert c6.recv_publishes(1)[0].payload == b"six"
    finally:
        c6.close()


def test_unix_socket_listener(make_broker):
    d = tempfile.mkdtemp(prefix="pt", dir="/tmp")
    os.chmod(d, 0o777)   # a broker that drops privileges must still be able to bind
    path = os.path.join(d, "b.sock")
    try:
        b = make_broker("listener 0 %s" % path)
        assert wait_for(lambda: os.path.exists(path), T(5))
        c = M.RawClient(unix_path=path, timeout=T(5))
        try:
            assert c.connect("unix-client").rc == 0
            c.subscribe([("ux/t", 1)])
            raw(b, "tcp-client", version=V311).publish("ux/t", b"via-tcp", qos=1)
            assert c.recv_publishes(1)[0].payload == b"via-tcp"
        finally:
            c.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _refused(c):
    """A connection over the limit is closed, possibly after a refusing CONNACK."""
    try:
        c.send(M.connect_packet("over", version=c.version))
    except OSError:
        return True
    closed = c.wait_closed(T(5))
    return closed and all(p.type == M.CONNACK and p.rc != 0 for p in c.before_close)


def test_max_connections(make_broker):
    b = make_broker("max_connections 2")
    a1 = raw(b, "a1", version=V311)
    a2 = raw(b, "a2", version=V5)
    try:
        third = M.RawClient(b.host, b.port, timeout=T(5), version=V5)
    except OSError:
        third = None
    if third is not None:
        try:
            assert _refused(third)
        finally:
            third.close()
    a1.disconnect()
    # a slot is free again once the broker has noticed the disconnect
    deadline = time.monotonic() + T(5)
    while True:
        c = M.RawClient(b.host, b.port, timeout=T(5), version=V311)
        try:
            c.send(M.connect_packet("a3", version=4))
            ack = c.recv_packet()
            if ack.type == M.CONNACK and ack.rc == 0:
                break
        except (M.Closed, M.Timeout, OSError):
            pass
        finally:
            c.close()
        assert time.monotonic() < deadline, "slot never freed"
        time.sleep(0.1)
    assert a2.is_open()


def test_max_packet_size_advertised_and_enforced(make_broker):
    # 5.0 3.2.2.3.6: Maximum Packet Size in CONNACK; 0x95 Packet too large
    b = make_broker("max_packet_size 300")
    c = raw(b, "mps", version=V5)
    assert c.connack.props.get(M.MAXIMUM_PACKET_SIZE) == 300
    c.publish("ok/t", b"x" * 100, qos=1)
    c.send(M.publish_packet("big/t", b"x" * 500, qos=1, pid=99))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.DISCONNECT and p.rc == 0x95
    still_serves(b)


def test_message_size_limit(make_broker):
    b = make_broker("message_size_limit 100")
    sub = raw(b, "sub", version=V5)
    sub.subscribe([("msl/t", 1)])
    pub = raw(b, "pub", version=V5)
    pub.send(M.publish_packet("msl/t", b"B" * 200, qos=1, pid=1))
    try:
        ack = pub.recv_packet()
        if ack.type == M.PUBACK:
            assert ack.rc >= 0x80, ack          # refused, e.g. 0x95 / 0x97
        else:
            assert ack.type == M.DISCONNECT and ack.rc >= 0x80
    except M.Closed:
        pass
    assert sub.drain(0.5) == []
    raw(b, "pub2", version=V311).publish("msl/t", b"s" * 50, qos=1)
    assert [p.payload for p in sub.recv_publishes(1)] == [b"s" * 50]


def test_max_qos_downgrade(make_broker):
    # 5.0 [MQTT-3.2.2-9] Maximum QoS in CONNACK; [MQTT-3.2.2-11] SUBACK grants <= it
    b = make_broker("max_qos 1")
    c = raw(b, "mq", version=V5)
    assert c.connack.props.get(M.MAXIMUM_QOS) == 1
    assert c.subscribe([("mq/t", 2)]).reason_codes == [1]
    old = raw(b, "old", version=V311)
    assert old.subscribe([("mq/t", 2)]).reason_codes == [1]
    Paho(b, "pub", version=V5).publish("mq/t", b"x", qos=1)
    assert c.recv_publishes(1)[0].qos == 1
    assert old.recv_publishes(1)[0].qos == 1


def test_max_qos_exceeded_by_v5_publisher(make_broker):
    # 5.0 [MQTT-3.2.2-12]: PUBLISH with QoS above Maximum QoS -> DISCONNECT 0x9B
    b = make_broker("max_qos 1")
    c = raw(b, "q2", version=V5)
    c.send(M.publish_packet("mq/t", b"x", qos=2, pid=1))
    assert c.wait_closed(T(5))
    discs = [p for p in c.before_close if p.type == M.DISCONNECT]
    assert discs and discs[0].rc == 0x9B, c.before_close


def test_retain_not_available(make_broker):
    # 5.0 [MQTT-3.2.2-13]/[MQTT-3.2.2-14]: Retain Available 0 and DISCONNECT 0x9A on retained PUBLISH
    b = make_broker("retain_available false")
    c = raw(b, "ret", version=V5)
    assert c.connack.props.get(M.RETAIN_AVAILABLE) == 0
    c.send(M.publish_packet("r/t", b"x", qos=1, pid=1, retain=True))
    assert c.wait_closed(T(5))
    discs = [p for p in c.before_close if p.type == M.DISCONNECT]
    assert discs and discs[0].rc == 0x9A, c.before_close
    # nothing was retained
    s = raw(b, "s", version=V5)
    s.subscribe([("r/t", 1)])
    assert s.drain(0.5) == []


def test_max_keepalive_server_keep_alive(make_broker):
    # 5.0 [MQTT-3.2.2-21]
    b = make_broker("max_keepalive 20")
    c = raw(b, "ka", version=V5, keepalive=300)
    assert c.connack.props.get(M.SERVER_KEEP_ALIVE) == 20


def test_max_topic_alias(make_broker):
    # 5.0 3.2.2.3.8: the configured maximum is advertised and enforced
    b = make_broker("max_topic_alias 3")
    c = raw(b, "tam", version=V5)
    assert c.connack.props.get(M.TOPIC_ALIAS_MAXIMUM) == 3
    c.publish("ta/t", b"x", qos=1, props={M.TOPIC_ALIAS: 3})
    c.send(M.publish_packet("ta/t", b"x", qos=0, props={M.TOPIC_ALIAS: 4}))
    assert c.wait_closed(T(5))
    assert any(p.type == M.DISCONNECT and p.rc == 0x94 for p in c.before_close)


def test_unsupported_mosquitto_key_warns_but_starts(make_broker):
    b = make_broker("websockets_log_level 0")
    assert raw(b, "ok", version=V311).connack.rc == 0
    assert "websockets_log_level" in b.log()


def test_include_dir(make_broker, tmp_path):
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "10-qos.conf").write_text("max_qos 1\n")
    (d / "ignored.txt").write_text("this is not a config line\n")
    b = make_broker("include_dir %s" % d)
    c = raw(b, "inc", version=V5)
    assert c.connack.props.get(M.MAXIMUM_QOS) == 1


def test_comments_and_blank_lines(make_broker):
    b = make_broker("\n# a comment\n   \n#max_qos 0\n")
    c = raw(b, "cm", version=V5)
    assert M.MAXIMUM_QOS not in c.connack.props
