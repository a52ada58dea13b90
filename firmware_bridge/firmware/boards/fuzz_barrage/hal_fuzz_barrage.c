/* HAL of the fuzz board: the "UART" is a seeded barrage of hostile input, and every byte the
 * firmware sends is checked as it arrives.
 *
 * Environment: PCL_FUZZ_CORPUS (seed file, see tools/fuzz_firmware.py), PCL_FUZZ_SEED,
 * PCL_FUZZ_INPUTS. One input is one of:
 *   garbage    random bytes (delimiters included) of random length;
 *   valid      a seed frame, correctly sealed (CRC-32, COBS, delimiter);
 *   deep       a seed frame mutated (bytes, length field, type, truncation, growth) and then
 *              sealed correctly, so the mutation reaches the message handlers;
 *   wire       a sealed frame damaged after encoding (flip, drop, duplicate, lost delimiter);
 *   oversize   a delimiter-free run longer than the board's frame buffer;
 *   session    an image upload (the seed stream, often mutated, with a matching image CRC so
 *              the mutation reaches the image parser), then INFER / INFER_BATCH / READ_IMAGE /
 *              TRAIN_STEP requests with random inputs.
 * After each input the clock jumps (sometimes past the frame gap timeout, which must end a
 * truncated frame). Oracle: every reply frame decodes (COBS), has a valid CRC-32, version and
 * length field, a reply or ERROR type and a well-sized ERROR payload; each input gets at most
 * as many replies as it has delimiters + 1 (truncation). Any violation, like any sanitizer
 * report, aborts. PCL_FUZZ_PLANT=1 damages one reply byte to show that the oracle can fail.
 * The summary on stderr counts inputs, replies per message type and errors per code.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal.h"
#include "pcl_config.h"

#define FUZZ_MAX_INPUT (PCL_MAX_PAYLOAD_BYTES * 3u + 4096u)
#define FUZZ_MAX_SEEDS 64u
#define REPLY_MAX_RAW (PCL_PROTO_HEADER_BYTES + PCL_MAX_PAYLOAD_BYTES + PCL_PROTO_CRC_BYTES)

static uint64_t rng_state;
static uint32_t fake_now_ms;

static uint8_t input[FUZZ_MAX_INPUT];
static uint32_t input_len;
static uint32_t input_pos;
static int input_done_idle;
static uint32_t input_delimiters;
static uint32_t input_replies;
static int plant_reply_fault; /* PCL_FUZZ_PLANT=1: damage one reply byte (the oracle must notice) */

static uint64_t inputs_total;
static uint64_t inputs_done;
static uint64_t bytes_fed;
static uint64_t replies_by_type[256];
static uint64_t errors_by_code[32];
static uint64_t kind_count[6];

/* Seed corpus: frame bodies (header | payload, no CRC) and image streams. */
static uint8_t *seed_body[FUZZ_MAX_SEEDS];
static uint32_t seed_body_len[FUZZ_MAX_SEEDS];
static uint32_t n_seed_bodies;
static uint8_t *seed_stream;
static uint32_t seed_stream_len;

/* Reply assembly (encoded bytes up to a delimiter). */
static uint8_t reply_enc[REPLY_MAX_RAW + REPLY_MAX_RAW / 254u + 16u];
static uint32_t reply_enc_len;
static uint8_t reply_raw[REPLY_MAX_RAW + 16u];

static void fail(const char *what)
{
    fprintf(stderr, "FUZZ FAIL after %llu inputs: %s\n", (unsigned long long)inputs_done, what);
    abort();
}

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint32_t below(uint32_t n)
{
    return n ? (uint32_t)(rnd() % n) : 0u;
}

static uint32_t crc32_ieee(const uint8_t *data, uint32_t len)
{
    uint32_t crc = 0xFFFFFFFFu, i;
    int bit;
    for (i = 0; i < len; i++) {
        crc ^= data[i];
        for (bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, v);
    put_u16(p + 2, v >> 16);
}

/* Random inputs of a 784-input request at dst: BITS (98 bytes) or STEPS (784 x u16: early steps,
 * late ones, never, anything), sometimes under an unknown form byte; *form gets the byte sent.
 * Returns the bytes written. */
static uint32_t fill_inputs(uint8_t *dst, uint8_t *form)
{
    uint32_t i, kind = below(8u);
    if (kind < 4u) {
        *form = PCL_INPUT_FORM_BITS;
        for (i = 0; i < 98u; i++)
            dst[i] = (uint8_t)(below(3u) ? rnd() & rnd() : 0u);
        return 98u;
    }
    *form = kind == 7u ? (uint8_t)(2u + below(250u)) : PCL_INPUT_FORM_STEPS;
    for (i = 0; i < 784u; i++) {
        uint32_t c = below(8u);
        put_u16(dst + 2u * i, c < 4u ? below(140u) : c < 6u ? PCL_PROTO_INPUT_STEP_NEVER : c < 7u ? below(600u) : rnd());
    }
    return 2u * 784u;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void append(const uint8_t *data, uint32_t len)
{
    if (input_len + len > FUZZ_MAX_INPUT)
        len = FUZZ_MAX_INPUT - input_len;
    memcpy(input + input_len, data, len);
    input_len += len;
}

static void append_byte(uint8_t b)
{
    append(&b, 1u);
}

/* COBS-encode raw and append it with a trailing delimiter. */
static void append_cobs(const uint8_t *raw, uint32_t len)
{
    uint8_t block[255];
    uint32_t i, n = 0;
    for (i = 0; i < len; i++) {
        if (raw[i] == 0) {
            append_byte((uint8_t)(n + 1u));
            append(block, n);
            n = 0;
        } else {
            block[n++] = raw[i];
            if (n == 254u) {
                append_byte(255u);
                append(block, n);
                n = 0;
            }
        }
    }
    append_byte((uint8_t)(n + 1u));
    append(block, n);
    append_byte(0);
}

static uint8_t frame_raw[PCL_PROTO_HEADER_BYTES + PCL_MAX_PAYLOAD_BYTES * 2u + 64u];

/* Seal a body (header | payload; the length field is left as given) with its CRC; append. */
static void append_sealed(const uint8_t *body, uint32_t len)
{
    memcpy(frame_raw, body, len);
    put_u32(frame_raw + len, crc32_ieee(body, len));
    append_cobs(frame_raw, len + 4u);
}

static uint8_t body_buf[PCL_PROTO_HEADER_BYTES + PCL_MAX_PAYLOAD_BYTES * 2u + 64u];

/* A well-formed request body of type/seq with payload; returns its length. */
static uint32_t make_body(uint8_t type, uint16_t seq, const uint8_t *payload, uint32_t len)
{
    body_buf[0] = PCL_PROTO_VERSION;
    body_buf[1] = type;
    put_u16(body_buf + 2, seq);
    put_u32(body_buf + 4, len);
    if (len)
        memcpy(body_buf + PCL_PROTO_HEADER_BYTES, payload, len);
    return PCL_PROTO_HEADER_BYTES + len;
}

static void mutate(uint8_t *buf, uint32_t *len, uint32_t room)
{
    uint32_t n = 1u + below(4u), k;
    for (k = 0; k < n; k++) {
        uint32_t at = *len ? below(*len) : 0u;
        switch (below(8u)) {
        case 0: if (*len) buf[at] ^= (uint8_t)(1u << below(8u)); break;
        case 1: if (*len) buf[at] = (uint8_t)rnd(); break;
        case 2: if (*len) buf[at] = (uint8_t)(below(2u) ? 0xFFu : 0u); break;
        case 3: *len = below(*len + 1u); break; /* truncate */
        case 4: /* grow with random bytes */
            while (*len < room && below(8u)) buf[(*len)++] = (uint8_t)rnd();
            break;
        case 5: if (*len >= 8u) put_u32(buf + 4, below(5u) ? below(PCL_MAX_PAYLOAD_BYTES * 2u) : (uint32_t)rnd()); break;
        case 6: if (*len >= 2u) buf[1] = (uint8_t)(below(2u) ? rnd() : buf[1] ^ 0x80u); break;
        default: if (*len >= 1u) buf[0] = (uint8_t)rnd(); break;
        }
    }
}

static uint16_t next_seq(void)
{
    return (uint16_t)below(PCL_PROTO_NO_SEQ);
}

static void gen_garbage(void)
{
    uint32_t n = below(below(4u) ? 64u : 2048u), i;
    for (i = 0; i < n; i++)
        append_byte(below(6u) ? (uint8_t)rnd() : 0u);
}

static void gen_valid(int deep)
{
    const uint32_t s = below(n_seed_bodies);
    uint32_t len = seed_body_len[s];
    memcpy(body_buf, seed_body[s], len);
    if (len >= 4u)
        put_u16(body_buf + 2, next_seq());
    if (deep)
        mutate(body_buf, &len, sizeof body_buf - 8u);
    if (below(4u) == 0)
        append_byte(0); /* the host's leading delimiter */
    append_sealed(body_buf, len);
}

static void gen_wire(void)
{
    uint32_t start = input_len, n, k;
    gen_valid(below(2u));
    n = 1u + below(3u);
    for (k = 0; k < n && input_len > start; k++) {
        uint32_t at = start + below(input_len - start);
        switch (below(4u)) {
        case 0: input[at] ^= (uint8_t)(1u << below(8u)); break;
        case 1: memmove(input + at, input + at + 1, input_len - at - 1u); input_len--; break;
        case 2:
            if (input_len < FUZZ_MAX_INPUT) {
                memmove(input + at + 1, input + at, input_len - at);
                input_len++;
            }
            break;
        default: if (input[input_len - 1] == 0) input_len--; break; /* lose the delimiter */
        }
    }
}

static void gen_oversize(void)
{
    uint32_t n = PCL_MAX_PAYLOAD_BYTES + PCL_MAX_PAYLOAD_BYTES / 200u + 64u + below(256u), i;
    for (i = 0; i < n; i++)
        append_byte((uint8_t)(1u + below(255u)));
    if (below(2u))
        append_byte(0);
}

static uint8_t stream_buf[PCL_WEIGHT_CAPACITY_BYTES + 4096u];
static uint8_t payload_buf[PCL_MAX_PAYLOAD_BYTES + 64u];

static void gen_session(void)
{
    uint32_t len = seed_stream_len, crc, offset, chunk_max, k, n_req;
    uint8_t *p = payload_buf;
    memcpy(stream_buf, seed_stream, len);
    if (below(3u) != 0) { /* mutated image with a matching CRC: reaches the parser */
        uint32_t flips = 1u + below(6u);
        for (k = 0; k < flips && len; k++) {
            uint32_t at = below(4u) ? below(len < 128u ? len : 128u) : below(len); /* headers often */
            stream_buf[at] = below(2u) ? (uint8_t)rnd() : (uint8_t)(stream_buf[at] ^ (1u << below(8u)));
        }
        if (below(6u) == 0)
            len = below(len + 1u);
    }
    crc = crc32_ieee(stream_buf, len);
    put_u32(p, below(12u) ? len : (uint32_t)rnd());
    put_u32(p + 4, below(12u) ? crc : (uint32_t)rnd());
    append_sealed(body_buf, make_body(PCL_MSG_LOAD_BEGIN, next_seq(), p, 8u));
    chunk_max = PCL_MAX_PAYLOAD_BYTES - 4u;
    for (offset = 0; offset < len;) {
        uint32_t n = 1u + below(chunk_max);
        if (n > len - offset)
            n = len - offset;
        put_u32(p, below(40u) ? offset : (uint32_t)below(len + 64u));
        memcpy(p + 4, stream_buf + offset, n);
        append_sealed(body_buf, make_body(PCL_MSG_LOAD_CHUNK, next_seq(), p, n + 4u));
        offset += n;
        if (below(60u) == 0)
            break; /* an interrupted upload */
    }
    append_sealed(body_buf, make_body(PCL_MSG_LOAD_COMMIT, next_seq(), p, 0u));
    n_req = 1u + below(6u);
    for (k = 0; k < n_req; k++) {
        uint32_t bits_len = below(4u) ? 98u : below(300u);
        uint32_t i, m;
        switch (below(5u)) {
        case 0: /* INFER: a form byte, then random inputs (784 of them, or another length) */
            bits_len = 1u + fill_inputs(p + 1, p);
            if (below(4u) == 0)
                bits_len = below(200u);
            append_sealed(body_buf, make_body(PCL_MSG_INFER, next_seq(), p, bits_len));
            break;
        case 1: /* INFER_BATCH: count, form, then inputs */
            m = below(6u);
            put_u16(p, below(8u) ? m : (uint32_t)rnd());
            {
                uint32_t nb = 0, j;
                for (j = 0; j < m; j++) {
                    uint8_t form_byte;
                    uint32_t one = fill_inputs(p + 3 + nb, &form_byte);
                    if (j == 0)
                        p[2] = form_byte;
                    else if (form_byte != p[2])
                        break; /* one form per batch: stop at the first of another form */
                    nb += one;
                }
                i = 1u + nb;
            }
            append_sealed(body_buf, make_body(PCL_MSG_INFER_BATCH, next_seq(), p, 2u + i - (below(6u) == 0u ? 1u : 0u)));
            break;
        case 2: /* READ_IMAGE, in and out of range */
            put_u32(p, below(3u) ? below(len + 16u) : (uint32_t)rnd());
            put_u32(p + 4, below(3u) ? below(PCL_MAX_PAYLOAD_BYTES) : (uint32_t)rnd());
            append_sealed(body_buf, make_body(PCL_MSG_READ_IMAGE, next_seq(), p, 8u));
            break;
        case 3: /* TRAIN_STEP: sample index, label, form, inputs */
            put_u32(p, (uint32_t)rnd());
            put_u16(p + 4, below(4u) ? below(10u) : (uint32_t)rnd());
            i = 7u + fill_inputs(p + 7, p + 6);
            append_sealed(body_buf, make_body(PCL_MSG_TRAIN_STEP, next_seq(), p, below(8u) ? i : below(i + 20u)));
            break;
        default:
            append_sealed(body_buf, make_body(below(2u) ? PCL_MSG_INFO : PCL_MSG_RESET, next_seq(), p, 0u));
            break;
        }
    }
}

static void next_input(void)
{
    uint32_t i, kind = below(100u);
    input_len = input_pos = 0;
    input_done_idle = 0;
    input_replies = 0;
    if (kind < 15u) {
        kind_count[0]++;
        gen_garbage();
    } else if (kind < 35u) {
        kind_count[1]++;
        gen_valid(0);
    } else if (kind < 65u) {
        kind_count[2]++;
        gen_valid(1);
    } else if (kind < 85u) {
        kind_count[3]++;
        gen_wire();
    } else if (kind < 87u) {
        kind_count[4]++;
        gen_oversize();
    } else {
        kind_count[5]++;
        gen_session();
    }
    input_delimiters = 0;
    for (i = 0; i < input_len; i++)
        input_delimiters += input[i] == 0;
}

static void load_corpus(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t head[5];
    if (!f)
        fail("cannot open PCL_FUZZ_CORPUS");
    while (fread(head, 1, 5, f) == 5) {
        uint32_t len = get_u32(head + 1);
        uint8_t *data = malloc(len ? len : 1u);
        if (!data || fread(data, 1, len, f) != len)
            fail("truncated corpus");
        if (head[0] == 1 && n_seed_bodies < FUZZ_MAX_SEEDS) {
            seed_body[n_seed_bodies] = data;
            seed_body_len[n_seed_bodies++] = len;
        } else if (head[0] == 2 && len <= PCL_WEIGHT_CAPACITY_BYTES) {
            seed_stream = data;
            seed_stream_len = len;
        } else {
            free(data);
        }
    }
    fclose(f);
    if (n_seed_bodies == 0 || seed_stream == NULL)
        fail("the corpus needs frame bodies and an image stream");
}

static void summary_and_exit(void)
{
    uint32_t i;
    fprintf(stderr, "FUZZ DONE inputs=%llu bytes=%llu kinds=%llu,%llu,%llu,%llu,%llu,%llu\n",
            (unsigned long long)inputs_done, (unsigned long long)bytes_fed,
            (unsigned long long)kind_count[0], (unsigned long long)kind_count[1],
            (unsigned long long)kind_count[2], (unsigned long long)kind_count[3],
            (unsigned long long)kind_count[4], (unsigned long long)kind_count[5]);
    fprintf(stderr, "FUZZ REPLIES");
    for (i = 0; i < 256u; i++)
        if (replies_by_type[i])
            fprintf(stderr, " %u=%llu", i, (unsigned long long)replies_by_type[i]);
    fprintf(stderr, "\nFUZZ ERRORS");
    for (i = 0; i < 32u; i++)
        if (errors_by_code[i])
            fprintf(stderr, " %u=%llu", i, (unsigned long long)errors_by_code[i]);
    fprintf(stderr, "\n");
    exit(0);
}

void hal_init(void)
{
    const char *corpus = getenv("PCL_FUZZ_CORPUS");
    const char *seed = getenv("PCL_FUZZ_SEED");
    const char *count = getenv("PCL_FUZZ_INPUTS");
    if (!corpus || !count)
        fail("set PCL_FUZZ_CORPUS and PCL_FUZZ_INPUTS");
    rng_state = 0x9E3779B97F4A7C15ull ^ (seed ? strtoull(seed, NULL, 10) : 1ull);
    if (rng_state == 0)
        rng_state = 1;
    inputs_total = strtoull(count, NULL, 10);
    plant_reply_fault = getenv("PCL_FUZZ_PLANT") != NULL && getenv("PCL_FUZZ_PLANT")[0] == '1';
    load_corpus(corpus);
    next_input();
}

int hal_read_byte(uint8_t *byte, uint32_t timeout_ms)
{
    if (input_pos < input_len) {
        *byte = input[input_pos++];
        bytes_fed++;
        fake_now_ms += below(16u) == 0; /* bytes mostly back to back */
        return 1;
    }
    if (!input_done_idle) {
        /* Quiet line: time passes, past the frame gap now and then (truncation path). */
        input_done_idle = 1;
        fake_now_ms += below(3u) ? timeout_ms : PCL_FRAME_GAP_TIMEOUT_MS + 1u + below(1000u);
        return 0;
    }
    if (input_replies > input_delimiters + 1u)
        fail("more replies than frames in one input");
    inputs_done++;
    if (inputs_done >= inputs_total)
        summary_and_exit();
    next_input();
    fake_now_ms += timeout_ms;
    return 0;
}

static void check_reply(void)
{
    uint32_t i = 0, n = 0, code_pos, len, type;
    /* COBS decode reply_enc[0..reply_enc_len) into reply_raw */
    while (i < reply_enc_len) {
        uint32_t code = reply_enc[i++], k;
        if (code == 0)
            fail("reply: zero byte inside a COBS frame");
        for (k = 1; k < code; k++) {
            if (i >= reply_enc_len)
                fail("reply: COBS block runs past the frame");
            if (n >= sizeof reply_raw)
                fail("reply: longer than header + max payload + CRC");
            reply_raw[n++] = reply_enc[i++];
        }
        if (code < 255u && i < reply_enc_len) {
            if (n >= sizeof reply_raw)
                fail("reply: longer than header + max payload + CRC");
            reply_raw[n++] = 0;
        }
    }
    if (n < PCL_PROTO_HEADER_BYTES + PCL_PROTO_CRC_BYTES)
        fail("reply: shorter than header + CRC");
    if (crc32_ieee(reply_raw, n - 4u) != get_u32(reply_raw + n - 4u))
        fail("reply: bad CRC-32");
    if (reply_raw[0] != PCL_PROTO_VERSION)
        fail("reply: wrong protocol version");
    len = get_u32(reply_raw + 4);
    if (len != n - PCL_PROTO_HEADER_BYTES - PCL_PROTO_CRC_BYTES)
        fail("reply: length field does not match the frame");
    type = reply_raw[1];
    if (type != PCL_MSG_ERROR && (type & PCL_PROTO_REPLY) == 0u)
        fail("reply: type is neither a reply nor ERROR");
    replies_by_type[type]++;
    if (type == PCL_MSG_ERROR) {
        if (len != PCL_PROTO_ERROR_BYTES)
            fail("reply: ERROR payload of the wrong size");
        code_pos = reply_raw[PCL_PROTO_HEADER_BYTES] | reply_raw[PCL_PROTO_HEADER_BYTES + 1] << 8;
        errors_by_code[code_pos < 32u ? code_pos : 31u]++;
    }
    input_replies++;
}

void hal_write(const uint8_t *data, uint32_t len)
{
    uint32_t i;
    for (i = 0; i < len; i++) {
        if (data[i] == 0) {
            check_reply();
            reply_enc_len = 0;
        } else {
            if (reply_enc_len >= sizeof reply_enc)
                fail("reply: no delimiter within the longest legal frame");
            reply_enc[reply_enc_len++] = data[i];
            if (plant_reply_fault && replies_by_type[PCL_MSG_INFO | PCL_PROTO_REPLY] >= 3u && reply_enc_len == 6u) {
                reply_enc[5] ^= 0x20u;
                plant_reply_fault = 0;
            }
        }
    }
}

uint32_t hal_millis(void)
{
    return fake_now_ms;
}
