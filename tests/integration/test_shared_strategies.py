"""Shared subscription member choice: shared_subscription_strategy
(round_robin is covered in test_shared.py)."""

import time

import pytest

from helpers import T, V5, Paho, raw


def _members(broker, n, flt="$share/g/st/t", qos=1):
    ms = []
    for i in range(n):
        c = raw(broker, "m%d" % i, version=V5)
        assert c.subscribe([(flt, qos)]).reason_codes == [qos]
        ms.append(c)
    return ms


def _collect(members, total, timeout, ack=True):
    per = [[] for _ in members]
    deadline = time.monotonic() + timeout
    while sum(map(len, per)) < total and time.monotonic() < deadline:
        for i, m in enumerate(members):
            per[i].extend(m.drain(0.05, ack=ack))
    for i, m in enumerate(members):
        per[i].extend(m.drain(0.2, ack=ack))
    return per


def test_sticky_sends_each_publisher_to_one_member(make_broker):
    broker = make_broker("shared_subscription_strategy sticky")
    members = _members(broker, 3)
    pubs = [Paho(broker, "publisher-%d" % i) for i in range(4)]
    for n in range(10):
        for i, p in enumerate(pubs):
            p.publish("st/t", b"%d:%d" % (i, n), qos=1)
    per = _collect(members, 40, T(5))
    assert sum(map(len, per)) == 40
    for i in range(4):
        owners = {k for k, lst in enumerate(per) for m in lst if m.payload.startswith(b"%d:" % i)}
        assert len(owners) == 1, "publisher %d spread over members %s" % (i, owners)


def test_random_delivers_each_message_once(make_broker):
    broker = make_broker("shared_subscription_strategy random")
    members = _members(broker, 3)
    pub = Paho(broker, "pub")
    for n in range(60):
        pub.publish("st/t", b"%02d" % n, qos=1)
    per = _collect(members, 60, T(5))
    got = sorted(m.payload for lst in per for m in lst)
    assert got == [b"%02d" % n for n in range(60)]
    # 60 random picks among 3 members all landing on one has odds 3 * 3^-60
    assert sum(1 for lst in per if lst) >= 2


def test_least_inflight_avoids_member_that_does_not_ack(make_broker):
    broker = make_broker("shared_subscription_strategy least_inflight")
    slow, fast = _members(broker, 2)
    pub = Paho(broker, "pub")
    got_slow, got_fast = [], []
    for n in range(20):
        pub.publish("st/t", b"%02d" % n, qos=1)
        # the fast member acknowledges at once, the slow one never does
        got_fast.extend(fast.drain(0.05, ack=True))
        got_slow.extend(slow.drain(0.01, ack=False))
    got_fast.extend(fast.drain(0.3, ack=True))
    got_slow.extend(slow.drain(0.3, ack=False))
    assert len(got_fast) + len(got_slow) == 20
    # once the slow member holds an unacknowledged message it is not chosen
    # while the other has fewer in flight
    assert len(got_slow) <= 2, len(got_slow)


@pytest.mark.parametrize("strategy", ["round_robin", "random", "least_inflight", "sticky"])
def test_strategy_accepted_in_config(make_broker, strategy):
    broker = make_broker("shared_subscription_strategy %s" % strategy)
    members = _members(broker, 2, qos=0)
    Paho(broker, "pub").publish("st/t", b"x", qos=0)
    per = _collect(members, 1, T(3))
    assert sum(map(len, per)) == 1
