#ifndef HAL_FAKE_H
#define HAL_FAKE_H
#include "hal.h"
#define FAKE_OUT_BYTES (1u << 20)
extern uint8_t fake_out[FAKE_OUT_BYTES];
extern uint32_t fake_out_len;
extern uint32_t fake_now_ms;
#endif
