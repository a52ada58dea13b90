/* The board's side of docs/protocol.md: frame assembly, checks, dispatch, replies.
 *
 * Every frame gets exactly one reply. Faults in frames whose sequence number cannot be trusted
 * (bad COBS, bad CRC, oversize, truncated) are answered with ERROR and seq = PCL_PROTO_NO_SEQ.
 * The last request's seq and CRC and its reply are kept: a repeated request (a host retry) gets
 * the kept reply again and is not executed twice.
 */
#ifndef PCL_PROTO_H
#define PCL_PROTO_H

#include <stdint.h>

void pcl_proto_init(void);
/* One received byte; now_ms = hal_millis(). */
void pcl_proto_feed(uint8_t byte, uint32_t now_ms);
/* Call when no byte came for a while: ends a frame that stopped arriving (TRUNCATED). */
void pcl_proto_idle(uint32_t now_ms);

#endif
