/* hal_millis() of hal.h on the core's SysTick, for every Cortex-M board.
 *
 * SysTick (processor clock) interrupts CM_TICK_HZ times a second and adds the tick's
 * milliseconds to a 32-bit count; hal_millis() adds the milliseconds elapsed inside the current
 * tick from the SysTick counter, so it resolves 1 ms while an idle core wakes only CM_TICK_HZ
 * times a second. The sum wraps at 2**32 as the HAL contract requires, and never steps back.
 * The board calls cm_tick_start(core clock) from hal_init and puts cm_systick_handler in its
 * vector table (CM_CORE_VECTORS does).
 */
#include <stdint.h>

#include "cortex_m.h"
#include "cortex_m_rt.h"
#include "hal.h"

#define MS_PER_TICK (1000u / CM_TICK_HZ)

/* Milliseconds at the start of the current SysTick period (written by the handler only). */
static volatile uint32_t tick_base_ms;
/* Last value hal_millis() returned (thread context only). */
static uint32_t last_millis;
static uint32_t clocks_per_tick;
static uint32_t clocks_per_ms;

void cm_systick_handler(void)
{
    tick_base_ms = tick_base_ms + MS_PER_TICK;
}

int cm_tick_start(uint32_t core_clock_hz)
{
    uint32_t per_tick = core_clock_hz / CM_TICK_HZ;
    if (per_tick - 1u > CM_SYST_RELOAD_MAX || core_clock_hz < 1000u) {
        return 0; /* the reload does not fit 24 bits (or no whole clock per ms) */
    }
    clocks_per_tick = per_tick;
    clocks_per_ms = core_clock_hz / 1000u;
    CM_SYST_CSR = 0u;
    CM_SYST_RVR = clocks_per_tick - 1u;
    CM_SYST_CVR = 0u;
    CM_SYST_CSR = CM_SYST_CSR_ENABLE | CM_SYST_CSR_TICKINT | CM_SYST_CSR_CLKSOURCE;
    return 1;
}

uint32_t hal_millis(void)
{
    uint32_t base;
    uint32_t counter;
    uint32_t now;
    /* Re-read if the tick interrupt ran in between, so base and counter belong together. */
    do {
        base = tick_base_ms;
        counter = CM_SYST_CVR;
    } while (base != tick_base_ms);
    now = base + (clocks_per_tick - 1u - counter) / clocks_per_ms;
    /* A counter that has reloaded before its interrupt was taken (interrupts masked, or QEMU,
     * which reloads before its tick callback pends the interrupt) reads as the start of the
     * old period: hold the clock still until the tick lands rather than step it back. */
    if ((uint32_t)(last_millis - now) <= MS_PER_TICK && now != last_millis) {
        now = last_millis;
    }
    last_millis = now;
    return now;
}
