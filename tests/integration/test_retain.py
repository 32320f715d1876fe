"""Retained messages (MQTT 3.1.1 section 3.3.1.3; MQTT 5.0 section 3.3.1.3, 3.3.2.3.3)."""

import time

import pytest

import mqttraw as M
from helpers import V311, V5, Paho, raw


@pytest.fixture(params=["memory", "store"])
def broker(request, make_broker):
    # Every test here with retained messages in memory, and on disk (with
    # a store, clients' retained messages live in the store only).
    if request.param == "memory":
        return make_broker("")
    return make_broker("persistence true\npersistence_location store/\n")


@pytest.mark.parametrize("version", [V311, V5])
def test_retained_delivered_on_subscribe_with_retain_flag(broker, version):
    # [MQTT-3.3.1-5] stored; [MQTT-3.3.1-6]/[MQTT-3.3.1-8] sent to new subscribers with RETAIN 1
    Paho(broker, "pub", version=version).publish("ret/t", b"stored", qos=1, retain=True)
    c = raw(broker, "sub", version=version)
    c.subscribe([("ret/t", 1)])
    got = c.recv_publishes(1)
    assert got[0].payload == b"stored" and got[0].retain and got[0].qos == 1


def test_retained_qos_is_min_of_stored_and_granted(broker):
    # [MQTT-3.3.1-? ] / 3.8.4: delivery QoS = min(message QoS, granted QoS)
    Paho(broker, "pub").publish("retq/t", b"x", qos=2, retain=True)
    c = raw(broker, "sub", version=V5)
    c.subscribe([("retq/t", 1)])
    assert c.recv_publishes(1)[0].qos == 1
    d = raw(broker, "sub0", version=V5)
    d.subscribe([("retq/t", 0)])
    assert d.recv_publishes(1)[0].qos == 0


def test_retained_replaced(broker):
    # [MQTT-3.3.1-5]: a new retained message replaces the stored one
    p = Paho(broker, "pub")
    p.publish("rep/t", b"old", qos=1, retain=True)
    p.publish("rep/t", b"new", qos=1, retain=True)
    c = raw(broker, "sub", version=V5)
    c.subscribe([("rep/t", 1)])
    assert [m.payload for m in c.drain(0.5)] == [b"new"]


def test_retained_cleared_by_empty_payload(broker):
    # [MQTT-3.3.1-10] (3.1.1) / [MQTT-3.3.1-6] (5.0): zero-length retained payload removes it
    p = Paho(broker, "pub")
    p.publish("clr/t", b"gone soon", qos=1, retain=True)
    p.publish("clr/t", b"", qos=1, retain=True)
    c = raw(broker, "sub", version=V5)
    c.subscribe([("clr/t", 1)])
    assert c.drain(0.5) == []


def test_empty_retained_forwarded_to_live_subscribers(broker):
    # [MQTT-3.3.1-11] (3.1.1) the zero-byte message is delivered normally to current subscribers
    c = raw(broker, "live", version=V311)
    c.subscribe([("clrl/t", 1)])
    Paho(broker, "pub").publish("clrl/t", b"", qos=1, retain=True)
    got = c.recv_publishes(1)
    assert got[0].payload == b""


@pytest.mark.parametrize("version", [V311, V5])
def test_live_message_forwarded_with_retain_0(broker, version):
    # 3.1.1 [MQTT-3.3.1-9]; 5.0 [MQTT-3.3.1-12] (retain_as_published not set)
    c = raw(broker, "live", version=version)
    c.subscribe([("lv/t", 1)])
    Paho(broker, "pub").publish("lv/t", b"x", qos=1, retain=True)
    got = c.recv_publishes(1)
    assert not got[0].retain


def test_non_retained_publish_does_not_touch_store(broker):
    # [MQTT-3.3.1-12] (3.1.1): RETAIN 0 -> stored message unchanged
    p = Paho(broker, "pub")
    p.publish("nr/t", b"kept", qos=1, retain=True)
    p.publish("nr/t", b"transient", qos=1, retain=False)
    c = raw(broker, "sub", version=V5)
    c.subscribe([("nr/t", 1)])
    assert [m.payload for m in c.drain(0.5)] == [b"kept"]


def test_wildcard_subscribe_gets_all_matching_retained(broker):
    # [MQTT-3.3.1-6]: all retained messages matching the filter
    p = Paho(broker, "pub")
    topics = ["w/a", "w/b", "w/c/d", "x/a"]
    for t in topics:
        p.publish(t, t.encode(), qos=1, retain=True)
    c = raw(broker, "sub", version=V5)
    c.subscribe([("w/#", 1)])
    got = c.drain(0.6)
    assert sorted(m.topic for m in got) == ["w/a", "w/b", "w/c/d"]
    assert all(m.retain for m in got)
    d = raw(broker, "sub2", version=V5)
    d.subscribe([("+/a", 1)])
    assert sorted(m.topic for m in d.drain(0.6)) == ["w/a", "x/a"]


@pytest.mark.parametrize("filt,want", [
    ("f/a/#", ["f/a", "f/a/b", "f/a/b/c"]),          # '#' matches its parent level
    ("f/+/b", ["f/a/b", "f/ab/b"]),
    ("f/a", ["f/a"]),                                # exact: not "f/ab"
    ("f/+", ["f/a", "f/ab"]),
    ("+/+/b/c", ["f/a/b/c"]),
    ("#", ["f/a", "f/a/b", "f/a/b/c", "f/ab", "f/ab/b", "fa"]),
    ("$x/#", ["$x/y"]),
    ("+/y", []),                                     # a leading wildcard skips "$x/y"
])
def test_retained_filter_shapes(broker, filt, want):
    # MQTT 4.7: which retained topics each kind of filter matches (with a
    # store, a wildcard filter reads from its literal prefix on).
    p = Paho(broker, "pub")
    for t in ["f/a", "f/a/b", "f/a/b/c", "f/ab", "f/ab/b", "fa", "$x/y"]:
        p.publish(t, t.encode(), qos=1, retain=True)
    c = raw(broker, "sub", version=V5)
    c.subscribe([(filt, 1)])
    assert sorted(m.topic for m in c.drain(0.6)) == sorted(want)


def test_retained_qos0_stored(broker):
    # 3.1.1 [MQTT-3.3.1-7]: a QoS 0 retained message replaces the stored one
    p = Paho(broker, "pub")
    p.publish("r0/t", b"q1", qos=1, retain=True)
    p.publish("r0/t", b"q0", qos=0, retain=True)
    time.sleep(0.2)
    c = raw(broker, "sub", version=V311)
    c.subscribe([("r0/t", 1)])
    got = c.drain(0.5)
    assert [m.payload for m in got] == [b"q0"]
    assert got[0].qos == 0


def test_retained_message_expiry(broker):
    # 5.0 [MQTT-3.3.2-5]: once the Message Expiry Interval has passed it is not delivered
    p = raw(broker, "pub", version=V5)
    p.publish("rx/t", b"short", qos=1, retain=True, props={M.MESSAGE_EXPIRY_INTERVAL: 1})
    p.publish("rx/keep", b"long", qos=1, retain=True, props={M.MESSAGE_EXPIRY_INTERVAL: 100})
    time.sleep(2.2)
    c = raw(broker, "sub", version=V5)
    c.subscribe([("rx/#", 1)])
    got = c.drain(0.6)
    assert [m.payload for m in got] == [b"long"]
    # [MQTT-3.3.2-6]: the interval sent is the remaining lifetime
    assert got[0].props.get(M.MESSAGE_EXPIRY_INTERVAL) <= 98


def test_retained_survives_publisher_disconnect(broker):
    # 3.3.1.3: stored independently of the publishing session
    p = Paho(broker, "pub")
    p.publish("rs/t", b"persist", qos=1, retain=True)
    p.disconnect()
    c = raw(broker, "sub", version=V311)
    c.subscribe([("rs/t", 0)])
    assert c.recv_publishes(1)[0].payload == b"persist"


def test_retained_properties_kept(broker):
    # 5.0 3.3.2.3: properties of the retained message are forwarded with it
    p = raw(broker, "pub", version=V5)
    p.publish("rp/t", b"x", qos=1, retain=True,
              props=[(M.CONTENT_TYPE, "text/plain"), (M.USER_PROPERTY, ("k", "v"))])
    c = raw(broker, "sub", version=V5)
    c.subscribe([("rp/t", 1)])
    got = c.recv_publishes(1)[0]
    assert got.props.get(M.CONTENT_TYPE) == "text/plain"
    assert got.props.getall(M.USER_PROPERTY) == [("k", "v")]


def fill_retained(broker, n, prefix="big"):
    """n retained QoS 1 messages on distinct topics, over one connection."""
    pub = raw(broker, "filler-%s" % prefix)
    data = b"".join(M.publish_packet("%s/%d/%d" % (prefix, i // 100, i % 100), b"v%d" % i, 1,
                                     retain=True, pid=i % 65535 + 1) for i in range(n))
    pub.send(data)
    for _ in range(n):
        pub.expect(M.PUBACK, timeout=30)
    return pub


def test_many_retained_stream_under_flow_control(broker):
    # 20,000 retained messages matching one subscription go out as the
    # client takes them (Receive Maximum 20 here), each once, while other
    # clients keep being served.
    n = 20000
    fill_retained(broker, n)
    sub = raw(broker, "big-sub", version=V5, props={M.RECEIVE_MAXIMUM: 20})
    sub.send(M.subscribe_packet(1, [("big/#", 1)]))
    sub.expect_skip(M.SUBACK)
    first = sub.recv_publishes(100)
    # Another client is served while most of the retained are still to go.
    other = raw(broker, "big-other")
    other.send(M.pingreq_packet())
    other.expect(M.PINGRESP, timeout=2)
    rest = sub.recv_publishes(n - 100, timeout=60)
    payloads = {p.payload for p in first + rest}
    assert len(payloads) == n and all(p.retain for p in first + rest)
    assert sub.drain(0.5) == []


def test_live_message_after_subscribe_does_not_overtake_retained(broker):
    # A retained message is sent before a newer message on its topic that
    # arrives while the subscription's retained messages are still going
    # out: the subscriber ends with the newest value, never the stale one.
    # (Read from the store as they go out, the retained messages are those
    # of that moment: then the newer one comes as retained as well.)
    fill_retained(broker, 2000, "ord")
    pub = raw(broker, "ord-pub")
    pub.publish("ord/last", b"old", qos=1, retain=True)
    sub = raw(broker, "ord-sub", version=V5, props={M.RECEIVE_MAXIMUM: 1})
    sub.send(M.subscribe_packet(1, [("ord/#", 1)]))
    sub.expect_skip(M.SUBACK)
    pub.publish("ord/last", b"new", qos=1, retain=True)
    got = sub.recv_publishes(2002, timeout=60)
    values = [p.payload for p in got if p.topic == "ord/last"]
    assert values in ([b"old", b"new"], [b"new", b"new"])
    assert sub.drain(0.5) == []
