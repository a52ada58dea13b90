/* Weight memory: the upload stream of docs/weight-image.md, loaded in chunks, checked, committed.
 *
 * The stream is stored byte for byte in a static array of PCL_WEIGHT_CAPACITY_BYTES, so reading
 * the image back is a copy and its CRC-32 ties the memory to a file. An image is usable only
 * after a commit that found the announced length and CRC-32, the board's own compiled spec in
 * every header field, shapes that fit the build-time limits and weights inside weight_bits.
 */
#ifndef PCL_IMAGE_H
#define PCL_IMAGE_H

#include <stdint.h>

#include "pcl_config.h"

typedef struct {
    uint32_t n_rows;         /* n_pre + 1; the last row is the bias input */
    uint32_t n_post;         /* neurons of this layer */
    int32_t threshold_lsb;   /* 1 .. PCL_MEMBRANE_MAX */
    uint32_t weights_offset; /* byte offset of row 0 in weight memory */
    uint32_t neuron_offset;  /* index of this layer's first neuron in the neuron arrays */
} pcl_layer_t;

typedef struct {
    uint32_t n_layers;
    uint32_t n_inputs;  /* layer 0's n_pre */
    uint32_t n_neurons; /* over all layers */
    uint32_t n_bytes;   /* stream length */
    pcl_layer_t layer[PCL_MAX_LAYERS];
} pcl_image_t;

/* Forget the committed image and any partial load. */
void pcl_image_reset(void);

/* Each returns 0 or a PCL_ERR_* code with its details in detail[0], detail[1]. */
int pcl_image_begin(uint32_t total_bytes, uint32_t crc32, int32_t detail[2]);
int pcl_image_chunk(uint32_t offset, const uint8_t *data, uint32_t len, int32_t detail[2]);
int pcl_image_commit(int32_t detail[2]);

/* The committed image, or 0 if there is none. */
const pcl_image_t *pcl_image(void);
/* Weight memory (the stream bytes); writable for the learning rule. */
uint8_t *pcl_image_memory(void);
/* CRC-32 of the committed image as it is now (after training it differs from the upload). */
uint32_t pcl_image_crc32(void);

#endif /* PCL_IMAGE_H */
