/* Host micro-benchmark of the firmware: compute alone vs the same work through the protocol
 * handler (frame decode, CRC, dispatch, reply encode), with the output discarded.
 *
 * Usage: pcl-bench IMAGE_STREAM INFER_BITS TRAIN_PAYLOADS
 *   IMAGE_STREAM: upload_bytes of the image; INFER_BITS: n vectors of ceil(n_in/8) bytes;
 *   TRAIN_PAYLOADS: m TRAIN_STEP payloads (u32 t, u16 label, form u8 = bits, bits), back to back.
 * Prints one JSON object (microseconds per item).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hal_fake.h"
#include "pcl_bytes.h"
#include "pcl_cobs.h"
#include "pcl_crc32.h"
#include "pcl_image.h"
#include "pcl_infer.h"
#include "pcl_learn.h"
#include "pcl_proto.h"

static uint8_t *slurp(const char *path, uint32_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        exit(2);
    fclose(f);
    *len = (uint32_t)n;
    return buf;
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void sink(const uint8_t *data, uint32_t len, void *ctx)
{
    uint8_t **p = (uint8_t **)ctx;
    memcpy(*p, data, len);
    *p += len;
}

/* Encode one request frame into out; returns its length. */
static uint32_t frame(uint8_t *out, uint8_t type, uint16_t seq, const uint8_t *payload, uint32_t len)
{
    static uint8_t raw[PCL_MAX_PAYLOAD_BYTES + 16];
    uint8_t *p = out;
    raw[0] = PCL_PROTO_VERSION;
    raw[1] = type;
    pcl_wr_u16(raw + 2, seq);
    pcl_wr_u32(raw + 4, len);
    memcpy(raw + 8, payload, len);
    pcl_wr_u32(raw + 8 + len, pcl_crc32_update(0, raw, 8 + len));
    pcl_cobs_encode(raw, 12 + len, sink, &p);
    return (uint32_t)(p - out);
}

static void feed(const uint8_t *bytes, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        pcl_proto_feed(bytes[i], 0);
    fake_out_len = 0;
}

/* LOAD_BEGIN, LOAD_CHUNKs, LOAD_COMMIT through the protocol handler. */
static void upload(const uint8_t *image, uint32_t image_len, uint8_t *enc)
{
    const uint32_t chunk = 60000;
    static uint8_t c[PCL_MAX_PAYLOAD_BYTES];
    static uint16_t seq = 1;
    uint8_t p[8];
    uint32_t i;
    pcl_wr_u32(p, image_len);
    pcl_wr_u32(p + 4, pcl_crc32_update(0, image, image_len));
    feed(enc, frame(enc, PCL_MSG_LOAD_BEGIN, seq++, p, 8));
    for (i = 0; i < image_len; i += chunk) {
        uint32_t len = image_len - i < chunk ? image_len - i : chunk;
        pcl_wr_u32(c, i);
        memcpy(c + 4, image + i, len);
        feed(enc, frame(enc, PCL_MSG_LOAD_CHUNK, seq++, c, len + 4));
    }
    feed(enc, frame(enc, PCL_MSG_LOAD_COMMIT, seq++, 0, 0));
}

int main(int argc, char **argv)
{
    uint32_t image_len, bits_len, train_len, nb, n, m, i, k, flen, tb;
    uint8_t *image, *bits, *train, *enc = malloc(2u * PCL_MAX_PAYLOAD_BYTES + 64);
    int32_t detail[2];
    pcl_result_t res;
    double t0, compute_us, proto_us, batch_us, train_compute_us, train_proto_us, load_us;
    uint8_t reply[64];
    uint32_t reply_len;
    const uint32_t batch = 64;
    uint8_t *batch_payload, *one_payload;
    pcl_inputs_t in;

    if (argc != 4) {
        fprintf(stderr, "usage: pcl-bench IMAGE_STREAM INFER_BITS TRAIN_PAYLOADS\n");
        return 2;
    }
    image = slurp(argv[1], &image_len);
    bits = slurp(argv[2], &bits_len);
    train = slurp(argv[3], &train_len);
    hal_init();
    pcl_proto_init();

    t0 = now_us();
    upload(image, image_len, enc);
    load_us = now_us() - t0;
    if (!pcl_image()) {
        fprintf(stderr, "image not accepted\n");
        return 1;
    }
    (void)detail;
    nb = (pcl_image()->n_inputs + 7u) / 8u;
    n = bits_len / nb;
    tb = PCL_PROTO_TRAIN_HEAD_BYTES + 1u + nb;
    m = train_len / tb;

    /* Each phase five times, interleaved; the minimum is the least disturbed (shared machine). */
    batch_payload = malloc(3u + batch * nb);
    one_payload = malloc(1u + nb);
    in.form = PCL_INPUT_FORM_BITS;
    one_payload[0] = PCL_INPUT_FORM_BITS;
    compute_us = proto_us = batch_us = 1e30;
    for (k = 0; k < 5; k++) {
        double a, b, c;
        t0 = now_us();
        for (i = 0; i < n; i++) {
            in.body = bits + i * nb;
            pcl_infer(pcl_image(), &in, 0, &res);
        }
        a = (now_us() - t0) / n;
        t0 = now_us();
        for (i = 0; i < n; i++) {
            memcpy(one_payload + 1, bits + i * nb, nb);
            flen = frame(enc, PCL_MSG_INFER, (uint16_t)((k * n + i) & 0x7FFF), one_payload, 1u + nb);
            feed(enc, flen);
        }
        b = (now_us() - t0) / n;
        t0 = now_us();
        for (i = 0; i + batch <= n; i += batch) {
            pcl_wr_u16(batch_payload, batch);
            batch_payload[2] = PCL_INPUT_FORM_BITS;
            memcpy(batch_payload + 3, bits + i * nb, batch * nb);
            flen = frame(enc, PCL_MSG_INFER_BATCH, (uint16_t)((k * n + i) & 0x7FFF), batch_payload, 3u + batch * nb);
            feed(enc, flen);
        }
        c = (now_us() - t0) / (double)(n / batch * batch);
        compute_us = a < compute_us ? a : compute_us;
        proto_us = b < proto_us ? b : proto_us;
        batch_us = c < batch_us ? c : batch_us;
    }

    /* Training from the same starting weights each round (the image is reloaded, untimed):
     * compute alone, then the same steps through the handler; minimum of three rounds. */
    train_compute_us = train_proto_us = 1e30;
    for (i = 0; i < 3; i++) {
        double a, b;
        upload(image, image_len, enc);
        t0 = now_us();
        for (k = 0; k < m; k++)
            if (pcl_train_step(train + k * tb, tb, reply, sizeof reply, &reply_len, detail) != 0)
                return 1;
        a = (now_us() - t0) / m;
        upload(image, image_len, enc);
        t0 = now_us();
        for (k = 0; k < m; k++)
            feed(enc, frame(enc, PCL_MSG_TRAIN_STEP, (uint16_t)((i * m + k) & 0x7FFF), train + k * tb, tb));
        b = (now_us() - t0) / m;
        train_compute_us = a < train_compute_us ? a : train_compute_us;
        train_proto_us = b < train_proto_us ? b : train_proto_us;
    }

    printf("{\"images\": %u, \"infer_compute_us\": %.2f, \"infer_via_handler_us\": %.2f, "
           "\"infer_batch%u_via_handler_us\": %.2f, \"train_steps\": %u, \"train_compute_us\": %.2f, "
           "\"train_via_handler_us\": %.2f, \"upload_via_handler_ms\": %.3f, \"image_bytes\": %u}\n",
           n, compute_us, proto_us, batch, batch_us, m, train_compute_us, train_proto_us, load_us / 1e3, image_len);
    return 0;
}
