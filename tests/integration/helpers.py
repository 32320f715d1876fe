"""Shared helpers: timing scale, ports, paho wrappers that behave synchronously."""

import os
import queue
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCodes
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqttraw

SANITIZED = os.environ.get("PETREL_SANITIZED") == "1"
SCALE = 3.0 if SANITIZED else 1.0

V311 = 4
V5 = 5


def T(seconds):
    """A timeout, stretched for sanitizer builds."""
    return seconds * SCALE


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def wait_port(host, port, timeout, proc=None, family=socket.AF_INET):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    return False


def wait_for(predicate, timeout, interval=0.02):
    """Poll predicate until true or the deadline; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ------------------------------------------------------------------ raw

_open_clients = []


def raw(broker, client_id="", version=V5, connect=True, expect_rc=0, **kw):
    """A RawClient to the broker, connected (CONNACK checked) unless connect=False."""
    timeout = kw.pop("timeout", T(5))
    c = mqttraw.RawClient(broker.host, broker.port, timeout=timeout, version=version)
    _open_clients.append(c)
    if connect:
        ack = c.connect(client_id, **kw)
        if expect_rc is not None:
            assert ack.rc == expect_rc, "CONNACK %r" % ack
    return c


def raw_socket(broker, version=V5, timeout=None):
    c = mqttraw.RawClient(broker.host, broker.port, timeout=timeout or T(5), version=version)
    _open_clients.append(c)
    return c


# ------------------------------------------------------------------ paho

def props(ptype, **values):
    """Properties(ptype) with attributes set, e.g. props(PacketTypes.PUBLISH, ContentType='x')."""
    p = Properties(ptype)
    for k, v in values.items():
        setattr(p, k, v)
    return p


class Paho:
    """A paho client whose operations wait for their acknowledgements."""

    def __init__(self, broker, client_id="", version=V5, clean=True, keepalive=60,
                 properties=None, will=None, username=None, password=None,
                 connect=True, expect_rc=0, port=None, host=None):
        self.version = version
        self.host = host or broker.host
        self.port = port or broker.port
        proto = mqtt.MQTTv5 if version == V5 else (mqtt.MQTTv311 if version == V311 else mqtt.MQTTv31)
        if version == V5:
            self.c = mqtt.Client(client_id=client_id, protocol=proto, reconnect_on_failure=False)
        else:
            self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=proto,
                                 reconnect_on_failure=False)
        self.clean = clean
        self.keepalive = keepalive
        self.properties = properties
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack_rc = None
        self.connack_flags = None
        self.connack_props = None
        self.disconnect_rc = None
        self.disconnect_props = None
        self._subacks = {}
        self._suback_cv = threading.Condition()
        if will:
            self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0),
                            will.get("retain", False), will.get("props"))
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        _open_clients.append(self)
        if connect:
            self.connect(expect_rc=expect_rc)

    # callbacks
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connack_flags = flags
        self.connack_rc = rc.value if hasattr(rc, "value") else rc
        self.connack_props = properties
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnect_rc = rc.value if hasattr(rc, "value") else rc
        self.disconnect_props = properties
        self.disconnected.set()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        codes = [g.value if hasattr(g, "value") else g for g in granted]
        with self._suback_cv:
            self._subacks[mid] = codes
            self._suback_cv.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, properties=None, reasoncodes=None):
        if isinstance(reasoncodes, list):
            codes = [r.value for r in reasoncodes]
        elif reasoncodes is not None:
            codes = [reasoncodes.value]
        else:
            codes = []
        with self._suback_cv:
            self._subacks[("u", mid)] = codes
            self._suback_cv.notify_all()

    # operations
    def connect(self, expect_rc=0, timeout=None):
        self.connected.clear()
        self.disconnected.clear()
        if self.version == V5:
            self.c.connect_async(self.host, self.port, self.keepalive, clean_start=self.clean,
                                 properties=self.properties)
        else:
            self.c.connect_async(self.host, self.port, self.keepalive)
        self.c.loop_start()
        ok = self.connected.wait(timeout or T(5))
        assert ok, "no CONNACK from broker"
        if expect_rc is not None:
            assert self.connack_rc == expect_rc, "CONNACK rc %r" % self.connack_rc
        return self

    @property
    def session_present(self):
        return bool(self.connack_flags and self.connack_flags.get("session present"))

    def subscribe(self, topic, qos=0, options=None, properties=None, timeout=None):
        """Returns the list of SUBACK codes."""
        if self.version == V5:
            if options is None and isinstance(topic, str):
                options = SubscribeOptions(qos=qos)
            rc, mid = self.c.subscribe(topic, qos=0, options=options, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, "subscribe failed locally: %r" % rc
        with self._suback_cv:
            ok = self._suback_cv.wait_for(lambda: mid in self._subacks, timeout or T(5))
        assert ok, "no SUBACK"
        return self._subacks[mid]

    def unsubscribe(self, topic, properties=None, timeout=None):
        if self.version == V5:
            rc, mid = self.c.unsubscribe(topic, properties=properties)
        else:
            rc, mid = self.c.unsubscribe(topic)
        with self._suback_cv:
            ok = self._suback_cv.wait_for(lambda: ("u", mid) in self._subacks, timeout or T(5))
        assert ok, "no UNSUBACK"
        return self._subacks[("u", mid)]

    def publish(self, topic, payload=b"", qos=0, retain=False, properties=None,
                wait=True, timeout=None):
        info = self.c.publish(topic, payload, qos, retain, properties)
        if wait and qos > 0:
            info.wait_for_publish(timeout or T(5))
            assert info.is_published(), "publish of %r not acknowledged" % topic
        return info

    def expect(self, n=1, timeout=None):
        """n messages within the timeout (one overall deadline)."""
        deadline = time.monotonic() + (timeout or T(5))
        got = []
        while len(got) < n:
            try:
                got.append(self.messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError("got %d of %d messages: %r"
                                     % (len(got), n, [(m.topic, m.payload) for m in got]))
        return got

    def expect_one(self, timeout=None):
        return self.expect(1, timeout)[0]

    def nothing(self, wait=0.5):
        """Assert no message arrives within `wait` seconds; returns True."""
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError("unexpected message %r %r" % (m.topic, m.payload))

    def drain(self, quiet=0.5):
        got = []
        while True:
            try:
                got.append(self.messages.get(timeout=quiet))
            except queue.Empty:
                return got

    def disconnect(self, reason=None, properties=None):
        if self.version == V5 and reason is not None:
            self.c.disconnect(ReasonCodes(PacketTypes.DISCONNECT, identifier=reason), properties)
        else:
            self.c.disconnect()
        self.disconnected.wait(T(5))
        self.c.loop_stop()

    def drop(self):
        """Close the TCP connection without DISCONNECT."""
        sock = self.c.socket()
        self.c.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        try:
            self.c.loop_stop()
            if self.c.is_connected():
                self.c.disconnect()
        except Exception:
            pass


def close_all_clients():
    while _open_clients:
        c = _open_clients.pop()
        try:
            c.close()
        except Exception:
            pass


def still_serves(broker, version=V5):
    """The broker accepts a fresh paho client and routes a message to it."""
    c = Paho(broker, "probe-%d" % time.monotonic_ns(), version=version)
    c.subscribe("probe/t", 1)
    c.publish("probe/t", b"ping", qos=1)
    m = c.expect_one()
    assert m.payload == b"ping"
    c.disconnect()
    return True


def rss_kib(pid):
    """Resident memory of a process, KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
