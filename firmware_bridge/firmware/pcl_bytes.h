/* Little-endian field access on byte buffers (no alignment assumed anywhere). */
#ifndef PCL_BYTES_H
#define PCL_BYTES_H

#include <stdint.h>

static inline uint32_t pcl_rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline int32_t pcl_rd_i32(const uint8_t *p)
{
    uint32_t u = pcl_rd_u32(p);
    return (u & 0x80000000u) ? -(int32_t)(~u) - 1 : (int32_t)u;
}

static inline uint16_t pcl_rd_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | ((uint16_t)p[1] << 8));
}

static inline int32_t pcl_rd_i16(const uint8_t *p)
{
    int32_t v = (int32_t)pcl_rd_u16(p);
    return v >= 0x8000 ? v - 0x10000 : v;
}

static inline void pcl_wr_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void pcl_wr_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

#endif /* PCL_BYTES_H */
