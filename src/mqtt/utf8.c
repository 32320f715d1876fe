/* utf8.c - the MQTT UTF-8 Encoded String check (MQTT 5 section 1.5.4,
 * 3.1.1 section 1.5.3): well-formed UTF-8 (RFC 3629: shortest form, no
 * surrogates, nothing above U+10FFFF) and no U+0000. */
#include "mqtt/codec.h"

bool mqtt_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        }
        uint32_t cp;
        size_t n;
        if ((c & 0xE0) == 0xC0) {
            cp = c & 0x1F;
            n = 1;
        } else if ((c & 0xF0) == 0xE0) {
            cp = c & 0x0F;
            n = 2;
        } else if ((c & 0xF8) == 0xF0) {
            cp = c & 0x07;
            n = 3;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        /* Overlong forms, surrogates and out-of-range code points. */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000))
            return false;
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return false;
        if (cp > 0x10FFFF)
            return false;
        i += n + 1;
    }
    return true;
}
