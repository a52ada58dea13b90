/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF), as zlib. */
#ifndef PCL_CRC32_H
#define PCL_CRC32_H

#include <stdint.h>

/* Start with crc = 0; feed pieces in order; the result after the last piece is the CRC. */
uint32_t pcl_crc32_update(uint32_t crc, const uint8_t *data, uint32_t len);

#endif
