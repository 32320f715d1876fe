"""$SYS topics (Mosquitto-compatible broker status, sys_interval 1)."""

import re
import time

from helpers import T, V311, V5, raw


def _sys_values(c, period=2.5):
    vals = {}
    for p in c.drain(1.0, max_time=period):
        vals[p.topic] = p.payload.decode("utf-8", "replace")
    return vals


def test_sys_version(sys_broker):
    c = raw(sys_broker, "sys", version=V311)
    c.subscribe([("$SYS/broker/version", 0)])
    p = c.recv_publishes(1, timeout=T(3))[0]
    assert re.search(r"\d+\.\d+", p.payload.decode()), p.payload


def test_sys_uptime_increases(sys_broker):
    c = raw(sys_broker, "sys", version=V311)
    c.subscribe([("$SYS/broker/uptime", 0)])
    first = c.recv_publishes(1, timeout=T(3))[0].payload.decode()
    time.sleep(1.0)
    later = c.recv_publishes(2, timeout=T(4))[-1].payload.decode()
    n1 = int(re.match(r"\d+", first).group())
    n2 = int(re.match(r"\d+", later).group())
    assert n2 > n1, (first, later)


def test_sys_clients_connected_reflects_clients(sys_broker):
    others = [raw(sys_broker, "c%d" % i, version=V5) for i in range(3)]
    c = raw(sys_broker, "sys", version=V311)
    c.subscribe([("$SYS/broker/clients/connected", 0)])
    deadline = time.monotonic() + T(4)
    seen = []
    while time.monotonic() < deadline:
        for p in c.drain(0.3, max_time=0.5):
            seen.append(int(p.payload))
        if seen and seen[-1] >= 4:
            break
    assert seen and seen[-1] >= 4, seen      # 3 others + this client
    for o in others:
        o.disconnect()
    deadline = time.monotonic() + T(4)
    while time.monotonic() < deadline:
        for p in c.drain(0.3, max_time=0.5):
            seen.append(int(p.payload))
        if seen[-1] == 1:
            break
    assert seen[-1] == 1, seen


def test_sys_counters_published(sys_broker):
    c = raw(sys_broker, "sys", version=V311)
    c.subscribe([("$SYS/#", 0)])
    p = raw(sys_broker, "pub", version=V311)
    for i in range(5):
        p.publish("cnt/t", b"x", qos=1)
    p.publish("cnt/r", b"x", qos=1, retain=True)
    vals = _sys_values(c)
    for key in ("$SYS/broker/version", "$SYS/broker/uptime",
                "$SYS/broker/clients/connected", "$SYS/broker/clients/total",
                "$SYS/broker/messages/received", "$SYS/broker/messages/sent",
                "$SYS/broker/subscriptions/count", "$SYS/broker/retained messages/count"):
        assert key in vals, (key, sorted(vals))
    assert int(vals["$SYS/broker/messages/received"]) >= 6
    assert int(vals["$SYS/broker/retained messages/count"]) >= 1
    assert int(vals["$SYS/broker/subscriptions/count"]) >= 1
    assert any(k.startswith("$SYS/broker/load/messages/received/") for k in vals), sorted(vals)


def test_sys_static_values_retained(sys_broker):
    # $SYS values are retained so a late subscriber gets them at once
    time.sleep(1.2)
    c = raw(sys_broker, "late", version=V311)
    c.subscribe([("$SYS/broker/version", 0)])
    p = c.recv_publishes(1, timeout=0.8)[0]
    assert p.retain


def test_client_cannot_publish_into_sys(sys_broker):
    # clients must not be able to overwrite broker status
    c = raw(sys_broker, "sys", version=V311)
    c.subscribe([("$SYS/broker/version", 0)])
    c.recv_publishes(1, timeout=T(3))
    raw(sys_broker, "evil", version=V311).publish("$SYS/broker/version", b"fake", qos=1, wait=False,
                                                   retain=True)
    vals = [p.payload for p in c.drain(1.5, max_time=2.5)]
    assert b"fake" not in vals
