/* C unit tests of the portable firmware sources (host only: stdio and malloc are fine here).
 *
 * Usage: pcl-tests GOLDEN_FRAMES_FILE. Prints one line per failed check and a summary; exit
 * status 0 only if every check passed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal_fake.h"
#include "pcl_bytes.h"
#include "pcl_cobs.h"
#include "pcl_config.h"
#include "pcl_crc32.h"
#include "pcl_fixed.h"
#include "pcl_image.h"
#include "pcl_infer.h"
#include "pcl_proto.h"

static int checks, failures;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        checks++;                                                                                \
        if (!(cond)) {                                                                           \
            failures++;                                                                          \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                               \
            printf(__VA_ARGS__);                                                                 \
            printf("\n");                                                                        \
        }                                                                                        \
    } while (0)

/* -- helpers ---------------------------------------------------------------------------------- */

static void sink_to_buffer(const uint8_t *data, uint32_t len, void *ctx)
{
    uint8_t **p = (uint8_t **)ctx;
    memcpy(*p, data, len);
    *p += len;
}

/* header | payload | crc into raw; returns its length. */
static uint32_t make_raw(uint8_t *raw, uint8_t type, uint16_t seq, const uint8_t *payload, uint32_t len)
{
    raw[0] = PCL_PROTO_VERSION;
    raw[1] = type;
    pcl_wr_u16(raw + 2, seq);
    pcl_wr_u32(raw + 4, len);
    if (len)
        memcpy(raw + PCL_PROTO_HEADER_BYTES, payload, len);
    pcl_wr_u32(raw + PCL_PROTO_HEADER_BYTES + len, pcl_crc32_update(0, raw, PCL_PROTO_HEADER_BYTES + len));
    return PCL_PROTO_HEADER_BYTES + len + PCL_PROTO_CRC_BYTES;
}

static uint8_t scratch_raw[PCL_MAX_PAYLOAD_BYTES + 64];
static uint8_t scratch_enc[PCL_MAX_PAYLOAD_BYTES + PCL_MAX_PAYLOAD_BYTES / 254 + 64];

/* Encode a frame and feed it to the protocol handler byte by byte. */
static void send_frame(uint8_t type, uint16_t seq, const uint8_t *payload, uint32_t len)
{
    uint32_t n = make_raw(scratch_raw, type, seq, payload, len), i;
    uint8_t *p = scratch_enc;
    pcl_cobs_encode(scratch_raw, n, sink_to_buffer, &p);
    for (i = 0; i < (uint32_t)(p - scratch_enc); i++)
        pcl_proto_feed(scratch_enc[i], fake_now_ms);
}

typedef struct {
    int ok;
    uint8_t type;
    uint16_t seq;
    uint32_t len;
    const uint8_t *payload;
} reply_t;

static uint8_t reply_buf[FAKE_OUT_BYTES];

/* Decode the first frame captured since the last call, then clear the capture. */
static reply_t take_reply(void)
{
    reply_t r;
    uint32_t end = 0;
    int32_t n;
    memset(&r, 0, sizeof r);
    while (end < fake_out_len && fake_out[end] != 0)
        end++;
    if (end == fake_out_len) {
        fake_out_len = 0;
        return r;
    }
    memcpy(reply_buf, fake_out, end);
    n = pcl_cobs_decode(reply_buf, end);
    memmove(fake_out, fake_out + end + 1, fake_out_len - end - 1);
    fake_out_len -= end + 1;
    if (n < (int32_t)(PCL_PROTO_HEADER_BYTES + PCL_PROTO_CRC_BYTES))
        return r;
    if (pcl_crc32_update(0, reply_buf, (uint32_t)n - 4u) != pcl_rd_u32(reply_buf + n - 4))
        return r;
    r.ok = 1;
    r.type = reply_buf[1];
    r.seq = pcl_rd_u16(reply_buf + 2);
    r.len = pcl_rd_u32(reply_buf + 4);
    r.payload = reply_buf + PCL_PROTO_HEADER_BYTES;
    return r;
}

static int error_code(reply_t r)
{
    return r.ok && r.type == PCL_MSG_ERROR && r.len == PCL_PROTO_ERROR_BYTES ? pcl_rd_u16(r.payload) : -1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static uint32_t unhex(const char *s, uint8_t *out)
{
    uint32_t n = 0;
    if (strcmp(s, "-") == 0)
        return 0;
    while (s[0] && s[1]) {
        out[n++] = (uint8_t)(hexval(s[0]) * 16 + hexval(s[1]));
        s += 2;
    }
    return n;
}

/* -- tests ------------------------------------------------------------------------------------ */

static void test_crc32(void)
{
    const uint8_t check[] = "123456789";
    uint32_t crc = pcl_crc32_update(0, check, 9);
    CHECK(crc == 0xCBF43926u, "crc32('123456789') = 0x%08x", (unsigned)crc);
    crc = pcl_crc32_update(pcl_crc32_update(0, check, 4), check + 4, 5);
    CHECK(crc == 0xCBF43926u, "crc32 in two pieces = 0x%08x", (unsigned)crc);
    CHECK(pcl_crc32_update(0, check, 0) == 0u, "crc32 of nothing");
}

static void test_fixed_point(void)
{
    int32_t x;
    unsigned s, b;
    for (x = -70000; x <= 70000; x += 7)
        for (s = 0; s <= 12; s++) {
            /* floor division by 2**s, written as a loop over the definition */
            int32_t d = 1 << s, q = x / d;
            if (x % d != 0 && x < 0)
                q -= 1;
            CHECK(pcl_floor_shift(x, s) == q, "floor_shift(%d, %u) = %d, expected %d", x, s, pcl_floor_shift(x, s), q);
        }
    CHECK(pcl_floor_shift(-1, 6) == -1, "-1 >> 6");
    CHECK(pcl_floor_shift(INT32_MIN, 31) == -1, "INT32_MIN >> 31");
    for (b = 2; b <= 32; b++) {
        int64_t hi = ((int64_t)1 << (b - 1)) - 1, lo = -hi - 1, m = (int64_t)1 << b;
        int64_t probes[] = {0, 1, -1, hi, lo, hi + 1, lo - 1, 3 * hi + 5, 7 * lo - 3, (int64_t)1 << 40};
        unsigned i;
        for (i = 0; i < sizeof probes / sizeof probes[0]; i++) {
            int64_t v = probes[i], sat = v > hi ? hi : v < lo ? lo : v;
            int64_t wr = ((v - lo) % m + m) % m + lo; /* the definition, with a true modulo */
            CHECK(pcl_saturate(v, b) == sat, "saturate(%lld, %u)", (long long)v, b);
            CHECK(pcl_wrap(v, b) == wr, "wrap(%lld, %u) = %d, expected %lld", (long long)v, b, pcl_wrap(v, b),
                  (long long)wr);
        }
    }
    CHECK(pcl_shift_left(-3, 6) == -192, "shift_left(-3, 6)");
}

static void test_golden_frames(const char *path)
{
    FILE *f = fopen(path, "r");
    static char line[200000], name[100], type_hex[8], seq_dec[16], payload_hex[100000], frame_hex[100000];
    static uint8_t payload[50000], frame[50000], raw[50000], enc[50000];
    int vectors = 0;
    CHECK(f != NULL, "cannot open %s", path);
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        uint32_t plen, flen, rlen;
        int32_t dlen;
        uint8_t *p = enc;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%99s %7s %15s %99999s %99999s", name, type_hex, seq_dec, payload_hex, frame_hex) != 5) {
            CHECK(0, "malformed golden line: %s", line);
            continue;
        }
        plen = unhex(payload_hex, payload);
        flen = unhex(frame_hex, frame);
        rlen = make_raw(raw, (uint8_t)strtoul(type_hex, 0, 16), (uint16_t)strtoul(seq_dec, 0, 10), payload, plen);
        pcl_cobs_encode(raw, rlen, sink_to_buffer, &p);
        CHECK((uint32_t)(p - enc) == flen && memcmp(enc, frame, flen) == 0, "%s: C encoding differs", name);
        CHECK(frame[flen - 1] == 0, "%s: frame must end with 00", name);
        dlen = pcl_cobs_decode(frame, flen - 1);
        CHECK(dlen == (int32_t)rlen && memcmp(frame, raw, rlen) == 0, "%s: C decoding differs", name);
        vectors++;
    }
    fclose(f);
    CHECK(vectors >= 8, "only %d golden vectors", vectors);
}

static void test_cobs_rejects(void)
{
    uint8_t zero_inside[] = {3, 1, 0, 1};
    uint8_t past_end[] = {5, 1, 1};
    CHECK(pcl_cobs_decode(zero_inside, sizeof zero_inside) < 0, "zero inside a frame");
    CHECK(pcl_cobs_decode(past_end, sizeof past_end) < 0, "block past the end");
}

/* A one-layer image of the compiled spec: one input, bias row, one neuron. */
static uint32_t tiny_image(uint8_t *s, int32_t w_input, int32_t w_bias, int32_t threshold)
{
    static const int32_t spec[PCL_STREAM_N_SPEC_FIELDS] = PCL_STREAM_SPEC_VALUES;
    uint32_t k, off = 0;
    s[0] = PCL_STREAM_MAGIC_0;
    s[1] = PCL_STREAM_MAGIC_1;
    s[2] = PCL_STREAM_MAGIC_2;
    s[3] = PCL_STREAM_MAGIC_3;
    pcl_wr_u32(s + PCL_STREAM_VERSION_OFFSET, PCL_STREAM_VERSION);
    for (k = 0; k < PCL_STREAM_N_SPEC_FIELDS; k++)
        pcl_wr_u32(s + PCL_STREAM_SPEC_OFFSET + 4 * k, (uint32_t)spec[k]);
    pcl_wr_u32(s + PCL_STREAM_N_LAYERS_OFFSET, 1);
    off = PCL_STREAM_HEADER_BYTES;
    pcl_wr_u32(s + off, 2);
    pcl_wr_u32(s + off + 4, 1);
    pcl_wr_u32(s + off + 8, (uint32_t)threshold);
    off += PCL_STREAM_LAYER_HEADER_BYTES;
#if PCL_WEIGHT_BYTES == 1
    s[off++] = (uint8_t)w_input;
    s[off++] = (uint8_t)w_bias;
#else
    pcl_wr_u16(s + off, (uint32_t)w_input);
    pcl_wr_u16(s + off + 2, (uint32_t)w_bias);
    off += 4;
#endif
    return off;
}

static uint16_t next_seq = 100;

static reply_t request(uint8_t type, const uint8_t *payload, uint32_t len)
{
    send_frame(type, next_seq++, payload, len);
    return take_reply();
}

static int load(const uint8_t *stream, uint32_t len, uint32_t crc)
{
    uint8_t p[8], chunk[4096];
    reply_t r;
    pcl_wr_u32(p, len);
    pcl_wr_u32(p + 4, crc);
    r = request(PCL_MSG_LOAD_BEGIN, p, 8);
    if (error_code(r) >= 0)
        return error_code(r);
    pcl_wr_u32(chunk, 0);
    memcpy(chunk + 4, stream, len);
    r = request(PCL_MSG_LOAD_CHUNK, chunk, len + 4);
    if (error_code(r) >= 0)
        return error_code(r);
    r = request(PCL_MSG_LOAD_COMMIT, 0, 0);
    return error_code(r) >= 0 ? error_code(r) : 0;
}

static void test_protocol_faults(void)
{
    uint32_t i;
    reply_t r;
    uint8_t garbage[] = {0x13, 0x37, 0xFF, 0x42};
    pcl_proto_init();
    fake_out_len = 0;

    r = request(PCL_MSG_INFO, 0, 0);
    CHECK(r.ok && r.type == (PCL_MSG_INFO | PCL_PROTO_REPLY), "INFO reply type 0x%02x", r.type);
    CHECK(r.ok && pcl_rd_u16(r.payload) == PCL_PROTO_VERSION, "INFO protocol version");

    for (i = 0; i < sizeof garbage; i++)
        pcl_proto_feed(garbage[i], fake_now_ms);
    pcl_proto_feed(0, fake_now_ms);
    r = take_reply();
    CHECK(error_code(r) == PCL_ERR_BAD_FRAME || error_code(r) == PCL_ERR_BAD_CRC, "garbage -> %d", error_code(r));
    CHECK(r.seq == PCL_PROTO_NO_SEQ, "garbage reply seq %u", r.seq);

    /* A frame with one payload bit flipped after encoding. */
    {
        uint8_t payload[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        uint32_t n = make_raw(scratch_raw, PCL_MSG_LOAD_BEGIN, 7, payload, 8);
        uint8_t *p = scratch_enc;
        scratch_raw[10] ^= 0x10;
        pcl_cobs_encode(scratch_raw, n, sink_to_buffer, &p);
        for (i = 0; i < (uint32_t)(p - scratch_enc); i++)
            pcl_proto_feed(scratch_enc[i], fake_now_ms);
        r = take_reply();
        CHECK(error_code(r) == PCL_ERR_BAD_CRC && r.seq == PCL_PROTO_NO_SEQ, "bad CRC -> %d", error_code(r));
    }

    /* Oversize: more non-zero bytes than any frame, then the delimiter. */
    for (i = 0; i < PCL_MAX_PAYLOAD_BYTES + PCL_MAX_PAYLOAD_BYTES / 200u + 100u; i++)
        pcl_proto_feed(0x55, fake_now_ms);
    CHECK(fake_out_len == 0, "no reply before the delimiter");
    pcl_proto_feed(0, fake_now_ms);
    r = take_reply();
    CHECK(error_code(r) == PCL_ERR_OVERSIZE, "oversize -> %d", error_code(r));

    /* The payload limit holds for the decoded frame: one byte over it is OVERSIZE whether the
     * payload has no zero bytes (the encoded frame overflows the buffer) or only zero bytes
     * (it encodes shorter and fits the buffer); at the limit the frame is read. */
    {
        static uint8_t over[PCL_MAX_PAYLOAD_BYTES + 1u];
        uint32_t fill;
        for (fill = 0; fill < 2u; fill++) {
            memset(over, fill ? 0x55 : 0x00, sizeof over);
            send_frame(PCL_MSG_LOAD_CHUNK, 77, over, sizeof over);
            r = take_reply();
            CHECK(error_code(r) == PCL_ERR_OVERSIZE && r.seq == PCL_PROTO_NO_SEQ, "payload limit + 1 (%s) -> %d",
                  fill ? "no zero bytes" : "zero bytes", error_code(r));
            CHECK(r.ok && (int32_t)pcl_rd_u32(r.payload + 2) == (int32_t)PCL_MAX_PAYLOAD_BYTES, "OVERSIZE a = limit");
        }
        memset(over, 0, sizeof over);
        send_frame(PCL_MSG_INFO, 78, over, PCL_MAX_PAYLOAD_BYTES);
        r = take_reply();
        CHECK(error_code(r) == PCL_ERR_BAD_LENGTH && r.seq == 78, "payload at the limit is read (%d)", error_code(r));
    }

    /* BAD_LENGTH of a frame whose header disagrees with it: a = bytes present, b = header's. */
    {
        uint8_t three[3] = {1, 2, 3};
        uint32_t n = make_raw(scratch_raw, PCL_MSG_INFO, 79, three, 3);
        uint8_t *p = scratch_enc;
        pcl_wr_u32(scratch_raw + 4, 5);
        pcl_wr_u32(scratch_raw + n - 4u, pcl_crc32_update(0, scratch_raw, n - 4u));
        pcl_cobs_encode(scratch_raw, n, sink_to_buffer, &p);
        for (i = 0; i < (uint32_t)(p - scratch_enc); i++)
            pcl_proto_feed(scratch_enc[i], fake_now_ms);
        r = take_reply();
        CHECK(error_code(r) == PCL_ERR_BAD_LENGTH && r.seq == 79, "header length 5, 3 present -> %d", error_code(r));
        CHECK(r.ok && pcl_rd_u32(r.payload + 2) == 3u && pcl_rd_u32(r.payload + 6) == 5u, "BAD_LENGTH a, b");
    }

    /* Truncated: half a frame, then silence longer than the gap timeout. */
    {
        uint32_t n = make_raw(scratch_raw, PCL_MSG_INFO, 9, 0, 0);
        uint8_t *p = scratch_enc;
        pcl_cobs_encode(scratch_raw, n, sink_to_buffer, &p);
        for (i = 0; i < 5; i++)
            pcl_proto_feed(scratch_enc[i], fake_now_ms);
        pcl_proto_idle(fake_now_ms + PCL_FRAME_GAP_TIMEOUT_MS - 1u);
        CHECK(fake_out_len == 0, "no reply before the gap timeout");
        fake_now_ms += PCL_FRAME_GAP_TIMEOUT_MS;
        pcl_proto_idle(fake_now_ms);
        r = take_reply();
        CHECK(error_code(r) == PCL_ERR_TRUNCATED, "truncated -> %d", error_code(r));
        /* the board is in sync again */
        r = request(PCL_MSG_INFO, 0, 0);
        CHECK(r.ok && r.type == (PCL_MSG_INFO | PCL_PROTO_REPLY), "INFO after truncation");
    }

    r = request(0x5A, 0, 0);
    CHECK(error_code(r) == PCL_ERR_UNKNOWN_TYPE && r.seq == (uint16_t)(next_seq - 1u), "unknown type -> %d",
          error_code(r));
    r = request(PCL_MSG_INFO, garbage, 3);
    CHECK(error_code(r) == PCL_ERR_BAD_LENGTH, "INFO with payload -> %d", error_code(r));
    r = request(PCL_MSG_LOAD_COMMIT, 0, 0);
    CHECK(error_code(r) == PCL_ERR_NOT_LOADING, "commit without begin -> %d", error_code(r));
    /* empty frames are resynchronisation markers: no reply */
    pcl_proto_feed(0, fake_now_ms);
    pcl_proto_feed(0, fake_now_ms);
    CHECK(fake_out_len == 0, "empty frames are not answered");
}

static void test_image_and_infer(void)
{
    static uint8_t s[256], bad[256];
    uint32_t n, crc;
    uint8_t bits[2] = {PCL_INPUT_FORM_BITS, 1}, steps[3] = {PCL_INPUT_FORM_STEPS, 0, 0}, p[8];
    reply_t r;
    pcl_proto_init();
    pcl_image_reset();

    r = request(PCL_MSG_INFER, bits, 2);
    CHECK(error_code(r) == PCL_ERR_NO_IMAGE, "infer without image -> %d", error_code(r));

    /* Default spec arithmetic: one input of weight 1 at step 0 gives I = 2**f = 64 at step 0.
     * V = 64 after step 0, so threshold 64 fires at step 0. */
    n = tiny_image(s, 1, 0, 1 << PCL_CURRENT_FRAC_BITS);
    crc = pcl_crc32_update(0, s, n);

    /* A wrong CRC, a truncated load and a changed spec field are all refused. */
    CHECK(load(s, n, crc ^ 1u) == PCL_ERR_IMAGE_CRC, "wrong image CRC");
    CHECK(pcl_image() == 0, "no image after a refused load");
    memcpy(bad, s, n);
    pcl_wr_u32(bad + PCL_STREAM_SPEC_OFFSET, (uint32_t)(PCL_TIME_SHIFT + 1));
    CHECK(load(bad, n, pcl_crc32_update(0, bad, n)) == PCL_ERR_SPEC_MISMATCH, "spec mismatch refused");
    memcpy(bad, s, n);
    bad[0] = 'X';
    CHECK(load(bad, n, pcl_crc32_update(0, bad, n)) == PCL_ERR_IMAGE_FORMAT, "bad magic refused");
    CHECK(load(s, n - 1, pcl_crc32_update(0, s, n - 1)) == PCL_ERR_IMAGE_FORMAT, "short stream refused");
    pcl_wr_u32(p, n);
    pcl_wr_u32(p + 4, crc);
    r = request(PCL_MSG_LOAD_BEGIN, p, 8);
    r = request(PCL_MSG_LOAD_COMMIT, 0, 0);
    CHECK(error_code(r) == PCL_ERR_IMAGE_INCOMPLETE, "half-loaded image refused -> %d", error_code(r));
    pcl_wr_u32(p, PCL_WEIGHT_CAPACITY_BYTES + 1u);
    r = request(PCL_MSG_LOAD_BEGIN, p, 8);
    CHECK(error_code(r) == PCL_ERR_IMAGE_TOO_LARGE, "image above capacity refused");

    CHECK(load(s, n, crc) == 0, "valid tiny image accepted");
    CHECK(pcl_image() != 0 && pcl_image_crc32() == crc, "committed image CRC");
    r = request(PCL_MSG_INFER, bits, 2);
    CHECK(r.ok && r.type == (PCL_MSG_INFER | PCL_PROTO_REPLY), "infer reply type 0x%02x (err %d)", r.type,
          error_code(r));
    if (r.ok && r.type == (PCL_MSG_INFER | PCL_PROTO_REPLY)) {
        CHECK(pcl_rd_i32(r.payload) == 0, "predicted %d", pcl_rd_i32(r.payload));
        CHECK(pcl_rd_i32(r.payload + 4) == 0, "first output step %d", pcl_rd_i32(r.payload + 4));
    }
    /* A dark input arrives at DARK_INPUT_STEP (the neuron fires then), or never. */
    bits[1] = 0;
    r = request(PCL_MSG_INFER, bits, 2);
    CHECK(r.ok && pcl_rd_i32(r.payload + 4) == (PCL_DARK_INPUT_STEP >= 0 ? PCL_DARK_INPUT_STEP : -1),
          "dark input: first output step %d", pcl_rd_i32(r.payload + 4));
    CHECK(r.ok && pcl_rd_i32(r.payload) == (PCL_DARK_INPUT_STEP >= 0 ? 0 : -1), "dark input: predicted");
    bits[1] = 1;
    /* The same input in the STEPS form: at step 0 it fires at 0; at step 3, at 3; never, never. */
    r = request(PCL_MSG_INFER, steps, 3);
    CHECK(r.ok && pcl_rd_i32(r.payload + 4) == 0, "step-0 input: first output step %d", pcl_rd_i32(r.payload + 4));
    steps[1] = 3;
    r = request(PCL_MSG_INFER, steps, 3);
    CHECK(r.ok && pcl_rd_i32(r.payload + 4) == 3, "step-3 input: first output step %d", pcl_rd_i32(r.payload + 4));
    CHECK(r.ok && pcl_rd_u32(r.payload + 14) == 1, "step-3 input: rows read %u", pcl_rd_u32(r.payload + 14));
    pcl_wr_u16(steps + 1, PCL_PROTO_INPUT_STEP_NEVER);
    r = request(PCL_MSG_INFER, steps, 3);
    CHECK(r.ok && pcl_rd_i32(r.payload + 4) == -1, "silent input: first output step %d", pcl_rd_i32(r.payload + 4));
    r = request(PCL_MSG_INFER, steps, 2);
    CHECK(error_code(r) == PCL_ERR_BAD_LENGTH, "steps input of the wrong length");
    steps[0] = 7;
    r = request(PCL_MSG_INFER, steps, 3);
    CHECK(error_code(r) == PCL_ERR_BAD_ARGUMENT, "unknown input form -> %d", error_code(r));
    /* Step 1: I1 = I0 - floor(I0 / 2**TIME_SHIFT), V1 = I0 + I1; threshold V1 fires at step 1. */
    {
        const int32_t i0 = 1 << PCL_CURRENT_FRAC_BITS, i1 = i0 - pcl_floor_shift(i0, PCL_TIME_SHIFT);
        n = tiny_image(s, 1, 0, i0 + i1);
        CHECK(load(s, n, pcl_crc32_update(0, s, n)) == 0, "second tiny image accepted");
        r = request(PCL_MSG_INFER, bits, 2);
        CHECK(r.ok && pcl_rd_i32(r.payload + 4) == (i1 > 0 ? 1 : 0), "fires at step 1, got %d",
              pcl_rd_i32(r.payload + 4));
    }
    r = request(PCL_MSG_INFER, bits, 3);
    CHECK(error_code(r) == PCL_ERR_BAD_LENGTH, "infer with wrong input length");
}

static void test_retry_is_not_executed_twice(void)
{
    static uint8_t s[256], chunk[64];
    uint32_t n = tiny_image(s, 1, 0, 64), first_len;
    uint8_t p[8];
    static uint8_t first[256];
    reply_t r;
    pcl_proto_init();
    pcl_wr_u32(p, n);
    pcl_wr_u32(p + 4, pcl_crc32_update(0, s, n));
    r = request(PCL_MSG_LOAD_BEGIN, p, 8);
    CHECK(error_code(r) < 0, "begin");
    pcl_wr_u32(chunk, 0);
    memcpy(chunk + 4, s, 20);
    send_frame(PCL_MSG_LOAD_CHUNK, 500, chunk, 24);
    r = take_reply();
    CHECK(r.ok && r.type == (PCL_MSG_LOAD_CHUNK | PCL_PROTO_REPLY) && pcl_rd_u32(r.payload) == 20, "first chunk");
    first_len = r.len;
    memcpy(first, r.payload, r.len);
    /* the same frame again (a host retry): same reply, and the chunk is not appended twice */
    send_frame(PCL_MSG_LOAD_CHUNK, 500, chunk, 24);
    r = take_reply();
    CHECK(r.ok && r.len == first_len && memcmp(r.payload, first, first_len) == 0, "retry gets the kept reply");
    pcl_wr_u32(chunk, 20);
    memcpy(chunk + 4, s + 20, n - 20);
    send_frame(PCL_MSG_LOAD_CHUNK, 501, chunk, 4 + n - 20);
    r = take_reply();
    CHECK(r.ok && r.type == (PCL_MSG_LOAD_CHUNK | PCL_PROTO_REPLY), "next chunk at offset 20 (err %d)",
          error_code(r));
    r = request(PCL_MSG_LOAD_COMMIT, 0, 0);
    CHECK(error_code(r) < 0, "commit after a retried chunk (err %d)", error_code(r));
    /* same seq, different content: a new request, executed */
    send_frame(PCL_MSG_LOAD_CHUNK, 501, chunk, 4);
    r = take_reply();
    CHECK(error_code(r) == PCL_ERR_NOT_LOADING, "same seq, other frame is executed (%d)", error_code(r));
}

int main(int argc, char **argv)
{
    hal_init();
    test_crc32();
    test_fixed_point();
    test_cobs_rejects();
    if (argc > 1)
        test_golden_frames(argv[1]);
    else
        CHECK(0, "usage: pcl-tests GOLDEN_FRAMES_FILE");
    test_protocol_faults();
    test_image_and_infer();
    test_retry_is_not_executed_twice();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
