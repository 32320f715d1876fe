"""Publisher pacing (docs/architecture.md, "Publisher pacing"): publishers
whose every subscriber is backed up are read no faster than the
subscribers drain (QoS 0 as well as QoS 1/2); a stalled subscriber or one
slow subscriber among fast ones paces no one."""

import time

from helpers import SANITIZED, T, V5, Paho, raw, rss_kib
from test_bench import assert_exact, bench


def test_fanin_qos1_at_max_rate_loses_nothing_with_default_queue_limit(broker):
    # max_queued_messages is the default 1000: without pacing, 20 publishers
    # at full speed into one QoS 1 subscriber overflow it within milliseconds.
    res, _ = bench(broker, "fanin", "-P", 20, "-S", 1, "-q", 1, "-L", 5000, timeout=60)
    assert res["acked"] == 100000
    assert_exact(res, 100000)


def test_qos2_fanin_at_max_rate_loses_nothing(broker):
    res, _ = bench(broker, "fanin", "-P", 10, "-S", 1, "-q", 2, "-L", 2000, timeout=60)
    assert_exact(res, 20000)


def test_fanin_qos0_at_max_rate_loses_nothing_with_default_queue_limit(broker):
    # QoS 0 at full speed: the subscriber's output fills first, then its
    # queue; pacing keeps both below their limits, so nothing is dropped.
    res, _ = bench(broker, "fanin", "-P", 20, "-S", 1, "-q", 0, "-s", 512, "-L", 5000,
                   timeout=60)
    assert_exact(res, 100000)




def test_qos0_stalled_subscriber_does_not_block_publisher_or_grow_memory(broker):
    # 20 MiB of QoS 0 for a subscriber that never reads: the publisher is
    # paced for about a second, then the subscriber counts as stalled and
    # its messages meet the queue limit (1000) and the output limit. The
    # QoS 1 PUBLISH sent after the flood is acknowledged only once the
    # broker has read everything before it.
    stuck = raw(broker, "stuck0", version=V5)
    assert stuck.subscribe([("pace/q0", 0)]).reason_codes == [0]
    base = rss_kib(broker.pid)
    pub = Paho(broker, "pacer0", version=V5)
    payload = b"x" * 1024
    for _ in range(20000):
        pub.c.publish("pace/q0", payload, qos=0)
    last = pub.c.publish("pace/other", b"end", qos=1)
    deadline = time.monotonic() + T(30)
    while not last.is_published():
        assert time.monotonic() < deadline, "publisher blocked behind a stalled subscriber"
        time.sleep(0.05)
    # queue (1000 x 1 KiB) + output limit (1 MiB) + socket buffers, well
    # under the 20 MiB published. (A sanitizer build holds freed memory in
    # quarantine, so its RSS says nothing about the broker's.)
    if not SANITIZED:
        assert rss_kib(broker.pid) - base < 12 * 1024


def test_stalled_subscriber_does_not_block_publisher(broker):
    # A subscriber that never reads nor acknowledges: once its backlog stops
    # moving it no longer paces the publisher, whose messages then meet the
    # queue limit instead. Every PUBLISH is still acknowledged.
    stuck = raw(broker, "stuck", version=V5)
    assert stuck.subscribe([("pace/stuck", 1)]).reason_codes == [1]
    pub = Paho(broker, "pacer", version=V5)
    start = time.monotonic()
    infos = [pub.c.publish("pace/stuck", b"x" * 32, qos=1) for _ in range(3000)]
    deadline = start + T(20)
    while not all(i.is_published() for i in infos):
        assert time.monotonic() < deadline, "publisher blocked behind a stalled subscriber"
        time.sleep(0.05)


def test_slow_subscriber_does_not_slow_others(broker):
    # One subscriber never reads; another reads normally: the publisher is
    # not paced (one destination keeps up) and the reader gets everything.
    stuck = raw(broker, "stuck2", version=V5)
    assert stuck.subscribe([("pace/fan", 1)]).reason_codes == [1]
    reader = Paho(broker, "reader", version=V5)
    reader.subscribe("pace/fan", qos=1)
    pub = Paho(broker, "pacer2", version=V5)
    n = 3000
    start = time.monotonic()
    for i in range(n):
        pub.c.publish("pace/fan", b"%05d" % i, qos=1)
    got = reader.expect(n, timeout=T(20))
    assert [m.payload for m in got] == [b"%05d" % i for i in range(n)]
    # well under the 1 s a stalled subscriber takes to be written off
    assert time.monotonic() - start < T(15)
