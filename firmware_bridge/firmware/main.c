/* The board's main loop: bytes in, frames handled, replies out; never returns. */
#include "hal.h"
#include "pcl_proto.h"

/* How long one wait for a byte may last before the truncated-frame check runs. */
#define PCL_IDLE_POLL_MS 50u

int main(void)
{
    hal_init();
    pcl_proto_init();
    for (;;) {
        uint8_t byte;
        if (hal_read_byte(&byte, PCL_IDLE_POLL_MS))
            pcl_proto_feed(byte, hal_millis());
        else
            pcl_proto_idle(hal_millis());
    }
}
