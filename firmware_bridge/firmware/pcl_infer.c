#include "pcl_infer.h"

#include "pcl_bytes.h"
#include "pcl_fixed.h"

static int32_t current[PCL_MAX_NEURONS] PCL_BIG_RAM;
static int32_t membrane[PCL_MAX_NEURONS] PCL_BIG_RAM;
static int32_t spike_step[PCL_MAX_NEURONS] PCL_BIG_RAM;
static int32_t accumulator[PCL_MAX_NEURONS] PCL_BIG_RAM;
/* Per layer (at its neuron_offset): the neurons that fired in the latest step it ran. */
static uint16_t new_spikes[PCL_MAX_NEURONS] PCL_BIG_RAM;

/* STEPS form: the inputs sorted by spike step once per image (a stable counting sort), so each
 * input is visited once per image instead of once per arrival step. A STEPS request carries
 * 2 bytes per input, so no request holds more than PCL_MAX_PAYLOAD_BYTES / 2 inputs; an image
 * with more inputs than PCL_GRADED_ORDER_INPUTS (a direct caller) takes the scan instead.
 * RAM: 2 * (PCL_GRADED_ORDER_INPUTS + 1) + 2 * (PCL_MAX_STEPS + 1) bytes. */
#ifndef PCL_GRADED_ORDER_INPUTS
#define PCL_GRADED_ORDER_INPUTS (PCL_MAX_PAYLOAD_BYTES / 2u)
#endif
#if PCL_GRADED_ORDER_INPUTS > 65535
#error "PCL_GRADED_ORDER_INPUTS must fit the 16-bit input indices of the order buffer"
#endif
static uint16_t input_order[PCL_GRADED_ORDER_INPUTS + 1u] PCL_BIG_RAM;
/* input_order[step_start[n] .. step_start[n + 1] - 1]: the inputs (ascending) that spike at n. */
static uint16_t step_start[PCL_MAX_STEPS + 1] PCL_BIG_RAM;

static inline int32_t overflow_current(int64_t x)
{
#if PCL_CURRENT_OVERFLOW == PCL_OVERFLOW_WRAP
    return pcl_wrap(x, PCL_CURRENT_BITS);
#else
    return pcl_saturate(x, PCL_CURRENT_BITS);
#endif
}

static inline int32_t overflow_membrane(int64_t x)
{
#if PCL_MEMBRANE_OVERFLOW == PCL_OVERFLOW_WRAP
    return pcl_wrap(x, PCL_MEMBRANE_BITS);
#else
    return pcl_saturate(x, PCL_MEMBRANE_BITS);
#endif
}

/* acc (n weights) = row (first) or acc += row. */
static void add_row(int32_t *acc, const uint8_t *row, uint32_t n, int first)
{
    uint32_t j;
#if PCL_WEIGHT_BYTES == 1
    const int8_t *w = (const int8_t *)row;
    if (first)
        for (j = 0; j < n; j++)
            acc[j] = w[j];
    else
        for (j = 0; j < n; j++)
            acc[j] += w[j];
#else
    if (first)
        for (j = 0; j < n; j++)
            acc[j] = pcl_rd_i16(row + 2u * j);
    else
        for (j = 0; j < n; j++)
            acc[j] += pcl_rd_i16(row + 2u * j);
#endif
}

static inline int input_bit(const uint8_t *bits, uint32_t i)
{
    return (bits[i >> 3] >> (i & 7u)) & 1u;
}

uint32_t pcl_input_bytes(uint32_t form, uint32_t n_in)
{
    if (form == PCL_INPUT_FORM_BITS)
        return (n_in + 7u) / 8u;
    if (form == PCL_INPUT_FORM_STEPS)
        return 2u * n_in;
    return 0u;
}

int32_t pcl_input_step(const pcl_inputs_t *in, uint32_t i)
{
    if (in->form == PCL_INPUT_FORM_BITS)
        return input_bit(in->body, i) ? 0 : PCL_DARK_INPUT_STEP;
    {
        uint32_t s = pcl_rd_u16(in->body + 2u * i);
        return s == PCL_PROTO_INPUT_STEP_NEVER ? -1 : (int32_t)s;
    }
}

/* Fills input_order / step_start from the STEPS-form inputs; steps >= PCL_MAX_STEPS never arrive. */
static void sort_inputs_by_step(const pcl_inputs_t *in, uint32_t n_in)
{
    uint32_t i, n, total = 0;
    for (n = 0; n <= (uint32_t)PCL_MAX_STEPS; n++)
        step_start[n] = 0;
    for (i = 0; i < n_in; i++) { /* count per step, shifted by one */
        int32_t s = pcl_input_step(in, i);
        if (s >= 0 && s < PCL_MAX_STEPS)
            step_start[s + 1]++;
    }
    for (n = 1; n <= (uint32_t)PCL_MAX_STEPS; n++) { /* step_start[n] = first slot of step n - 1 */
        uint32_t c = step_start[n];
        step_start[n] = (uint16_t)total;
        total += c;
    }
    for (i = 0; i < n_in; i++) {
        int32_t s = pcl_input_step(in, i);
        if (s >= 0 && s < PCL_MAX_STEPS)
            input_order[step_start[s + 1]++] = (uint16_t)i;
    }
    /* now step_start[n + 1] is one past the last slot of step n, and step_start[0] = 0 */
}

/* STEPS form, sorted: adds the rows of the inputs whose step is n. */
static void add_sorted_inputs_at(const pcl_layer_t *L, const uint8_t *mem, uint32_t n, int *have)
{
    uint32_t p;
    const uint32_t row_bytes = L->n_post * PCL_WEIGHT_BYTES;
    for (p = step_start[n]; p < step_start[n + 1u]; p++) {
        add_row(accumulator, mem + L->weights_offset + (uint32_t)input_order[p] * row_bytes, L->n_post, !*have);
        *have = 1;
    }
}

/* STEPS form, unsorted: adds the rows of the inputs whose step is n; returns how many, and in *next the
 * earliest step after n at which an input spikes (-1: none). */
static uint32_t add_inputs_at(const pcl_layer_t *L, const uint8_t *mem, const pcl_inputs_t *in, uint32_t n_in,
                              int32_t n, int32_t *next, int *have)
{
    uint32_t i, count = 0;
    const uint32_t row_bytes = L->n_post * PCL_WEIGHT_BYTES;
    *next = -1;
    for (i = 0; i < n_in; i++) {
        int32_t s = pcl_input_step(in, i);
        if (s == n) {
            add_row(accumulator, mem + L->weights_offset + i * row_bytes, L->n_post, !*have);
            *have = 1;
            count++;
        } else if (s > n && (*next < 0 || s < *next)) {
            *next = s;
        }
    }
    return count;
}

/* Adds the rows of the inputs whose bit equals `bright`; returns how many. */
static uint32_t add_inputs(const pcl_layer_t *L, const uint8_t *mem, const uint8_t *bits, uint32_t n_in,
                           int bright, int *have)
{
    uint32_t i, count = 0;
    const uint32_t row_bytes = L->n_post * PCL_WEIGHT_BYTES;
    for (i = 0; i < n_in; i++) {
        if (input_bit(bits, i) == bright) {
            add_row(accumulator, mem + L->weights_offset + i * row_bytes, L->n_post, !*have);
            *have = 1;
            count++;
        }
    }
    return count;
}

void pcl_infer(const pcl_image_t *img, const pcl_inputs_t *inputs, uint32_t steps_after_decision, pcl_result_t *r)
{
    pcl_infer_window(img, inputs, steps_after_decision, -1, r);
}

void pcl_infer_window(const pcl_image_t *img, const pcl_inputs_t *inputs, uint32_t steps_after, int32_t anchor_output,
                      pcl_result_t *r)
{
    const uint8_t *input_bits = inputs->body;
    const int graded = inputs->form != PCL_INPUT_FORM_BITS;
    const int sorted = graded && img->n_inputs <= PCL_GRADED_ORDER_INPUTS;
    int32_t next_input = 0; /* STEPS form: the next step at which an input spikes, -1 = none */
    const uint8_t *mem = pcl_image_memory();
    const uint32_t n_layers = img->n_layers;
    const uint32_t out = n_layers - 1u;
    uint32_t new_count[PCL_MAX_LAYERS], fired_count[PCL_MAX_LAYERS];
    uint32_t i, k, n, n_bright = 0;
    int32_t decision = -1, last, anchor;

    for (i = 0; i < img->n_neurons; i++) {
        current[i] = 0;
        membrane[i] = 0;
        spike_step[i] = -1;
    }
    for (k = 0; k < n_layers; k++) {
        new_count[k] = 0;
        fired_count[k] = 0;
    }
    r->predicted = -1;
    r->tie = 0;
    if (sorted)
        sort_inputs_by_step(inputs, img->n_inputs);

    for (n = 0; n < (uint32_t)PCL_MAX_STEPS; n++) {
        /* The window's anchor: the decision, or the spike step of output anchor_output. */
        anchor = anchor_output < 0 ? decision : spike_step[img->layer[out].neuron_offset + (uint32_t)anchor_output];
        if (anchor >= 0 && n - (uint32_t)anchor > steps_after)
            break;
        /* Layer k reads layer k-1's spikes of step n - 1, so run the layers from the last one
         * down: layer k-1 then overwrites its list with the spikes of step n. */
        for (k = n_layers; k-- > 0;) {
            const pcl_layer_t *L = &img->layer[k];
            const uint32_t base = L->neuron_offset, n_post = L->n_post;
            const uint32_t row_bytes = n_post * PCL_WEIGHT_BYTES;
            int32_t *I = current + base, *V = membrane + base, *S = spike_step + base;
            uint16_t *fired_now = new_spikes + base;
            uint32_t j, q, nc = 0;
            int have = 0;

            if (fired_count[k] == n_post) { /* every neuron has fired: nothing left to update */
                new_count[k] = 0;
                continue;
            }
            if (n == 0u) {
                add_row(accumulator, mem + L->weights_offset + (L->n_rows - 1u) * row_bytes, n_post, 1);
                have = 1;
            }
            if (k == 0u && sorted) {
                add_sorted_inputs_at(L, mem, n, &have);
            } else if (k == 0u && graded) {
                if ((int32_t)n == next_input)
                    (void)add_inputs_at(L, mem, inputs, img->n_inputs, (int32_t)n, &next_input, &have);
            } else if (k == 0u) {
                if (n == 0u)
                    n_bright = add_inputs(L, mem, input_bits, img->n_inputs, 1, &have);
#if PCL_DARK_INPUT_STEP >= 0
                if (n == (uint32_t)PCL_DARK_INPUT_STEP)
                    (void)add_inputs(L, mem, input_bits, img->n_inputs, 0, &have);
#endif
            } else {
                const uint16_t *pre = new_spikes + img->layer[k - 1u].neuron_offset;
                for (q = 0; q < new_count[k - 1u]; q++) {
                    add_row(accumulator, mem + L->weights_offset + (uint32_t)pre[q] * row_bytes, n_post, !have);
                    have = 1;
                }
            }

            for (j = 0; j < n_post; j++) {
                int32_t c, v;
                if (S[j] >= 0)
                    continue; /* fired: its I and V are never read again */
                c = I[j] - pcl_floor_shift(I[j], PCL_TIME_SHIFT);
                if (have)
                    c = overflow_current((int64_t)c + pcl_shift_left(accumulator[j], PCL_CURRENT_FRAC_BITS));
                v = overflow_membrane((int64_t)V[j] + c);
                I[j] = c;
                V[j] = v;
                if (v >= L->threshold_lsb) {
                    S[j] = (int32_t)n;
                    fired_now[nc++] = (uint16_t)j;
                }
            }
            fired_count[k] += nc;
            new_count[k] = nc;

            if (k == out && nc > 0u && decision < 0) {
                uint32_t best = fired_now[0];
#if PCL_TIE_RULE == PCL_TIE_MAX_MEMBRANE
                for (q = 1; q < nc; q++) /* the list is in index order: ">" keeps the lowest index */
                    if (V[fired_now[q]] > V[best])
                        best = fired_now[q];
#endif
                decision = (int32_t)n;
                r->tie = nc > 1u;
                r->predicted = (int32_t)best;
            }
        }
    }

    /* Counters over steps 0 .. D (D = max_steps - 1 without a decision). */
    r->first_output_step = decision;
    last = decision >= 0 ? decision : PCL_MAX_STEPS - 1;
    if (sorted) {
        r->rows_read[0] = step_start[(uint32_t)last + 1u]; /* the inputs of steps 0 .. last */
    } else if (graded) {
        uint32_t count = 0;
        for (i = 0; i < img->n_inputs; i++) {
            int32_t s = pcl_input_step(inputs, i);
            if (s >= 0 && s <= last)
                count++;
        }
        r->rows_read[0] = count;
    } else {
        r->rows_read[0] = n_bright;
#if PCL_DARK_INPUT_STEP >= 0
        if (PCL_DARK_INPUT_STEP <= last)
            r->rows_read[0] += img->n_inputs - n_bright;
#endif
    }
    for (k = 1; k < n_layers; k++) {
        const pcl_layer_t *P = &img->layer[k - 1u];
        uint32_t j, count = 0;
        for (j = 0; j < P->n_post; j++) {
            int32_t s = spike_step[P->neuron_offset + j];
            if (s >= 0 && s < last)
                count++;
        }
        r->rows_read[k] = count;
    }
    r->synaptic_additions = 0;
    for (k = 0; k < n_layers; k++)
        r->synaptic_additions += (r->rows_read[k] + 1u) * img->layer[k].n_post;
}

const int32_t *pcl_spike_steps(void)
{
    return spike_step;
}

const int32_t *pcl_membranes(void)
{
    return membrane;
}
