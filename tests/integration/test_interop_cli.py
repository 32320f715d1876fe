"""Interoperability with the Mosquitto command line clients (MQTT 3.1.1 and 5.0)."""

import os
import select
import shutil
import subprocess
import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, raw

pytestmark = pytest.mark.skipif(not shutil.which("mosquitto_sub") or not shutil.which("mosquitto_pub"),
                                reason="mosquitto-clients not installed")

VERSIONS = {V311: "mqttv311", V5: "mqttv5"}


def start_sub(broker, topic, count, version, qos=1, timeout=10, extra=(), sync=True):
    """Run mosquitto_sub in the background. With sync, it also subscribes to a
    topic holding a retained marker and this returns only once the marker was
    printed, i.e. once its subscriptions are active."""
    sync_topic = "sync/%d" % time.monotonic_ns()
    topics = ["-t", topic]
    if sync:
        raw(broker, "syncer%d" % time.monotonic_ns(), version=V5).publish(
            sync_topic, b"sync", qos=1, retain=True)
        topics += ["-t", sync_topic]
        count += 1
    cmd = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", VERSIONS[version],
           "-q", str(qos), "-C", str(count), "-W", str(int(T(timeout))),
           "-F", "%t|%r|%q|%p", "-i", "msub%d" % time.monotonic_ns()] + topics + list(extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.sync_topic = sync_topic if sync else None
    proc.early = ""
    if sync:
        line = b""
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + T(5)
        while not line.startswith(sync_topic.encode()) or not line.endswith(b"\n"):
            if line.endswith(b"\n"):
                proc.early += line.decode()
                line = b""
            left = deadline - time.monotonic()
            r, _, _ = select.select([fd], [], [], max(0.0, left))
            if not r:
                proc.kill()
                proc.communicate()
                raise AssertionError("mosquitto_sub never got the retained sync marker")
            b = os.read(fd, 1)
            if not b:
                raise AssertionError("mosquitto_sub exited: %r" % proc.communicate())
            line += b
        assert line.startswith(sync_topic.encode()), line
    return proc


def finish(proc, timeout=15):
    try:
        out, err = proc.communicate(timeout=T(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("mosquitto_sub did not finish: %r" % err)
    out = proc.early + out.decode()
    if proc.sync_topic:
        out = "".join(l for l in out.splitlines(True) if not l.startswith(proc.sync_topic))
    return proc.returncode, out, err.decode()


def pub(broker, topic, message, version, qos=0, retain=False, extra=()):
    body = ["-n"] if message is None else ["-m", message]
    cmd = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", VERSIONS[version],
           "-t", topic, "-q", str(qos)] + body + (["-r"] if retain else []) + list(extra)
    r = subprocess.run(cmd, capture_output=True, timeout=T(10))
    assert r.returncode == 0, r.stderr
    return r


def lines(out):
    rows = []
    for line in out.strip().splitlines():
        t, r, q, p = line.split("|", 3)
        rows.append((t, r, int(q), p))
    return rows


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_mosquitto_sub(broker, version, qos):
    s = start_sub(broker, "io/t", 3, version, qos=2)
    for i in range(3):
        pub(broker, "io/t", "m%d" % i, version, qos=qos)
    rc, out, err = finish(s)
    assert rc == 0, err
    assert lines(out) == [("io/t", "0", qos, "m%d" % i) for i in range(3)]


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_to_mosquitto_sub(broker, version, qos):
    s = start_sub(broker, "pio/#", 2, version, qos=qos)
    p = Paho(broker, "paho-pub", version=version)
    p.publish("pio/a", b"first", qos=qos)
    p.publish("pio/b/c", b"second", qos=2)
    rc, out, err = finish(s)
    assert rc == 0, err
    assert lines(out) == [("pio/a", "0", qos, "first"), ("pio/b/c", "0", qos, "second")]


@pytest.mark.parametrize("version", [V311, V5])
def test_mosquitto_pub_to_paho(broker, version):
    c = Paho(broker, "paho-sub", version=version)
    c.subscribe("mp/t", 2)
    pub(broker, "mp/t", "hello", version, qos=2)
    m = c.expect_one()
    assert (m.topic, m.payload, m.qos) == ("mp/t", b"hello", 2)


@pytest.mark.parametrize("version", [V311, V5])
def test_retained_with_cli(broker, version):
    pub(broker, "rt/t", "kept", version, qos=1, retain=True)
    s = start_sub(broker, "rt/#", 1, version)
    rc, out, err = finish(s)
    assert rc == 0, err
    assert lines(out) == [("rt/t", "1", 1, "kept")]
    # clear it: -r -n sends a zero length retained message
    pub(broker, "rt/t", None, version, qos=1, retain=True)
    s = start_sub(broker, "rt/#", 1, version, timeout=2)
    rc, out, err = finish(s)
    assert out.strip() == ""
    assert rc != 0     # -W timeout expired without a message


def test_mosquitto_sub_timeout_when_nothing_arrives(broker):
    s = start_sub(broker, "silent/t", 1, V5, timeout=1, sync=False)
    t0 = time.monotonic()
    rc, out, err = finish(s)
    assert out == "" and rc != 0
    assert time.monotonic() - t0 < T(6)


def test_cli_v5_user_properties(broker):
    c = raw(broker, "raw-sub", version=V5)
    c.subscribe([("cup/t", 1)])
    pub(broker, "cup/t", "x", V5, qos=1,
        extra=["-D", "publish", "user-property", "k", "v",
               "-D", "publish", "content-type", "text/plain"])
    p = c.recv_publishes(1)[0]
    assert p.props.getall(M.USER_PROPERTY) == [("k", "v")]
    assert p.props.get(M.CONTENT_TYPE) == "text/plain"


def test_mixed_versions_fan_out(broker):
    s311 = start_sub(broker, "mix/#", 5, V311)
    s5 = start_sub(broker, "mix/#", 5, V5)
    p = Paho(broker, "mixpub", version=V5)
    for i in range(5):
        p.publish("mix/%d" % i, b"v%d" % i, qos=1)
    for s in (s311, s5):
        rc, out, err = finish(s)
        assert rc == 0, err
        assert [r[3] for r in lines(out)] == ["v%d" % i for i in range(5)]
