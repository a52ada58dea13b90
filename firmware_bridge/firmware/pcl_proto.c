#include "pcl_proto.h"

#include "hal.h"
#include "pcl_bytes.h"
#include "pcl_cobs.h"
#include "pcl_config.h"
#include "pcl_crc32.h"
#include "pcl_image.h"
#include "pcl_infer.h"
#include "pcl_learn.h"

#define RAW_MAX_BYTES (PCL_PROTO_HEADER_BYTES + PCL_MAX_PAYLOAD_BYTES + PCL_PROTO_CRC_BYTES)
#define ENCODED_MAX_BYTES (RAW_MAX_BYTES + RAW_MAX_BYTES / 254u + 1u)
#define FIRMWARE_VERSION_TEXT PCL_FIRMWARE_VERSION

static uint8_t rx[ENCODED_MAX_BYTES] PCL_BIG_RAM;
static uint32_t rx_len;
static int rx_overflow;
static uint32_t rx_last_ms;

/* The last reply, raw (header | payload | CRC), kept for a repeated request. */
static uint8_t tx[RAW_MAX_BYTES] PCL_BIG_RAM;
static uint32_t tx_len;
static int have_last;
static uint16_t last_seq;
static uint32_t last_request_crc;

static const int32_t compiled_spec[PCL_STREAM_N_SPEC_FIELDS] = PCL_STREAM_SPEC_VALUES;

/* -- sending ------------------------------------------------------------------------------- */

typedef struct {
    uint8_t buf[256];
    uint32_t len;
} out_t;

static void out_sink(const uint8_t *data, uint32_t len, void *ctx)
{
    out_t *o = (out_t *)ctx;
    while (len) {
        uint32_t room = (uint32_t)sizeof o->buf - o->len, n = len < room ? len : room, i;
        for (i = 0; i < n; i++)
            o->buf[o->len + i] = data[i];
        o->len += n;
        data += n;
        len -= n;
        if (o->len == sizeof o->buf) {
            hal_write(o->buf, o->len);
            o->len = 0;
        }
    }
}

static void send_raw(const uint8_t *raw, uint32_t len)
{
    out_t o;
    o.len = 0;
    pcl_cobs_encode(raw, len, out_sink, &o);
    if (o.len)
        hal_write(o.buf, o.len);
}

/* Header and CRC around the payload already at buf + PCL_PROTO_HEADER_BYTES; returns raw length. */
static uint32_t seal(uint8_t *buf, uint8_t type, uint16_t seq, uint32_t payload_len)
{
    uint32_t crc;
    buf[0] = PCL_PROTO_VERSION;
    buf[1] = type;
    pcl_wr_u16(buf + 2, seq);
    pcl_wr_u32(buf + 4, payload_len);
    crc = pcl_crc32_update(0, buf, PCL_PROTO_HEADER_BYTES + payload_len);
    pcl_wr_u32(buf + PCL_PROTO_HEADER_BYTES + payload_len, crc);
    return PCL_PROTO_HEADER_BYTES + payload_len + PCL_PROTO_CRC_BYTES;
}

static uint32_t put_error(uint8_t *payload, int code, int32_t a, int32_t b)
{
    pcl_wr_u16(payload, (uint32_t)code);
    pcl_wr_u32(payload + 2, (uint32_t)a);
    pcl_wr_u32(payload + 6, (uint32_t)b);
    return PCL_PROTO_ERROR_BYTES;
}

/* Errors about a frame whose seq is unknown: sent from a small buffer, the kept reply stays. */
static void send_frame_error(int code, int32_t a, int32_t b)
{
    uint8_t buf[PCL_PROTO_HEADER_BYTES + PCL_PROTO_ERROR_BYTES + PCL_PROTO_CRC_BYTES];
    uint32_t n = put_error(buf + PCL_PROTO_HEADER_BYTES, code, a, b);
    send_raw(buf, seal(buf, PCL_MSG_ERROR, PCL_PROTO_NO_SEQ, n));
}

/* -- message handlers: each writes its reply payload and returns its length, or an error ---- */

typedef struct {
    uint8_t *p;     /* reply payload */
    uint32_t room;  /* PCL_MAX_PAYLOAD_BYTES */
    uint32_t len;
    int32_t detail[2];
} reply_t;

static int put(reply_t *r, const uint8_t *data, uint32_t n)
{
    uint32_t i;
    if (n > r->room - r->len)
        return 0;
    for (i = 0; i < n; i++)
        r->p[r->len + i] = data[i];
    r->len += n;
    return 1;
}

static void put32(reply_t *r, uint32_t v)
{
    uint8_t b[4];
    pcl_wr_u32(b, v);
    (void)put(r, b, 4);
}

static void put16(reply_t *r, uint32_t v)
{
    uint8_t b[2];
    pcl_wr_u16(b, v);
    (void)put(r, b, 2);
}

static void put8(reply_t *r, uint32_t v)
{
    uint8_t b = (uint8_t)v;
    (void)put(r, &b, 1);
}

static void put_text(reply_t *r, const char *s)
{
    uint32_t n = 0;
    while (s[n] && n < 255u)
        n++;
    put8(r, n);
    (void)put(r, (const uint8_t *)s, n);
}

static int err(reply_t *r, int code, int32_t a, int32_t b)
{
    r->detail[0] = a;
    r->detail[1] = b;
    return code;
}

static int need_length(reply_t *r, uint32_t len, uint32_t expected)
{
    return len == expected ? 0 : err(r, PCL_ERR_BAD_LENGTH, (int32_t)len, (int32_t)expected);
}

static int handle_info(uint32_t len, reply_t *r)
{
    uint32_t k, n_learn;
    const uint32_t *learn = pcl_learning_spec(&n_learn);
    const pcl_image_t *img = pcl_image();
    int e = need_length(r, len, 0);
    if (e)
        return e;
    put16(r, PCL_PROTO_VERSION);
    put16(r, PCL_STREAM_N_SPEC_FIELDS);
    put32(r, PCL_MAX_PAYLOAD_BYTES);
    put32(r, PCL_WEIGHT_CAPACITY_BYTES);
    put32(r, PCL_MAX_NEURONS);
    put32(r, PCL_MAX_LAYERS);
    put32(r, n_learn);
    for (k = 0; k < PCL_STREAM_N_SPEC_FIELDS; k++)
        put32(r, (uint32_t)compiled_spec[k]);
    for (k = 0; k < n_learn; k++)
        put32(r, learn[k]);
    put8(r, img != 0);
    put32(r, img ? pcl_image_crc32() : 0u);
    put32(r, img ? img->n_bytes : 0u);
    put_text(r, FIRMWARE_VERSION_TEXT);
    put_text(r, PCL_BOARD_NAME);
    return 0;
}

/* Reply bytes of the result of the inference just run: head, rows read and a spike count per
 * layer, one (neuron, step) entry per neuron that fired. */
static uint32_t result_bytes(const pcl_image_t *img)
{
    const int32_t *steps = pcl_spike_steps();
    uint32_t j, need = PCL_PROTO_RESULT_HEAD_BYTES + 8u * img->n_layers;
    for (j = 0; j < img->n_neurons; j++)
        if (steps[j] >= 0)
            need += PCL_PROTO_SPIKE_BYTES;
    return need;
}

/* One inference result: predicted, first step, tie, n_layers, synaptic additions, rows read per
 * layer, then per layer a count and (u16 neuron, i32 step) per neuron that fired. A result that
 * does not fit writes nothing and returns REPLY_TOO_LARGE (a = bytes the reply needs so far). */
static int put_result(reply_t *r, const pcl_image_t *img, const pcl_result_t *res)
{
    const int32_t *steps = pcl_spike_steps();
    uint32_t k, j, need = result_bytes(img), start = r->len;
    if (need > r->room - r->len)
        return err(r, PCL_ERR_REPLY_TOO_LARGE, (int32_t)(r->len + need), (int32_t)r->room);
    put32(r, (uint32_t)res->predicted);
    put32(r, (uint32_t)res->first_output_step);
    put8(r, res->tie);
    put8(r, img->n_layers);
    put32(r, res->synaptic_additions);
    for (k = 0; k < img->n_layers; k++)
        put32(r, res->rows_read[k]);
    for (k = 0; k < img->n_layers; k++) {
        const pcl_layer_t *L = &img->layer[k];
        uint32_t count = 0;
        for (j = 0; j < L->n_post; j++)
            count += steps[L->neuron_offset + j] >= 0;
        put32(r, count);
        for (j = 0; j < L->n_post; j++) {
            int32_t s = steps[L->neuron_offset + j];
            if (s >= 0) {
                put16(r, j);
                put32(r, (uint32_t)s);
            }
        }
    }
    return r->len - start == need ? 0 : err(r, PCL_ERR_REPLY_TOO_LARGE, (int32_t)need, (int32_t)r->room);
}

/* The inputs at p (form u8, then the inputs of that form) of a request whose inputs take the
 * `len` bytes from p on; checks form and length (BAD_ARGUMENT (arg, form) / BAD_LENGTH). */
static int take_inputs(reply_t *r, const pcl_image_t *img, const uint8_t *p, uint32_t len, uint32_t count,
                       int32_t arg, pcl_inputs_t *in, uint32_t *nb)
{
    if (len < 1u)
        return err(r, PCL_ERR_BAD_LENGTH, (int32_t)len, 1);
    in->form = p[0];
    in->body = p + 1;
    *nb = pcl_input_bytes(in->form, img->n_inputs);
    if (*nb == 0u)
        return err(r, PCL_ERR_BAD_ARGUMENT, arg, (int32_t)in->form);
    return need_length(r, len, 1u + count * *nb);
}

static int handle_infer(const uint8_t *p, uint32_t len, reply_t *r)
{
    const pcl_image_t *img = pcl_image();
    pcl_inputs_t in;
    pcl_result_t res;
    uint32_t nb;
    int e;
    if (!img)
        return err(r, PCL_ERR_NO_IMAGE, 0, 0);
    e = take_inputs(r, img, p, len, 1u, 0, &in, &nb);
    if (e)
        return e;
    pcl_infer(img, &in, 0u, &res);
    return put_result(r, img, &res);
}

static int handle_infer_batch(const uint8_t *p, uint32_t len, reply_t *r)
{
    const pcl_image_t *img = pcl_image();
    pcl_inputs_t in;
    uint32_t count, i, nb;
    const uint8_t *first;
    int e;
    if (!img)
        return err(r, PCL_ERR_NO_IMAGE, 0, 0);
    if (len < 3u)
        return err(r, PCL_ERR_BAD_LENGTH, (int32_t)len, 3);
    count = pcl_rd_u16(p);
    if (count == 0u)
        return err(r, PCL_ERR_BAD_ARGUMENT, 0, 0);
    e = take_inputs(r, img, p + 2, len - 2u, count, 1, &in, &nb);
    if (e) {
        if (e == PCL_ERR_BAD_LENGTH) /* the lengths of the whole payload */
            r->detail[0] += 2, r->detail[1] += 2;
        return e;
    }
    first = in.body;
    put16(r, count);
    for (i = 0; i < count; i++) {
        pcl_result_t res;
        in.body = first + i * nb;
        pcl_infer(img, &in, 0u, &res);
        e = put_result(r, img, &res);
        if (e == PCL_ERR_REPLY_TOO_LARGE) {
            /* Run the rest without writing, so that a = what the whole reply needs (a host sizes
             * its retry from it). */
            uint32_t needed = (uint32_t)r->detail[0], more;
            for (i++; i < count; i++) {
                in.body = first + i * nb;
                pcl_infer(img, &in, 0u, &res);
                more = result_bytes(img);
                needed = needed > 0x7FFFFFFFu - more ? 0x7FFFFFFFu : needed + more; /* a is an int32 */
            }
            return err(r, PCL_ERR_REPLY_TOO_LARGE, (int32_t)needed, (int32_t)r->room);
        }
        if (e)
            return e;
    }
    return 0;
}

static int handle_load_begin(const uint8_t *p, uint32_t len, reply_t *r)
{
    int e = need_length(r, len, 8);
    if (e)
        return e;
    pcl_learning_reset();
    return pcl_image_begin(pcl_rd_u32(p), pcl_rd_u32(p + 4), r->detail);
}

static int handle_load_chunk(const uint8_t *p, uint32_t len, reply_t *r)
{
    uint32_t offset;
    int e;
    if (len < 4u)
        return err(r, PCL_ERR_BAD_LENGTH, (int32_t)len, 4);
    offset = pcl_rd_u32(p);
    e = pcl_image_chunk(offset, p + 4, len - 4u, r->detail);
    if (!e)
        put32(r, offset + len - 4u);
    return e;
}

static int handle_load_commit(uint32_t len, reply_t *r)
{
    int e = need_length(r, len, 0);
    if (!e)
        e = pcl_image_commit(r->detail);
    if (!e)
        put32(r, pcl_image_crc32());
    return e;
}

static int handle_read_image(const uint8_t *p, uint32_t len, reply_t *r)
{
    const pcl_image_t *img = pcl_image();
    uint32_t offset, n;
    int e = need_length(r, len, 8);
    if (e)
        return e;
    if (!img)
        return err(r, PCL_ERR_NO_IMAGE, 0, 0);
    offset = pcl_rd_u32(p);
    n = pcl_rd_u32(p + 4);
    if (offset > img->n_bytes)
        return err(r, PCL_ERR_BAD_ARGUMENT, 0, (int32_t)offset);
    if (n > img->n_bytes - offset || n > r->room - 4u)
        return err(r, PCL_ERR_BAD_ARGUMENT, 1, (int32_t)n);
    put32(r, offset);
    (void)put(r, pcl_image_memory() + offset, n);
    return 0;
}

static int handle_reset(uint32_t len, reply_t *r)
{
    int e = need_length(r, len, 0);
    if (e)
        return e;
    pcl_image_reset();
    pcl_learning_reset();
    return 0;
}

static int dispatch(uint8_t type, const uint8_t *p, uint32_t len, reply_t *r)
{
    switch (type) {
    case PCL_MSG_INFO:
        return handle_info(len, r);
    case PCL_MSG_RESET:
        return handle_reset(len, r);
    case PCL_MSG_LOAD_BEGIN:
        return handle_load_begin(p, len, r);
    case PCL_MSG_LOAD_CHUNK:
        return handle_load_chunk(p, len, r);
    case PCL_MSG_LOAD_COMMIT:
        return handle_load_commit(len, r);
    case PCL_MSG_READ_IMAGE:
        return handle_read_image(p, len, r);
    case PCL_MSG_INFER:
        return handle_infer(p, len, r);
    case PCL_MSG_INFER_BATCH:
        return handle_infer_batch(p, len, r);
    case PCL_MSG_TRAIN_STEP:
        return pcl_train_step(p, len, r->p, r->room, &r->len, r->detail);
    default:
        return err(r, PCL_ERR_UNKNOWN_TYPE, type, 0);
    }
}

/* -- receiving ----------------------------------------------------------------------------- */

static void handle_frame(void)
{
    int32_t raw_len = pcl_cobs_decode(rx, rx_len);
    uint32_t payload_len, got_crc, crc;
    uint16_t seq;
    uint8_t type;
    reply_t r;
    int e;

    if (raw_len < (int32_t)(PCL_PROTO_HEADER_BYTES + PCL_PROTO_CRC_BYTES)) {
        send_frame_error(PCL_ERR_BAD_FRAME, raw_len, 0);
        return;
    }
    if ((uint32_t)raw_len > RAW_MAX_BYTES) {
        /* The buffer holds the longest *encoded* frame; a payload with zero bytes encodes
         * shorter, so the limit itself is checked on the decoded length. */
        send_frame_error(PCL_ERR_OVERSIZE, (int32_t)PCL_MAX_PAYLOAD_BYTES, 0);
        return;
    }
    payload_len = (uint32_t)raw_len - PCL_PROTO_HEADER_BYTES - PCL_PROTO_CRC_BYTES;
    got_crc = pcl_rd_u32(rx + (uint32_t)raw_len - PCL_PROTO_CRC_BYTES);
    crc = pcl_crc32_update(0, rx, (uint32_t)raw_len - PCL_PROTO_CRC_BYTES);
    if (crc != got_crc) {
        send_frame_error(PCL_ERR_BAD_CRC, (int32_t)got_crc, (int32_t)crc);
        return;
    }
    type = rx[1];
    seq = pcl_rd_u16(rx + 2);
    if (have_last && seq == last_seq && crc == last_request_crc) {
        send_raw(tx, tx_len); /* a retry: the request was executed once already */
        return;
    }

    r.p = tx + PCL_PROTO_HEADER_BYTES;
    r.room = PCL_MAX_PAYLOAD_BYTES;
    r.len = 0;
    r.detail[0] = r.detail[1] = 0;
    if (rx[0] != PCL_PROTO_VERSION)
        e = err(&r, PCL_ERR_BAD_VERSION, rx[0], PCL_PROTO_VERSION);
    else if (pcl_rd_u32(rx + 4) != payload_len) /* a = payload bytes present, b = what the header says */
        e = err(&r, PCL_ERR_BAD_LENGTH, (int32_t)payload_len, (int32_t)pcl_rd_u32(rx + 4));
    else
        e = dispatch(type, rx + PCL_PROTO_HEADER_BYTES, payload_len, &r);
    if (e)
        tx_len = seal(tx, PCL_MSG_ERROR, seq, put_error(r.p, e, r.detail[0], r.detail[1]));
    else
        tx_len = seal(tx, (uint8_t)(type | PCL_PROTO_REPLY), seq, r.len);
    have_last = 1;
    last_seq = seq;
    last_request_crc = crc;
    send_raw(tx, tx_len);
}

void pcl_proto_init(void)
{
    rx_len = 0;
    rx_overflow = 0;
    have_last = 0;
    tx_len = 0;
}

void pcl_proto_feed(uint8_t byte, uint32_t now_ms)
{
    rx_last_ms = now_ms;
    if (byte != 0u) {
        if (rx_len < ENCODED_MAX_BYTES)
            rx[rx_len++] = byte;
        else
            rx_overflow = 1;
        return;
    }
    if (rx_overflow)
        send_frame_error(PCL_ERR_OVERSIZE, (int32_t)PCL_MAX_PAYLOAD_BYTES, 0);
    else if (rx_len > 0u)
        handle_frame();
    /* an empty frame (00 00) is a resynchronisation marker: no reply */
    rx_len = 0;
    rx_overflow = 0;
}

void pcl_proto_idle(uint32_t now_ms)
{
    if ((rx_len > 0u || rx_overflow) && (uint32_t)(now_ms - rx_last_ms) >= PCL_FRAME_GAP_TIMEOUT_MS) {
        send_frame_error(PCL_ERR_TRUNCATED, (int32_t)rx_len, 0);
        rx_len = 0;
        rx_overflow = 0;
    }
}
