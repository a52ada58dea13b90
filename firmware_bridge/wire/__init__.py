"""The wire between host and board: ``protocol`` (frames, messages, error codes; the only module
that knows the bytes; docs/protocol.md) and ``client.BoardClient`` (requests over any pyserial
URL, retries, resynchronisation, trace). Knows nothing of training, boards or the RTL: it may
import ``firmware_bridge.errors`` and ``popcount_learn.codegen`` (to hand over its constants)."""
