# Board: the frame-parser fuzzer. The firmware's own main loop runs on this machine under
# AddressSanitizer and UndefinedBehaviorSanitizer (any report aborts the run); the HAL
# (hal_fuzz_barrage.c) feeds it a seeded barrage of hostile input and checks every reply.
# Run through tools/fuzz_firmware.py, which writes the seed corpus and reads the summary.
CC := gcc
BOARD_NAME := fuzz_barrage
TARGET := pcl-fuzz-barrage
BOARD_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
    -D_POSIX_C_SOURCE=200809L
BOARD_LDFLAGS := -fsanitize=address,undefined
HAL_SRCS := boards/fuzz_barrage/hal_fuzz_barrage.c
