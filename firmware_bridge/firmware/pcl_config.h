/* Build-time configuration: the generated spec headers plus the memory sizes from the Makefile.
 *
 * The datapath spec (pcl_datapath.h), the upload stream layout (pcl_image_stream.h) and the wire
 * constants (pcl_protocol.h) are rendered by popcount_learn.codegen into GEN_DIR
 * (firmware_bridge/boards/build.py). The sizes below come from make variables (see Makefile);
 * the defaults here only serve editors.
 */
#ifndef PCL_CONFIG_H
#define PCL_CONFIG_H

#include "pcl_datapath.h"
#include "pcl_image_stream.h"
#include "pcl_protocol.h"

/* Bytes of weight memory: the whole upload stream (header, layer headers, weights) lives here. */
#ifndef PCL_WEIGHT_CAPACITY_BYTES
#define PCL_WEIGHT_CAPACITY_BYTES 1048576u
#endif
/* Neurons over all layers (I, V, spike step, accumulator: 16 bytes each). */
#ifndef PCL_MAX_NEURONS
#define PCL_MAX_NEURONS 2048u
#endif
#ifndef PCL_MAX_LAYERS
#define PCL_MAX_LAYERS 8u
#endif
/* Largest payload of a frame this board accepts or sends (<= PCL_PROTO_MAX_PAYLOAD_BYTES). */
#ifndef PCL_MAX_PAYLOAD_BYTES
#define PCL_MAX_PAYLOAD_BYTES PCL_PROTO_MAX_PAYLOAD_BYTES
#endif
/* A frame whose next byte does not come within this many ms is answered as TRUNCATED. */
#ifndef PCL_FRAME_GAP_TIMEOUT_MS
#define PCL_FRAME_GAP_TIMEOUT_MS 500u
#endif
#ifndef PCL_BOARD_NAME
#define PCL_BOARD_NAME "unknown"
#endif
/* Placed after the declarator of each large buffer, e.g.
 * -DPCL_BIG_RAM='__attribute__((section(".bigram")))' puts them in a named linker section. */
#ifndef PCL_BIG_RAM
#define PCL_BIG_RAM
#endif

#if PCL_MAX_PAYLOAD_BYTES > PCL_PROTO_MAX_PAYLOAD_BYTES
#error "PCL_MAX_PAYLOAD_BYTES exceeds the protocol limit"
#endif
#if PCL_MAX_NEURONS > 65535
#error "spike replies carry 16-bit neuron indices: PCL_MAX_NEURONS must be <= 65535"
#endif
#if PCL_MAX_PAYLOAD_BYTES < 1024
#error "PCL_MAX_PAYLOAD_BYTES must be at least 1024"
#endif

/* Weight storage: int8 for weight_bits <= 8, else int16 little-endian (as the upload stream). */
#if PCL_WEIGHT_BITS <= 8
#define PCL_WEIGHT_BYTES 1u
#else
#define PCL_WEIGHT_BYTES 2u
#endif

#endif /* PCL_CONFIG_H */
