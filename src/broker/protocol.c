/* protocol.c - what the broker does with each packet a client sends.
 *
 * Every check that needs session or connection state lives here (the codec
 * has already checked everything one packet shows on its own). MQTT 5
 * clients get the reason code the specification names; MQTT 3.x clients,
 * which have no way to be told, are disconnected. A PUBLISH is routed
 * before it is acknowledged.
 */
#include "broker/protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "auth/acl.h"
#include "broker/auth.h"
#include "broker/message.h"
#include "broker/persist.h"
#include "broker/retain.h"
#include "broker/router.h"
#include "broker/session.h"
#include "mqtt/codec.h"
#include "mqtt/topic.h"
#include "net/conn.h"
#include "net/listener.h"
#include "net/worker.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

/* MQTT 3.1 limits client identifiers to 23 bytes. */
#define MQTT31_CLIENT_ID_MAX 23
/* Longest delay accepted by $delayed/{seconds}/topic: about 49 days. */
#define DELAYED_MAX_SECONDS 4294967u

static bool is_v5(const struct conn *c) { return c->version == MQTT_V5; }

/* max_qos and max_topic_alias may be set per listener; the listener's
 * value is the effective one (finalize copies the global one into it). */
static uint8_t max_qos_of(const struct conn *c)
{
    return (uint8_t)c->listener->conf->max_qos;
}

static uint16_t max_alias_of(const struct conn *c)
{
    return (uint16_t)c->listener->conf->max_topic_alias;
}

static const char *client_name(const struct conn *c)
{
    return c->client_id ? c->client_id : c->peer;
}

static void send_packet(struct conn *c, const struct mqtt_packet *p)
{
    size_t n = mqtt_encoded_len(p, c->version);
    uint8_t *d = conn_reserve(c, n);
    if (!d)
        return;
    if (mqtt_encode(p, c->version, d, n) != n) {
        log_error("client %s: cannot encode packet type %d", client_name(c), p->type);
        return;
    }
    conn_commit(c, n);
}

static void send_ack(struct conn *c, uint8_t type, uint16_t pid, uint8_t reason)
{
    struct mqtt_packet p;
    memset(&p, 0, sizeof(p));
    p.type = type;
    p.u.ack.packet_id = pid;
    p.u.ack.reason = is_v5(c) ? reason : 0;
    send_packet(c, &p);
}

static void set_reason_string(struct mqtt_props *props, const char *why)
{
    if (!why)
        return;
    mqtt_props_set(props, MQTT_PROP_REASON_STRING);
    props->reason_string.ptr = (const uint8_t *)why;
    props->reason_string.len = (uint32_t)strlen(why);
}

/* DISCONNECT from the server (MQTT 5 only; 3.x has none). A reason string
 * may always go with it (the Request Problem Information rule exempts it). */
static void send_disconnect(struct conn *c, uint8_t reason, const char *why)
{
    if (!is_v5(c))
        return;
    struct mqtt_packet p;
    memset(&p, 0, sizeof(p));
    p.type = MQTT_DISCONNECT;
    p.u.disconnect.reason = reason;
    set_reason_string(&p.u.disconnect.props, why);
    send_packet(c, &p);
}

/* A protocol violation by an active client: MQTT 5 gets DISCONNECT with
 * the reason, 3.x a closed connection; the will is published either way. */
static enum protocol_result violation(struct worker *w, struct conn *c, uint8_t reason,
                                      const char *what)
{
    STAT_ADD(&w->stats, protocol_errors, 1);
    log_notice("client %s: %s (reason 0x%02x), disconnecting", client_name(c), what, reason);
    send_disconnect(c, reason, what);
    conn_close(c, true);
    return PROTOCOL_STOP;
}

void protocol_reject(struct worker *w, struct conn *c, uint8_t reason)
{
    STAT_ADD(&w->stats, protocol_errors, 1);
    if (c->state == CONN_NEW) {
        if (reason == MQTT_RC_UNSUPPORTED_VERSION) {
            /* 3.1.1 section 3.1.2.2: CONNACK 0x01, then close. A 3.x-format
             * CONNACK is the one every version of client can read. */
            uint8_t connack[4] = {0x20, 2, 0, MQTT3_REFUSED_VERSION};
            conn_write(c, connack, sizeof(connack));
        }
        log_notice("client %s: invalid CONNECT (reason 0x%02x), closing", c->peer, reason);
        conn_close(c, false);
        return;
    }
    log_notice("client %s: invalid packet (reason 0x%02x), disconnecting", client_name(c), reason);
    send_disconnect(c, reason, NULL);
    conn_close(c, true);
}

/* ---- CONNECT ---------------------------------------------------------- */

static void send_connack(struct conn *c, bool present, uint8_t code, const struct mqtt_props *props)
{
    struct mqtt_packet p;
    memset(&p, 0, sizeof(p));
    p.type = MQTT_CONNACK;
    p.u.connack.session_present = present;
    p.u.connack.code = code;
    if (props)
        p.u.connack.props = *props;
    send_packet(c, &p);
}

/* Refuse a CONNECT: the reason for 5.0, the return code for 3.x. */
static enum protocol_result refuse(struct worker *w, struct conn *c, uint8_t rc5, uint8_t rc3,
                                   const char *why)
{
    log_notice("client %s refused: %s", c->peer, why);
    struct mqtt_props props;
    memset(&props, 0, sizeof(props));
    set_reason_string(&props, why);
    send_connack(c, false, is_v5(c) ? rc5 : rc3, &props);
    conn_close(c, false);
    return PROTOCOL_STOP;
}

/* An identifier for a client that sent none, chosen so that it belongs to
 * this worker (no move needed). */
static size_t assign_client_id(struct worker *w, const char *prefix, char *out, size_t cap,
                               uint32_t *hash)
{
    const struct broker *b = w->broker;
    for (;;) {
        uint64_t r = rng_next(&w->rng);
        int n = snprintf(out, cap, "%s%016llx", prefix ? prefix : "", (unsigned long long)r);
        size_t len = n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
        *hash = hash_bytes(out, len, b->hash_seed);
        if ((int)(*hash % (uint32_t)b->worker_count) == w->id)
            return len;
    }
}

/* The forwardable MQTT 5 properties of a PUBLISH or will, re-encoded in
 * the order received for user properties. Returns the length written to
 * out (which must hold mqtt_props_len(props) bytes). */
static size_t forward_props(const struct mqtt_props *p, uint8_t *out)
{
    uint8_t *o = out;
    if (mqtt_props_has(p, MQTT_PROP_PAYLOAD_FORMAT)) {
        *o++ = MQTT_PROP_PAYLOAD_FORMAT;
        *o++ = p->payload_format;
    }
    const struct {
        uint8_t id;
        const struct mqtt_bytes *v;
    } strs[] = {
        {MQTT_PROP_CONTENT_TYPE, &p->content_type},
        {MQTT_PROP_RESPONSE_TOPIC, &p->response_topic},
        {MQTT_PROP_CORRELATION_DATA, &p->correlation_data},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (!mqtt_props_has(p, strs[i].id))
            continue;
        *o++ = strs[i].id;
        *o++ = (uint8_t)(strs[i].v->len >> 8);
        *o++ = (uint8_t)strs[i].v->len;
        memcpy(o, strs[i].v->ptr, strs[i].v->len);
        o += strs[i].v->len;
    }
    /* The decoded slice may hold other properties interleaved with the
     * user properties (topic alias, will delay, ...): copy only the user
     * properties, or those would be forwarded and written twice. */
    struct mqtt_bytes key, val;
    uint32_t pos = 0;
    while (mqtt_user_props_next(&p->user_props, &pos, &key, &val)) {
        const uint8_t *start = key.ptr - 3; /* 0x26 and the key length */
        size_t n = (size_t)(val.ptr + val.len - start);
        memcpy(o, start, n);
        o += n;
    }
    return (size_t)(o - out);
}

/* Build a message: mount point prefix, forwarded properties, expiry. */
static struct message *make_message(struct conn *c, const struct session *s,
                                    const struct mqtt_bytes *topic,
                                    const struct mqtt_bytes *payload,
                                    const struct mqtt_props *props, uint8_t qos, bool retain,
                                    bool with_expiry)
{
    uint8_t stack_t[256], stack_p[512];
    uint8_t *t = stack_t, *pr = stack_p;
    size_t tlen = c->mount_len + topic->len;
    size_t plen_max = is_v5(c) ? mqtt_props_len(props) : 0;
    struct message *m = NULL;
    if (tlen > 65535)
        return NULL;
    if (tlen > sizeof(stack_t) && !(t = malloc(tlen)))
        goto out;
    if (plen_max > sizeof(stack_p) && !(pr = malloc(plen_max)))
        goto out;
    if (c->mount_len)
        memcpy(t, c->mount, c->mount_len);
    memcpy(t + c->mount_len, topic->ptr, topic->len);
    size_t plen = is_v5(c) ? forward_props(props, pr) : 0;
    uint64_t expiry_at = 0;
    if (with_expiry && is_v5(c) && mqtt_props_has(props, MQTT_PROP_MESSAGE_EXPIRY))
        expiry_at = clock_wall_ms() + (uint64_t)props->message_expiry * 1000u;
    m = message_new(t, tlen, payload->ptr, payload->len, pr, plen, qos, retain, expiry_at,
                    s->id, s->client_hash);
out:
    if (t != stack_t)
        free(t);
    if (pr != stack_p)
        free(pr);
    return m;
}

/* The will of a CONNECT, checked against the broker's limits. Returns a
 * reason code (0 = fine). */
static uint8_t take_will(struct worker *w, struct conn *c, struct session *s,
                         const struct mqtt_connect *k)
{
    const struct config *cf = w->broker->conf;
    if (s->will) {
        message_unref(s->will);
        s->will = NULL;
    }
    s->will_at = 0;
    if (!k->will_flag)
        return 0;
    uint8_t qos = k->will_qos;
    bool retain = k->will_retain;
    if (qos > max_qos_of(c)) {
        if (is_v5(c))
            return MQTT_RC_QOS_NOT_SUPPORTED;
        qos = max_qos_of(c);
    }
    if (retain && !cf->retain_available) {
        if (is_v5(c))
            return MQTT_RC_RETAIN_NOT_SUPPORTED;
        retain = false;
    }
    /* Clients do not publish into $SYS/, by PUBLISH or by will: such a
     * will is not kept (as such a PUBLISH is acknowledged and dropped). */
    if (k->will_topic.len >= 5 && memcmp(k->will_topic.ptr, "$SYS/", 5) == 0) {
        log_notice("client %s: will on %.*s ignored: $SYS is the broker's", c->peer,
                   (int)k->will_topic.len, (const char *)k->will_topic.ptr);
        return 0;
    }
    if (c->acl && !acl_allows(c->acl, k->will_topic.ptr, k->will_topic.len, ACL_WRITE)) {
        log_notice("client %s: will on %.*s ignored: the ACL does not let it write there",
                   c->peer, (int)k->will_topic.len, (const char *)k->will_topic.ptr);
        return 0;
    }
    s->will = make_message(c, s, &k->will_topic, &k->will_payload, &k->will_props, qos, retain,
                           false);
    if (!s->will)
        return MQTT_RC_UNSPECIFIED;
    s->will_delay = is_v5(c) && mqtt_props_has(&k->will_props, MQTT_PROP_WILL_DELAY)
                        ? k->will_props.will_delay : 0;
    s->will_expiry = is_v5(c) && mqtt_props_has(&k->will_props, MQTT_PROP_MESSAGE_EXPIRY)
                         ? k->will_props.message_expiry : 0;
    return 0;
}

/* persistent_client_expiration bounds sessions that would never end. */
static uint32_t bound_expiry(const struct config *cf, uint32_t e)
{
    if (e == SESSION_EXPIRY_NEVER && cf->persistent_client_expiration >= 0)
        e = cf->persistent_client_expiration >= SESSION_EXPIRY_NEVER
                ? SESSION_EXPIRY_NEVER - 1 : (uint32_t)cf->persistent_client_expiration;
    return e;
}

static uint32_t session_expiry_of(const struct config *cf, const struct conn *c,
                                  const struct mqtt_connect *k)
{
    uint32_t e;
    if (is_v5(c))
        e = mqtt_props_has(&k->props, MQTT_PROP_SESSION_EXPIRY) ? k->props.session_expiry : 0;
    else
        e = k->clean_start ? 0 : SESSION_EXPIRY_NEVER;
    return bound_expiry(cf, e);
}

/* Another connection has the client id: the old one goes (MQTT 5 3.1.4-3).
 * Returns false when that ended the session (its expiry was 0). */
static bool take_over(struct worker *w, struct session *s)
{
    struct conn *old = s->conn;
    /* An old connection already closing (its DISCONNECT or error was read
     * in this loop iteration) keeps the will decision made then: a normal
     * DISCONNECT discards the will (MQTT 5 3.14.4). */
    bool closing = old->state == CONN_CLOSING;
    bool will = closing ? old->will_on_close : true;
    log_info("client %s already connected, closing old connection", s->client_id);
    if (!closing)
        send_disconnect(old, MQTT_RC_SESSION_TAKEN_OVER, NULL);
    old->session = NULL;
    STAT_ADD(&w->stats, clients_connected, (uint64_t)-1);
    conn_close(old, false);
    session_disconnected(w, s, will);
    bool alive = !s->dead;
    session_unref(s); /* the old connection's reference; may free s */
    return alive;
}

static enum protocol_result handle_connect(struct worker *w, struct conn *c,
                                           const struct mqtt_connect *k, int *target)
{
    struct broker *b = w->broker;
    const struct config *cf = b->conf;
    const struct security_conf *sec = &c->listener->conf->security;
    c->version = k->version;

    char idbuf[128];
    const uint8_t *id = k->client_id.ptr;
    size_t idlen = k->client_id.len;
    uint32_t hash;
    bool assigned = false;
    if (idlen == 0) {
        if (k->version == MQTT_V31)
            return refuse(w, c, 0, MQTT3_REFUSED_IDENTIFIER, "empty client id (MQTT 3.1)");
        if (k->version == MQTT_V311 && !k->clean_start)
            return refuse(w, c, 0, MQTT3_REFUSED_IDENTIFIER,
                          "empty client id without clean session");
        if (!sec->allow_zero_length_clientid)
            return refuse(w, c, MQTT_RC_CLIENT_ID_INVALID, MQTT3_REFUSED_IDENTIFIER,
                          "empty client id not allowed");
        idlen = assign_client_id(w, sec->auto_id_prefix, idbuf, sizeof(idbuf), &hash);
        id = (const uint8_t *)idbuf;
        assigned = true;
    } else {
        if (k->version == MQTT_V31 && idlen > MQTT31_CLIENT_ID_MAX)
            return refuse(w, c, 0, MQTT3_REFUSED_IDENTIFIER, "client id longer than 23 (MQTT 3.1)");
        hash = hash_bytes(id, idlen, b->hash_seed);
        int owner = (int)(hash % (uint32_t)b->worker_count);
        if (owner != w->id) {
            *target = owner;
            return PROTOCOL_MOVE;
        }
    }

    if (is_v5(c) && mqtt_props_has(&k->props, MQTT_PROP_AUTH_METHOD))
        return refuse(w, c, MQTT_RC_BAD_AUTH_METHOD, MQTT3_REFUSED_NOT_AUTHORIZED,
                      "unsupported authentication method");
    if (!k->has_username && sec->allow_anonymous != 1)
        return refuse(w, c, MQTT_RC_NOT_AUTHORIZED, MQTT3_REFUSED_NOT_AUTHORIZED,
                      "anonymous clients are not allowed");
    if (k->has_username && auth_has_passwords(c->listener) &&
        !auth_password_ok(c->listener, k->username.ptr, k->username.len, k->has_password,
                          k->password.ptr, k->password.len))
        return refuse(w, c, MQTT_RC_BAD_USER_OR_PASSWORD, MQTT3_REFUSED_BAD_CREDENTIALS,
                      "bad username or password");
    struct acl_rules *rules = NULL;
    if (auth_acl_rules(c->listener, k->username.ptr, k->username.len, k->has_username, id, idlen,
                       &rules) < 0)
        return refuse(w, c, MQTT_RC_UNSPECIFIED, MQTT3_REFUSED_UNAVAILABLE, "out of memory");
    acl_rules_free(c->acl);
    c->acl = rules;

    uint16_t keepalive = k->keepalive;
    bool server_keepalive = false;
    if (cf->max_keepalive < 65535 && (keepalive == 0 || keepalive > cf->max_keepalive)) {
        if (is_v5(c)) {
            keepalive = cf->max_keepalive;
            server_keepalive = true;
        } else if (keepalive > cf->max_keepalive) {
            return refuse(w, c, 0, MQTT3_REFUSED_IDENTIFIER, "keepalive above max_keepalive");
        }
    }

    /* Find the session, taking it over from another connection. */
    struct session *s = session_table_find(&w->sessions, id, idlen, hash);
    /* Expired, but the tick has not ended it yet (or it expired while the
     * broker was down): it is gone for this client. */
    if (s && !s->conn && s->expire_at && w->now >= s->expire_at) {
        session_end(w, s);
        s = NULL;
    }
    if (s && s->conn && !take_over(w, s))
        s = NULL;
    if (s && k->clean_start) {
        session_end(w, s);
        s = NULL;
    }
    bool present = s != NULL;
    if (!s) {
        s = session_new(w, id, idlen, hash);
        if (!s)
            return refuse(w, c, MQTT_RC_SERVER_UNAVAILABLE, MQTT3_REFUSED_UNAVAILABLE,
                          "out of memory");
    }
    /* Reconnecting cancels a will still waiting for its delay. */
    uint8_t rc = take_will(w, c, s, k);
    if (rc) {
        if (!present)
            session_end(w, s);
        return refuse(w, c, rc, MQTT3_REFUSED_UNAVAILABLE, "will not acceptable");
    }
    s->expiry = session_expiry_of(cf, c, k);
    s->expire_at = 0;
    s->version = k->version;
    s->conn = c;
    session_ref(s);
    c->session = s;
    atomic_store_explicit(&s->online, true, memory_order_relaxed);
    atomic_store_explicit(&s->persistent, w->broker->store && s->expiry > 0,
                          memory_order_relaxed);
    persist_session(w, s);

    c->state = CONN_ACTIVE;
    c->keepalive = keepalive;
    c->client_id = malloc(idlen + 1);
    if (c->client_id) {
        memcpy(c->client_id, id, idlen);
        c->client_id[idlen] = '\0';
    }
    c->request_problem_info = true;
    if (is_v5(c)) {
        const struct mqtt_props *pr = &k->props;
        c->peer_receive_max = mqtt_props_has(pr, MQTT_PROP_RECEIVE_MAX) ? pr->receive_max : 65535;
        c->peer_max_packet = mqtt_props_has(pr, MQTT_PROP_MAX_PACKET_SIZE) ? pr->max_packet_size : 0;
        c->peer_alias_max = mqtt_props_has(pr, MQTT_PROP_TOPIC_ALIAS_MAX) ? pr->topic_alias_max : 0;
        if (mqtt_props_has(pr, MQTT_PROP_REQUEST_PROBLEM_INFO))
            c->request_problem_info = pr->request_problem_info;
        c->alias_in_max = max_alias_of(c);
    }

    struct mqtt_props ack;
    memset(&ack, 0, sizeof(ack));
    if (is_v5(c)) {
        if (assigned) {
            mqtt_props_set(&ack, MQTT_PROP_ASSIGNED_CLIENT_ID);
            ack.assigned_client_id.ptr = id;
            ack.assigned_client_id.len = (uint32_t)idlen;
        }
        if (cf->max_inflight_messages) {
            mqtt_props_set(&ack, MQTT_PROP_RECEIVE_MAX);
            ack.receive_max = cf->max_inflight_messages;
        }
        if (max_qos_of(c) < 2) {
            mqtt_props_set(&ack, MQTT_PROP_MAX_QOS);
            ack.max_qos = max_qos_of(c);
        }
        if (!cf->retain_available) {
            mqtt_props_set(&ack, MQTT_PROP_RETAIN_AVAILABLE);
            ack.retain_available = 0;
        }
        if (cf->max_packet_size) {
            mqtt_props_set(&ack, MQTT_PROP_MAX_PACKET_SIZE);
            ack.max_packet_size = cf->max_packet_size;
        }
        if (max_alias_of(c)) {
            mqtt_props_set(&ack, MQTT_PROP_TOPIC_ALIAS_MAX);
            ack.topic_alias_max = max_alias_of(c);
        }
        if (server_keepalive) {
            mqtt_props_set(&ack, MQTT_PROP_SERVER_KEEPALIVE);
            ack.server_keepalive = keepalive;
        }
        uint32_t asked = mqtt_props_has(&k->props, MQTT_PROP_SESSION_EXPIRY)
                             ? k->props.session_expiry : 0;
        if (asked != s->expiry) {
            mqtt_props_set(&ack, MQTT_PROP_SESSION_EXPIRY);
            ack.session_expiry = s->expiry;
        }
    }
    send_connack(c, present, 0, &ack);

    STAT_ADD(&w->stats, clients_connected, 1);
    uint64_t connected = BROKER_STAT(b, clients_connected);
    uint64_t max = atomic_load(&b->clients_maximum);
    while (connected > max && !atomic_compare_exchange_weak(&b->clients_maximum, &max, connected))
        ;
    if (cf->connection_messages)
        log_notice("New client connected from %s as %s (p%d, c%d, k%d%s%.*s%s).", c->peer,
                   c->client_id ? c->client_id : "?", k->version, k->clean_start ? 1 : 0,
                   keepalive, k->has_username ? ", u'" : "", (int)k->username.len,
                   k->has_username ? (const char *)k->username.ptr : "",
                   k->has_username ? "'" : "");
    if (present)
        session_resume(w, s);
    return PROTOCOL_CONTINUE;
}

/* ---- PUBLISH ---------------------------------------------------------- */

/* Resolve the topic of a PUBLISH through the connection's topic aliases
 * (MQTT 5 section 3.3.2.3.4). Returns 0 or the reason to disconnect. */
static uint8_t resolve_alias(struct conn *c, const struct mqtt_publish *pub,
                             struct mqtt_bytes *topic)
{
    *topic = pub->topic;
    if (!is_v5(c) || !mqtt_props_has(&pub->props, MQTT_PROP_TOPIC_ALIAS))
        return topic->len ? 0 : MQTT_RC_PROTOCOL_ERROR;
    uint16_t a = pub->props.topic_alias;
    if (a == 0 || a > c->alias_in_max)
        return MQTT_RC_TOPIC_ALIAS_INVALID;
    if (!c->alias_in) {
        c->alias_in = calloc((size_t)c->alias_in_max + 1, sizeof(*c->alias_in));
        c->alias_in_len = calloc((size_t)c->alias_in_max + 1, sizeof(*c->alias_in_len));
        if (!c->alias_in || !c->alias_in_len)
            return MQTT_RC_UNSPECIFIED;
    }
    if (topic->len) {
        char *copy = realloc(c->alias_in[a], topic->len);
        if (!copy)
            return MQTT_RC_UNSPECIFIED;
        memcpy(copy, topic->ptr, topic->len);
        c->alias_in[a] = copy;
        c->alias_in_len[a] = (uint16_t)topic->len;
        return 0;
    }
    if (!c->alias_in[a])
        return MQTT_RC_PROTOCOL_ERROR; /* an alias never set */
    topic->ptr = (const uint8_t *)c->alias_in[a];
    topic->len = c->alias_in_len[a];
    return 0;
}

/* "$delayed/{seconds}/{topic}": returns true and splits it when well formed. */
static bool parse_delayed(const struct mqtt_bytes *t, uint32_t *seconds, struct mqtt_bytes *rest)
{
    static const char prefix[] = "$delayed/";
    size_t n = sizeof(prefix) - 1;
    if (t->len <= n || memcmp(t->ptr, prefix, n) != 0)
        return false;
    uint64_t v = 0;
    size_t i = n;
    while (i < t->len && t->ptr[i] >= '0' && t->ptr[i] <= '9' && v <= DELAYED_MAX_SECONDS)
        v = v * 10 + (uint64_t)(t->ptr[i++] - '0');
    if (i == n || i >= t->len || t->ptr[i] != '/' || v > DELAYED_MAX_SECONDS)
        return false;
    rest->ptr = t->ptr + i + 1;
    rest->len = (uint32_t)(t->len - i - 1);
    *seconds = (uint32_t)v;
    return rest->len > 0 && topic_name_valid(rest->ptr, rest->len);
}

static void ack_publish(struct conn *c, const struct mqtt_publish *pub, uint8_t reason)
{
    if (pub->qos == 1)
        send_ack(c, MQTT_PUBACK, pub->packet_id, reason);
    else if (pub->qos == 2)
        send_ack(c, MQTT_PUBREC, pub->packet_id, reason);
}

static bool is_delayed_prefix(const struct mqtt_bytes *t)
{
    return t->len >= 9 && memcmp(t->ptr, "$delayed/", 9) == 0;
}

static enum protocol_result handle_publish(struct worker *w, struct conn *c,
                                           const struct mqtt_publish *pub)
{
    const struct config *cf = w->broker->conf;
    struct session *s = c->session;
    STAT_ADD(&w->stats, msgs_received, 1);
    if (pub->qos > max_qos_of(c))
        return violation(w, c, MQTT_RC_QOS_NOT_SUPPORTED, "QoS above max_qos");
    if (pub->retain && !cf->retain_available)
        return violation(w, c, MQTT_RC_RETAIN_NOT_SUPPORTED, "retain not available");
    struct mqtt_bytes topic;
    uint8_t rc = resolve_alias(c, pub, &topic);
    if (rc)
        return violation(w, c, rc, "invalid topic alias");
    if (pub->qos == 2) {
        if (session_qos2_has(s, pub->packet_id)) {
            /* A retransmission of a message already accepted: acknowledge
             * again, deliver nothing (MQTT 5 4.3.3, method B). */
            send_ack(c, MQTT_PUBREC, pub->packet_id, 0);
            return PROTOCOL_CONTINUE;
        }
        if (is_v5(c) && cf->max_inflight_messages &&
            s->qos2_in_count >= cf->max_inflight_messages)
            return violation(w, c, MQTT_RC_RECEIVE_MAX_EXCEEDED, "receive maximum exceeded");
    }
    if (cf->message_size_limit && pub->payload.len > cf->message_size_limit) {
        log_notice("client %s: message of %u bytes on %.*s dropped: over message_size_limit",
                   client_name(c), pub->payload.len, (int)topic.len, (const char *)topic.ptr);
        STAT_ADD(&w->stats, msgs_dropped, 1);
        ack_publish(c, pub, MQTT_RC_QUOTA_EXCEEDED);
        return PROTOCOL_CONTINUE;
    }
    /* A store that cannot write: QoS 1/2 cannot be promised (5.0: the
     * reason code; 3.1.1 has none, so the connection closes unacknowledged
     * and the client sends again later). */
    uint8_t store_rc = pub->qos ? persist_failing(w) : 0;
    if (store_rc) {
        STAT_ADD(&w->stats, msgs_dropped, 1);
        if (!is_v5(c)) {
            log_notice("client %s: store not writable, closing", client_name(c));
            conn_close(c, true);
            return PROTOCOL_STOP;
        }
        ack_publish(c, pub, store_rc);
        return PROTOCOL_CONTINUE;
    }
    /* Clients do not publish into the broker's own $SYS tree. */
    if (topic.len >= 5 && memcmp(topic.ptr, "$SYS/", 5) == 0) {
        ack_publish(c, pub, MQTT_RC_NOT_AUTHORIZED);
        return PROTOCOL_CONTINUE;
    }
    uint32_t delay = 0;
    bool delayed = false;
    if (is_delayed_prefix(&topic)) {
        struct mqtt_bytes rest;
        if (!parse_delayed(&topic, &delay, &rest)) {
            log_notice("client %s: invalid $delayed topic %.*s", client_name(c), (int)topic.len,
                       (const char *)topic.ptr);
            ack_publish(c, pub, MQTT_RC_TOPIC_NAME_INVALID);
            return PROTOCOL_CONTINUE;
        }
        topic = rest;
        delayed = true;
    }
    if (c->acl && !acl_allows(c->acl, topic.ptr, topic.len, ACL_WRITE)) {
        /* 5.0: 0x87; 3.1.1 has no way to say it: acknowledged, dropped. */
        log_info("client %s: PUBLISH on %.*s denied by the ACL", client_name(c), (int)topic.len,
                 (const char *)topic.ptr);
        STAT_ADD(&w->stats, msgs_dropped, 1);
        if (pub->qos == 2 && !is_v5(c) && session_qos2_add(s, pub->packet_id) == 0)
            persist_qos2_in(w, s, pub->packet_id, true);
        ack_publish(c, pub, is_v5(c) ? MQTT_RC_NOT_AUTHORIZED : 0);
        return PROTOCOL_CONTINUE;
    }
    struct message *m = make_message(c, s, &topic, &pub->payload, &pub->props, pub->qos,
                                     pub->retain, true);
    if (!m) {
        ack_publish(c, pub, MQTT_RC_UNSPECIFIED);
        return PROTOCOL_CONTINUE;
    }
    size_t routed = 1;
    struct session *backed_up = NULL;
    if (delayed) {
        worker_delay(w, m, w->now + (uint64_t)delay * 1000u);
    } else {
        if (pub->retain) {
            persist_retain(w, m);
        }
        routed = worker_route_from(w, m, &backed_up);
        message_unref(m);
    }
    if (pub->qos == 2) {
        if (session_qos2_add(s, pub->packet_id) < 0) {
            if (backed_up)
                session_unref(backed_up);
            return violation(w, c, MQTT_RC_UNSPECIFIED, "out of memory");
        }
        persist_qos2_in(w, s, pub->packet_id, true);
    }
    ack_publish(c, pub, routed ? 0 : MQTT_RC_NO_MATCHING_SUBSCRIBERS);
    if (backed_up)
        conn_pace(c, backed_up); /* the message is accepted; read no more for now */
    return PROTOCOL_CONTINUE;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------ */

/* The filter as stored: the listener's mount point goes in front of the
 * topic part (after "$share/group/" for shared subscriptions). */
static size_t mounted_filter(const struct conn *c, const struct mqtt_bytes *f, uint8_t *out,
                             size_t cap)
{
    if (!c->mount_len) {
        if (f->len > cap)
            return 0;
        memcpy(out, f->ptr, f->len);
        return f->len;
    }
    const uint8_t *g, *tf;
    size_t glen, tflen, head = 0;
    if (topic_shared_split(f->ptr, f->len, &g, &glen, &tf, &tflen))
        head = (size_t)(tf - f->ptr);
    if (f->len + c->mount_len > cap)
        return 0;
    memcpy(out, f->ptr, head);
    memcpy(out + head, c->mount, c->mount_len);
    memcpy(out + head + c->mount_len, f->ptr + head, f->len - head);
    return f->len + c->mount_len;
}

static enum protocol_result handle_subscribe(struct worker *w, struct conn *c,
                                             const struct mqtt_subscribe *sub)
{
    struct session *s = c->session;
    uint32_t sub_id = 0;
    if (mqtt_props_has(&sub->props, MQTT_PROP_SUBSCRIPTION_ID))
        sub_id = sub->props.sub_ids[0];
    uint8_t stack_codes[64], stack_retained[64];
    uint8_t *codes = stack_codes, *retained = stack_retained;
    if (sub->count > sizeof(stack_codes)) {
        codes = malloc(sub->count);
        retained = malloc(sub->count);
        if (!codes || !retained) {
            free(codes);
            free(retained);
            return violation(w, c, MQTT_RC_UNSPECIFIED, "out of memory");
        }
    }
    enum protocol_result result = PROTOCOL_CONTINUE;
    uint8_t fbuf[65535 + 256];
    struct mqtt_bytes f;
    struct mqtt_sub_opts o;
    uint32_t pos = 0, i = 0;
    while (mqtt_sub_next(sub, &pos, &f, &o)) {
        retained[i] = 0;
        const uint8_t *g, *tf;
        size_t glen, tflen;
        bool shared = topic_shared_split(f.ptr, f.len, &g, &glen, &tf, &tflen);
        if (!topic_filter_valid(f.ptr, f.len)) {
            codes[i++] = is_v5(c) ? MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
            continue;
        }
        if (shared && o.no_local) {
            /* MQTT 5 [MQTT-3.8.3-4] */
            result = violation(w, c, MQTT_RC_PROTOCOL_ERROR, "No Local on a shared subscription");
            goto out;
        }
        if (c->acl && !acl_allows(c->acl, shared ? tf : f.ptr, shared ? tflen : f.len, ACL_READ)) {
            log_info("client %s: SUBSCRIBE to %.*s denied by the ACL", client_name(c),
                     (int)f.len, (const char *)f.ptr);
            codes[i++] = is_v5(c) ? MQTT_RC_NOT_AUTHORIZED : 0x80;
            continue;
        }
        if (o.qos > max_qos_of(c))
            o.qos = max_qos_of(c);
        size_t flen = mounted_filter(c, &f, fbuf, sizeof(fbuf));
        int rc = flen ? router_subscribe(w->broker->router, fbuf, flen, s, &o, sub_id) : -1;
        if (rc >= 0 && session_sub_add(s, fbuf, flen) < 0) {
            /* The session could not record it, so session_end would not
             * remove it: the router must not keep a pointer to s. */
            router_unsubscribe(w->broker->router, fbuf, flen, s);
            rc = -1;
        }
        if (rc >= 0)
            persist_sub(w, s, fbuf, flen, &o, sub_id);
        if (rc < 0) {
            codes[i++] = is_v5(c) ? MQTT_RC_UNSPECIFIED : 0x80;
            continue;
        }
        codes[i] = o.qos;
        if (!shared && (o.retain_handling == 0 || (o.retain_handling == 1 && rc == 0)))
            retained[i] = 1;
        if (log_enabled(LOG_SUBSCRIBE))
            log_msg(LOG_SUBSCRIBE, "%s %d %.*s", s->client_id, o.qos, (int)f.len, (const char *)f.ptr);
        i++;
    }
    struct mqtt_packet p;
    memset(&p, 0, sizeof(p));
    p.type = MQTT_SUBACK;
    p.u.suback.packet_id = sub->packet_id;
    p.u.suback.count = i;
    p.u.suback.codes = codes;
    send_packet(c, &p);
    /* Retained messages after the SUBACK, in the order of the filters. */
    pos = 0;
    i = 0;
    while (mqtt_sub_next(sub, &pos, &f, &o)) {
        struct retained_feed *feed = retained[i] ? session_feed_new(codes[i], sub_id) : NULL;
        if (feed) {
            size_t flen = mounted_filter(c, &f, fbuf, sizeof(fbuf));
            retain_match(w->broker->retain, fbuf, flen, clock_wall_ms(), session_feed_add, feed);
            if (session_feed_disk(w, feed, fbuf, flen) < 0)
                log_warning("out of memory reading retained messages for %s", s->client_id);
            session_feed_start(w, s, feed);
        }
        i++;
    }
out:
    if (codes != stack_codes) {
        free(codes);
        free(retained);
    }
    return result;
}

static enum protocol_result handle_unsubscribe(struct worker *w, struct conn *c,
                                               const struct mqtt_subscribe *unsub)
{
    struct session *s = c->session;
    uint8_t stack_codes[64];
    uint8_t *codes = stack_codes;
    if (unsub->count > sizeof(stack_codes) && !(codes = malloc(unsub->count)))
        return violation(w, c, MQTT_RC_UNSPECIFIED, "out of memory");
    uint8_t fbuf[65535 + 256];
    struct mqtt_bytes f;
    uint32_t pos = 0, i = 0;
    while (mqtt_unsub_next(unsub, &pos, &f)) {
        size_t flen = mounted_filter(c, &f, fbuf, sizeof(fbuf));
        bool existed = flen && router_unsubscribe(w->broker->router, fbuf, flen, s);
        if (existed) {
            session_sub_remove(s, fbuf, flen);
            persist_unsub(w, s, fbuf, flen);
        }
        codes[i++] = existed ? 0 : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
        if (log_enabled(LOG_UNSUBSCRIBE))
            log_msg(LOG_UNSUBSCRIBE, "%s %.*s", s->client_id, (int)f.len, (const char *)f.ptr);
    }
    struct mqtt_packet p;
    memset(&p, 0, sizeof(p));
    p.type = MQTT_UNSUBACK;
    p.u.suback.packet_id = unsub->packet_id;
    p.u.suback.count = is_v5(c) ? i : 0;
    p.u.suback.codes = codes;
    send_packet(c, &p);
    if (codes != stack_codes)
        free(codes);
    return PROTOCOL_CONTINUE;
}

/* ---- the rest --------------------------------------------------------- */

static enum protocol_result handle_disconnect(struct worker *w, struct conn *c,
                                              const struct mqtt_disconnect *d)
{
    struct session *s = c->session;
    if (is_v5(c) && mqtt_props_has(&d->props, MQTT_PROP_SESSION_EXPIRY)) {
        /* [MQTT-3.14.2-2]: a session that was to end cannot be revived here. */
        if (s->expiry == 0 && d->props.session_expiry != 0)
            return violation(w, c, MQTT_RC_PROTOCOL_ERROR, "session expiry set at DISCONNECT");
        s->expiry = bound_expiry(w->broker->conf, d->props.session_expiry);
    }
    bool will = is_v5(c) && d->reason == MQTT_RC_DISCONNECT_WITH_WILL;
    if (w->broker->conf->connection_messages)
        log_notice("Client %s disconnected.", client_name(c));
    conn_close(c, will);
    return PROTOCOL_STOP;
}

enum protocol_result protocol_handle(struct worker *w, struct conn *c,
                                     const struct mqtt_packet *p, int *target)
{
    if (c->state == CONN_NEW) {
        if (p->type != MQTT_CONNECT) {
            STAT_ADD(&w->stats, protocol_errors, 1);
            log_notice("client %s: first packet is not CONNECT, closing", c->peer);
            conn_close(c, false);
            return PROTOCOL_STOP;
        }
        return handle_connect(w, c, &p->u.connect, target);
    }
    if (c->state != CONN_ACTIVE)
        return PROTOCOL_STOP;
    struct session *s = c->session;
    switch (p->type) {
    case MQTT_PUBLISH:
        return handle_publish(w, c, &p->u.publish);
    case MQTT_PUBACK:
        session_puback(w, s, p->u.ack.packet_id);
        return PROTOCOL_CONTINUE;
    case MQTT_PUBREC:
        if (!session_pubrec(w, s, p->u.ack.packet_id, p->u.ack.reason) &&
            p->u.ack.reason < 0x80)
            send_ack(c, MQTT_PUBREL, p->u.ack.packet_id, MQTT_RC_PACKET_ID_NOT_FOUND);
        return PROTOCOL_CONTINUE;
    case MQTT_PUBREL: {
        bool known = session_qos2_remove(s, p->u.ack.packet_id);
        if (known)
            persist_qos2_in(w, s, p->u.ack.packet_id, false);
        send_ack(c, MQTT_PUBCOMP, p->u.ack.packet_id, known ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND);
        return PROTOCOL_CONTINUE;
    }
    case MQTT_PUBCOMP:
        session_pubcomp(w, s, p->u.ack.packet_id);
        return PROTOCOL_CONTINUE;
    case MQTT_SUBSCRIBE:
        return handle_subscribe(w, c, &p->u.subscribe);
    case MQTT_UNSUBSCRIBE:
        return handle_unsubscribe(w, c, &p->u.subscribe);
    case MQTT_PINGREQ: {
        static const uint8_t pingresp[2] = {0xD0, 0};
        conn_write(c, pingresp, sizeof(pingresp));
        return PROTOCOL_CONTINUE;
    }
    case MQTT_DISCONNECT:
        return handle_disconnect(w, c, &p->u.disconnect);
    case MQTT_CONNECT:
        return violation(w, c, MQTT_RC_PROTOCOL_ERROR, "second CONNECT");
    case MQTT_AUTH:
        /* No enhanced authentication was agreed at CONNECT. */
        return violation(w, c, MQTT_RC_PROTOCOL_ERROR, "AUTH without authentication method");
    default:
        return violation(w, c, MQTT_RC_PROTOCOL_ERROR, "unexpected packet");
    }
}

void protocol_conn_closed(struct worker *w, struct conn *c)
{
    struct session *s = c->session;
    if (!s)
        return;
    c->session = NULL;
    if (s->conn == c) {
        STAT_ADD(&w->stats, clients_connected, (uint64_t)-1);
        session_disconnected(w, s, c->will_on_close);
    }
    session_unref(s);
}

void protocol_shutdown(struct worker *w, struct conn *c)
{
    if (c->state == CONN_ACTIVE)
        send_disconnect(c, MQTT_RC_SERVER_SHUTTING_DOWN, NULL);
}

void protocol_keepalive_timeout(struct worker *w, struct conn *c)
{
    log_notice("Client %s has exceeded timeout, disconnecting.", client_name(c));
    send_disconnect(c, MQTT_RC_KEEPALIVE_TIMEOUT, NULL);
    conn_close(c, true);
}
