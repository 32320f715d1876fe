"""The petrel command line: options, config checking and signals."""

import os
import re
import signal
import subprocess
import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, free_port, raw, wait_for, wait_port


def run(petrel_bin, *args, timeout=10):
    return subprocess.run([petrel_bin] + list(args), capture_output=True, timeout=T(timeout),
                          stdin=subprocess.DEVNULL)


def output(r):
    return (r.stdout + r.stderr).decode("utf-8", "replace")


def test_version(petrel_bin):
    r = run(petrel_bin, "--version")
    assert r.returncode == 0, output(r)
    assert re.search(r"\d+\.\d+\.\d+", output(r)), output(r)


def test_help(petrel_bin):
    r = run(petrel_bin, "-h")
    assert r.returncode == 0, output(r)
    text = output(r)
    assert "-c" in text and "-p" in text, text


def test_unknown_option_fails(petrel_bin):
    r = run(petrel_bin, "--no-such-option")
    assert r.returncode != 0


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_check_good_config(petrel_bin, tmp_path):
    path = _write(tmp_path, "good.conf",
                  "# comment\nlistener %d 127.0.0.1\nallow_anonymous true\nmax_qos 1\n" % free_port())
    r = run(petrel_bin, "-c", path, "-t")
    assert r.returncode == 0, output(r)


def test_check_bad_config_names_file_line_key(petrel_bin, tmp_path):
    path = _write(tmp_path, "bad.conf",
                  "listener %d 127.0.0.1\nallow_anonymous true\nno_such_key 42\n" % free_port())
    r = run(petrel_bin, "-c", path, "-t")
    assert r.returncode != 0
    text = output(r)
    assert "bad.conf:3" in text and "no_such_key" in text, text


def test_check_bad_value_names_key(petrel_bin, tmp_path):
    path = _write(tmp_path, "badval.conf",
                  "listener %d 127.0.0.1\n\nmax_qos 7\n" % free_port())
    r = run(petrel_bin, "-c", path, "-t")
    assert r.returncode != 0
    text = output(r)
    assert "badval.conf:3" in text and "max_qos" in text, text


def test_bad_config_refuses_to_start(petrel_bin, tmp_path):
    port = free_port()
    path = _write(tmp_path, "bad.conf", "listener %d 127.0.0.1\nbogus_setting yes\n" % port)
    r = run(petrel_bin, "-c", path)
    assert r.returncode != 0
    assert "bad.conf:2" in output(r) and "bogus_setting" in output(r)


def test_missing_config_file_fails(petrel_bin, tmp_path):
    r = run(petrel_bin, "-c", str(tmp_path / "does-not-exist.conf"))
    assert r.returncode != 0
    assert "does-not-exist.conf" in output(r)


def _spawn(petrel_bin, args, port, tmp_path):
    log = open(str(tmp_path / "spawn.log"), "wb")
    p = subprocess.Popen([petrel_bin] + args, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    log.close()
    if not wait_port("127.0.0.1", port, T(10), p):
        p.kill()
        p.wait(5)
        pytest.fail("broker did not listen on %d: %s" % (port, (tmp_path / "spawn.log").read_text()))
    return p


def _stop(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    try:
        return p.wait(T(10))
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
        return "hung"


class _B:
    host = "127.0.0.1"

    def __init__(self, port):
        self.port = port


def test_port_option(petrel_bin, tmp_path):
    port = free_port()
    p = _spawn(petrel_bin, ["-p", str(port)], port, tmp_path)
    try:
        c = raw(_B(port), "portopt", version=V311)
        assert c.connack.rc == 0
        c.disconnect()
    finally:
        assert _stop(p) == 0


def test_config_option_and_verbose(petrel_bin, tmp_path):
    port = free_port()
    path = _write(tmp_path, "c.conf", "listener %d 127.0.0.1\nallow_anonymous true\n" % port)
    p = _spawn(petrel_bin, ["-c", path, "-v"], port, tmp_path)
    try:
        c = raw(_B(port), "verbose-client-id", version=V5)
        c.disconnect(rc=0)
    finally:
        assert _stop(p) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_sends_v5_clients_server_shutting_down(make_broker, sig):
    # 5.0 4.13 / 3.14.2.1: DISCONNECT 0x8B Server shutting down; then a clean exit 0
    b = make_broker("")
    c5 = raw(b, "v5client", version=V5)
    c4 = raw(b, "v311client", version=V311)
    rc = b.stop(sig)
    assert rc == 0, b.log()
    assert c5.wait_closed(T(2))
    discs = [p for p in c5.before_close if p.type == M.DISCONNECT]
    assert discs and discs[0].rc == 0x8B, c5.before_close
    assert c4.wait_closed(T(2))
    assert not any(p.type == M.DISCONNECT for p in c4.before_close)   # no DISCONNECT in 3.1.1


def test_sigterm_with_no_clients_exits_fast(make_broker):
    b = make_broker("")
    t0 = time.monotonic()
    assert b.stop() == 0
    assert time.monotonic() - t0 < T(3)


def test_sigterm_clean_exit_with_pending_delayed_will(make_broker):
    # the broker exits cleanly (code 0) even with sessions and delayed wills pending
    b = make_broker("")
    raw(b, "w", version=V5, will={"topic": "w/t", "payload": b"x", "props": {M.WILL_DELAY_INTERVAL: 100}},
        clean=False, props={M.SESSION_EXPIRY_INTERVAL: 300})
    assert b.stop() == 0


def test_restart_on_same_port(make_broker):
    b = make_broker("")
    b.restart()
    c = raw(b, "after-restart", version=V311)
    assert c.connack.rc == 0


def test_kill9_then_restart_serves_again(make_broker):
    b = make_broker("")
    raw(b, "before", version=V311)
    b.kill9()
    b.start()
    c = raw(b, "after-kill", version=V5)
    assert c.connack.rc == 0
    c.subscribe([("k/t", 1)])
    raw(b, "pub", version=V5).publish("k/t", b"alive", qos=1)
    assert c.recv_publishes(1)[0].payload == b"alive"


def test_daemon_writes_pid_file_and_serves(petrel_bin, tmp_path):
    # -d detaches (the command returns at once), pid_file names the daemon,
    # and SIGTERM removes the pid file on the way out.
    port = free_port()
    pidfile = tmp_path / "petrel.pid"
    conf = tmp_path / "d.conf"
    conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\npid_file %s\n"
                    "log_dest file %s\n" % (port, pidfile, tmp_path / "d.log"))
    r = subprocess.run([petrel_bin, "-c", str(conf), "-d"], timeout=T(10))
    assert r.returncode == 0
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), T(10))
    pid = int(pidfile.read_text())
    try:
        assert wait_port("127.0.0.1", port, T(10))
        c = M.RawClient("127.0.0.1", port, timeout=T(5), version=5)
        assert c.connect("daemon-client").rc == 0
        c.close()
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not pidfile.exists(), T(10))


def test_sigterm_during_startup_exits_cleanly(petrel_bin, tmp_path):
    # A stop request that lands while the broker is still starting (here:
    # as soon as its port accepts) is honoured cleanly once it is up.
    for _ in range(3):
        port = free_port()
        conf = tmp_path / "s.conf"
        conf.write_text("listener %d 127.0.0.1\nallow_anonymous true\n" % port)
        p = subprocess.Popen([petrel_bin, "-c", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            assert wait_port("127.0.0.1", port, T(10), proc=p)
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=T(10)) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
