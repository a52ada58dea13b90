/* HAL for the C unit tests: writes are captured, the clock is set by the test. */
#include "hal_fake.h"

uint8_t fake_out[FAKE_OUT_BYTES];
uint32_t fake_out_len;
uint32_t fake_now_ms;

void hal_init(void)
{
    fake_out_len = 0;
}

int hal_read_byte(uint8_t *byte, uint32_t timeout_ms)
{
    (void)byte;
    (void)timeout_ms;
    return 0;
}

void hal_write(const uint8_t *data, uint32_t len)
{
    uint32_t i;
    for (i = 0; i < len && fake_out_len < FAKE_OUT_BYTES; i++)
        fake_out[fake_out_len++] = data[i];
}

uint32_t hal_millis(void)
{
    return fake_now_ms;
}
