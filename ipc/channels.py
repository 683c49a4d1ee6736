"""ZeroMQ sockets for both ends, with the options that keep a slow peer harmless.

The worker side never blocks: frames are sent with ``NOBLOCK`` into a bounded queue
(``SNDHWM``) and a frame that does not fit is dropped and its events counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import zmq

from ipc.runtime_dir import Endpoints

# Frames, not events: a frame carries up to a few thousand events.
EVENT_QUEUE_FRAMES = 2000
CONTROL_QUEUE_FRAMES = 1000


def bind_supervisor(ctx: zmq.Context, endpoints: Endpoints) -> tuple[zmq.Socket, zmq.Socket]:
    """The supervisor's PULL (events) and ROUTER (control, one peer per worker) sockets.

    Bound under umask 077: no group or other access to the socket files, inside the 0700
    runtime directory.
    """
    old_umask = os.umask(0o077)
    try:
        return _bind(ctx, endpoints)
    finally:
        os.umask(old_umask)


def _bind(ctx: zmq.Context, endpoints: Endpoints) -> tuple[zmq.Socket, zmq.Socket]:
    events = ctx.socket(zmq.PULL)
    events.setsockopt(zmq.RCVHWM, EVENT_QUEUE_FRAMES)
    events.setsockopt(zmq.LINGER, 0)
    events.bind(endpoints.events)
    control = ctx.socket(zmq.ROUTER)
    control.setsockopt(zmq.LINGER, 0)
    control.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted worker reclaims its identity
    control.setsockopt(zmq.SNDHWM, CONTROL_QUEUE_FRAMES)
    control.bind(endpoints.control)
    return events, control


def connect_worker(ctx: zmq.Context, endpoints: Endpoints, instance: str) -> tuple[zmq.Socket, zmq.Socket]:
    """The worker's PUSH (events) and DEALER (control) sockets."""
    events = ctx.socket(zmq.PUSH)
    events.setsockopt(zmq.SNDHWM, EVENT_QUEUE_FRAMES)
    events.setsockopt(zmq.LINGER, 500)
    events.connect(endpoints.events)
    control = ctx.socket(zmq.DEALER)
    control.setsockopt(zmq.IDENTITY, instance.encode())
    control.setsockopt(zmq.LINGER, 500)
    control.setsockopt(zmq.SNDHWM, CONTROL_QUEUE_FRAMES)
    control.connect(endpoints.control)
    return events, control


@dataclass(slots=True)
class DroppingSender:
    """Sends frames without ever blocking; counts what it had to drop."""

    socket: zmq.Socket
    frames_sent: int = 0
    frames_dropped: int = 0
    items_dropped: int = 0

    def send(self, frame: bytes, items: int = 1) -> bool:
        try:
            self.socket.send(frame, zmq.NOBLOCK)
        except zmq.Again:
            self.frames_dropped += 1
            self.items_dropped += items
            return False
        self.frames_sent += 1
        return True
