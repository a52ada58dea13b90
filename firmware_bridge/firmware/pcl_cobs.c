#include "pcl_cobs.h"

int32_t pcl_cobs_decode(uint8_t *buf, uint32_t len)
{
    uint32_t in = 0, out = 0;
    while (in < len) {
        uint32_t code = buf[in], end, i;
        if (code == 0u)
            return -1;
        end = in + code;
        if (end > len)
            return -1;
        for (i = in + 1u; i < end; i++) {
            if (buf[i] == 0u)
                return -1;
            buf[out++] = buf[i];
        }
        in = end;
        if (code < 255u && in < len)
            buf[out++] = 0u;
    }
    return (int32_t)out;
}

void pcl_cobs_encode(const uint8_t *raw, uint32_t len, pcl_sink_fn sink, void *ctx)
{
    static const uint8_t delimiter = 0u;
    uint32_t start = 0;
    for (;;) {
        uint32_t run = 0;
        uint8_t code;
        while (start + run < len && raw[start + run] != 0u && run < 254u)
            run++;
        code = (uint8_t)(run + 1u);
        sink(&code, 1u, ctx);
        if (run)
            sink(raw + start, run, ctx);
        start += run;
        if (run == 254u)
            continue; /* a full block stands for no zero; at the very end a 0x01 block follows */
        if (start == len)
            break;
        start++; /* the zero byte this block stands for */
    }
    sink(&delimiter, 1u, ctx);
}
