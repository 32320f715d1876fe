"""MQTT 5.0 PUBLISH properties and request/response fields (MQTT 5.0 section 3.3.2.3)."""

import time

import pytest
from paho.mqtt.packettypes import PacketTypes

import mqttraw as M
from helpers import T, V5, Paho, props, raw


def test_user_properties_forwarded_in_order(broker):
    # [MQTT-3.3.2-17], [MQTT-3.3.2-18]: unaltered, order kept, duplicates allowed
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("up/t", 1)])
    ups = [("b", "2"), ("a", "1"), ("b", "3"), ("emoji", "\u00e9\u4e2d"), ("", "")]
    pub = raw(broker, "pub", version=V5)
    pub.publish("up/t", b"x", qos=1, props=[(M.USER_PROPERTY, kv) for kv in ups])
    got = sub.recv_publishes(1)[0]
    assert got.props.getall(M.USER_PROPERTY) == ups


def test_request_response_properties_forwarded(broker):
    # [MQTT-3.3.2-4] payload format, [MQTT-3.3.2-20] content type,
    # [MQTT-3.3.2-15] response topic, [MQTT-3.3.2-16] correlation data: unaltered
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("rr/t", 1)])
    pub = raw(broker, "pub", version=V5)
    pub.publish("rr/t", "h\u00e9llo".encode(), qos=1, props=[
        (M.PAYLOAD_FORMAT_INDICATOR, 1),
        (M.CONTENT_TYPE, "text/plain; charset=utf-8"),
        (M.RESPONSE_TOPIC, "rr/reply"),
        (M.CORRELATION_DATA, bytes(range(256)))])
    got = sub.recv_publishes(1)[0]
    assert got.props.get(M.PAYLOAD_FORMAT_INDICATOR) == 1
    assert got.props.get(M.CONTENT_TYPE) == "text/plain; charset=utf-8"
    assert got.props.get(M.RESPONSE_TOPIC) == "rr/reply"
    assert got.props.get(M.CORRELATION_DATA) == bytes(range(256))
    assert got.payload == "h\u00e9llo".encode()


def test_paho_properties_roundtrip(broker):
    # same as above through a second, independent client implementation
    sub = Paho(broker, "psub")
    sub.subscribe("pp/t", 1)
    pub = Paho(broker, "ppub")
    pr = props(PacketTypes.PUBLISH, ContentType="a/b", ResponseTopic="pp/r",
               CorrelationData=b"cid", UserProperty=[("k1", "v1"), ("k2", "v2")])
    pub.publish("pp/t", b"x", qos=1, properties=pr)
    m = sub.expect_one()
    assert m.properties.ContentType == "a/b"
    assert m.properties.ResponseTopic == "pp/r"
    assert m.properties.CorrelationData == b"cid"
    assert m.properties.UserProperty == [("k1", "v1"), ("k2", "v2")]


def test_properties_not_added_when_absent(broker):
    # a PUBLISH without properties is forwarded without them (no invented fields)
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("np/t", 1)])
    raw(broker, "pub", version=V5).publish("np/t", b"x", qos=1)
    got = sub.recv_publishes(1)[0]
    for pid in (M.CONTENT_TYPE, M.RESPONSE_TOPIC, M.CORRELATION_DATA,
                M.PAYLOAD_FORMAT_INDICATOR, M.MESSAGE_EXPIRY_INTERVAL, M.USER_PROPERTY):
        assert pid not in got.props


def test_message_expiry_counted_down_for_offline_subscriber(broker):
    # [MQTT-3.3.2-6]: the forwarded interval is the received value minus time waited
    s = raw(broker, "off", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    s.subscribe([("me/t", 1)])
    s.disconnect()
    raw(broker, "pub", version=V5).publish("me/t", b"x", qos=1,
                                            props={M.MESSAGE_EXPIRY_INTERVAL: 10})
    time.sleep(2.1)
    s2 = raw(broker, "off", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    got = s2.recv_publishes(1)[0]
    mei = got.props.get(M.MESSAGE_EXPIRY_INTERVAL)
    assert mei is not None and 1 <= mei <= 8, mei


def test_expired_message_not_delivered(broker):
    # [MQTT-3.3.2-5]: expired before delivery -> must not be delivered
    s = raw(broker, "off", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    s.subscribe([("mx/t", 1)])
    s.disconnect()
    pub = raw(broker, "pub", version=V5)
    pub.publish("mx/t", b"short", qos=1, props={M.MESSAGE_EXPIRY_INTERVAL: 1})
    pub.publish("mx/t", b"long", qos=1, props={M.MESSAGE_EXPIRY_INTERVAL: 60})
    pub.publish("mx/t", b"none", qos=1)
    time.sleep(2.2)
    s2 = raw(broker, "off", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    got = s2.drain(0.7)
    assert [p.payload for p in got] == [b"long", b"none"]
    assert M.MESSAGE_EXPIRY_INTERVAL not in got[1].props


def test_live_message_expiry_forwarded(broker):
    # [MQTT-3.3.2-6]: delivered immediately -> interval present and <= the original
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("ml/t", 1)])
    raw(broker, "pub", version=V5).publish("ml/t", b"x", qos=1,
                                            props={M.MESSAGE_EXPIRY_INTERVAL: 30})
    mei = sub.recv_publishes(1)[0].props.get(M.MESSAGE_EXPIRY_INTERVAL)
    assert mei is not None and 28 <= mei <= 30


def test_v5_to_v311_strips_properties(broker):
    # a 3.1.1 subscriber gets a well-formed 3.1.1 PUBLISH (no property section)
    sub = raw(broker, "old", version=4)
    sub.subscribe([("cv/t", 1)])
    raw(broker, "pub", version=V5).publish("cv/t", b"payload", qos=1, props=[
        (M.USER_PROPERTY, ("k", "v")), (M.CONTENT_TYPE, "c")])
    got = sub.recv_publishes(1)[0]
    assert got.topic == "cv/t" and got.payload == b"payload"


def test_v311_to_v5_subscriber(broker):
    sub = raw(broker, "new", version=V5)
    sub.subscribe([("cv2/t", 1)])
    raw(broker, "pub", version=4).publish("cv2/t", b"old-style", qos=1)
    got = sub.recv_publishes(1)[0]
    assert got.payload == b"old-style"
    assert M.USER_PROPERTY not in got.props


def test_reason_string_is_a_string_if_present(broker):
    # 5.0 3.2.2.3.16: reason string is human readable UTF-8; allowed on CONNACK/acks
    c = raw(broker, "rs", version=V5)
    rs = c.connack.props.get(M.REASON_STRING)
    assert rs is None or isinstance(rs, str)
    ack = c.unsubscribe(["never/subscribed"])
    assert ack.reason_codes == [0x11]
    rs = ack.props.get(M.REASON_STRING)
    assert rs is None or isinstance(rs, str)


def test_request_problem_information_0_no_reason_string(broker):
    # 5.0 [MQTT-3.1.2-29]: with Request Problem Information 0 the server must not
    # send a Reason String on anything but PUBLISH, CONNACK, DISCONNECT
    c = raw(broker, "rpi", version=V5, props={M.REQUEST_PROBLEM_INFORMATION: 0})
    ack = c.subscribe([("ok", 1), ("$share/g/ok", 2)])
    assert M.REASON_STRING not in ack.props
    assert M.USER_PROPERTY not in ack.props
    un = c.unsubscribe(["never"])
    assert M.REASON_STRING not in un.props


def test_payload_format_indicator_invalid_utf8_payload(broker):
    # [MQTT-3.3.2-? ] 5.0 3.3.2.3.2: the server MAY check; if it does it answers
    # 0x99 Payload format invalid. Either way the broker keeps serving.
    sub = raw(broker, "sub", version=V5)
    sub.subscribe([("pfi/t", 1)])
    pub = raw(broker, "pub", version=V5)
    pub.send(M.publish_packet("pfi/t", b"\xff\xfe", qos=1, pid=3,
                              props={M.PAYLOAD_FORMAT_INDICATOR: 1}))
    try:
        pkt = pub.recv_packet()
    except M.Closed:
        pkt = None
    if pkt is not None and pkt.type == M.PUBACK:
        assert pkt.rc in (0x00, 0x10, 0x99)
        if pkt.rc == 0x99:
            assert sub.drain(0.5) == []
    elif pkt is not None:
        assert pkt.type == M.DISCONNECT and pkt.rc == 0x99


@pytest.mark.parametrize("pid,val", [
    (M.SESSION_EXPIRY_INTERVAL, 5),        # not allowed on PUBLISH
    (M.SUBSCRIPTION_IDENTIFIER, 3),        # client -> server PUBLISH must not carry it [MQTT-3.3.4-6]
])
def test_publish_with_forbidden_property_is_protocol_error(broker, pid, val):
    c = raw(broker, "forbid", version=V5)
    c.send(M.publish_packet("f/t", b"x", qos=1, pid=1, props=[(pid, val)]))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.DISCONNECT and p.rc in (0x81, 0x82)


def test_duplicate_single_property_is_protocol_error(broker):
    # 5.0 2.2.2.2: including a property more than once (except user property /
    # subscription id) is a Protocol Error
    c = raw(broker, "dupprop", version=V5)
    c.send(M.publish_packet("d/t", b"x", qos=1, pid=1,
                            props=[(M.CONTENT_TYPE, "a"), (M.CONTENT_TYPE, "b")]))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.DISCONNECT and p.rc in (0x81, 0x82)


def test_connack_default_properties_are_valid(broker):
    # 3.2.2.3: Maximum QoS is only sent as 0 or 1 (absent means 2); defaults allow retain
    c = raw(broker, "cp", version=V5)
    p = c.connack.props
    assert M.MAXIMUM_QOS not in p, "default max_qos is 2, so the property must be absent"
    assert p.get(M.RETAIN_AVAILABLE, 1) == 1
    assert p.get(M.RECEIVE_MAXIMUM, 65535) >= 1
    assert p.get(M.TOPIC_ALIAS_MAXIMUM, 0) >= 0
