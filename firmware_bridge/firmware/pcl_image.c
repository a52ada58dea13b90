#include "pcl_image.h"

#include "pcl_bytes.h"
#include "pcl_crc32.h"

static uint8_t weight_memory[PCL_WEIGHT_CAPACITY_BYTES] PCL_BIG_RAM;

static pcl_image_t image;
static int committed;
static int loading;
static uint32_t load_total, load_crc, load_received, load_running_crc;

static const int32_t compiled_spec[PCL_STREAM_N_SPEC_FIELDS] = PCL_STREAM_SPEC_VALUES;

static int fail(int32_t detail[2], int code, int32_t a, int32_t b)
{
    detail[0] = a;
    detail[1] = b;
    return code;
}

void pcl_image_reset(void)
{
    committed = 0;
    loading = 0;
    load_received = 0;
}

int pcl_image_begin(uint32_t total_bytes, uint32_t crc32, int32_t detail[2])
{
    committed = 0; /* the memory is about to be overwritten */
    loading = 0;
    if (total_bytes > PCL_WEIGHT_CAPACITY_BYTES)
        return fail(detail, PCL_ERR_IMAGE_TOO_LARGE, (int32_t)total_bytes, (int32_t)PCL_WEIGHT_CAPACITY_BYTES);
    loading = 1;
    load_total = total_bytes;
    load_crc = crc32;
    load_received = 0;
    load_running_crc = 0;
    return 0;
}

int pcl_image_chunk(uint32_t offset, const uint8_t *data, uint32_t len, int32_t detail[2])
{
    uint32_t i;
    if (!loading)
        return fail(detail, PCL_ERR_NOT_LOADING, 0, 0);
    if (offset != load_received)
        return fail(detail, PCL_ERR_BAD_OFFSET, (int32_t)offset, (int32_t)load_received);
    if (len > load_total - load_received)
        return fail(detail, PCL_ERR_IMAGE_TOO_LARGE, (int32_t)(load_received + len), (int32_t)load_total);
    for (i = 0; i < len; i++)
        weight_memory[offset + i] = data[i];
    load_running_crc = pcl_crc32_update(load_running_crc, data, len);
    load_received += len;
    return 0;
}

/* Range check of the weights of one layer (only needed below the storage width). */
static int weights_in_range(uint32_t offset, uint32_t count, int32_t detail[2])
{
#if PCL_WEIGHT_BITS == 8 || PCL_WEIGHT_BITS == 16
    (void)offset;
    (void)count;
    (void)detail;
    return 0;
#else
    uint32_t i;
    for (i = 0; i < count; i++) {
#if PCL_WEIGHT_BYTES == 1
        int32_t w = ((const int8_t *)weight_memory)[offset + i];
#else
        int32_t w = pcl_rd_i16(weight_memory + offset + 2u * i);
#endif
        if (w < PCL_WEIGHT_MIN || w > PCL_WEIGHT_MAX)
            return fail(detail, PCL_ERR_IMAGE_FORMAT, (int32_t)(offset + i * PCL_WEIGHT_BYTES), w);
    }
    return 0;
#endif
}

static int parse(int32_t detail[2])
{
    const uint8_t *m = weight_memory;
    const uint32_t total = load_total;
    uint32_t k, off, n_layers, neurons = 0;
    int32_t v;
    int err;

    if (total < PCL_STREAM_HEADER_BYTES)
        return fail(detail, PCL_ERR_IMAGE_FORMAT, 0, (int32_t)total);
    if (m[0] != PCL_STREAM_MAGIC_0 || m[1] != PCL_STREAM_MAGIC_1 || m[2] != PCL_STREAM_MAGIC_2 ||
        m[3] != PCL_STREAM_MAGIC_3)
        return fail(detail, PCL_ERR_IMAGE_FORMAT, 0, pcl_rd_i32(m));
    v = pcl_rd_i32(m + PCL_STREAM_VERSION_OFFSET);
    if (v != PCL_STREAM_VERSION)
        return fail(detail, PCL_ERR_IMAGE_FORMAT, PCL_STREAM_VERSION_OFFSET, v);
    for (k = 0; k < PCL_STREAM_N_SPEC_FIELDS; k++) {
        v = pcl_rd_i32(m + PCL_STREAM_SPEC_OFFSET + 4u * k);
        if (v != compiled_spec[k])
            return fail(detail, PCL_ERR_SPEC_MISMATCH, (int32_t)k, v);
    }
    v = pcl_rd_i32(m + PCL_STREAM_N_LAYERS_OFFSET);
    if (v < 1)
        return fail(detail, PCL_ERR_IMAGE_FORMAT, PCL_STREAM_N_LAYERS_OFFSET, v);
    if ((uint32_t)v > PCL_MAX_LAYERS)
        return fail(detail, PCL_ERR_CAPACITY, v, (int32_t)PCL_MAX_LAYERS);
    n_layers = (uint32_t)v;

    off = PCL_STREAM_HEADER_BYTES;
    for (k = 0; k < n_layers; k++) {
        pcl_layer_t *L = &image.layer[k];
        int32_t rows, post, th;
        uint32_t room;
        if (total - off < PCL_STREAM_LAYER_HEADER_BYTES)
            return fail(detail, PCL_ERR_IMAGE_FORMAT, (int32_t)off, (int32_t)total);
        rows = pcl_rd_i32(m + off);
        post = pcl_rd_i32(m + off + 4u);
        th = pcl_rd_i32(m + off + 8u);
        if (rows < 2 || (k > 0 && (uint32_t)rows != image.layer[k - 1].n_post + 1u))
            return fail(detail, PCL_ERR_IMAGE_FORMAT, (int32_t)off, rows);
        if (post < 1)
            return fail(detail, PCL_ERR_IMAGE_FORMAT, (int32_t)(off + 4u), post);
        if (th < 1 || th > PCL_MEMBRANE_MAX)
            return fail(detail, PCL_ERR_IMAGE_FORMAT, (int32_t)(off + 8u), th);
        /* The raw sum of one step's rows is held in int32: weight_bits + ceil(log2(rows)) <= 32. */
        if ((uint32_t)rows - 1u > ((uint32_t)1 << (32 - PCL_WEIGHT_BITS)) - 1u)
            return fail(detail, PCL_ERR_CAPACITY, rows, (int32_t)((uint32_t)1 << (32 - PCL_WEIGHT_BITS)));
        if ((uint32_t)post > PCL_MAX_NEURONS - neurons)
            return fail(detail, PCL_ERR_CAPACITY, (int32_t)(neurons + (uint32_t)post), (int32_t)PCL_MAX_NEURONS);
        off += PCL_STREAM_LAYER_HEADER_BYTES;
        room = (total - off) / PCL_WEIGHT_BYTES;
        if ((uint32_t)post > room / (uint32_t)rows)
            return fail(detail, PCL_ERR_IMAGE_FORMAT, (int32_t)off, (int32_t)total);
        L->n_rows = (uint32_t)rows;
        L->n_post = (uint32_t)post;
        L->threshold_lsb = th;
        L->weights_offset = off;
        L->neuron_offset = neurons;
        err = weights_in_range(off, L->n_rows * L->n_post, detail);
        if (err)
            return err;
        off += L->n_rows * L->n_post * PCL_WEIGHT_BYTES;
        neurons += (uint32_t)post;
    }
    if (off != total)
        return fail(detail, PCL_ERR_IMAGE_FORMAT, (int32_t)off, (int32_t)total);
    image.n_layers = n_layers;
    image.n_inputs = image.layer[0].n_rows - 1u;
    image.n_neurons = neurons;
    image.n_bytes = total;
    return 0;
}

int pcl_image_commit(int32_t detail[2])
{
    int err;
    if (!loading)
        return fail(detail, PCL_ERR_NOT_LOADING, 0, 0);
    loading = 0;
    if (load_received != load_total)
        return fail(detail, PCL_ERR_IMAGE_INCOMPLETE, (int32_t)load_received, (int32_t)load_total);
    if (load_running_crc != load_crc)
        return fail(detail, PCL_ERR_IMAGE_CRC, (int32_t)load_crc, (int32_t)load_running_crc);
    err = parse(detail);
    if (err)
        return err;
    committed = 1;
    return 0;
}

const pcl_image_t *pcl_image(void)
{
    return committed ? &image : 0;
}

uint8_t *pcl_image_memory(void)
{
    return weight_memory;
}

uint32_t pcl_image_crc32(void)
{
    return committed ? pcl_crc32_update(0, weight_memory, image.n_bytes) : 0u;
}
