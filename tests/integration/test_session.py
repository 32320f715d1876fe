"""Session state: persistence, expiry, queued and redelivered messages
(MQTT 3.1.1 section 4.1, 4.4; MQTT 5.0 sections 3.1.2.4, 3.1.2.11.2, 4.1, 4.4)."""

import time

import mqttraw as M
from helpers import T, V311, V5, Paho, raw


def test_v5_session_expires_after_interval(broker):
    # 5.0 3.1.2.11.2 [MQTT-3.1.2-23]: the session is discarded once the interval passes
    a = raw(broker, "exp", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 2})
    a.subscribe([("exp/t", 1)])
    a.disconnect()
    time.sleep(3.0)
    b = raw(broker, "exp", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 2})
    assert not b.connack.session_present
    pub = Paho(broker, "pub")
    pub.publish("exp/t", b"x", qos=1)
    assert b.drain(0.7) == [], "subscription survived session expiry"


def test_v5_session_within_expiry_keeps_queued_qos1(broker):
    # 5.0 [MQTT-3.1.2-23], 4.1: QoS 1/2 messages are queued for the offline session
    a = raw(broker, "q1", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 30})
    a.subscribe([("q/t", 1)])
    a.disconnect()
    pub = Paho(broker, "pub")
    for i in range(5):
        pub.publish("q/t", b"m%d" % i, qos=1)
    b = raw(broker, "q1", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 30})
    assert b.connack.session_present
    got = b.recv_publishes(5)
    assert [p.payload for p in got] == [b"m%d" % i for i in range(5)]   # order [MQTT-4.6.0-6]
    assert all(p.qos == 1 for p in got)


def test_v311_persistent_session_queues_messages(broker):
    # 3.1.1 [MQTT-3.1.2-4], [MQTT-3.1.2-5]: clean session 0 keeps subscriptions and QoS 1/2 messages
    a = raw(broker, "p311", version=V311, clean=False)
    a.subscribe([("p/+", 2)])
    a.disconnect()
    pub = Paho(broker, "pub", version=V311)
    pub.publish("p/1", b"one", qos=1)
    pub.publish("p/2", b"two", qos=2)
    pub.publish("p/0", b"zero", qos=0)   # QoS 0 may or may not be queued
    b = raw(broker, "p311", version=V311, clean=False)
    assert b.connack.session_present
    got = b.drain(1.0)
    payloads = [p.payload for p in got if p.payload != b"zero"]
    assert payloads == [b"one", b"two"]
    assert [p.qos for p in got if p.payload != b"zero"] == [1, 2]


def test_v311_clean_session_discards_state(broker):
    # 3.1.1 [MQTT-3.1.2-6]: clean session 1 -> previous session discarded
    a = raw(broker, "cs", version=V311, clean=False)
    a.subscribe([("cs/t", 1)])
    a.disconnect()
    b = raw(broker, "cs", version=V311, clean=True)
    assert not b.connack.session_present
    pub = Paho(broker, "pub")
    pub.publish("cs/t", b"x", qos=1)
    assert b.drain(0.7) == []
    b.disconnect()
    # [MQTT-3.1.2-? ] the clean session is not kept after disconnect either
    c = raw(broker, "cs", version=V311, clean=False)
    assert not c.connack.session_present


def test_v5_clean_start_discards_queued(broker):
    # 5.0 [MQTT-3.1.2-4]: Clean Start 1 discards any existing session
    a = raw(broker, "csq", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 30})
    a.subscribe([("csq/t", 1)])
    a.disconnect()
    Paho(broker, "pub").publish("csq/t", b"x", qos=1)
    b = raw(broker, "csq", version=V5, clean=True, props={M.SESSION_EXPIRY_INTERVAL: 30})
    assert not b.connack.session_present
    assert b.drain(0.7) == []


def test_v5_disconnect_can_shorten_session_expiry(broker):
    # 5.0 3.14.2.2.2: the DISCONNECT may change the Session Expiry Interval (non-zero -> 0 ends it)
    a = raw(broker, "shorten", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    a.subscribe([("sh/t", 1)])
    a.disconnect(rc=0, props={M.SESSION_EXPIRY_INTERVAL: 0})
    time.sleep(0.3)
    b = raw(broker, "shorten", version=V5, clean=False)
    assert not b.connack.session_present


def test_v5_disconnect_cannot_set_expiry_when_connect_had_zero(broker):
    # 5.0 [MQTT-3.14.2-2]: session expiry 0 at CONNECT and non-zero at DISCONNECT
    # is a protocol error -> the server sends DISCONNECT 0x82 (or closes)
    a = raw(broker, "noset", version=V5)
    a.send(M.disconnect_packet(0, {M.SESSION_EXPIRY_INTERVAL: 30}))
    assert a.wait_closed(T(5))
    for p in a.before_close:
        assert p.type == M.DISCONNECT and p.rc == 0x82
    time.sleep(0.2)
    b = raw(broker, "noset", version=V5, clean=False)
    assert not b.connack.session_present


def test_unacked_qos1_redelivered_with_dup_in_order(broker):
    # 5.0 [MQTT-4.4.0-1], [MQTT-3.3.1-1], [MQTT-4.6.0-1]: unacknowledged PUBLISH
    # packets are resent on reconnect with Clean Start 0, DUP=1, original order
    a = raw(broker, "redeliver", version=V5, clean=False,
            props={M.SESSION_EXPIRY_INTERVAL: 60})
    a.subscribe([("rd/t", 1)])
    pub = Paho(broker, "pub")
    for i in range(4):
        pub.publish("rd/t", b"r%d" % i, qos=1)
    first = a.recv_publishes(4, ack=False)
    assert [p.payload for p in first] == [b"r%d" % i for i in range(4)]
    assert not any(p.dup for p in first)
    a.close()
    b = raw(broker, "redeliver", version=V5, clean=False,
            props={M.SESSION_EXPIRY_INTERVAL: 60})
    assert b.connack.session_present
    again = b.recv_publishes(4)
    assert [p.payload for p in again] == [b"r%d" % i for i in range(4)]
    assert all(p.dup for p in again), again
    assert [p.pid for p in again] == [p.pid for p in first]
    assert b.drain(0.5) == []


def test_v311_unacked_qos1_redelivered_with_dup(broker):
    # 3.1.1 [MQTT-4.4.0-1]
    a = raw(broker, "rd311", version=V311, clean=False)
    a.subscribe([("rd311/t", 1)])
    pub = Paho(broker, "pub", version=V311)
    pub.publish("rd311/t", b"a", qos=1)
    pub.publish("rd311/t", b"b", qos=1)
    first = a.recv_publishes(2, ack=False)
    a.close()
    b = raw(broker, "rd311", version=V311, clean=False)
    again = b.recv_publishes(2)
    assert [p.payload for p in again] == [b"a", b"b"]
    assert all(p.dup for p in again)
    assert [p.pid for p in again] == [p.pid for p in first]


def test_qos2_pubrel_resent_after_reconnect(broker):
    # [MQTT-4.4.0-1]: an unacknowledged PUBREL is resent on reconnect
    a = raw(broker, "rel", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    a.subscribe([("rel/t", 2)])
    Paho(broker, "pub").publish("rel/t", b"q2", qos=2)
    p = a.next_publish()
    assert p.qos == 2
    a.send(M.ack_packet(M.PUBREC, p.pid))
    rel = a.expect(M.PUBREL)
    assert rel.pid == p.pid and rel.flags == 0x02    # [MQTT-3.6.1-1]
    a.close()
    b = raw(broker, "rel", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    rel2 = b.expect(M.PUBREL)
    assert rel2.pid == p.pid
    b.send(M.ack_packet(M.PUBCOMP, rel2.pid))
    assert b.drain(0.5) == []     # the message itself is not sent again


def test_offline_messages_delivered_in_order_mixed_qos(broker):
    # [MQTT-4.6.0-6]: ordered topic, messages delivered in the order published
    a = raw(broker, "order", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    a.subscribe([("ord/t", 2)])
    a.disconnect()
    pub = Paho(broker, "pub")
    for i in range(20):
        pub.publish("ord/t", b"%02d" % i, qos=1 + i % 2)
    b = raw(broker, "order", version=V5, clean=False, props={M.SESSION_EXPIRY_INTERVAL: 60})
    got = b.recv_publishes(20)
    assert [p.payload for p in got] == [b"%02d" % i for i in range(20)]


def test_packet_ids_nonzero_and_unique_while_in_flight(broker):
    # [MQTT-2.3.1-1] non-zero; [MQTT-2.3.1-2]/[MQTT-2.2.1-3] not reused while unacknowledged
    sub = raw(broker, "ids", version=V311, clean=True)
    sub.subscribe([("ids/t", 1)])
    pub = raw(broker, "idpub", version=V311)
    for i in range(100):
        pub.publish("ids/t", b"%03d" % i, qos=1, wait=False)
    unacked = {}
    received = []
    deadline = time.monotonic() + T(20)
    while len(received) < 100 and time.monotonic() < deadline:
        batch = sub.drain(0.3, ack=False, limit=100)
        for p in batch:
            assert p.pid != 0
            assert p.pid not in unacked, "packet id %d reused while in flight" % p.pid
            unacked[p.pid] = p
            received.append(p.payload)
        # acknowledge late: the oldest half of what is outstanding
        for pid in list(unacked)[: max(1, len(unacked) // 2)]:
            sub.send(M.ack_packet(M.PUBACK, pid, version=4))
            del unacked[pid]
        # the publisher's PUBACKs pile up on its socket; read them out
        pub.collect(0.01)
    assert sorted(set(received)) == [b"%03d" % i for i in range(100)]
    assert received == [b"%03d" % i for i in range(100)]
