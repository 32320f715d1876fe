"""A small hand-rolled MQTT client for tests that need byte-level control.

Everything is built by hand from the MQTT 3.1, 3.1.1 and 5.0 specifications:
variable byte integers, UTF-8 strings, properties, and each control packet.
Incoming packets are decoded well enough to assert reason codes, flags and
properties.
"""

import errno
import socket
import struct
import time

# Control packet types (MQTT 5.0 section 2.1.2)
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT, AUTH = 12, 13, 14, 15

PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
    6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE",
    11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

# Property identifiers (MQTT 5.0 section 2.2.2.2)
PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTHENTICATION_METHOD = 0x15
AUTHENTICATION_DATA = 0x16
REQUEST_PROBLEM_INFORMATION = 0x17
WILL_DELAY_INTERVAL = 0x18
REQUEST_RESPONSE_INFORMATION = 0x19
RESPONSE_INFORMATION = 0x1A
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _STR, 0x08: _STR, 0x09: _BIN, 0x0B: _VARINT,
    0x11: _U32, 0x12: _STR, 0x13: _U16, 0x15: _STR, 0x16: _BIN, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _STR, 0x1C: _STR, 0x1F: _STR, 0x21: _U16,
    0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}


class Closed(Exception):
    """The broker closed the network connection."""


class Timeout(Exception):
    """Nothing (or not enough) arrived before the deadline."""


class DecodeError(Exception):
    pass


# ---------------------------------------------------------------- encoding

def varint(n):
    """Variable Byte Integer (MQTT 5.0 section 1.5.5)."""
    if n < 0 or n > 268435455:
        raise ValueError(n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def u16(n):
    return struct.pack("!H", n)


def u32(n):
    return struct.pack("!I", n)


def binary(b):
    """Two-byte length followed by the bytes (section 1.5.6)."""
    if isinstance(b, str):
        b = b.encode("utf-8")
    return u16(len(b)) + b


# A UTF-8 encoded string is encoded exactly like binary data, except that the
# bytes must be well-formed UTF-8 (tests pass raw bytes to break that rule).
string = binary


def properties(props):
    """Encode a property list: an iterable of (id, value) pairs, or a dict
    (values that are lists repeat the property). None -> empty list."""
    if props is None:
        return varint(0)
    if isinstance(props, dict):
        items = []
        for k, v in props.items():
            if isinstance(v, list) and k in (USER_PROPERTY, SUBSCRIPTION_IDENTIFIER):
                items.extend((k, x) for x in v)
            else:
                items.append((k, v))
    else:
        items = list(props)
    body = bytearray()
    for pid, value in items:
        body += varint(pid)
        kind = PROPERTY_TYPES[pid]
        if kind == _BYTE:
            body += bytes([value])
        elif kind == _U16:
            body += u16(value)
        elif kind == _U32:
            body += u32(value)
        elif kind == _VARINT:
            body += varint(value)
        elif kind in (_STR, _BIN):
            body += binary(value)
        elif kind == _PAIR:
            body += binary(value[0]) + binary(value[1])
    return varint(len(body)) + bytes(body)


def packet(ptype, flags, body):
    """Fixed header + body."""
    return bytes([(ptype << 4) | (flags & 0x0F)]) + varint(len(body)) + bytes(body)


def connect_packet(client_id="", version=5, clean=True, keepalive=60,
                   username=None, password=None, will=None, props=None,
                   protocol_name=None, protocol_level=None, flags_override=None):
    """CONNECT (section 3.1). version: 3 (MQIsdp), 4 (3.1.1) or 5.

    will: dict(topic=, payload=, qos=0, retain=False, props=None)
    """
    if protocol_name is None:
        protocol_name = "MQIsdp" if version == 3 else "MQTT"
    if protocol_level is None:
        protocol_level = version
    flags = 0
    if clean:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | ((will.get("qos", 0) & 3) << 3)
        if will.get("retain"):
            flags |= 0x20
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    if flags_override is not None:
        flags = flags_override
    vh = string(protocol_name) + bytes([protocol_level, flags]) + u16(keepalive)
    if version == 5:
        vh += properties(props)
    payload = string(client_id)
    if will is not None:
        if version == 5:
            payload += properties(will.get("props"))
        payload += string(will["topic"]) + binary(will.get("payload", b""))
    if username is not None:
        payload += string(username)
    if password is not None:
        payload += binary(password)
    return packet(CONNECT, 0, vh + payload)


def publish_packet(topic, payload=b"", qos=0, retain=False, dup=False, pid=None,
                   version=5, props=None, flags=None):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if flags is None:
        flags = (0x08 if dup else 0) | ((qos & 3) << 1) | (0x01 if retain else 0)
    body = string(topic)
    if qos > 0:
        body += u16(1 if pid is None else pid)
    if version == 5:
        body += properties(props)
    body += payload
    return packet(PUBLISH, flags, body)


def ack_packet(ptype, pid, rc=None, props=None, version=5):
    """PUBACK/PUBREC/PUBREL/PUBCOMP. PUBREL has the reserved flags 0b0010."""
    body = u16(pid)
    if version == 5 and (rc is not None or props is not None):
        body += bytes([rc or 0])
        if props is not None:
            body += properties(props)
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def subscribe_packet(pid, filters, version=5, props=None, flags=0x02):
    """filters: list of (filter, options_byte) or (filter, qos)."""
    body = u16(pid)
    if version == 5:
        body += properties(props)
    for f, opts in filters:
        body += string(f) + bytes([opts])
    return packet(SUBSCRIBE, flags, body)


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    """Subscription Options byte (MQTT 5.0 section 3.8.3.1)."""
    return (qos & 3) | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) \
        | ((retain_handling & 3) << 4)


def unsubscribe_packet(pid, filters, version=5, props=None):
    body = u16(pid)
    if version == 5:
        body += properties(props)
    for f in filters:
        body += string(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def disconnect_packet(rc=None, props=None, version=5):
    if version != 5 or (rc is None and props is None):
        return packet(DISCONNECT, 0, b"")
    body = bytes([rc or 0])
    if props is not None:
        body += properties(props)
    return packet(DISCONNECT, 0, body)


def pingreq_packet():
    return packet(PINGREQ, 0, b"")


# ---------------------------------------------------------------- decoding

class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        if self.pos + n > len(self.data):
            raise DecodeError("truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def varint(self):
        mult, value = 1, 0
        for _ in range(4):
            b = self.byte()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult *= 128
        raise DecodeError("varint too long")

    def binary(self):
        return self.take(self.u16())

    def string(self):
        return self.binary().decode("utf-8")

    def rest(self):
        b = self.data[self.pos:]
        self.pos = len(self.data)
        return b


class Props:
    """Decoded property list, keeping order and repetitions."""

    def __init__(self, items=None):
        self.items = list(items or [])

    def get(self, pid, default=None):
        for k, v in self.items:
            if k == pid:
                return v
        return default

    def getall(self, pid):
        return [v for k, v in self.items if k == pid]

    def __contains__(self, pid):
        return any(k == pid for k, _ in self.items)

    def __repr__(self):
        return "Props(%r)" % (self.items,)


def decode_properties(r):
    length = r.varint()
    sub = Reader(r.take(length))
    items = []
    while sub.remaining():
        pid = sub.varint()
        kind = PROPERTY_TYPES.get(pid)
        if kind is None:
            raise DecodeError("unknown property 0x%02x" % pid)
        if kind == _BYTE:
            v = sub.byte()
        elif kind == _U16:
            v = sub.u16()
        elif kind == _U32:
            v = sub.u32()
        elif kind == _VARINT:
            v = sub.varint()
        elif kind == _STR:
            v = sub.string()
        elif kind == _BIN:
            v = sub.binary()
        else:
            v = (sub.string(), sub.string())
        items.append((pid, v))
    return Props(items)


class Packet:
    def __init__(self, ptype, flags, body, version):
        self.type = ptype
        self.flags = flags
        self.body = body
        self.raw_version = version
        self.props = Props()
        self.rc = 0
        self.reason_codes = []
        self.pid = None
        self.topic = None
        self.payload = None
        self._decode(version)

    @property
    def name(self):
        return PACKET_NAMES.get(self.type, "TYPE%d" % self.type)

    @property
    def qos(self):
        return (self.flags >> 1) & 3

    @property
    def retain(self):
        return bool(self.flags & 1)

    @property
    def dup(self):
        return bool(self.flags & 8)

    def _decode(self, version):
        r = Reader(self.body)
        t = self.type
        if t == CONNACK:
            f = r.byte()
            self.session_present = bool(f & 1)
            self.rc = r.byte()
            if version == 5 and r.remaining():
                self.props = decode_properties(r)
        elif t == PUBLISH:
            self.topic_bytes = r.binary()
            self.topic = self.topic_bytes.decode("utf-8")
            if self.qos > 0:
                self.pid = r.u16()
            if version == 5:
                self.props = decode_properties(r)
            self.payload = r.rest()
        elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = r.u16()
            if r.remaining():
                self.rc = r.byte()
            if version == 5 and r.remaining():
                self.props = decode_properties(r)
        elif t in (SUBACK, UNSUBACK):
            self.pid = r.u16()
            if version == 5:
                self.props = decode_properties(r)
            self.reason_codes = list(r.rest())
        elif t in (DISCONNECT, AUTH):
            if r.remaining():
                self.rc = r.byte()
            if version == 5 and r.remaining():
                self.props = decode_properties(r)

    def __repr__(self):
        extra = ""
        if self.type == PUBLISH:
            extra = " topic=%r qos=%d retain=%d dup=%d pid=%r payload=%r" % (
                self.topic, self.qos, self.retain, self.dup, self.pid, self.payload[:40])
        elif self.type in (CONNACK, DISCONNECT, PUBACK, PUBREC, PUBREL, PUBCOMP):
            extra = " rc=0x%02x pid=%r" % (self.rc, self.pid)
        elif self.type in (SUBACK, UNSUBACK):
            extra = " pid=%r codes=%r" % (self.pid, self.reason_codes)
        return "<%s%s %r>" % (self.name, extra, self.props)


# ---------------------------------------------------------------- client

class RawClient:
    """One network connection to the broker.

    recv_packet() reads one whole packet or raises Timeout / Closed.
    """

    def __init__(self, host="127.0.0.1", port=1883, timeout=5.0, version=5,
                 unix_path=None, family=None, connect_timeout=5.0):
        self.version = version
        self.default_timeout = timeout
        self.buf = bytearray()
        self.topic_aliases = {}  # outbound aliases the broker set up for us
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(connect_timeout)
            self.sock.connect(unix_path)
        else:
            if family is None:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.settimeout(connect_timeout)
            self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) if unix_path is None else None
        self.closed = False

    # -- low level
    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Send, ignoring errors caused by the broker having closed already."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def abort(self):
        """Close without DISCONNECT and with an RST."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout()
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.EBADF):
                raise Closed()
            raise
        if not data:
            raise Closed()
        self.buf += data

    def recv_packet(self, timeout=None):
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while True:
            pkt = self._parse()
            if pkt is not None:
                return pkt
            self._fill(deadline)

    def _parse(self):
        if len(self.buf) < 2:
            return None
        mult, length, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise DecodeError("bad remaining length from broker")
        if len(self.buf) < i + length:
            return None
        first = self.buf[0]
        body = bytes(self.buf[i:i + length])
        del self.buf[:i + length]
        pkt = Packet(first >> 4, first & 0x0F, body, self.version)
        if pkt.type == PUBLISH and self.version == 5:
            alias = pkt.props.get(TOPIC_ALIAS)
            pkt.alias = alias
            if alias is not None:
                if pkt.topic:
                    self.topic_aliases[alias] = pkt.topic
                else:
                    pkt.topic = self.topic_aliases.get(alias)
        return pkt

    def expect(self, ptype, timeout=None):
        pkt = self.recv_packet(timeout)
        assert pkt.type == ptype, "expected %s, got %r" % (PACKET_NAMES[ptype], pkt)
        return pkt

    def wait_closed(self, timeout=None):
        """True when the broker closes the connection before the deadline.
        Packets that arrive first are collected in self.before_close."""
        self.before_close = []
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        while True:
            try:
                pkt = self._parse()
            except DecodeError:
                self.buf.clear()
                pkt = None
            if pkt is not None:
                self.before_close.append(pkt)
                continue
            try:
                self._fill(deadline)
            except Closed:
                return True
            except Timeout:
                return False

    def is_open(self, timeout=0.5):
        """PINGREQ/PINGRESP round trip; other packets are kept in self.pending."""
        if not self.try_send(pingreq_packet()):
            return False
        deadline = time.monotonic() + timeout
        self.pending = getattr(self, "pending", [])
        while True:
            try:
                pkt = self.recv_packet(max(0.0, deadline - time.monotonic()))
            except (Closed, Timeout):
                return False
            if pkt.type == PINGRESP:
                return True
            self.pending.append(pkt)

    # -- MQTT operations
    def connect(self, client_id="", clean=True, keepalive=60, props=None, will=None,
                username=None, password=None, timeout=None, **kw):
        self.send(connect_packet(client_id, self.version, clean, keepalive, username,
                                 password, will, props, **kw))
        pkt = self.expect(CONNACK, timeout)
        self.connack = pkt
        return pkt

    def subscribe(self, filters, pid=1, props=None, timeout=None):
        """filters: a filter string, or a list of (filter, options) pairs."""
        if isinstance(filters, str):
            filters = [(filters, 2)]
        self.send(subscribe_packet(pid, filters, self.version, props))
        return self.expect_skip(SUBACK, timeout)

    def unsubscribe(self, filters, pid=1, props=None, timeout=None):
        if isinstance(filters, str):
            filters = [filters]
        self.send(unsubscribe_packet(pid, filters, self.version, props))
        return self.expect_skip(UNSUBACK, timeout)

    def expect_skip(self, ptype, timeout=None):
        """Next packet of ptype; PUBLISH packets read meanwhile go to
        self.pending (other packet types are an error)."""
        self.pending = getattr(self, "pending", [])
        while True:
            pkt = self.recv_packet(timeout)
            if pkt.type == ptype:
                return pkt
            assert pkt.type == PUBLISH, "expected %s, got %r" % (PACKET_NAMES[ptype], pkt)
            self.pending.append(pkt)

    def publish(self, topic, payload=b"", qos=0, retain=False, dup=False, pid=None,
                props=None, wait=True, timeout=None):
        """Publish; for QoS>0 with wait=True complete the handshake and return
        the PUBACK / PUBCOMP (or PUBREC if it carries an error code)."""
        if qos and pid is None:
            self._next_pid = getattr(self, "_next_pid", 0) % 65535 + 1
            pid = self._next_pid
        self.send(publish_packet(topic, payload, qos, retain, dup, pid, self.version, props))
        if not wait or qos == 0:
            return None
        if qos == 1:
            return self.expect_skip(PUBACK, timeout)
        rec = self.expect_skip(PUBREC, timeout)
        if rec.rc >= 0x80:
            return rec
        self.send(ack_packet(PUBREL, pid, version=self.version))
        return self.expect_skip(PUBCOMP, timeout)

    def next_publish(self, timeout=None):
        """Next incoming PUBLISH (pending first)."""
        pending = getattr(self, "pending", [])
        if pending:
            return pending.pop(0)
        return self.expect(PUBLISH, timeout)

    def recv_publishes(self, n, timeout=None, ack=True):
        """Collect n PUBLISH packets before one overall deadline, acknowledging
        each (QoS 1: PUBACK, QoS 2: PUBREC then PUBREL/PUBCOMP) when ack."""
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        got = []
        self.pending = getattr(self, "pending", [])
        while len(got) < n:
            if self.pending:
                pkt = self.pending.pop(0)
            else:
                pkt = self.recv_packet(max(0.0, deadline - time.monotonic()))
            if pkt.type == PUBREL:
                self.send(ack_packet(PUBCOMP, pkt.pid, version=self.version))
                continue
            assert pkt.type == PUBLISH, "expected PUBLISH, got %r" % pkt
            got.append(pkt)
            if ack:
                self.ack(pkt)
        return got

    def ack(self, pkt):
        if pkt.qos == 1:
            self.send(ack_packet(PUBACK, pkt.pid, version=self.version))
        elif pkt.qos == 2:
            self.send(ack_packet(PUBREC, pkt.pid, version=self.version))

    def drain(self, quiet=0.5, ack=True, limit=10000, max_time=None):
        """Read PUBLISH packets until none arrives for `quiet` seconds (or,
        with max_time, until that many seconds have passed in total)."""
        got = []
        self.pending = getattr(self, "pending", [])
        end = None if max_time is None else time.monotonic() + max_time
        while len(got) < limit:
            if self.pending:
                pkt = self.pending.pop(0)
            else:
                wait = quiet if end is None else min(quiet, end - time.monotonic())
                if wait <= 0:
                    break
                try:
                    pkt = self.recv_packet(wait)
                except Timeout:
                    break
            if pkt.type == PUBREL:
                self.send(ack_packet(PUBCOMP, pkt.pid, version=self.version))
                continue
            assert pkt.type == PUBLISH, "expected PUBLISH, got %r" % pkt
            got.append(pkt)
            if ack:
                self.ack(pkt)
        return got

    def collect(self, quiet=0.3, limit=100000):
        """Read packets of any type, without acknowledging, until none arrives
        for `quiet` seconds."""
        got = list(getattr(self, "pending", []))
        self.pending = []
        while len(got) < limit:
            try:
                got.append(self.recv_packet(quiet))
            except Timeout:
                break
        return got

    def disconnect(self, rc=None, props=None):
        self.try_send(disconnect_packet(rc, props, self.version))
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
