"""Topic aliases (MQTT 5.0 section 3.3.2.3.4)."""

import mqttraw as M
from helpers import T, V5, Paho, raw


def _alias_max(c):
    return c.connack.props.get(M.TOPIC_ALIAS_MAXIMUM, 0)


def test_broker_accepts_topic_aliases(broker):
    # 3.2.2.3.8: Topic Alias Maximum in CONNACK (absent = 0 = aliases not accepted)
    c = raw(broker, "tam", version=V5)
    assert _alias_max(c) >= 1, c.connack


def test_inbound_alias_resolves_topic(broker):
    # [MQTT-3.3.2-12]: the receiver maps the alias; empty topic + alias -> that topic
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("al/#", 1)])
    c = raw(broker, "pub", version=V5)
    c.publish("al/first", b"1", qos=1, props={M.TOPIC_ALIAS: 1})
    c.publish("", b"2", qos=1, props={M.TOPIC_ALIAS: 1})
    c.publish("", b"3", qos=0, props={M.TOPIC_ALIAS: 1})
    got = sub.recv_publishes(3)
    assert [(p.topic, p.payload) for p in got] == [("al/first", b"1"), ("al/first", b"2"),
                                                   ("al/first", b"3")]
    # the alias is not forwarded to a subscriber that did not ask for aliases
    assert all(M.TOPIC_ALIAS not in p.props for p in got)


def test_inbound_alias_can_be_remapped(broker):
    # 3.3.2.3.4: a non-empty topic with an existing alias replaces the mapping
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("rm/#", 1)])
    c = raw(broker, "pub", version=V5)
    c.publish("rm/a", b"1", qos=1, props={M.TOPIC_ALIAS: 1})
    c.publish("rm/b", b"2", qos=1, props={M.TOPIC_ALIAS: 1})
    c.publish("", b"3", qos=1, props={M.TOPIC_ALIAS: 1})
    got = sub.recv_publishes(3)
    assert [p.topic for p in got] == ["rm/a", "rm/b", "rm/b"]


def test_alias_above_maximum_disconnect_0x94(broker):
    # [MQTT-3.3.2-9]: alias greater than the Topic Alias Maximum -> DISCONNECT 0x94
    c = raw(broker, "big", version=V5)
    too_big = _alias_max(c) + 1
    c.send(M.publish_packet("x/y", b"1", qos=0, props={M.TOPIC_ALIAS: too_big}))
    assert c.wait_closed(T(5))
    discs = [p for p in c.before_close if p.type == M.DISCONNECT]
    assert discs and discs[0].rc == 0x94, c.before_close


def test_alias_zero_disconnect_0x94(broker):
    # [MQTT-3.3.2-8]: alias value 0 is not permitted -> 0x94 (or 0x82 protocol error)
    c = raw(broker, "zero", version=V5)
    c.send(M.publish_packet("x/y", b"1", qos=0, props={M.TOPIC_ALIAS: 0}))
    assert c.wait_closed(T(5))
    discs = [p for p in c.before_close if p.type == M.DISCONNECT]
    assert discs and discs[0].rc in (0x94, 0x82), c.before_close


def test_empty_topic_unknown_alias_protocol_error(broker):
    # 3.3.2.3.4: empty topic with an alias that has no mapping -> Protocol Error 0x82
    c = raw(broker, "unk", version=V5)
    c.send(M.publish_packet("", b"1", qos=1, pid=1, props={M.TOPIC_ALIAS: 1}))
    assert c.wait_closed(T(5))
    discs = [p for p in c.before_close if p.type == M.DISCONNECT]
    assert discs and discs[0].rc == 0x82, c.before_close


def test_aliases_are_per_connection(broker):
    # [MQTT-3.3.2-7]: mappings do not survive the network connection
    c = raw(broker, "pc", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 30})
    c.publish("pc/t", b"1", qos=1, props={M.TOPIC_ALIAS: 1})
    c.disconnect()
    d = raw(broker, "pc", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 30})
    d.send(M.publish_packet("", b"2", qos=1, pid=2, props={M.TOPIC_ALIAS: 1}))
    assert d.wait_closed(T(5))
    for p in d.before_close:
        assert p.type == M.DISCONNECT and p.rc == 0x82


def test_outbound_aliases_decode_to_right_topic(broker):
    # [MQTT-3.3.2-10]: the server must not send an alias above the client's maximum;
    # whatever it sends must decode to the original topic
    sub = raw(broker, "aliased", version=V5, props={M.TOPIC_ALIAS_MAXIMUM: 2})
    sub.subscribe([("out/#", 1)])
    pub = Paho(broker, "pub")
    topics = ["out/a", "out/b", "out/a", "out/c", "out/a", "out/b", "out/c", "out/c"]
    for i, t in enumerate(topics):
        pub.publish(t, b"%d" % i, qos=1)
    got = sub.recv_publishes(len(topics))
    for p in got:
        if p.alias is not None:
            assert 1 <= p.alias <= 2, p
        else:
            assert p.topic_bytes != b"", "empty topic without alias"
    assert [p.topic for p in got] == topics
    assert [p.payload for p in got] == [b"%d" % i for i in range(len(topics))]


def test_no_outbound_alias_without_client_maximum(broker):
    # [MQTT-3.3.2-11]: Topic Alias Maximum absent (0) -> server sends no aliases
    sub = raw(broker, "plain", version=V5)
    sub.subscribe([("na/#", 1)])
    pub = Paho(broker, "pub")
    for _ in range(3):
        pub.publish("na/t", b"x", qos=1)
    got = sub.recv_publishes(3)
    assert all(p.alias is None and p.topic_bytes == b"na/t" for p in got)
