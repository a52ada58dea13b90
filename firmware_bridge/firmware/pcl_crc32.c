#include "pcl_crc32.h"

#define PCL_CRC32_POLY_REFLECTED 0xEDB88320u

/* Half-byte table, built on first use: 64 bytes instead of a 1 KiB byte table. */
static uint32_t nibble_table[16];
static int table_ready;

static void build_table(void)
{
    uint32_t i, k;
    for (i = 0; i < 16u; i++) {
        uint32_t c = i;
        for (k = 0; k < 4u; k++)
            c = (c & 1u) ? (c >> 1) ^ PCL_CRC32_POLY_REFLECTED : c >> 1;
        nibble_table[i] = c;
    }
    table_ready = 1;
}

uint32_t pcl_crc32_update(uint32_t crc, const uint8_t *data, uint32_t len)
{
    uint32_t i;
    if (!table_ready)
        build_table();
    crc = ~crc;
    for (i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ nibble_table[crc & 15u];
        crc = (crc >> 4) ^ nibble_table[crc & 15u];
    }
    return ~crc;
}
