/* Board abstraction: the only functions the portable sources call outside themselves. */
#ifndef PCL_HAL_H
#define PCL_HAL_H

#include <stdint.h>

void hal_init(void);
/* 1 = a byte was stored in *byte; 0 = none arrived within timeout_ms. */
int hal_read_byte(uint8_t *byte, uint32_t timeout_ms);
void hal_write(const uint8_t *data, uint32_t len);
/* Free-running millisecond tick (wraps at 2**32). */
uint32_t hal_millis(void);

#endif /* PCL_HAL_H */
