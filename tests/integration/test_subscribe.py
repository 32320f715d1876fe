"""SUBSCRIBE / UNSUBSCRIBE, topic filters and subscription options
(MQTT 3.1.1 sections 3.8-3.11, 4.7; MQTT 5.0 sections 3.8-3.11, 4.7, 4.8)."""


import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, raw

TOPICS = ["a", "a/b", "a/b/c", "a/c", "b/b", "a/b/c/d", "/a", "a/", "x/b", "a//b"]


@pytest.mark.parametrize("flt,expected", [
    ("a/b", {"a/b"}),
    ("a/+", {"a/b", "a/c", "a/"}),                 # [MQTT-4.7.1-3] + matches one level, also empty
    ("+/b", {"a/b", "b/b", "x/b", "A/b"}),
    ("a/#", {"a", "a/b", "a/b/c", "a/c", "a/b/c/d", "a/", "a//b"}),   # [MQTT-4.7.1-2] includes parent
    ("#", set(TOPICS) | {"A/b"}),
    ("+", {"a"}),
    ("+/+", {"a/b", "a/c", "b/b", "/a", "a/", "x/b", "A/b"}),
    ("/+", {"/a"}),
    ("a/+/c", {"a/b/c"}),
    ("a/+/#", {"a/b", "a/b/c", "a/c", "a/b/c/d", "a/", "a//b"}),
    ("a//b", {"a//b"}),
])
def test_wildcard_matching(broker, flt, expected):
    # 4.7.1 wildcard semantics, 4.7.3 topic names are case sensitive and exact
    sub = raw(broker, "wild", version=V5)
    assert sub.subscribe([(flt, 1)]).reason_codes == [1]
    pub = raw(broker, "pub", version=V5)
    for t in TOPICS:
        pub.publish(t, t.encode(), qos=1)
    pub.publish("A/b", b"case", qos=1)
    got = sub.drain(0.6)
    assert sorted(p.topic for p in got) == sorted(expected)


def test_topics_are_case_sensitive(broker):
    # [MQTT-4.7.3-? ] / 4.7.3: "ACCOUNTS" and "Accounts" are different topics
    sub = raw(broker, "case", version=V311)
    sub.subscribe([("Acc/T", 0)])
    pub = Paho(broker, "pub")
    pub.publish("acc/t", b"lower")
    pub.publish("Acc/T", b"exact")
    got = sub.drain(0.5)
    assert [p.payload for p in got] == [b"exact"]


def test_dollar_topics_not_matched_by_leading_wildcards(sys_broker):
    # [MQTT-4.7.2-1]: '#' and '+/...' do not match topics starting with '$'
    b = sys_broker
    hash_sub = raw(b, "hash", version=V311)
    hash_sub.subscribe([("#", 0)])
    plus_sub = raw(b, "plus", version=V311)
    plus_sub.subscribe([("+/broker/#", 0), ("+/+", 0), ("+/+/+", 0)])
    sys_sub = raw(b, "sys", version=V311)
    sys_sub.subscribe([("$SYS/#", 0)])
    Paho(b, "pub").publish("plain/t", b"x", qos=1)
    got_sys = sys_sub.drain(1.0, max_time=2.5)
    assert got_sys, "no $SYS messages with sys_interval 1"
    assert all(p.topic.startswith("$SYS/") for p in got_sys)
    assert [p.topic for p in hash_sub.drain(0.3)] == ["plain/t"]
    assert [p.topic for p in plus_sub.drain(0.3)] == ["plain/t"]


def test_dollar_topic_matched_by_explicit_filter(broker):
    # 4.7.2: "$foo/+" style filters match $-topics (clients may use non-$SYS $ topics)
    sub = raw(broker, "dl", version=V311)
    sub.subscribe([("$app/+", 0), ("#", 0)])
    Paho(broker, "pub").publish("$app/x", b"x", qos=1)
    got = sub.drain(0.5)
    assert [p.topic for p in got] == ["$app/x"]


@pytest.mark.parametrize("version", [V311, V5])
def test_suback_grants_requested_qos(broker, version):
    # [MQTT-3.8.4-5], [MQTT-3.9.3-1]: one return code per filter, in order
    c = raw(broker, "gr", version=version)
    ack = c.subscribe([("g/0", 0), ("g/1", 1), ("g/2", 2)], pid=42)
    assert ack.pid == 42                       # [MQTT-3.8.4-2]
    assert ack.reason_codes == [0, 1, 2]


@pytest.mark.parametrize("version", [V311, V5])
def test_max_qos_config_limits_granted_qos(make_broker, version):
    # [MQTT-3.8.4-6] / 5.0 3.2.2.3.4: server may grant a lower QoS
    b = make_broker("max_qos 1")
    c = raw(b, "mq", version=version)
    assert c.subscribe([("mq/t", 2)]).reason_codes == [1]
    p = raw(b, "pub", version=version)
    p.publish("mq/t", b"x", qos=1)
    got = c.recv_publishes(1)[0]
    assert got.qos == 1


def test_resubscribe_replaces_subscription(broker):
    # [MQTT-3.8.4-3]: an identical filter replaces the existing subscription; no duplicates
    c = raw(broker, "rs", version=V311)
    c.subscribe([("rs/t", 0)])
    assert c.subscribe([("rs/t", 1)], pid=2).reason_codes == [1]
    Paho(broker, "pub").publish("rs/t", b"x", qos=1)
    got = c.drain(0.5)
    assert len(got) == 1 and got[0].qos == 1


def test_v5_invalid_filter_suback_0x8f(broker):
    # 5.0 [MQTT-4.7.1-1], [MQTT-4.7.1-2]: '#' must be last; 0x8F Topic Filter invalid
    c = raw(broker, "inv", version=V5)
    c.send(M.subscribe_packet(3, [("ok/t", 1), ("a/#/b", 1), ("a/b+", 1)]))
    pkts = []
    try:
        ack = c.expect(M.SUBACK)
    except M.Closed:
        pytest.fail("broker closed instead of SUBACK 0x8F")
    assert ack.reason_codes == [1, 0x8F, 0x8F], pkts
    assert c.is_open()


def test_v311_invalid_filter_0x80_or_close(broker):
    # 3.1.1 [MQTT-4.7.3-? ] invalid filter: SUBACK 0x80 or the connection is closed
    c = raw(broker, "inv311", version=V311)
    c.send(M.subscribe_packet(3, [("a/#/b", 1)], version=4))
    try:
        ack = c.recv_packet()
    except M.Closed:
        return
    assert ack.type == M.SUBACK and ack.reason_codes == [0x80]


@pytest.mark.parametrize("version", [V311, V5])
def test_empty_subscribe_payload_is_protocol_error(broker, version):
    # [MQTT-3.8.3-3]: SUBSCRIBE must contain at least one filter
    c = raw(broker, "emp", version=version)
    c.send(M.subscribe_packet(1, [], version=version))
    assert c.wait_closed(T(5))


@pytest.mark.parametrize("version", [V311, V5])
def test_unsubscribe_stops_delivery(broker, version):
    # [MQTT-3.10.4-2]: the server stops adding new messages; [MQTT-3.10.4-4] UNSUBACK same id
    c = raw(broker, "uns", version=version)
    c.subscribe([("un/t", 1)])
    pub = Paho(broker, "pub")
    pub.publish("un/t", b"before", qos=1)
    assert c.recv_publishes(1)[0].payload == b"before"
    ack = c.unsubscribe(["un/t"], pid=77)
    assert ack.pid == 77
    if version == V5:
        assert ack.reason_codes == [0x00]
    pub.publish("un/t", b"after", qos=1)
    assert c.drain(0.5) == []


def test_v5_unsuback_0x11_for_unknown_filter(broker):
    # 5.0 3.11.3: 0x11 No subscription existed
    c = raw(broker, "u11", version=V5)
    c.subscribe([("there", 0)])
    ack = c.unsubscribe(["not/there", "there"], pid=5)
    assert ack.reason_codes == [0x11, 0x00]


def test_unsubscribe_exact_filter_only(broker):
    # [MQTT-3.10.4-1]: filters compared character by character, no wildcard matching
    c = raw(broker, "ue", version=V311)
    c.subscribe([("ue/+", 1)])
    c.unsubscribe(["ue/x"])
    Paho(broker, "pub").publish("ue/x", b"still", qos=1)
    assert [p.payload for p in c.drain(0.5)] == [b"still"]


# ---------------------------------------------------------------- MQTT 5 options

def test_v5_overlapping_subscriptions_single_delivery_all_ids(broker):
    # 5.0 [MQTT-3.3.4-2] highest granted QoS, [MQTT-3.3.4-3]/[MQTT-3.3.4-4] all
    # matching Subscription Identifiers in the single copy sent
    c = raw(broker, "ovl", version=V5)
    c.subscribe([("ov/+", M.sub_options(qos=1))], pid=1, props={M.SUBSCRIPTION_IDENTIFIER: 11})
    c.subscribe([("ov/#", M.sub_options(qos=2))], pid=2, props={M.SUBSCRIPTION_IDENTIFIER: 22})
    c.subscribe([("ov/t", M.sub_options(qos=0))], pid=3)
    Paho(broker, "pub").publish("ov/t", b"x", qos=2)
    got = c.drain(0.7)
    assert len(got) == 1, got
    assert got[0].qos == 2
    assert sorted(got[0].props.getall(M.SUBSCRIPTION_IDENTIFIER)) == [11, 22]


def test_v311_overlapping_subscriptions_max_qos(broker):
    # 3.1.1 [MQTT-3.3.5-1]: delivered respecting the maximum QoS of the matching subscriptions
    c = raw(broker, "ovl311", version=V311)
    c.subscribe([("o/+", 0), ("o/#", 2)])
    Paho(broker, "pub").publish("o/t", b"x", qos=2)
    got = c.drain(0.7)
    assert got and max(p.qos for p in got) == 2


def test_v5_subscription_identifier_on_delivery(broker):
    # 5.0 [MQTT-3.3.4-3]; identifiers are per subscription and replaced on resubscribe
    c = raw(broker, "sid", version=V5)
    c.subscribe([("sid/t", 1)], props={M.SUBSCRIPTION_IDENTIFIER: 268435455})
    pub = Paho(broker, "pub")
    pub.publish("sid/t", b"1", qos=1)
    assert c.recv_publishes(1)[0].props.getall(M.SUBSCRIPTION_IDENTIFIER) == [268435455]
    c.subscribe([("sid/t", 1)], pid=2, props={M.SUBSCRIPTION_IDENTIFIER: 7})
    pub.publish("sid/t", b"2", qos=1)
    assert c.recv_publishes(1)[0].props.getall(M.SUBSCRIPTION_IDENTIFIER) == [7]
    c.subscribe([("sid/t", 1)], pid=3)     # no identifier now
    pub.publish("sid/t", b"3", qos=1)
    assert c.recv_publishes(1)[0].props.getall(M.SUBSCRIPTION_IDENTIFIER) == []


def test_v5_subscription_identifier_zero_is_protocol_error(broker):
    # 5.0 3.8.2.1.2: identifier 0 is a Protocol Error -> DISCONNECT 0x82 / close
    c = raw(broker, "sid0", version=V5)
    c.send(M.subscribe_packet(1, [("t", 0)], props={M.SUBSCRIPTION_IDENTIFIER: 0}))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.DISCONNECT and p.rc in (0x81, 0x82)


def test_v5_connack_advertises_or_supports_subscription_ids(broker):
    # 5.0 3.2.2.3.12: absent or 1 means subscription identifiers are supported
    c = raw(broker, "adv", version=V5)
    assert c.connack.props.get(M.SUBSCRIPTION_IDENTIFIER_AVAILABLE, 1) == 1
    assert c.connack.props.get(M.WILDCARD_SUBSCRIPTION_AVAILABLE, 1) == 1
    assert c.connack.props.get(M.SHARED_SUBSCRIPTION_AVAILABLE, 1) == 1


def test_v5_no_local(broker):
    # 5.0 [MQTT-3.8.3-3]: no_local -> not forwarded to the publishing connection
    c = raw(broker, "nl", version=V5)
    c.subscribe([("nl/t", M.sub_options(qos=1, no_local=True))])
    other = raw(broker, "other", version=V5)
    other.subscribe([("nl/t", 1)])
    c.publish("nl/t", b"mine", qos=1)
    assert [p.payload for p in other.recv_publishes(1)] == [b"mine"]
    assert c.drain(0.5) == []
    other.publish("nl/t", b"theirs", qos=1)
    assert [p.payload for p in c.recv_publishes(1)] == [b"theirs"]


@pytest.mark.parametrize("rap", [False, True])
def test_v5_retain_as_published(broker, rap):
    # 5.0 [MQTT-3.3.1-12] RAP 0 -> retain 0 on forwarded messages; [MQTT-3.3.1-13] RAP 1 -> as published
    c = raw(broker, "rap", version=V5)
    c.subscribe([("rap/t", M.sub_options(qos=1, retain_as_published=rap))])
    pub = raw(broker, "pub", version=V5)
    pub.publish("rap/t", b"r", qos=1, retain=True)
    pub.publish("rap/t", b"n", qos=1, retain=False)
    got = c.recv_publishes(2)
    assert [(p.payload, p.retain) for p in got] == [(b"r", rap), (b"n", False)]


def _retained(broker, topic="rh/t"):
    Paho(broker, "setter").publish(topic, b"kept", qos=1, retain=True)


def test_v5_retain_handling_0_sends_on_every_subscribe(broker):
    # 5.0 [MQTT-3.3.1-9]
    _retained(broker)
    c = raw(broker, "rh0", version=V5)
    c.subscribe([("rh/t", M.sub_options(qos=1, retain_handling=0))])
    assert [p.payload for p in c.recv_publishes(1)] == [b"kept"]
    c.subscribe([("rh/t", M.sub_options(qos=1, retain_handling=0))], pid=2)
    got = c.recv_publishes(1)
    assert got[0].payload == b"kept" and got[0].retain


def test_v5_retain_handling_1_only_new_subscription(broker):
    # 5.0 [MQTT-3.3.1-10]
    _retained(broker)
    c = raw(broker, "rh1", version=V5)
    c.subscribe([("rh/t", M.sub_options(qos=1, retain_handling=1))])
    assert [p.payload for p in c.recv_publishes(1)] == [b"kept"]
    c.subscribe([("rh/t", M.sub_options(qos=1, retain_handling=1))], pid=2)
    assert c.drain(0.5) == []


def test_v5_retain_handling_2_never(broker):
    # 5.0 [MQTT-3.3.1-11]
    _retained(broker)
    c = raw(broker, "rh2", version=V5)
    c.subscribe([("rh/t", M.sub_options(qos=1, retain_handling=2))])
    assert c.drain(0.5) == []
    Paho(broker, "pub").publish("rh/t", b"live", qos=1)
    assert [p.payload for p in c.recv_publishes(1)] == [b"live"]


def test_v5_retain_handling_3_is_protocol_error(broker):
    # 5.0 3.8.3.1: retain handling 3 is a Protocol Error
    c = raw(broker, "rh3", version=V5)
    c.send(M.subscribe_packet(1, [("t", 0x30)]))
    assert c.wait_closed(T(5))


def test_v5_reserved_subscription_option_bits_malformed(broker):
    # 5.0 [MQTT-3.8.3-5]: bits 6 and 7 must be 0
    c = raw(broker, "rsvb", version=V5)
    c.send(M.subscribe_packet(1, [("t", 0x40 | 1)]))
    assert c.wait_closed(T(5))


def test_v5_subscribe_user_property_accepted(broker):
    # 5.0 3.8.2.1.3: user properties on SUBSCRIBE are allowed
    c = raw(broker, "sup", version=V5)
    ack = c.subscribe([("up/t", 1)], props=[(M.USER_PROPERTY, ("k", "v"))])
    assert ack.reason_codes == [1]
