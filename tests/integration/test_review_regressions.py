"""Regression tests for broker-core bugs found in review (protocol.c,
session.c, worker.c). Each test names the rule it checks."""

import os
import socket
import time

import mqttraw as M
from helpers import T, V311, V5, raw, wait_for


def _user(k, v):
    return (M.USER_PROPERTY, (k, v))


def test_interleaved_user_properties_forwarded_once(broker):
    # 5.0 3.3.2.3.7: the server forwards user properties unaltered; other
    # properties between them on the wire must not be copied with them
    # (the publisher's Topic Alias is not the subscriber's, and a second
    # Response Topic makes the PUBLISH malformed [MQTT-3.3.2-?]).
    sub = raw(broker, "ip-sub")
    sub.subscribe([("ip/#", M.sub_options(qos=0))])
    pub = raw(broker, "ip-pub")
    big = "r" * 2000  # larger than the stack buffer for properties
    props = [_user("a", "1"), (M.RESPONSE_TOPIC, big), (M.TOPIC_ALIAS, 1),
             (M.CORRELATION_DATA, b"c" * 700), (M.PAYLOAD_FORMAT_INDICATOR, 1),
             _user("b", "2")]
    pub.send(M.publish_packet("ip/t", b"x", props=props))
    m = sub.next_publish()
    assert m.topic == "ip/t"
    assert m.props.getall(M.RESPONSE_TOPIC) == [big]
    assert m.props.getall(M.CORRELATION_DATA) == [b"c" * 700]
    assert m.props.getall(M.PAYLOAD_FORMAT_INDICATOR) == [1]
    assert m.props.getall(M.USER_PROPERTY) == [("a", "1"), ("b", "2")]
    assert M.TOPIC_ALIAS not in m.props
    assert pub.is_open() and sub.is_open()


def test_interleaved_will_properties(broker):
    # 5.0 3.1.3.2: the Will Delay Interval is for the server, not forwarded.
    sub = raw(broker, "iw-sub")
    sub.subscribe([("iw/will", M.sub_options(qos=0))])
    will = dict(topic="iw/will", payload=b"gone",
                props=[_user("k", "v"), (M.WILL_DELAY_INTERVAL, 0), _user("k2", "v2")])
    c = raw(broker, "iw-c", will=will)
    c.abort()
    m = sub.next_publish()
    assert m.payload == b"gone"
    assert M.WILL_DELAY_INTERVAL not in m.props
    assert m.props.getall(M.USER_PROPERTY) == [("k", "v"), ("k2", "v2")]


def test_listener_max_qos_and_topic_alias(make_broker):
    # max_qos / max_topic_alias inside a listener block apply to its clients
    # (5.0 [MQTT-3.2.2-9] Maximum QoS in CONNACK, 3.2.2.3.8 Topic Alias Maximum).
    b = make_broker("max_qos 1\nmax_topic_alias 3")
    c = raw(b, "lq", version=V5)
    assert c.connack.props.get(M.MAXIMUM_QOS) == 1
    assert c.connack.props.get(M.TOPIC_ALIAS_MAXIMUM) == 3
    ack = c.subscribe([("lq/t", M.sub_options(qos=2))])
    assert ack.reason_codes == [1]
    c.send(M.publish_packet("lq/t", b"x", qos=2, pid=5))
    assert c.wait_closed(T(3))
    assert any(p.type == M.DISCONNECT and p.rc == 0x9B for p in c.before_close)


def _stuffed_subscriber(broker, client_id, will_topic, keepalive=1):
    """A v5 client that subscribes to big/# and then stops reading while a
    publisher fills its output past the socket buffers."""
    c = raw(broker, client_id, connect=False)
    c.connect(client_id, keepalive=keepalive,
              will=dict(topic=will_topic, payload=b"dead"))
    c.subscribe([("big/#", M.sub_options(qos=0))])
    pub = raw(broker, client_id + "-pub")
    chunk = b"z" * 60000
    for i in range(300):  # well past the socket buffers and the 1 MiB output limit
        pub.send(M.publish_packet("big/t", chunk))
    assert pub.is_open(T(5))
    return c


def test_closing_connection_destroyed_after_output_drains(broker):
    # A connection closed (keepalive timeout, [MQTT-3.1.2-22]) while its
    # output waited for the socket must go once the output is written, and
    # its will be published.
    watch = raw(broker, "cd-watch")
    watch.subscribe([("cd/will", M.sub_options(qos=0))])
    c = _stuffed_subscriber(broker, "cd-sub", "cd/will")
    time.sleep(T(2.5))  # past 1.5 x keepalive: the broker closes it
    # Now read everything: the broker's last bytes go out, then EOF.
    assert c.wait_closed(T(10)), "connection never closed"
    m = watch.next_publish(T(5))
    assert m.topic == "cd/will"


def test_closing_connection_of_non_reader_times_out(broker):
    # A closing connection whose peer never reads must not stay forever
    # (nor keep its session online and its will unpublished).
    watch = raw(broker, "ct-watch")
    watch.subscribe([("ct/will", M.sub_options(qos=0))])
    c = _stuffed_subscriber(broker, "ct-sub", "ct/will")
    m = watch.next_publish(T(15))
    assert m.topic == "ct/will"
    c.close()


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_closing_connection_input_does_not_spin(broker):
    # Input arriving for a connection that is closing with output pending
    # is discarded: left unread, level-triggered EPOLLIN would make the
    # worker spin.
    c = _stuffed_subscriber(broker, "cs-sub", "cs/will")
    time.sleep(T(2.5))  # closed for keepalive; output still waiting
    for _ in range(20):
        c.try_send(M.pingreq_packet())
    time.sleep(0.2)
    before = _cpu_seconds(broker.pid)
    time.sleep(1.0)
    used = _cpu_seconds(broker.pid) - before
    assert used < 0.5, "broker used %.2f s of CPU in 1 s while idle" % used
    c.close()


def test_takeover_after_normal_disconnect_no_will(make_broker):
    # 5.0 3.14.4 / [MQTT-3.1.2-10]: after DISCONNECT 0x00 the will is
    # discarded, even when the new connection's CONNECT is read in the same
    # loop iteration as the DISCONNECT (then the old connection is still
    # attached to the session and is taken over while closing).
    b = make_broker("workers 1")
    watch = raw(b, "tw-watch")
    watch.subscribe([("tw/will", M.sub_options(qos=0))])
    for i in range(30):
        old = raw(b, "tw-c", clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60},
                  will=dict(topic="tw/will", payload=b"w%d" % i))
        new = raw(b, connect=False)
        connect = M.connect_packet("tw-c", 5, False, 60,
                                   props={M.SESSION_EXPIRY_INTERVAL: 60})
        old.send(M.disconnect_packet(0))
        new.send(connect)
        new.expect(M.CONNACK)
        new.disconnect(0)
        old.close()
    got = watch.collect(quiet=T(0.5))
    assert [p for p in got if p.type == M.PUBLISH] == []


def test_non_reading_sender_is_throttled(broker):
    # A client that keeps sending (here PINGREQ, each answered) but never
    # reads must not make the broker buffer its answers without bound: past
    # a limit the broker stops reading it, so its sends block.
    c = raw(broker, "nr-c", version=V311)
    c.sock.settimeout(T(2))
    chunk = M.pingreq_packet() * 32768  # 64 KiB
    sent = 0
    try:
        while sent < (64 << 20):
            c.sock.sendall(chunk)
            sent += len(chunk)
    except socket.timeout:
        pass
    assert sent < (32 << 20), "broker read %d bytes from a client that does not read" % sent
    c.close()
    other = raw(broker, "nr-other")
    assert other.is_open()


def test_will_cannot_publish_into_sys(make_broker):
    # Clients cannot publish into $SYS/ (docs/architecture.md); a will is a
    # publish too, and a retained one would replace the broker's value.
    b = make_broker("")
    watch = raw(b, "sw-watch")
    watch.subscribe([("$SYS/broker/version", M.sub_options(qos=0, retain_handling=2))])
    c = raw(b, "sw-c", will=dict(topic="$SYS/broker/version", payload=b"fake", retain=True))
    c.abort()
    got = [p for p in watch.collect(quiet=T(1)) if p.type == M.PUBLISH]
    assert [p.payload for p in got if p.payload == b"fake"] == []
    late = raw(b, "sw-late")
    late.subscribe([("$SYS/broker/version", M.sub_options(qos=0))])
    got = [p for p in late.collect(quiet=T(0.5)) if p.type == M.PUBLISH]
    assert all(p.payload != b"fake" for p in got)
