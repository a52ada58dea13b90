# Builds the bring-up self-test (selftest.c over the board HAL), independent of the firmware:
#   make -C firmware_bridge/firmware -f boards/mps2_an385/selftest.mk BUILD_DIR=/tmp/st
# Output: $(BUILD_DIR)/mps2_an385_selftest.elf

BUILD_DIR ?= build/mps2_an385
# Extra -D options, e.g. SELFTEST_DEFS=-DRX_RING_BYTES=256u to exercise a full receive ring.
SELFTEST_DEFS ?=
include boards/mps2_an385/board.mk

SELFTEST_ELF := $(BUILD_DIR)/mps2_an385_selftest.elf
SELFTEST_SRCS := $(HAL_SRCS) $(MPS2_AN385_DIR)/selftest.c
SELFTEST_DEPS := $(SELFTEST_SRCS) $(wildcard $(MPS2_AN385_DIR)/*.h) hal.h \
    $(MPS2_AN385_DIR)/mps2_an385.ld $(MPS2_AN385_DIR)/board.mk $(MPS2_AN385_DIR)/selftest.mk

.PHONY: all clean
all: $(SELFTEST_ELF)

$(SELFTEST_ELF): $(SELFTEST_DEPS)
	@mkdir -p $(BUILD_DIR)
	$(CC) -std=c99 -Wall -Wextra -Werror -I. $(BOARD_CFLAGS) $(SELFTEST_DEFS) $(SELFTEST_SRCS) $(BOARD_LDFLAGS) \
	    -Wl,-Map=$(BUILD_DIR)/mps2_an385_selftest.map -o $@.tmp
	mv $@.tmp $@

clean:
	rm -f $(SELFTEST_ELF) $(BUILD_DIR)/mps2_an385_selftest.map
