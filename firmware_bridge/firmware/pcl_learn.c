/* The sign-only popcount learning rule, one step per TRAIN_STEP (docs/learning-rule.md).
 *
 * Request payload: sample index t (u32), label (u16), input form (u8) and inputs (as INFER). One step:
 *  1. forward pass to E = min(D + MARGIN_STEPS - 1, MAX_STEPS - 1) (MAX_STEPS - 1 without D);
 *     all_violators: E = min(s_c + MARGIN_STEPS - 1, MAX_STEPS - 1), s_c the label's spike step
 *     (MAX_STEPS - 1 when it does not fire);
 *  2. output deltas: +1 for the earliest (or every) wrong output firing before s_c + margin,
 *     -1 for the label when something violates or it did not fire (or always);
 *  3. per layer from the output back: row r arrived at a_r (input step, s_r + 1 or 0 for the
 *     bias, if <= E) is causal for neuron j with a delta when a_r <= deadline_j (s_j, or E for
 *     a silent one); hidden delta_h = sign(#{causal j: delta_j * sign(w_hj) = +1} - #{... -1})
 *     with signs read before this layer's weights change;
 *  4. every causal weight of a neuron with a delta moves w -= delta_j (saturated) when
 *     mix32(key + g * INDEX_MUL) >> 16 < p, key = mix32(SEED ^ mix32(t + SAMPLE_SALT)),
 *     g = the weight's index in the upload stream, p the layer's probability >> min(31,
 *     t / PROB_HALVING_SAMPLES). All of it 32-bit unsigned arithmetic, wrapping.
 *  With HIDDEN_SPIKE_TARGET > 0, a decision D and more hidden spikes delivered by D than the
 *  target, a hidden neuron whose spike arrived by D (a_h <= D) and whose popcounts tie gets +1.
 * Reply: predicted (i32), D (i32), weights changed, neurons with a delta, hidden spikes
 * delivered (u32 each).
 */
#include "pcl_bytes.h"
#include "pcl_config.h"
#include "pcl_infer.h"
#include "pcl_learning.h"
#include "pcl_learn.h"

#define TRAIN_HEAD_BYTES PCL_PROTO_TRAIN_HEAD_BYTES
#define TRAIN_REPLY_BYTES 20u

static int8_t delta[PCL_MAX_NEURONS] PCL_BIG_RAM;
/* Per layer, built afresh: the neurons with a delta and their deadlines. */
static uint16_t learners[PCL_MAX_NEURONS] PCL_BIG_RAM;
static int32_t deadline[PCL_MAX_NEURONS] PCL_BIG_RAM;

static const uint32_t learning_spec[] = PCL_LEARN_SPEC_VALUES;

const uint32_t *pcl_learning_spec(uint32_t *n)
{
    *n = (uint32_t)(sizeof learning_spec / sizeof learning_spec[0]);
    return learning_spec;
}

void pcl_learning_reset(void)
{
    /* The rule keeps no state between steps: each is a function of (weights, input, label, t). */
}

static uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= PCL_LEARN_MIX_MUL_1;
    x ^= x >> 13;
    x *= PCL_LEARN_MIX_MUL_2;
    x ^= x >> 16;
    return x;
}

static int32_t weight_at(const uint8_t *mem, uint32_t offset, uint32_t index)
{
#if PCL_WEIGHT_BYTES == 1
    return ((const int8_t *)mem)[offset + index];
#else
    return pcl_rd_i16(mem + offset + 2u * index);
#endif
}

static void set_weight(uint8_t *mem, uint32_t offset, uint32_t index, int32_t w)
{
#if PCL_WEIGHT_BYTES == 1
    ((int8_t *)mem)[offset + index] = (int8_t)w;
#else
    pcl_wr_u16(mem + offset + 2u * index, (uint32_t)w & 0xFFFFu);
#endif
}

/* Arrival step of row r of layer k, or -1 if it did not arrive by step `last`. */
static int32_t arrival(const pcl_image_t *img, uint32_t k, uint32_t r, const pcl_inputs_t *in, int32_t last)
{
    const pcl_layer_t *L = &img->layer[k];
    if (r == L->n_rows - 1u)
        return 0; /* bias */
    if (k == 0u) {
        int32_t s = pcl_input_step(in, r);
        return s >= 0 && s <= last ? s : -1;
    } else {
        int32_t s = pcl_spike_steps()[img->layer[k - 1u].neuron_offset + r];
        return s >= 0 && s + 1 <= last ? s + 1 : -1;
    }
}

int pcl_train_step(const uint8_t *payload, uint32_t len, uint8_t *reply, uint32_t reply_room,
                   uint32_t *reply_len, int32_t detail[2])
{
    const pcl_image_t *img = pcl_image();
    uint8_t *mem = pcl_image_memory();
    const int32_t *spikes = pcl_spike_steps();
    pcl_inputs_t in;
    uint32_t nb;
    uint32_t t, label, k, j, out, n_delta = 0, changed = 0, hidden_delivered = 0, shift = 0;
    uint32_t weight_base[PCL_MAX_LAYERS];
    int32_t last, s_c, earliest = -1;
    int any_violator = 0, quiet = 0;
    uint32_t key;
    pcl_result_t res;

    detail[0] = detail[1] = 0;
    if (!img)
        return PCL_ERR_NO_IMAGE;
    if (len < TRAIN_HEAD_BYTES + 1u) {
        detail[0] = (int32_t)len;
        detail[1] = (int32_t)(TRAIN_HEAD_BYTES + 1u);
        return PCL_ERR_BAD_LENGTH;
    }
    in.form = payload[TRAIN_HEAD_BYTES];
    in.body = payload + TRAIN_HEAD_BYTES + 1u;
    nb = pcl_input_bytes(in.form, img->n_inputs);
    if (nb == 0u) {
        detail[0] = 2;
        detail[1] = (int32_t)in.form;
        return PCL_ERR_BAD_ARGUMENT;
    }
    if (len != TRAIN_HEAD_BYTES + 1u + nb) {
        detail[0] = (int32_t)len;
        detail[1] = (int32_t)(TRAIN_HEAD_BYTES + 1u + nb);
        return PCL_ERR_BAD_LENGTH;
    }
    if (reply_room < TRAIN_REPLY_BYTES) {
        detail[0] = (int32_t)TRAIN_REPLY_BYTES;
        detail[1] = (int32_t)reply_room;
        return PCL_ERR_REPLY_TOO_LARGE;
    }
    t = pcl_rd_u32(payload);
    label = pcl_rd_u16(payload + 4);
    out = img->n_layers - 1u;
    if (label >= img->layer[out].n_post) {
        detail[0] = 1;
        detail[1] = (int32_t)label;
        return PCL_ERR_BAD_ARGUMENT;
    }

    /* 1. forward pass over the window */
    last = PCL_MAX_STEPS - 1;
#if PCL_LEARN_OUTPUT_RULE == PCL_LEARN_OUTPUT_ALL_VIOLATORS
    pcl_infer_window(img, &in, PCL_LEARN_MARGIN_STEPS - 1u, (int32_t)label, &res);
    s_c = spikes[img->layer[out].neuron_offset + label];
    if (s_c >= 0 && s_c + PCL_LEARN_MARGIN_STEPS - 1 < last)
        last = s_c + PCL_LEARN_MARGIN_STEPS - 1;
#else
    pcl_infer(img, &in, PCL_LEARN_MARGIN_STEPS - 1u, &res);
    if (res.first_output_step >= 0 && res.first_output_step + PCL_LEARN_MARGIN_STEPS - 1 < last)
        last = res.first_output_step + PCL_LEARN_MARGIN_STEPS - 1;
#endif
    for (k = 1; k < img->n_layers; k++)
        hidden_delivered += res.rows_read[k];
#if PCL_LEARN_HIDDEN_SPIKE_TARGET > 0
    quiet = res.first_output_step >= 0 && hidden_delivered > PCL_LEARN_HIDDEN_SPIKE_TARGET;
#endif

    /* 2. output deltas */
    for (j = 0; j < img->n_neurons; j++)
        delta[j] = 0;
    {
        const uint32_t ob = img->layer[out].neuron_offset;
        s_c = spikes[ob + label];
        for (j = 0; j < img->layer[out].n_post; j++) {
            int32_t s = spikes[ob + j];
            if (j == label || s < 0)
                continue;
            if (s_c < 0 || s < s_c + PCL_LEARN_MARGIN_STEPS) {
                any_violator = 1;
#if PCL_LEARN_OUTPUT_RULE == PCL_LEARN_OUTPUT_ALL_VIOLATORS
                delta[ob + j] = 1;
#else
                if (earliest < 0 || s < spikes[ob + (uint32_t)earliest])
                    earliest = (int32_t)j;
#endif
            }
        }
        if (earliest >= 0)
            delta[ob + (uint32_t)earliest] = 1;
        if (any_violator || s_c < 0 || PCL_LEARN_CORRECT_RULE == PCL_LEARN_CORRECT_ALWAYS)
            delta[ob + label] = -1;
    }

    key = mix32(PCL_LEARN_SEED ^ mix32(t + PCL_LEARN_SAMPLE_SALT));
#if PCL_LEARN_PROB_HALVING_SAMPLES > 0
    shift = t / PCL_LEARN_PROB_HALVING_SAMPLES;
    if (shift > 31u)
        shift = 31u;
#endif
    weight_base[0] = 0;
    for (k = 1; k < img->n_layers; k++)
        weight_base[k] = weight_base[k - 1u] + img->layer[k - 1u].n_rows * img->layer[k - 1u].n_post;

    /* 3 and 4, from the output layer back */
    for (k = img->n_layers; k-- > 0;) {
        const pcl_layer_t *L = &img->layer[k];
        const uint32_t base = L->neuron_offset;
        uint32_t n_learn = 0, r, q, p;
        for (j = 0; j < L->n_post; j++) {
            if (delta[base + j] != 0) {
                learners[n_learn] = (uint16_t)j;
                deadline[n_learn] = spikes[base + j] >= 0 ? spikes[base + j] : last;
                n_learn++;
            }
        }
        n_delta += n_learn;
        if (n_learn == 0u && !(quiet && k > 0u))
            continue;
        if (k > 0u) { /* presynaptic deltas, from this layer's signs before it changes */
            const uint32_t pb = img->layer[k - 1u].neuron_offset;
            for (r = 0; r + 1u < L->n_rows; r++) {
                int32_t a = arrival(img, k, r, &in, last);
                uint32_t plus = 0, minus = 0;
                if (a < 0)
                    continue;
                for (q = 0; q < n_learn; q++) {
                    uint32_t jj = learners[q];
                    int positive_way;
                    if (a > deadline[q])
                        continue;
                    positive_way = (delta[base + jj] > 0) != (weight_at(mem, L->weights_offset, r * L->n_post + jj) < 0);
                    if (positive_way)
                        plus++;
                    else
                        minus++;
                }
                delta[pb + r] = (int8_t)(plus > minus ? 1 : minus > plus ? -1 : 0);
                if (quiet && plus == minus && a <= res.first_output_step)
                    delta[pb + r] = 1; /* idle, and its spike reached layer k by D */
            }
        }
        p = (k == out ? PCL_LEARN_OUTPUT_UPDATE_PROB_Q16 : PCL_LEARN_HIDDEN_UPDATE_PROB_Q16) >> shift;
        if (p == 0u || n_learn == 0u)
            continue;
        for (r = 0; r < L->n_rows; r++) {
            int32_t a = arrival(img, k, r, &in, last);
            if (a < 0)
                continue;
            for (q = 0; q < n_learn; q++) {
                uint32_t jj = learners[q], idx = r * L->n_post + jj;
                int32_t w, nw;
                if (a > deadline[q])
                    continue;
                if ((mix32(key + (weight_base[k] + idx) * PCL_LEARN_INDEX_MUL) >> 16) >= p)
                    continue;
                w = weight_at(mem, L->weights_offset, idx);
                nw = w - delta[base + jj];
                if (nw < PCL_WEIGHT_MIN)
                    nw = PCL_WEIGHT_MIN;
                if (nw > PCL_WEIGHT_MAX)
                    nw = PCL_WEIGHT_MAX;
                if (nw != w) {
                    set_weight(mem, L->weights_offset, idx, nw);
                    changed++;
                }
            }
        }
    }

    pcl_wr_u32(reply, (uint32_t)res.predicted);
    pcl_wr_u32(reply + 4, (uint32_t)res.first_output_step);
    pcl_wr_u32(reply + 8, changed);
    pcl_wr_u32(reply + 12, n_delta);
    pcl_wr_u32(reply + 16, hidden_delivered);
    *reply_len = TRAIN_REPLY_BYTES;
    return 0;
}
