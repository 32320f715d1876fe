"""Flow control and packet size limits (MQTT 5.0 sections 3.1.2.11.3, 3.1.2.11.4, 4.9)."""

import time

import pytest

import mqttraw as M
from helpers import T, V5, Paho, raw


@pytest.mark.parametrize("qos", [1, 2])
def test_client_receive_maximum_limits_unacked(broker, qos):
    # [MQTT-3.3.4-9]: no more than Receive Maximum unacknowledged QoS>0 PUBLISH packets
    sub = raw(broker, "rm", version=V5, props={M.RECEIVE_MAXIMUM: 3})
    sub.subscribe([("rm/t", qos)])
    pub = Paho(broker, "pub")
    for i in range(10):
        pub.publish("rm/t", b"%d" % i, qos=qos)
    first = sub.drain(0.7, ack=False)
    assert [p.payload for p in first] == [b"0", b"1", b"2"]
    # acknowledging one frees one slot (QoS 2: the slot frees at PUBCOMP)
    if qos == 1:
        sub.send(M.ack_packet(M.PUBACK, first[0].pid))
    else:
        sub.send(M.ack_packet(M.PUBREC, first[0].pid))
        rel = sub.expect(M.PUBREL)
        sub.send(M.ack_packet(M.PUBCOMP, rel.pid))
    more = sub.drain(0.7, ack=False)
    assert [p.payload for p in more] == [b"3"]
    # acknowledge everything: the remaining messages follow, in order
    rest = []
    for p in first[1:] + more:
        sub.ack(p)
    deadline = time.monotonic() + T(5)
    while len(rest) < 6 and time.monotonic() < deadline:
        for pkt in sub.collect(0.3):
            if pkt.type == M.PUBLISH:
                rest.append(pkt)
                sub.ack(pkt)
            elif pkt.type == M.PUBREL:
                sub.send(M.ack_packet(M.PUBCOMP, pkt.pid))
    assert [p.payload for p in rest] == [b"%d" % i for i in range(4, 10)]


def test_receive_maximum_zero_is_protocol_error(broker):
    # 3.1.2.11.3: Receive Maximum 0 is a Protocol Error
    c = M.RawClient(broker.host, broker.port, timeout=T(5))
    try:
        c.send(M.connect_packet("rm0", props={M.RECEIVE_MAXIMUM: 0}))
        assert c.wait_closed(T(5))
        for p in c.before_close:
            assert p.type == M.CONNACK and p.rc in (0x81, 0x82)
    finally:
        c.close()


def test_client_exceeding_server_receive_maximum_0x93(make_broker):
    # [MQTT-3.3.4-7]/[MQTT-3.3.4-8]: more unacknowledged QoS 2 PUBLISHes than the
    # server's Receive Maximum -> DISCONNECT 0x93
    b = make_broker("max_inflight_messages 5")
    c = raw(b, "flood", version=V5)
    rmax = c.connack.props.get(M.RECEIVE_MAXIMUM, 65535)
    if rmax > 1000:
        pytest.skip("server Receive Maximum %d too large to exceed here" % rmax)
    for pid in range(1, rmax + 2):
        if not c.try_send(M.publish_packet("fl/t", b"x", qos=2, pid=pid)):
            break
    assert c.wait_closed(T(5))
    discs = [p for p in c.before_close if p.type == M.DISCONNECT]
    recs = [p for p in c.before_close if p.type == M.PUBREC]
    assert len(recs) <= rmax
    assert discs and discs[0].rc == 0x93, c.before_close[-3:]


def test_client_maximum_packet_size_respected(broker):
    # [MQTT-3.1.2-25]: the server must not send a packet larger than the client's
    # Maximum Packet Size; it discards it for that client only [MQTT-3.1.2-24]
    small = raw(broker, "small", version=V5, props={M.MAXIMUM_PACKET_SIZE: 100})
    small.subscribe([("mps/t", 1)])
    big = raw(broker, "big", version=V5)
    big.subscribe([("mps/t", 1)])
    pub = Paho(broker, "pub")
    pub.publish("mps/t", b"L" * 200, qos=1)
    pub.publish("mps/t", b"s", qos=1)
    assert [p.payload for p in big.recv_publishes(2)] == [b"L" * 200, b"s"]
    got = small.drain(0.7)
    assert [p.payload for p in got] == [b"s"]
    for p in got:
        assert len(p.body) + 2 <= 100


def test_client_maximum_packet_size_applies_to_retained(broker):
    # [MQTT-3.1.2-25] also for retained messages sent on subscribe
    Paho(broker, "pub").publish("mpsr/t", b"R" * 300, qos=1, retain=True)
    c = raw(broker, "small", version=V5, props={M.MAXIMUM_PACKET_SIZE: 64})
    c.subscribe([("mpsr/t", 1)])
    assert c.drain(0.6) == []
    assert c.is_open()


def test_maximum_packet_size_zero_is_protocol_error(broker):
    # 3.1.2.11.4: Maximum Packet Size 0 is a Protocol Error
    c = M.RawClient(broker.host, broker.port, timeout=T(5))
    try:
        c.send(M.connect_packet("mps0", props={M.MAXIMUM_PACKET_SIZE: 0}))
        assert c.wait_closed(T(5))
        for p in c.before_close:
            assert p.type == M.CONNACK and p.rc in (0x81, 0x82)
    finally:
        c.close()


def test_slow_consumer_does_not_block_others(broker):
    # 4.9: flow control is per client; a subscriber that never acks does not stall others
    stuck = raw(broker, "stuck", version=V5, props={M.RECEIVE_MAXIMUM: 1})
    stuck.subscribe([("sc/t", 1)])
    fast = raw(broker, "fast", version=V5)
    fast.subscribe([("sc/t", 1)])
    pub = Paho(broker, "pub")
    for i in range(30):
        pub.publish("sc/t", b"%d" % i, qos=1)
    assert len(fast.recv_publishes(30)) == 30
    assert len(stuck.drain(0.5, ack=False)) == 1
