/* fuzz_record.c - libFuzzer target for the store record decoders: what a
 * damaged or hostile store file can feed the broker at startup.
 *
 * The first byte chooses the decoder; the rest is the key or value. A value
 * that decodes is encoded again and must decode to the same lengths. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *v = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0: {
        struct rec_key k;
        (void)rec_key_decode(v, n, &k);
        break;
    }
    case 1: {
        struct rec_message m;
        if (rec_message_decode(v, n, &m)) {
            size_t len = rec_message_encode(&m, NULL, 0);
            uint8_t *buf = malloc(len);
            if (buf && rec_message_encode(&m, buf, len) == len) {
                struct rec_message again;
                if (!rec_message_decode(buf, len, &again) || again.payload_len != m.payload_len)
                    abort();
            }
            free(buf);
        }
        break;
    }
    case 2: {
        struct rec_session s;
        (void)rec_session_decode(v, n, &s);
        break;
    }
    case 3: {
        struct rec_sub s;
        (void)rec_sub_decode(v, n, &s);
        break;
    }
    case 4: {
        struct rec_delivery d;
        if (rec_delivery_decode(v, n, &d)) {
            /* Encoding what was decoded gives the same bytes back. */
            uint8_t *buf = malloc(n);
            if (!buf)
                break;
            size_t len = rec_delivery_encode(&d, buf, n);
            struct rec_delivery again;
            if (len != n || memcmp(buf, v, n) != 0 || !rec_delivery_decode(buf, len, &again) ||
                again.msg_id != d.msg_id)
                abort();
            free(buf);
        }
        break;
    }
    default:
        (void)rec_meta_decode(v, n);
        break;
    }
    return 0;
}
