"""CONNECT / CONNACK, keep alive and session takeover (MQTT 3.1.1 ch. 3.1-3.2, MQTT 5.0 ch. 3.1-3.2)."""

import time

import pytest

import mqttraw as M
from helpers import T, V311, V5, Paho, raw, raw_socket, still_serves


# ---------------------------------------------------------------- protocol name / level

def test_v311_connect_accepted(broker):
    # 3.1.1 [MQTT-3.2.2-3]: return code 0 on acceptance; session present 0 with clean session 1
    c = raw(broker, "c311", version=V311)
    assert c.connack.rc == 0
    assert not c.connack.session_present
    assert len(c.connack.body) == 2


def test_v5_connect_accepted(broker):
    # 5.0 3.2.2: CONNACK with reason code 0x00 and a property list
    c = raw(broker, "c5", version=V5)
    assert c.connack.rc == 0
    assert not c.connack.session_present


def test_v31_mqisdp_accepted(broker):
    # MQTT 3.1: protocol name "MQIsdp", level 3
    c = raw(broker, "c31", version=3)
    assert c.connack.rc == 0
    c.send(M.subscribe_packet(1, [("t/31", 1)], version=3))
    assert c.expect(M.SUBACK).reason_codes == [1]
    c.publish("t/31", b"x", qos=1)
    p = c.next_publish()
    assert (p.topic, p.payload) == ("t/31", b"x")


@pytest.mark.parametrize("level", [2, 6, 7, 255])
def test_v311_unacceptable_protocol_level_connack_0x01_then_close(broker, level):
    # 3.1.1 [MQTT-3.1.2-2]: unsupported level -> CONNACK 0x01 and disconnect
    c = raw_socket(broker, version=V311)
    c.send(M.connect_packet("badlevel", version=4, protocol_level=level))
    assert c.wait_closed(T(5)), "connection left open"
    connacks = [p for p in c.before_close if p.type == M.CONNACK]
    assert connacks, "no CONNACK before close"
    assert connacks[0].rc in (0x01, 0x84)
    if level < 5:
        assert connacks[0].rc == 0x01


def test_v5_unknown_protocol_level_refused(broker):
    # 5.0 [MQTT-3.1.2-2]: MAY send CONNACK 0x84, MUST close
    c = raw_socket(broker)
    c.send(M.connect_packet("lvl6", version=5, protocol_level=6))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.CONNACK and p.rc in (0x01, 0x84), p


def test_bad_protocol_name_closed(broker):
    # 3.1.1 [MQTT-3.1.2-1] / 5.0 3.1.2.1: wrong protocol name -> close (5.0 may send 0x84)
    c = raw_socket(broker, version=V311)
    c.send(M.connect_packet("badname", version=4, protocol_name="MQTX"))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.CONNACK and p.rc != 0


@pytest.mark.parametrize("version", [V311, V5])
def test_reserved_connect_flag_closes(broker, version):
    # [MQTT-3.1.2-3]: reserved flag bit 0 must be 0, otherwise malformed -> close
    c = raw_socket(broker, version=version)
    c.send(M.connect_packet("rsv", version=version, flags_override=0x03))
    assert c.wait_closed(T(5))
    assert all(p.type in (M.CONNACK, M.DISCONNECT) and p.rc != 0 for p in c.before_close)
    still_serves(broker)


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("flags,why", [
    (0x02 | 0x08, "will qos 1 without will flag"),        # [MQTT-3.1.2-13]
    (0x02 | 0x20, "will retain without will flag"),       # [MQTT-3.1.2-15]
    (0x02 | 0x04 | 0x18, "will qos 3"),                   # [MQTT-3.1.2-14]
])
def test_inconsistent_will_flags_close(broker, version, flags, why):
    c = raw_socket(broker, version=version)
    will = {"topic": "w", "payload": b"x"} if flags & 0x04 else None
    c.send(M.connect_packet("wf", version=version, will=will, flags_override=flags))
    assert c.wait_closed(T(5)), why
    assert all(p.type in (M.CONNACK, M.DISCONNECT) and p.rc != 0 for p in c.before_close)


def test_v311_password_without_username_closes(broker):
    # 3.1.1 [MQTT-3.1.2-22]: password flag must be 0 when user name flag is 0
    c = raw_socket(broker, version=V311)
    c.send(M.connect_packet("pwonly", version=4, password=b"secret"))
    assert c.wait_closed(T(5))
    assert all(p.type == M.CONNACK and p.rc != 0 for p in c.before_close)


def test_v5_password_without_username_allowed(broker):
    # 5.0 3.1.2.9: a password without a user name is allowed
    c = raw(broker, "pwonly5", version=V5, password=b"secret")
    assert c.connack.rc == 0


# ---------------------------------------------------------------- client identifier

def test_v311_empty_client_id_without_clean_session_rejected(broker):
    # 3.1.1 [MQTT-3.1.3-8]: CONNACK 0x02 then close
    c = raw_socket(broker, version=V311)
    c.send(M.connect_packet("", version=4, clean=False))
    ack = c.expect(M.CONNACK)
    assert ack.rc == 0x02
    assert c.wait_closed(T(5))


def test_v311_empty_client_id_with_clean_session_accepted(broker):
    # 3.1.1 [MQTT-3.1.3-6]
    c = raw(broker, "", version=V311, clean=True)
    assert c.connack.rc == 0
    assert c.subscribe("t/e").reason_codes == [2]


def test_v5_empty_client_id_gets_assigned_identifier(broker):
    # 5.0 [MQTT-3.1.3-6], [MQTT-3.2.2-16]: Assigned Client Identifier in CONNACK
    c = raw(broker, "", version=V5)
    assigned = c.connack.props.get(M.ASSIGNED_CLIENT_IDENTIFIER)
    assert assigned, c.connack
    d = raw(broker, "", version=V5)
    assert d.connack.props.get(M.ASSIGNED_CLIENT_IDENTIFIER) not in (None, assigned)


def test_v5_nonempty_client_id_not_reassigned(broker):
    # 5.0 3.2.2.3.7: the property is only sent for a zero length client id
    c = raw(broker, "mine", version=V5)
    assert M.ASSIGNED_CLIENT_IDENTIFIER not in c.connack.props


def test_long_client_id_accepted(broker):
    # 3.1.1 [MQTT-3.1.3-5] servers may accept longer ids; 23+ chars are common
    c = raw(broker, "x" * 100, version=V311)
    assert c.connack.rc == 0


# ---------------------------------------------------------------- packet order

@pytest.mark.parametrize("version", [V311, V5])
def test_first_packet_not_connect_closes(broker, version):
    # [MQTT-3.1.0-1]
    c = raw_socket(broker, version=version)
    c.send(M.subscribe_packet(1, [("a", 0)], version=version))
    assert c.wait_closed(T(5))
    assert not any(p.type == M.SUBACK for p in c.before_close)


def test_publish_before_connect_not_routed(broker):
    # [MQTT-3.1.0-1]: nothing sent before CONNECT is processed
    sub = Paho(broker, "watch")
    sub.subscribe("pre/#", 1)
    c = raw_socket(broker, version=V311)
    c.send(M.publish_packet("pre/x", b"nope", version=4))
    assert c.wait_closed(T(5))
    sub.nothing(0.5)


@pytest.mark.parametrize("version", [V311, V5])
def test_second_connect_closes(broker, version):
    # [MQTT-3.1.0-2]: second CONNECT is a protocol violation (5.0: DISCONNECT 0x82 allowed)
    c = raw(broker, "twice", version=version)
    c.send(M.connect_packet("twice", version=version))
    assert c.wait_closed(T(5))
    for p in c.before_close:
        assert p.type == M.DISCONNECT and p.rc == 0x82, p


# ---------------------------------------------------------------- keep alive

@pytest.mark.parametrize("version", [V311, V5])
def test_keepalive_timeout_disconnects_and_sends_will(broker, version):
    # [MQTT-3.1.2-24]: no packet within 1.5 x Keep Alive -> disconnect; will is published
    watcher = Paho(broker, "watch")
    watcher.subscribe("will/ka", 1)
    c = raw(broker, "silent", version=version, keepalive=2,
            will={"topic": "will/ka", "payload": b"gone", "qos": 1})
    t0 = time.monotonic()
    assert c.wait_closed(T(6)), "silent client not disconnected"
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.9, "disconnected before the keep alive elapsed (%.2f s)" % elapsed
    assert elapsed <= 3.0 + 1.5 * T(1), "disconnected too late (%.2f s)" % elapsed
    m = watcher.expect_one(T(3))
    assert m.payload == b"gone"


def test_keepalive_pings_keep_connection_open(broker):
    # [MQTT-3.1.2-23] PINGREQ resets the keep alive timer; [MQTT-3.12.4-1] PINGRESP
    c = raw(broker, "pinger", version=V311, keepalive=1)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        c.send(M.pingreq_packet())
        assert c.expect(M.PINGRESP).type == M.PINGRESP
        time.sleep(0.5)
    assert c.is_open()


def test_keepalive_zero_never_times_out(broker):
    # [MQTT-3.1.2-? ] Keep Alive 0 turns the mechanism off
    c = raw(broker, "zero", version=V311, keepalive=0)
    assert not c.wait_closed(2.5)
    assert c.is_open()


@pytest.mark.parametrize("client_ka", [60, 0])
def test_v5_max_keepalive_server_keep_alive(make_broker, client_ka):
    # 5.0 [MQTT-3.2.2-21]: Server Keep Alive in CONNACK, the client must use it
    b = make_broker("max_keepalive 10")
    c = raw(b, "ka%d" % client_ka, version=V5, keepalive=client_ka)
    assert c.connack.props.get(M.SERVER_KEEP_ALIVE) == 10, c.connack


def test_v5_keepalive_within_max_not_overridden(make_broker):
    # 5.0 3.2.2.3.14: without Server Keep Alive the client's value is used; when
    # present it must not exceed the configured maximum
    b = make_broker("max_keepalive 10")
    c = raw(b, "ka5", version=V5, keepalive=5)
    ska = c.connack.props.get(M.SERVER_KEEP_ALIVE)
    assert ska in (None, 5), c.connack


# ---------------------------------------------------------------- session takeover

def test_v5_takeover_sends_disconnect_0x8e(broker):
    # 5.0 [MQTT-3.1.4-3]: existing client is disconnected with 0x8E Session taken over
    first = raw(broker, "dup-id", version=V5)
    second = raw(broker, "dup-id", version=V5)
    assert second.connack.rc == 0
    assert first.wait_closed(T(5))
    discs = [p for p in first.before_close if p.type == M.DISCONNECT]
    assert discs and discs[0].rc == 0x8E, first.before_close
    assert second.is_open()


def test_v311_takeover_closes_first(broker):
    # 3.1.1 [MQTT-3.1.4-2]
    first = raw(broker, "dup311", version=V311)
    second = raw(broker, "dup311", version=V311)
    assert second.connack.rc == 0
    assert first.wait_closed(T(5))
    assert second.is_open()


def test_takeover_keeps_session_subscriptions(broker):
    # [MQTT-3.1.4-3]: with clean start 0 the new connection continues the session
    first = raw(broker, "keep", version=V5, clean=False,
                props={M.SESSION_EXPIRY_INTERVAL: 60})
    first.subscribe([("keep/t", 1)])
    second = raw(broker, "keep", version=V5, clean=False,
                 props={M.SESSION_EXPIRY_INTERVAL: 60})
    assert second.connack.session_present
    p = Paho(broker, "pub")
    p.publish("keep/t", b"after", qos=1)
    got = second.recv_publishes(1)
    assert got[0].payload == b"after"


# ---------------------------------------------------------------- session present

@pytest.mark.parametrize("version", [V311, V5])
def test_session_present_flag(broker, version):
    # [MQTT-3.2.2-2] (3.1.1) / [MQTT-3.2.2-3] (5.0)
    kw = {"props": {M.SESSION_EXPIRY_INTERVAL: 60}} if version == V5 else {}
    a = raw(broker, "sp", version=version, clean=False, **kw)
    assert not a.connack.session_present      # no session before
    a.subscribe([("sp/t", 1)])
    a.disconnect()
    b = raw(broker, "sp", version=version, clean=False, **kw)
    assert b.connack.session_present          # resumed
    b.disconnect()
    c = raw(broker, "sp", version=version, clean=True, **kw)
    assert not c.connack.session_present      # clean start -> 0 [MQTT-3.2.2-1]/[MQTT-3.2.2-2]


def test_v5_session_expiry_zero_ends_session_on_disconnect(broker):
    # 5.0 3.1.2.11.2: Session Expiry Interval absent/0 -> session ends with the connection
    a = raw(broker, "se0", version=V5, clean=False)
    a.subscribe([("se0/t", 1)])
    a.disconnect()
    time.sleep(0.2)
    b = raw(broker, "se0", version=V5, clean=False)
    assert not b.connack.session_present
