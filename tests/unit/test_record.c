/* test_record.c - store record encoding (src/store/record.c): every record
 * round-trips, keys sort as the store relies on, and damaged input is
 * refused without reading out of bounds. */
#include "store/record.h"

#include <stdlib.h>
#include <string.h>

#include "test.h"

static uint8_t key[RECORD_KEY_MAX];

TEST(test_message_roundtrip)
{
    struct rec_message m = {
        .qos = 2, .retain = true, .expiry_at = 1234567890123ull, .origin_hash = 0xdeadbeef,
        .topic = (const uint8_t *)"a/b", .topic_len = 3,
        .props = (const uint8_t *)"\x01\x01", .props_len = 2,
        .payload = (const uint8_t *)"hello", .payload_len = 5,
    };
    size_t n = rec_message_encode(&m, NULL, 0);
    uint8_t *buf = malloc(n);
    CHECK_EQ(rec_message_encode(&m, buf, n), n);
    struct rec_message d;
    CHECK(rec_message_decode(buf, n, &d));
    CHECK_EQ(d.qos, 2);
    CHECK(d.retain);
    CHECK_EQ(d.expiry_at, 1234567890123ull);
    CHECK_EQ(d.origin_hash, 0xdeadbeef);
    CHECK_EQ(d.topic_len, 3);
    CHECK_MEM(d.topic, "a/b", 3);
    CHECK_EQ(d.props_len, 2);
    CHECK_EQ(d.payload_len, 5);
    CHECK_MEM(d.payload, "hello", 5);
    /* Every truncation and a trailing byte are refused. */
    for (size_t i = 0; i < n; i++)
        CHECK(!rec_message_decode(buf, i, &d));
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0;
    CHECK(!rec_message_decode(longer, n + 1, &d));
    /* A QoS of 3 is damage. */
    buf[1] = 3;
    CHECK(!rec_message_decode(buf, n, &d));
    free(longer);
    free(buf);
}

TEST(test_session_roundtrip)
{
    struct rec_session s = {
        .expiry = 3600, .version = 5, .connected = false, .expire_at = 99, .has_will = true,
        .will_delay = 30, .will_expiry = 60, .will_at = 77,
        .will = {.qos = 1, .topic = (const uint8_t *)"w", .topic_len = 1,
                 .payload = (const uint8_t *)"bye", .payload_len = 3},
    };
    uint8_t buf[256];
    size_t n = rec_session_encode(&s, buf, sizeof(buf));
    CHECK(n < sizeof(buf));
    struct rec_session d;
    CHECK(rec_session_decode(buf, n, &d));
    CHECK_EQ(d.expiry, 3600);
    CHECK_EQ(d.version, 5);
    CHECK(!d.connected);
    CHECK_EQ(d.expire_at, 99);
    CHECK(d.has_will);
    CHECK_EQ(d.will_delay, 30);
    CHECK_EQ(d.will_expiry, 60);
    CHECK_EQ(d.will_at, 77);
    CHECK_EQ(d.will.payload_len, 3);
    for (size_t i = 0; i < n; i++)
        CHECK(!rec_session_decode(buf, i, &d));
    struct rec_session nowill = {.expiry = UINT32_MAX, .version = 4, .connected = true};
    n = rec_session_encode(&nowill, buf, sizeof(buf));
    CHECK(rec_session_decode(buf, n, &d));
    CHECK(d.connected && !d.has_will);
    CHECK_EQ(d.expiry, UINT32_MAX);
}

TEST(test_delivery_and_sub_roundtrip)
{
    struct rec_delivery r = {.msg_id = 42, .qos = 2, .flags = 6, .packet_id = 65535,
                             .sub_id_count = 2, .sub_ids = {7, 268435455}};
    uint8_t buf[64];
    size_t n = rec_delivery_encode(&r, buf, sizeof(buf));
    struct rec_delivery d;
    CHECK(rec_delivery_decode(buf, n, &d));
    CHECK_EQ(d.msg_id, 42);
    CHECK_EQ(d.flags, 6);
    CHECK_EQ(d.packet_id, 65535);
    CHECK_EQ(d.sub_id_count, 2);
    CHECK_EQ(d.sub_ids[1], 268435455);
    buf[13] = 9; /* sub id count beyond the maximum */
    CHECK(!rec_delivery_decode(buf, n, &d));
    struct rec_sub s = {.options = 0x2d, .sub_id = 5}, ds;
    n = rec_sub_encode(&s, buf, sizeof(buf));
    CHECK(rec_sub_decode(buf, n, &ds));
    CHECK_EQ(ds.options, 0x2d);
    CHECK_EQ(ds.sub_id, 5);
    CHECK_EQ(rec_meta_decode(buf, rec_meta_encode(buf, sizeof(buf))), STORE_FORMAT_VERSION);
}

TEST(test_delivery_with_inline_message)
{
    /* Format 2: a delivery may carry its message. */
    struct rec_delivery r = {.msg_id = 9, .qos = 1, .flags = REC_DELIVERY_INLINE | 2,
                             .packet_id = 3};
    r.message = (struct rec_message){.qos = 1, .topic = (const uint8_t *)"a/b", .topic_len = 3,
                                     .payload = (const uint8_t *)"xyz", .payload_len = 3,
                                     .expiry_at = 5};
    uint8_t buf[128];
    size_t n = rec_delivery_encode(&r, buf, sizeof(buf));
    CHECK(n <= sizeof(buf));
    struct rec_delivery d;
    CHECK(rec_delivery_decode(buf, n, &d));
    CHECK_EQ(d.flags, REC_DELIVERY_INLINE | 2);
    CHECK_EQ(d.message.topic_len, 3);
    CHECK(memcmp(d.message.topic, "a/b", 3) == 0);
    CHECK(memcmp(d.message.payload, "xyz", 3) == 0);
    CHECK_EQ(d.message.expiry_at, 5);
    CHECK(!rec_delivery_decode(buf, n - 1, &d)); /* truncated message */
    r.flags = 2; /* without the flag the same fields make a shorter record */
    CHECK(rec_delivery_encode(&r, buf, sizeof(buf)) < n);
}

TEST(test_keys)
{
    struct rec_key k;
    size_t n = rec_key_sub(key, "c1", 2, "a/+/#", 5);
    CHECK(rec_key_decode(key, n, &k));
    CHECK_EQ(k.kind, REC_SUB);
    CHECK_EQ(k.cid_len, 2);
    CHECK_MEM(k.cid, "c1", 2);
    CHECK_EQ(k.name_len, 5);
    CHECK_MEM(k.name, "a/+/#", 5);
    n = rec_key_delivery(key, REC_DELIVERY, "c1", 2, 0x0102030405060708ull);
    CHECK(rec_key_decode(key, n, &k));
    CHECK_EQ(k.num, 0x0102030405060708ull);
    n = rec_key_delivery(key, REC_COLD, "c1", 2, 77);
    CHECK(rec_key_decode(key, n, &k));
    CHECK_EQ(k.kind, REC_COLD);
    CHECK_EQ(k.num, 77);
    CHECK_MEM(k.cid, "c1", 2);
    n = rec_key_qos2(key, "", 0, 513);
    CHECK(rec_key_decode(key, n, &k));
    CHECK_EQ(k.num, 513);
    CHECK_EQ(k.cid_len, 0);
    n = rec_key_retained(key, "t/x", 3);
    CHECK(rec_key_decode(key, n, &k));
    CHECK_EQ(k.name_len, 3);
    n = rec_key_delayed(key, 1000, 2);
    CHECK(rec_key_decode(key, n, &k));
    CHECK_EQ(k.num, 1000);
    CHECK_EQ(k.num2, 2);
    /* Damaged keys: unknown kind, a client id longer than the key. */
    uint8_t bad[] = {'Q', 0, 200, 'x'};
    CHECK(!rec_key_decode(bad, sizeof(bad), &k));
    uint8_t unknown[] = {'?'};
    CHECK(!rec_key_decode(unknown, 1, &k));
}

static int cmp_keys(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

TEST(test_client_range)
{
    /* The range of client "ab" holds its keys and nobody else's, including
     * clients whose ids extend it or whose seq bytes are all 0xff. */
    uint8_t lo[RECORD_KEY_MAX], hi[RECORD_KEY_MAX], k2[RECORD_KEY_MAX];
    size_t lolen, hilen;
    rec_key_client_range(lo, &lolen, hi, &hilen, REC_DELIVERY, "ab", 2);
    size_t n = rec_key_delivery(k2, REC_DELIVERY, "ab", 2, UINT64_MAX);
    CHECK(cmp_keys(k2, n, lo, lolen) >= 0 && cmp_keys(k2, n, hi, hilen) < 0);
    n = rec_key_delivery(k2, REC_DELIVERY, "ab", 2, 0);
    CHECK(cmp_keys(k2, n, lo, lolen) >= 0 && cmp_keys(k2, n, hi, hilen) < 0);
    n = rec_key_delivery(k2, REC_DELIVERY, "abc", 3, 0);
    CHECK(!(cmp_keys(k2, n, lo, lolen) >= 0 && cmp_keys(k2, n, hi, hilen) < 0));
    n = rec_key_delivery(k2, REC_DELIVERY, "ac", 2, 0);
    CHECK(cmp_keys(k2, n, hi, hilen) >= 0);
    n = rec_key_delivery(k2, REC_DELIVERY, "aa", 2, UINT64_MAX);
    CHECK(cmp_keys(k2, n, lo, lolen) < 0);
    /* Sequence numbers sort numerically. */
    uint8_t a[RECORD_KEY_MAX];
    size_t an = rec_key_delivery(a, REC_DELIVERY, "ab", 2, 255);
    n = rec_key_delivery(k2, REC_DELIVERY, "ab", 2, 256);
    CHECK(cmp_keys(a, an, k2, n) < 0);
    /* A client id of 0xff bytes. */
    char ff[3] = {(char)0xff, (char)0xff, (char)0xff};
    rec_key_client_range(lo, &lolen, hi, &hilen, REC_SUB, ff, 3);
    n = rec_key_sub(k2, ff, 3, "\xff\xff", 2);
    CHECK(cmp_keys(k2, n, lo, lolen) >= 0 && cmp_keys(k2, n, hi, hilen) < 0);
}

int main(void)
{
    RUN(test_message_roundtrip);
    RUN(test_session_roundtrip);
    RUN(test_delivery_and_sub_roundtrip);
    RUN(test_delivery_with_inline_message);
    RUN(test_keys);
    RUN(test_client_range);
    return test_report();
}
