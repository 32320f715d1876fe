"""Delayed publish: "$delayed/SECONDS/topic" (broker extension, Mosquitto-style naming)."""

import time

from helpers import T, V311, V5, Paho, raw, still_serves


def test_delayed_publish_arrives_after_delay(broker):
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("a/b", 1)])
    pub = Paho(broker, "pub")
    t0 = time.monotonic()
    pub.publish("$delayed/2/a/b", b"later", qos=1)
    early = sub.drain(1.4)
    assert early == [], "delivered before the delay"
    got = sub.recv_publishes(1, timeout=T(4))
    elapsed = time.monotonic() - t0
    assert got[0].topic == "a/b" and got[0].payload == b"later"
    assert elapsed >= 1.5, elapsed
    assert sub.drain(0.5) == []


def test_delayed_publish_not_visible_under_delayed_topic(broker):
    # subscribers never see the $delayed/... topic itself (and '#' does not match $ topics)
    hash_sub = raw(broker, "all", version=V311)
    hash_sub.subscribe([("#", 1)])
    pub = Paho(broker, "pub")
    pub.publish("$delayed/1/x/y", b"d", qos=1)
    got = hash_sub.recv_publishes(1, timeout=T(4))
    assert got[0].topic == "x/y"


def test_delayed_keeps_order_for_same_delay(broker):
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("ord/d", 1)])
    pub = Paho(broker, "pub")
    for i in range(3):
        pub.publish("$delayed/1/ord/d", b"%d" % i, qos=1)
    got = sub.recv_publishes(3, timeout=T(5))
    assert [p.payload for p in got] == [b"0", b"1", b"2"]


def test_delayed_bad_number_not_delivered(broker):
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("bad/t", 1), ("#", 1)])
    pub = Paho(broker, "pub")
    for bad in ("$delayed/x/bad/t", "$delayed/-1/bad/t", "$delayed//bad/t",
                "$delayed/99999999999999999999/bad/t", "$delayed/2", "$delayed/1.5/bad/t"):
        pub.publish(bad, b"no", qos=1)
    assert sub.drain(2.5) == []
    still_serves(broker)
