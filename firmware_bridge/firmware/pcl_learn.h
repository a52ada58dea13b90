/* The learning rule's side of the protocol handler: what pcl_proto.c calls for TRAIN_STEP,
 * INFO and RESET. pcl_learn.c implements it (docs/learning-rule.md); firmware built without a
 * rule links pcl_learn_none.c instead, which refuses TRAIN_STEP with PCL_ERR_NO_LEARNING. */
#ifndef PCL_LEARN_H
#define PCL_LEARN_H

#include <stdint.h>

/* One training step: returns 0 and fills reply (at most reply_room bytes, *reply_len), or a
 * PCL_ERR_* code with its two details. */
int pcl_train_step(const uint8_t *payload, uint32_t len, uint8_t *reply, uint32_t reply_room,
                   uint32_t *reply_len, int32_t detail[2]);
/* Learning spec fields reported in INFO (count in *n); 0 fields without a rule. */
const uint32_t *pcl_learning_spec(uint32_t *n);
/* Called on RESET and on a new image: forget any training state. */
void pcl_learning_reset(void);

#endif
