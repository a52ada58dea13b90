/* Two's complement helpers of the datapath (docs/datapath.md, section 2 and 4.1).
 *
 * Portable C99: no implementation-defined right shift of negative values, no signed overflow,
 * no left shift of negative values. Register values are at most 32 bits wide and every exact
 * intermediate fits int64 (add and shift only; the Cortex-M3 has no 64-bit multiply/divide
 * hardware, and the multiplications by 2**k below are constants the compiler turns into shifts).
 */
#ifndef PCL_FIXED_H
#define PCL_FIXED_H

#include <stdint.h>

/* floor(x / 2**s), i.e. an arithmetic shift right (rounds toward minus infinity), s in 0..31. */
static inline int32_t pcl_floor_shift(int32_t x, unsigned s)
{
    return x >= 0 ? (int32_t)(x >> s) : (int32_t)~((~x) >> s);
}

/* Clip x to the b-bit range [-2**(b-1), 2**(b-1) - 1], b in 2..32. */
static inline int32_t pcl_saturate(int64_t x, unsigned b)
{
    const int64_t hi = (int64_t)(((uint64_t)1 << (b - 1u)) - 1u);
    const int64_t lo = -hi - 1;
    return (int32_t)(x > hi ? hi : x < lo ? lo : x);
}

/* Keep the low b bits of x and read them as b-bit two's complement, b in 2..32
 * (|x| < 2**62, so x - lo cannot overflow). */
static inline int32_t pcl_wrap(int64_t x, unsigned b)
{
    const int64_t hi = (int64_t)(((uint64_t)1 << (b - 1u)) - 1u);
    const int64_t lo = -hi - 1;
    return (int32_t)(((x - lo) & (hi - lo)) + lo);
}

/* x * 2**s for s in 0..31 without shifting a negative value. */
static inline int64_t pcl_shift_left(int64_t x, unsigned s)
{
    return x * (int64_t)((uint64_t)1 << s);
}

#endif /* PCL_FIXED_H */
