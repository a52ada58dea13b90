# The host virtual board: the firmware as a process on this machine, bytes on stdin/stdout.
CC := cc
BOARD_CFLAGS := -O2
BOARD_LDFLAGS :=
HAL_SRCS := boards/host/hal_host.c
BOARD_NAME := host
TARGET := pcl-board
