"""PUBLISH and the QoS 0/1/2 flows (MQTT 3.1.1 sections 3.3-3.7, 4.3; MQTT 5.0 sections 3.3-3.7, 4.3)."""

import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, raw


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_publish_and_receive(broker, version, qos):
    # 4.3: message delivered with QoS = min(published QoS, granted QoS) [MQTT-3.8.4-6 / 3.3.5]
    sub = Paho(broker, "sub", version=version)
    assert sub.subscribe("q/t", 2) == [2]
    pub = Paho(broker, "pub", version=version)
    pub.publish("q/t", b"payload-%d" % qos, qos=qos)
    m = sub.expect_one()
    assert (m.topic, m.payload, m.qos) == ("q/t", b"payload-%d" % qos, qos)
    sub.nothing(0.3)


@pytest.mark.parametrize("sub_qos,pub_qos", [(0, 2), (1, 2), (0, 1), (2, 1)])
def test_delivered_qos_is_min_of_pub_and_sub(broker, sub_qos, pub_qos):
    # [MQTT-3.8.4-6] / 5.0 3.8.4: the server downgrades to the granted QoS
    sub = raw(broker, "down", version=V5)
    assert sub.subscribe([("dn/t", sub_qos)]).reason_codes == [sub_qos]
    Paho(broker, "pub").publish("dn/t", b"x", qos=pub_qos)
    p = sub.recv_publishes(1)[0]
    assert p.qos == min(sub_qos, pub_qos)


@pytest.mark.parametrize("version", [V311, V5])
def test_qos1_puback_carries_packet_id(broker, version):
    # [MQTT-4.3.2-2]: PUBACK with the same packet identifier
    c = raw(broker, "ack1", version=version)
    c.send(M.publish_packet("a/b", b"x", qos=1, pid=4711, version=version))
    ack = c.expect(M.PUBACK)
    assert ack.pid == 4711
    if version == V5:
        assert ack.rc in (0x00, 0x10)   # success / no matching subscribers


@pytest.mark.parametrize("version", [V311, V5])
def test_qos2_handshake(broker, version):
    # [MQTT-4.3.3-2]: PUBREC, then PUBCOMP for the PUBREL, same packet identifier
    c = raw(broker, "ack2", version=version)
    c.send(M.publish_packet("a/b", b"x", qos=2, pid=77, version=version))
    rec = c.expect(M.PUBREC)
    assert rec.pid == 77 and rec.flags == 0
    c.send(M.ack_packet(M.PUBREL, 77, version=version))
    comp = c.expect(M.PUBCOMP)
    assert comp.pid == 77 and comp.flags == 0


def test_qos2_duplicate_before_pubrel_delivered_once(broker):
    # [MQTT-4.3.3-2] method B / 4.3.3: until PUBREL the receiver must not deliver
    # the same packet identifier again (exactly once)
    sub = Paho(broker, "sub")
    sub.subscribe("eo/t", 2)
    c = raw(broker, "eo", version=V311)
    c.send(M.publish_packet("eo/t", b"once", qos=2, pid=1, version=4))
    assert c.expect(M.PUBREC).pid == 1
    c.send(M.publish_packet("eo/t", b"once", qos=2, pid=1, dup=True, version=4))
    assert c.expect(M.PUBREC).pid == 1     # [MQTT-4.3.3-? ] PUBREC again for the duplicate
    c.send(M.ack_packet(M.PUBREL, 1, version=4))
    assert c.expect(M.PUBCOMP).pid == 1
    msgs = sub.drain(0.7)
    assert [m.payload for m in msgs] == [b"once"]
    # after PUBCOMP the identifier is free: pid 1 is a new message
    c.send(M.publish_packet("eo/t", b"second", qos=2, pid=1, version=4))
    assert c.expect(M.PUBREC).pid == 1
    c.send(M.ack_packet(M.PUBREL, 1, version=4))
    assert c.expect(M.PUBCOMP).pid == 1
    m = sub.expect_one()
    assert m.payload == b"second"
    sub.nothing(0.3)


def test_v5_qos2_duplicate_before_pubrel_delivered_once(broker):
    # 5.0 [MQTT-4.3.3-10]; in 5.0 a resend only happens on reconnect [MQTT-4.4.0-1]:
    # the PUBREC is "lost", the client reconnects and resends with DUP=1
    sub = raw(broker, "sub5", version=V5)
    sub.subscribe([("eo5/t", 2)])
    sess = {M.SESSION_EXPIRY_INTERVAL: 60}
    c = raw(broker, "eo5", version=V5, clean=False, props=sess)
    c.send(M.publish_packet("eo5/t", b"once", qos=2, pid=9))
    assert c.expect(M.PUBREC).pid == 9
    c.close()
    d = raw(broker, "eo5", version=V5, clean=False, props=sess)
    assert d.connack.session_present
    d.send(M.publish_packet("eo5/t", b"once", qos=2, pid=9, dup=True))
    assert d.expect(M.PUBREC).pid == 9
    d.send(M.ack_packet(M.PUBREL, 9))
    assert d.expect(M.PUBCOMP).pid == 9
    got = sub.drain(0.7)
    assert [p.payload for p in got] == [b"once"]


def test_pubrel_for_unknown_id_gets_pubcomp(broker):
    # [MQTT-4.3.3-? ] 5.0 3.7.2.1: PUBCOMP for an unknown id, reason 0x92 (5.0) allowed
    c = raw(broker, "unk", version=V5)
    c.send(M.ack_packet(M.PUBREL, 321))
    comp = c.expect(M.PUBCOMP)
    assert comp.pid == 321 and comp.rc in (0x00, 0x92)


def test_qos1_duplicate_is_delivered_again(broker):
    # 4.3.2: QoS 1 is at least once; a resend with DUP is a new delivery (may be duplicated)
    sub = Paho(broker, "sub")
    sub.subscribe("al/t", 1)
    c = raw(broker, "al", version=V311)
    c.send(M.publish_packet("al/t", b"x", qos=1, pid=5, version=4))
    c.expect(M.PUBACK)
    c.send(M.publish_packet("al/t", b"x", qos=1, pid=5, dup=True, version=4))
    c.expect(M.PUBACK)
    assert len(sub.expect(2)) == 2


def test_subscriber_acks_for_qos2_delivery(broker):
    # [MQTT-4.3.3-1]: the server sends PUBLISH QoS2 then PUBREL after PUBREC
    sub = raw(broker, "s2", version=V311)
    sub.subscribe([("s2/t", 2)])
    Paho(broker, "pub").publish("s2/t", b"x", qos=2)
    p = sub.next_publish()
    assert p.qos == 2 and p.pid
    sub.send(M.ack_packet(M.PUBREC, p.pid, version=4))
    rel = sub.expect(M.PUBREL)
    assert rel.pid == p.pid and rel.flags == 0x02
    sub.send(M.ack_packet(M.PUBCOMP, p.pid, version=4))
    assert sub.is_open()


def test_large_payload_roundtrip(broker):
    # 3.3.3: payload up to the remaining-length limit; 1 MiB crosses many reads
    sub = raw(broker, "big", version=V311)
    sub.subscribe([("big/t", 1)])
    data = bytes(range(256)) * 4096
    pub = raw(broker, "bigpub", version=V311)
    pub.publish("big/t", data, qos=1)
    p = sub.recv_publishes(1, timeout=T(10))[0]
    assert p.payload == data


def test_zero_length_payload(broker):
    # 3.3.3: zero length payload is valid
    sub = raw(broker, "z", version=V5)
    sub.subscribe([("z/t", 1)])
    Paho(broker, "pub").publish("z/t", b"", qos=1)
    assert sub.recv_publishes(1)[0].payload == b""


def test_publisher_does_not_get_own_message_only_if_subscribed(broker):
    # 3.1.1 has no no_local: a client subscribed to its own topic receives its message
    c = raw(broker, "self", version=V311)
    c.subscribe([("self/t", 0)])
    c.publish("self/t", b"echo")
    assert c.next_publish().payload == b"echo"


def test_no_subscribers_v5_puback_0x10(broker):
    # 5.0 3.4.2.1: 0x10 No matching subscribers may be returned (0x00 also valid)
    c = raw(broker, "nosub", version=V5)
    ack = c.publish("nobody/here", b"x", qos=1)
    assert ack.rc in (0x00, 0x10)
