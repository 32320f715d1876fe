"""Shared subscriptions (MQTT 5.0 section 4.8.2) and $queue/."""

import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, raw


def _members(broker, flt, n, version=V5, qos=1):
    ms = []
    for i in range(n):
        c = raw(broker, "member%d" % i, version=version)
        ack = c.subscribe([(flt, qos)])
        assert ack.reason_codes == [qos], ack
        ms.append(c)
    return ms


def _collect(members, total, timeout):
    """Read from all members until `total` messages arrived or the deadline."""
    per = [[] for _ in members]
    deadline = time.monotonic() + timeout
    while sum(map(len, per)) < total and time.monotonic() < deadline:
        for i, m in enumerate(members):
            per[i].extend(m.drain(0.05))
    # a short quiet period to catch duplicates
    for i, m in enumerate(members):
        per[i].extend(m.drain(0.2))
    return per


@pytest.mark.parametrize("version", [V5, V311])
def test_shared_each_message_to_exactly_one_member(broker, version):
    # [MQTT-4.8.2-? ] 4.8.2: each message goes to exactly one session of the group
    members = _members(broker, "$share/g/sh/t", 3, version=version)
    pub = Paho(broker, "pub")
    for i in range(30):
        pub.publish("sh/t", b"%02d" % i, qos=1)
    per = _collect(members, 30, T(5))
    all_payloads = sorted(p.payload for lst in per for p in lst)
    assert all_payloads == [b"%02d" % i for i in range(30)]
    counts = [len(lst) for lst in per]
    # round robin: roughly even; allow generous slack
    assert min(counts) >= 5, counts
    # the topic seen by members is the plain topic, not the $share filter
    assert all(p.topic == "sh/t" for lst in per for p in lst)


def test_shared_and_plain_subscriber_both_receive(broker):
    # 4.8.2: a non-shared subscription gets all messages independently of the group
    members = _members(broker, "$share/g/mix/t", 2)
    plain = raw(broker, "plain", version=V5)
    plain.subscribe([("mix/t", 1)])
    pub = Paho(broker, "pub")
    for i in range(10):
        pub.publish("mix/t", b"%d" % i, qos=1)
    assert len(plain.recv_publishes(10)) == 10
    per = _collect(members, 10, T(5))
    assert sum(map(len, per)) == 10


def test_two_groups_each_get_every_message(broker):
    # 4.8.2: each Share Name is a separate shared subscription
    g1 = _members(broker, "$share/one/grp/t", 2)
    g2 = [raw(broker, "g2m", version=V5)]
    g2[0].subscribe([("$share/two/grp/t", 1)])
    pub = Paho(broker, "pub")
    for i in range(6):
        pub.publish("grp/t", b"%d" % i, qos=1)
    assert sum(map(len, _collect(g1, 6, T(5)))) == 6
    assert len(g2[0].recv_publishes(6)) == 6


def test_shared_with_wildcard_filter(broker):
    members = _members(broker, "$share/w/sw/#", 2)
    pub = Paho(broker, "pub")
    for t in ("sw/a", "sw/b/c", "other"):
        pub.publish(t, t.encode(), qos=1)
    per = _collect(members, 2, T(5))
    assert sorted(p.topic for lst in per for p in lst) == ["sw/a", "sw/b/c"]


def test_queue_prefix_is_a_shared_subscription(broker):
    # Mosquitto-compatible $queue/TOPIC: one group, each message to one member
    members = _members(broker, "$queue/qu/t", 2)
    pub = Paho(broker, "pub")
    for i in range(10):
        pub.publish("qu/t", b"%d" % i, qos=1)
    per = _collect(members, 10, T(5))
    assert sorted(p.payload for lst in per for p in lst) == sorted(b"%d" % i for i in range(10))
    assert all(len(lst) >= 2 for lst in per), [len(x) for x in per]


def test_unsubscribe_shared(broker):
    members = _members(broker, "$share/u/us/t", 2)
    assert members[0].unsubscribe(["$share/u/us/t"]).reason_codes == [0]
    pub = Paho(broker, "pub")
    for i in range(4):
        pub.publish("us/t", b"%d" % i, qos=1)
    assert len(members[1].recv_publishes(4)) == 4
    assert members[0].drain(0.3) == []


def test_shared_unacked_redelivered_to_other_member(broker):
    # 4.8.2: if the connection breaks before the QoS 1 ack and the session ends,
    # the server should send the message to another member
    lazy = raw(broker, "lazy", version=V5)            # session expiry 0
    lazy.subscribe([("$share/r/rd/t", 1)])
    busy = raw(broker, "busy", version=V5)
    busy.subscribe([("$share/r/rd/t", 1)])
    pub = Paho(broker, "pub")
    for i in range(6):
        pub.publish("rd/t", b"%d" % i, qos=1)
    held = lazy.drain(0.5, ack=False)
    assert held, "round robin should have given the lazy member some messages"
    busy_first = busy.drain(0.2)
    lazy.close()
    busy_rest = busy.drain(1.5)
    got = sorted(p.payload for p in busy_first + busy_rest)
    assert got == sorted(b"%d" % i for i in range(6)), got


@pytest.mark.parametrize("flt", ["$share/g", "$share//t", "$share/g+/t", "$share/g#/t", "$share/g/"])
def test_invalid_shared_filter_rejected(broker, flt):
    # 4.8.2: ShareName non-empty, no wildcards, followed by '/' and a topic filter
    c = raw(broker, "bad", version=V5)
    c.send(M.subscribe_packet(1, [(flt, 1)]))
    try:
        ack = c.recv_packet()
    except M.Closed:
        return
    if ack.type == M.DISCONNECT:
        assert ack.rc in (0x81, 0x82, 0x8F)
        return
    assert ack.type == M.SUBACK and ack.reason_codes[0] in (0x8F, 0x9E, 0x80), ack


def test_shared_subscription_no_local_protocol_error(broker):
    # [MQTT-3.8.3-4]: No Local 1 on a shared subscription is a Protocol Error
    c = raw(broker, "nl", version=V5)
    c.send(M.subscribe_packet(1, [("$share/g/t", M.sub_options(qos=1, no_local=True))]))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.DISCONNECT and p.rc == 0x82


def test_shared_retained_not_sent_on_subscribe(broker):
    # 4.8.2: retained messages are not sent when a shared subscription is made
    Paho(broker, "pub").publish("sr/t", b"ret", qos=1, retain=True)
    c = raw(broker, "m", version=V5)
    c.subscribe([("$share/g/sr/t", 1)])
    assert c.drain(0.5) == []
