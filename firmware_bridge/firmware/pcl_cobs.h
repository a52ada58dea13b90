/* Consistent-overhead byte stuffing: frames on the wire are COBS(raw) followed by 0x00. */
#ifndef PCL_COBS_H
#define PCL_COBS_H

#include <stdint.h>

/* Decode in place (the output is never longer than the input). Returns the decoded length,
 * or -1 if the encoding is invalid (a zero byte, or a block running past the end). */
int32_t pcl_cobs_decode(uint8_t *buf, uint32_t len);

/* Streaming encoder: calls sink(data, len, ctx) with pieces of the encoded frame, then the
 * 0x00 delimiter. */
typedef void (*pcl_sink_fn)(const uint8_t *data, uint32_t len, void *ctx);
void pcl_cobs_encode(const uint8_t *raw, uint32_t len, pcl_sink_fn sink, void *ctx);

#endif
