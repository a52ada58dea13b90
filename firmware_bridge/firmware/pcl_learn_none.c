/* Firmware built without a learning rule: TRAIN_STEP answers NO_LEARNING. */
#include "pcl_config.h"
#include "pcl_learn.h"

int pcl_train_step(const uint8_t *payload, uint32_t len, uint8_t *reply, uint32_t reply_room,
                   uint32_t *reply_len, int32_t detail[2])
{
    (void)payload;
    (void)len;
    (void)reply;
    (void)reply_room;
    (void)reply_len;
    detail[0] = detail[1] = 0;
    return PCL_ERR_NO_LEARNING;
}

const uint32_t *pcl_learning_spec(uint32_t *n)
{
    *n = 0;
    return 0;
}

void pcl_learning_reset(void)
{
}
