"""Inter-process communication between the supervisor and its tracer workers.

ZeroMQ over ``ipc://`` endpoints inside a 0700 runtime directory, msgpack frames in a
versioned envelope. See ``docs/protocol.md``.
"""
