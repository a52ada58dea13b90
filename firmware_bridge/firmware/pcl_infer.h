/* The datapath of docs/datapath.md, one image at a time, with early termination.
 *
 * Per step n = 0 .. PCL_MAX_STEPS - 1, per layer, per neuron whose spike flag is clear:
 *     I = I - floor(I / 2**TIME_SHIFT)                         decay
 *     I = OVF_I(I + (A << CURRENT_FRAC_BITS))  if rows arrived  accumulate (A: int32 raw row sum)
 *     V = OVF_V(V + I)                                         integrate
 *     V >= threshold_lsb  ->  spike step = n                   fire (at most once)
 * Arrivals at step n: layer 0 the inputs whose spike step is n (pcl_input_step), layer k > 0 the layer k-1 neurons that fired at n - 1, every layer its bias
 * row at n = 0. The run stops after the decision step D (the first output spike) has been
 * completed in every layer (or steps_after_decision steps later). I and V are int32 registers; the sums are formed exactly in int64.
 * STEPS-form inputs are sorted by step once per image (pcl_infer.c, input_order), so each input
 * is read once, not at every arrival step.
 */
#ifndef PCL_INFER_H
#define PCL_INFER_H

#include <stdint.h>

#include "pcl_image.h"

typedef struct {
    int32_t predicted;         /* winning output neuron, -1 = no decision */
    int32_t first_output_step; /* D, -1 = none */
    uint8_t tie;               /* more than one output neuron fired at D */
    uint32_t synaptic_additions;           /* sum_k (rows_read[k] + 1) * n_post[k] */
    uint32_t rows_read[PCL_MAX_LAYERS];    /* weight rows delivered in steps 0 .. D, bias excluded */
} pcl_result_t;

/* A request's input spikes as they arrived (docs/protocol.md, "Inputs"): form PCL_INPUT_FORM_BITS,
 * bit i (byte i / 8, bit i % 8) set = input i spikes at step 0, clear = at DARK_INPUT_STEP; form
 * PCL_INPUT_FORM_STEPS, n_in u16 (little-endian) steps, PCL_PROTO_INPUT_STEP_NEVER = no spike. */
typedef struct {
    uint32_t form;
    const uint8_t *body;
} pcl_inputs_t;

/* Bytes of one input of n_in in `form`, 0 for a form this firmware does not know. */
uint32_t pcl_input_bytes(uint32_t form, uint32_t n_in);
/* Spike step of input i, -1 = never. */
int32_t pcl_input_step(const pcl_inputs_t *in, uint32_t i);

/* Runs steps 0 .. min(D + steps_after_decision, MAX_STEPS - 1) (0 = stop right after D; the
 * learning rule looks further); the result and counters always refer to D. */
void pcl_infer(const pcl_image_t *img, const pcl_inputs_t *inputs, uint32_t steps_after_decision,
               pcl_result_t *result);
/* pcl_infer with the window anchored on output neuron anchor_output (< n_post of the output
 * layer): runs steps 0 .. min(s_a + steps_after, MAX_STEPS - 1), s_a its spike step (all steps
 * when it does not fire); anchor_output = -1 anchors on D, as pcl_infer. The result and counters
 * still refer to D. (The all_violators window of docs/learning-rule.md, section 3.) */
void pcl_infer_window(const pcl_image_t *img, const pcl_inputs_t *inputs, uint32_t steps_after, int32_t anchor_output,
                      pcl_result_t *result);

/* After pcl_infer: spike step of every neuron (layer k at img->layer[k].neuron_offset), -1 = did
 * not fire in steps 0 .. D. */
const int32_t *pcl_spike_steps(void);
/* After pcl_infer: membrane register of every neuron at the end of the run (fired neurons keep
 * the value of their firing step). */
const int32_t *pcl_membranes(void);

#endif /* PCL_INFER_H */
