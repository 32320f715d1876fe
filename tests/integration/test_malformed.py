"""Malformed and hostile input over raw sockets (MQTT 3.1.1 / 5.0 chapters 1, 2, 4.8 / 4.13).

After each case the broker must still serve a fresh client."""

import os
import random
import socket
import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, raw, raw_socket, still_serves

# Acceptable DISCONNECT reason codes before the close for generic malformed input
MALFORMED_CODES = (0x80, 0x81, 0x82)


def assert_rejected(c, codes=MALFORMED_CODES, timeout=None):
    assert c.wait_closed(timeout or T(5)), "broker left the connection open"
    for p in c.before_close:
        if p.type == M.DISCONNECT:
            assert p.rc in codes, "DISCONNECT 0x%02x not in %r" % (p.rc, codes)
        else:
            assert p.type in (M.CONNACK, M.PUBACK, M.PUBREC), p


# ---------------------------------------------------------------- framing

@pytest.mark.parametrize("version", [V311, V5])
def test_remaining_length_five_bytes(broker, version):
    # 1.5.5 / 2.2.3: at most four bytes; a fifth continuation is malformed
    c = raw(broker, "rl5", version=version)
    c.send(b"\x30\xff\xff\xff\xff\x7f")
    assert_rejected(c)
    still_serves(broker)


def test_remaining_length_five_bytes_before_connect(broker):
    c = raw_socket(broker)
    c.send(b"\x10\x80\x80\x80\x80\x01")
    assert c.wait_closed(T(5))
    still_serves(broker)


@pytest.mark.parametrize("claimed", [100, 10000, 268435455])
def test_truncated_packet_then_close(broker, claimed):
    # the broker must cope with a client that vanishes mid-packet
    c = raw(broker, "trunc", version=V311)
    c.send(b"\x30" + M.varint(claimed) + b"\x00\x03a/b" + b"x" * 20)
    time.sleep(0.1)
    c.close()
    still_serves(broker)


def test_truncated_connect_then_close(broker):
    c = raw_socket(broker)
    pkt = M.connect_packet("half", version=5)
    c.send(pkt[: len(pkt) // 2])
    c.close()
    still_serves(broker)


@pytest.mark.parametrize("version", [V311, V5])
def test_string_length_beyond_packet(broker, version):
    # 1.5.4 / 4.13: a string whose length runs past the remaining length is malformed
    c = raw(broker, "strlen", version=version)
    c.send(b"\x30\x05\x00\x40abc")
    assert_rejected(c)
    still_serves(broker)


def test_connect_with_zero_remaining_length(broker):
    c = raw_socket(broker)
    c.send(b"\x10\x00")
    assert c.wait_closed(T(5))
    still_serves(broker)


def test_connect_trailing_garbage(broker):
    # 3.1: bytes after the payload make the CONNECT malformed
    c = raw_socket(broker, version=V311)
    pkt = M.connect_packet("tg", version=4)
    body = pkt[2:] + b"junk"
    c.send(bytes([0x10]) + M.varint(len(body)) + body)
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.CONNACK and p.rc != 0


# ---------------------------------------------------------------- topics / strings

@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("bad", [b"\xc0\x80", b"\xed\xa0\x80", b"a/\xff", b"\xf8\x88\x80\x80\x80",
                                 b"a/\xe2\x82"])
def test_invalid_utf8_topic(broker, version, bad):
    # [MQTT-1.5.4-1] (5.0: [MQTT-1.5.4-1], 0x80/0x81 malformed) -> close
    sub = Paho(broker, "sub")
    sub.subscribe("#", 0)
    c = raw(broker, "utf8", version=version)
    c.send(M.publish_packet(bad, b"x", qos=0, version=version))
    assert_rejected(c)
    sub.nothing(0.3)
    still_serves(broker)


@pytest.mark.parametrize("version", [V311, V5])
def test_nul_in_topic(broker, version):
    # [MQTT-1.5.4-2]: U+0000 must not appear in a UTF-8 string
    c = raw(broker, "nul", version=version)
    c.send(M.publish_packet(b"a\x00b", b"x", qos=0, version=version))
    assert_rejected(c)
    still_serves(broker)


def test_invalid_utf8_in_subscribe_filter(broker):
    c = raw(broker, "subutf", version=V311)
    c.send(M.subscribe_packet(1, [(b"\xc0\x80/#", 0)], version=4))
    assert c.wait_closed(T(5))
    still_serves(broker)


def test_invalid_utf8_client_id(broker):
    c = raw_socket(broker, version=V311)
    c.send(M.connect_packet(b"\xed\xa0\x80", version=4))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.CONNACK and p.rc != 0
    still_serves(broker)


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("topic", ["a/+", "a/#", "+", "#", "a/b+"])
def test_wildcard_in_publish_topic(broker, version, topic):
    # [MQTT-3.3.2-2]: topic name must not contain wildcards; 5.0: DISCONNECT 0x90 or close
    sub = Paho(broker, "sub")
    sub.subscribe("#", 0)
    c = raw(broker, "wc", version=version)
    c.send(M.publish_packet(topic, b"x", qos=1, pid=1, version=version))
    assert_rejected(c, codes=(0x90, 0x82, 0x81))
    sub.nothing(0.3)
    still_serves(broker)


def test_v311_empty_topic(broker):
    # [MQTT-4.7.3-1]: topic names are at least one character long
    c = raw(broker, "empty", version=V311)
    c.send(M.publish_packet("", b"x", qos=1, pid=1, version=4))
    assert_rejected(c)
    still_serves(broker)


def test_v5_empty_topic_without_alias(broker):
    # 5.0 3.3.2.1: empty topic without Topic Alias is a Protocol Error
    c = raw(broker, "empty5", version=V5)
    c.send(M.publish_packet("", b"x", qos=1, pid=1))
    assert_rejected(c, codes=(0x82,))
    still_serves(broker)


# ---------------------------------------------------------------- PUBLISH header

@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("qos", [1, 2])
def test_packet_id_zero(broker, version, qos):
    # [MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0): non-zero packet identifier
    c = raw(broker, "pid0", version=version)
    c.send(M.publish_packet("t", b"x", qos=qos, pid=0, version=version))
    assert_rejected(c)
    still_serves(broker)


@pytest.mark.parametrize("version", [V311, V5])
def test_publish_qos_3(broker, version):
    # [MQTT-3.3.1-4]: both QoS bits set is malformed
    c = raw(broker, "q3", version=version)
    c.send(M.publish_packet("t", b"x", qos=3, pid=1, version=version))
    assert_rejected(c)
    still_serves(broker)


def test_qos0_with_dup_flag(broker):
    # [MQTT-3.3.1-2]: DUP must be 0 for QoS 0. A receiver may reject the packet;
    # if it forwards it, [MQTT-3.3.1-3] the outgoing DUP is set independently (0).
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("dup0/t", 0)])
    c = raw(broker, "dup0", version=V5)
    c.send(M.publish_packet("dup0/t", b"x", qos=0, dup=True))
    for p in sub.drain(0.5):
        assert not p.dup and p.qos == 0
    still_serves(broker)


# ---------------------------------------------------------------- reserved flags

@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("flags", [0x00, 0x01, 0x03, 0x0A])
def test_subscribe_reserved_flags(broker, version, flags):
    # [MQTT-3.8.1-1]: SUBSCRIBE fixed header flags must be 0010
    c = raw(broker, "sflags", version=version)
    c.send(M.subscribe_packet(1, [("t", 0)], version=version, flags=flags))
    assert_rejected(c)
    still_serves(broker)


@pytest.mark.parametrize("version", [V311, V5])
def test_unsubscribe_reserved_flags(broker, version):
    # [MQTT-3.10.1-1]
    c = raw(broker, "uflags", version=version)
    body = M.u16(1) + (M.properties(None) if version == V5 else b"") + M.string("t")
    c.send(M.packet(M.UNSUBSCRIBE, 0x00, body))
    assert_rejected(c)
    still_serves(broker)


@pytest.mark.parametrize("version", [V311, V5])
def test_pubrel_reserved_flags(broker, version):
    # [MQTT-3.6.1-1]: PUBREL flags must be 0010
    c = raw(broker, "rflags", version=version)
    c.send(M.publish_packet("t", b"x", qos=2, pid=3, version=version))
    c.expect(M.PUBREC)
    c.send(M.packet(M.PUBREL, 0x00, M.u16(3)))
    assert_rejected(c)
    still_serves(broker)


def test_pingreq_with_flags(broker):
    # 2.1.3: PINGREQ flags are reserved 0000
    c = raw(broker, "pflags", version=V311)
    c.send(b"\xc1\x00")
    assert_rejected(c)


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("ptype", [0, 15])
def test_reserved_packet_types(broker, version, ptype):
    # 2.1.2: type 0 is reserved; 15 (AUTH) is reserved in 3.1.1, and in 5.0 an AUTH
    # without a prior authentication method is a protocol error
    c = raw(broker, "ptype", version=version)
    c.send(bytes([ptype << 4, 0]))
    assert_rejected(c, codes=(0x80, 0x81, 0x82, 0x8C))
    still_serves(broker)


@pytest.mark.parametrize("ptype", [M.CONNACK, M.SUBACK, M.UNSUBACK, M.PINGRESP])
def test_server_to_client_packets_from_client(broker, ptype):
    # 2.1.2: these packets only flow server -> client
    c = raw(broker, "s2c", version=V311)
    body = b"" if ptype == M.PINGRESP else (b"\x00\x00" if ptype == M.CONNACK else b"\x00\x01\x00")
    c.send(M.packet(ptype, 0, body))
    assert_rejected(c)
    still_serves(broker)


# ---------------------------------------------------------------- MQTT 5 properties

def test_v5_unknown_property(broker):
    # 2.2.2.2: an unknown property identifier makes the packet malformed
    c = raw(broker, "uprop", version=V5)
    body = M.string("t") + M.u16(1) + b"\x02\x7f\x00" + b"x"
    c.send(M.packet(M.PUBLISH, 0x02, body))
    assert_rejected(c)
    still_serves(broker)


def test_v5_property_length_beyond_packet(broker):
    c = raw(broker, "plen", version=V5)
    body = M.string("t") + M.varint(50) + b"\x01\x01"
    c.send(M.packet(M.PUBLISH, 0x00, body))
    assert_rejected(c)
    still_serves(broker)


def test_v5_connect_unknown_property(broker):
    c = raw_socket(broker)
    body = M.string("MQTT") + bytes([5, 0x02]) + M.u16(60) + b"\x02\x7e\x00" + M.string("x")
    c.send(M.packet(M.CONNECT, 0, body))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.CONNACK and p.rc in (0x80, 0x81, 0x82)


# ---------------------------------------------------------------- ordering

@pytest.mark.parametrize("pkt", [M.pingreq_packet(), M.publish_packet("t", b"x", version=4),
                                 M.disconnect_packet(version=4),
                                 M.subscribe_packet(1, [("t", 0)], version=4)])
def test_packets_before_connect(broker, pkt):
    # [MQTT-3.1.0-1]
    c = raw_socket(broker, version=V311)
    c.send(pkt)
    assert c.wait_closed(T(5))
    assert not any(p.type == M.PINGRESP for p in c.before_close)
    still_serves(broker)


def test_second_connect_v5_reason(broker):
    # [MQTT-3.1.0-2]
    c = raw(broker, "again", version=V5)
    c.send(M.connect_packet("again"))
    assert_rejected(c, codes=(0x82,))
    still_serves(broker)


# ---------------------------------------------------------------- limits

def test_oversize_packet_vs_max_packet_size(make_broker):
    # 5.0 [MQTT-3.2.2-? ] Maximum Packet Size in CONNACK; larger packet -> 0x95 or close
    b = make_broker("max_packet_size 200")
    c = raw(b, "big", version=V5)
    assert c.connack.props.get(M.MAXIMUM_PACKET_SIZE) == 200
    c.send(M.publish_packet("t", b"x" * 400, qos=1, pid=1))
    assert_rejected(c, codes=(0x95,))
    d = raw(b, "big311", version=V311)
    d.send(M.publish_packet("t", b"x" * 400, qos=1, pid=1, version=4))
    assert d.wait_closed(T(5))
    still_serves(b)


def test_oversize_connect_vs_max_packet_size(make_broker):
    b = make_broker("max_packet_size 200")
    c = raw_socket(b)
    c.send(M.connect_packet("x" * 400))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.CONNACK and p.rc in (0x95, 0x81, 0x85)
    still_serves(b)


def test_huge_declared_length_does_not_exhaust_broker(broker):
    # a client declaring ~256 MB and sending slowly must not take the broker down
    conns = []
    for i in range(5):
        c = raw(broker, "huge%d" % i, version=V311)
        c.send(b"\x30" + M.varint(268435455) + b"\x00\x01t" + os.urandom(1000))
        conns.append(c)
    still_serves(broker)
    for c in conns:
        c.close()
    still_serves(broker)


# ---------------------------------------------------------------- robustness

def test_connect_one_byte_at_a_time(broker):
    # TCP is a byte stream: a CONNECT split into single bytes is still a CONNECT
    c = raw_socket(broker)
    pkt = M.connect_packet("slow", version=5, keepalive=30, props={M.SESSION_EXPIRY_INTERVAL: 0},
                           will={"topic": "w/slow", "payload": b"p"})
    for b in pkt:
        c.send(bytes([b]))
        time.sleep(0.01)
    ack = c.expect(M.CONNACK)
    assert ack.rc == 0
    sub = M.subscribe_packet(1, [("slow/t", 1)])
    for b in sub:
        c.send(bytes([b]))
        time.sleep(0.005)
    assert c.expect(M.SUBACK).reason_codes == [1]


def test_many_packets_in_one_segment(broker):
    # several complete packets in one write are all processed in order
    c = raw(broker, "burst", version=V311)
    c.send(M.subscribe_packet(1, [("burst/t", 0)], version=4)
           + b"".join(M.publish_packet("burst/t", b"%d" % i, version=4) for i in range(50))
           + M.pingreq_packet())
    pkts = c.collect(0.5)
    assert pkts[0].type == M.SUBACK
    pubs = [p.payload for p in pkts if p.type == M.PUBLISH]
    assert pubs == [b"%d" % i for i in range(50)]
    assert any(p.type == M.PINGRESP for p in pkts)


def test_garbage_connections(broker):
    rnd = random.Random(1234)
    for i in range(100):
        s = socket.create_connection((broker.host, broker.port), timeout=T(2))
        kind = i % 4
        if kind == 0:
            data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 200)))
        elif kind == 1:
            data = b"\x10" + bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 100)))
        elif kind == 2:
            pkt = M.connect_packet("g%d" % i, version=rnd.choice([4, 5]))
            data = pkt[:rnd.randint(1, len(pkt))]
        else:
            data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        try:
            s.sendall(data)
        except OSError:
            pass
        s.close()
    still_serves(broker)
    still_serves(broker, version=V311)


def test_fuzzed_packets_after_connect(broker):
    rnd = random.Random(99)
    for i in range(40):
        version = rnd.choice([V311, V5])
        c = raw(broker, "fz%d" % i, version=version)
        ptype = rnd.randint(0, 15)
        body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 60)))
        c.try_send(bytes([(ptype << 4) | rnd.randint(0, 15)]) + M.varint(len(body)) + body)
        c.close()
    still_serves(broker)


def test_many_idle_connections_without_connect(broker):
    socks = [socket.create_connection((broker.host, broker.port), timeout=T(2)) for _ in range(50)]
    still_serves(broker)
    for s in socks:
        s.close()
