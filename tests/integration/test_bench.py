"""petrel-bench against a real broker: exact delivery counts, loss detection,
the conn scenario and the RESULT line.

BENCH_BIN  path of the tool (default <repo>/build/petrel-bench)
"""

import json
import os
import subprocess

import pytest

from helpers import T

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BENCH_BIN = os.environ.get("BENCH_BIN", os.path.join(REPO, "build", "petrel-bench"))


def bench(broker, *args, timeout=20, expect_rc=0):
    """Run petrel-bench against broker; returns (RESULT dict, stdout)."""
    if not os.path.exists(BENCH_BIN):
        pytest.fail("petrel-bench not found: %s (set BENCH_BIN)" % BENCH_BIN)
    cmd = [BENCH_BIN] + [str(a) for a in args] + ["-p", str(broker.port), "--topic",
                                                    "bt/%d" % os.getpid()]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=T(timeout), text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    res = json.loads(lines[0][len("RESULT "):])
    if expect_rc is not None:
        assert p.returncode == expect_rc, (p.returncode, p.stdout, p.stderr)
    return res, p.stdout


# Queues deep enough that no message is dropped by a queue limit.
DEEP = "max_queued_messages 1000000\nmax_inflight_messages 100\n"


@pytest.fixture
def deep(make_broker):
    return make_broker(DEEP)


def assert_exact(res, expected):
    assert res["conn_fail"] == 0 and res["closed"] == 0, res
    assert res["expected"] == expected, res
    assert res["received"] == expected, res
    assert res["unique"] == expected, res
    assert res["lost"] == 0, res
    assert res["dup"] == 0, res
    assert res["stray"] == 0, res
    assert res["proto_errors"] == 0 and res["pub_errors"] == 0, res


def test_fanin_qos1_exact(deep):
    res, out = bench(deep, "fanin", "-P", 3, "-S", 2, "-q", 1, "-L", 500)
    assert res["sent"] == 1500 and res["acked"] == 1500
    assert_exact(res, 3000)
    assert res["lat_samples"] == 3000
    assert 0 < res["lat_p50_us"] <= res["lat_p99_us"] <= res["lat_max_us"]
    assert "lost 0, dup 0" in out


def test_p2p_qos2_exact(deep):
    res, _ = bench(deep, "p2p", "-n", 4, "-q", 2, "-L", 300)
    assert res["sent"] == 1200 and res["acked"] == 1200
    assert_exact(res, 1200)


def test_fanout_qos0_rate_limited_exact(deep):
    res, _ = bench(deep, "fanout", "-S", 5, "-q", 0, "-L", 200, "--rate", 2000)
    assert res["sent"] == 200
    assert_exact(res, 1000)


def test_shared_group_each_message_once(deep):
    res, _ = bench(deep, "shared", "-P", 2, "-S", 3, "-q", 1, "-L", 400)
    assert res["sent"] == 800
    assert_exact(res, 800)


def test_mqtt5_qos1_threads(deep):
    res, _ = bench(deep, "fanin", "-V", 5, "-P", 4, "-S", 2, "-q", 1, "-L", 250, "-t", 2)
    assert res["version"] == 5 and res["threads"] == 2
    assert_exact(res, 2000)


def test_duration_run_with_broker_sampling(deep):
    res, out = bench(deep, "p2p", "-n", 2, "-q", 1, "--rate", 500, "-d", 1, "-w", 0.5,
                     "--pid", deep.pid, "--json")
    # --json: the RESULT line only
    assert out.strip().startswith("RESULT ") and len(out.strip().splitlines()) == 1
    assert_exact(res, res["sent"])
    assert 800 <= res["sent"] <= 1600  # 2 x 500/s for 1.5 s, loosely
    assert res["sent_win"] > 0 and res["recv_win"] > 0
    assert abs(res["window_s"] - 1.0) < 0.1
    assert res["broker_cpu_s"] >= 0 and res["rss_start_kb"] > 0 and res["rss_end_kb"] > 0


def test_stalled_subscriber_loss_is_detected(make_broker):
    # The subscriber does not read for 3 s. The broker paces the publishers
    # at first, then (after about a second without progress) writes the
    # subscriber off as stalled: it may hold 1 in flight + 5 queued
    # messages for it and must drop the rest.
    b = make_broker("max_inflight_messages 1\nmax_queued_messages 5\n")
    res, _ = bench(b, "fanin", "-P", 2, "-S", 1, "-q", 1, "--rate", 400, "-L", 400,
                   "--sub-stall", 3, "--drain", 2)
    assert res["sent"] == 800 and res["acked"] == 800
    assert res["expected"] == 800
    assert res["lost"] > 0, res
    assert res["lost"] == res["expected"] - res["unique"]
    assert res["received"] == res["unique"] and res["dup"] == 0


def test_conn_scenario(broker):
    res, out = bench(broker, "conn", "-c", 200, "-d", 0.5, "--pid", broker.pid,
                     "--ifaddr-range", 4)
    assert res["conn_ok"] == 200 and res["conn_fail"] == 0 and res["closed"] == 0
    assert res["conn_rate"] > 0
    assert res["rss_end_kb"] >= res["rss_start_kb"] > 0
    assert "200 ok, 0 failed" in out


def test_unreachable_broker_fails(broker):
    class Closed:
        port = broker.port
    broker.stop()
    res, _ = bench(Closed, "fanin", "-P", 1, "-S", 1, "-L", 10, expect_rc=1)
    assert res["conn_fail"] >= 1 and res["sent"] == 0
    assert "connect" in res["error"]
    broker.start()


def test_qos1_stream_order_preserved(deep):
    # MQTT 4.6: messages of one publisher on one topic keep their order.
    res, _ = bench(deep, "p2p", "-n", 4, "-q", 1, "-L", 20000)
    assert_exact(res, 80000)
    assert res["reordered"] == 0, res
