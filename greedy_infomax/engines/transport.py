"""How the ranks of a module-parallel run talk: messages that carry their own shape, and buffered inboxes.

A message is a fixed-size int64 header (kind, step, flags, dtype, layout, extras, shape) followed by its tensor,
then by each extra tensor as a header and a tensor of its own, so a stage receives any model's activations (and
what travels with them, the online probes' targets) without knowing their shapes in advance. Each direction between two
ranks is a Channel on its own two-rank process group: a rank's receiving thread and its main thread then
never share a communicator, which NCCL requires of concurrent operations (gloo does not mind).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from greedy_infomax.errors import GimError

# Message kinds: a batch's activations; a batch an earlier module skipped (non-finite loss, sync schedule); a
# control that follows the batches down the pipeline; a stage's report to rank 0, or rank 0's start packet.
DATA, SKIP, CONTROL, REPORT = range(4)
# Control (and report) flags: log the losses, write a checkpoint, stop after this.
LOG, CHECKPOINT, END = 1, 2, 4
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.uint8, torch.int64)
MAX_DIMS = 8
HEADER = 7 + MAX_DIMS


@dataclass
class Message:
    """`step`: the sender's step count when it sent the message (for DATA, the version of the modules that
    produced the activations); `flags`: LOG | CHECKPOINT | END of a control or a report; `extra`: tensors that
    travel with `tensor` (what an observer reads of the batch, engines/local.py's Observer)."""

    kind: int
    step: int
    flags: int = 0
    tensor: torch.Tensor | None = None
    extra: tuple[torch.Tensor, ...] = ()

    @property
    def ends(self) -> bool:
        """The last message on its channel."""
        return bool(self.flags & END)


def pack(value: Any, device: torch.device) -> torch.Tensor:
    """Tensors, numbers and strings in nested dicts as a uint8 tensor (torch.save's bytes), for a REPORT."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8).to(device)


def unpack(tensor: torch.Tensor) -> Any:
    return torch.load(io.BytesIO(tensor.cpu().numpy().tobytes()), map_location="cpu", weights_only=True)


class Channel:
    """One direction between this rank and `peer`. At most one message is in flight: sending the next waits
    until the peer has taken the previous one, so a sender runs at most one message ahead of the peer's inbox."""

    def __init__(
        self, peer: int, group: dist.ProcessGroup | None, device: torch.device, timeout: float, me: str, peer_name: str
    ) -> None:
        self.peer = peer
        self.group = group
        self.device = device
        self.timeout = timeout
        self.me = me
        self.peer_name = peer_name
        self._in_flight: list[tuple[dist.Work, torch.Tensor]] = []

    def send(self, message: Message) -> None:
        tensors = _encode(message, self.device)
        self.flush()
        with self._sending():
            self._in_flight = [
                (dist.isend(tensor, self.peer, group=self.group), tensor)  # kept alive until sent
                for tensor in tensors
            ]

    def flush(self) -> None:
        """Wait until the peer has received what is in flight; a dead or stalled peer raises GimError."""
        with self._sending():
            for work, _ in self._in_flight:
                work.wait(timedelta(seconds=self.timeout))
        self._in_flight = []

    @contextmanager
    def _sending(self) -> Iterator[None]:
        try:
            yield
        except RuntimeError as error:  # gloo and NCCL report a lost peer or a timeout this way
            raise self.failure("could not send to", error) from None

    def receive(self) -> Message:
        """The next message from the peer (blocks; a receiving thread calls it)."""
        header = torch.empty(HEADER, dtype=torch.int64, device=self.device)
        dist.recv(header, self.peer, group=self.group)
        kind, step, flags, dtype, channels_last, ndim, extras, *shape = header.tolist()
        tensor = None
        if ndim >= 0:
            tensor = torch.empty(shape[:ndim], dtype=DTYPES[dtype], device=self.device)
            dist.recv(tensor, self.peer, group=self.group)
            tensor = tensor.permute(0, 3, 1, 2) if channels_last else tensor
        return Message(kind, step, flags, tensor, tuple(self.receive().tensor for _ in range(extras)))

    def failure(self, what: str, error: BaseException | None) -> GimError:
        """The error this rank stops with: who it is, which rank it lost and why."""
        cause = f"nothing for {self.timeout:g} s (distributed.timeout)" if error is None else str(error).splitlines()[0]
        return GimError(
            f"{self.me}: {what} {self.peer_name}: {cause}. That rank died or stalled; the newest "
            "checkpoint in the run folder is complete and loads locally or with --resume"
        )


def _encode(message: Message, device: torch.device) -> list[torch.Tensor]:
    """Header (and tensor), then each extra tensor's. A channels-last 4-d tensor travels as its contiguous
    (B, H, W, C) view and is permuted back on arrival, so the receiver's convolutions see the very layout the
    sender produced."""
    tensor, channels_last = message.tensor, False
    if (
        tensor is not None
        and tensor.dim() == 4
        and not tensor.is_contiguous()
        and tensor.is_contiguous(memory_format=torch.channels_last)
    ):
        tensor, channels_last = tensor.permute(0, 2, 3, 1), True
    if tensor is not None:
        tensor = tensor.contiguous()
    shape = [] if tensor is None else list(tensor.shape)
    if len(shape) > MAX_DIMS:
        raise GimError(f"a module's output has {len(shape)} dimensions; messages carry at most {MAX_DIMS}")
    if tensor is not None and tensor.dtype not in DTYPES:
        raise GimError(f"a module's output is {tensor.dtype}; messages carry {', '.join(map(str, DTYPES))}")
    dtype = 0 if tensor is None else DTYPES.index(tensor.dtype)
    ndim = -1 if tensor is None else len(shape)
    fields = [message.kind, message.step, message.flags, dtype, int(channels_last), ndim, len(message.extra)]
    header = torch.tensor(fields + shape + [0] * (MAX_DIMS - len(shape)), dtype=torch.int64, device=device)
    extras = [
        part for extra in message.extra for part in _encode(Message(message.kind, message.step, tensor=extra), device)
    ]
    return ([header] if tensor is None else [header, tensor]) + extras


@dataclass
class _Held:
    message: Message
    uses: int = 0


class Inbox:
    """The messages of one channel, pulled by a background thread so that transfers overlap with computing.

    Without `reuse_cap` (the sync schedule, and rank 0's reports) it is a queue: the thread stops receiving
    while `capacity` data messages wait, which holds the sender too. With `reuse_cap` (async) it keeps the
    newest `capacity` data messages, dropping the oldest, and `take` returns the newest unused one, else the
    newest one used fewer than `reuse_cap` times: a stage behind a slow one steps on an input again instead of
    waiting, and a slow stage skips to the freshest input. Either way a control is handed out only once
    every data message before it has been used or dropped, so it reaches each stage in its place in the stream.
    """

    def __init__(self, channel: Channel, capacity: int | None, reuse_cap: int | None = None) -> None:
        self.channel = channel
        self.capacity = capacity
        self.reuse_cap = reuse_cap
        self._held: list[_Held] = []
        self._changed = threading.Condition()
        self._error: BaseException | None = None
        self._newest = -1
        self._statistics = _Statistics()
        threading.Thread(target=self._receive, name=f"inbox-{channel.peer}", daemon=True).start()

    def take(self, timeout: float) -> Message:
        """The next message by the policy above; raises GimError naming the sender after `timeout` seconds
        without one, or as soon as the channel fails."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (message := self._pick()) is None:
                if self._error is not None:
                    raise self.channel.failure("lost", self._error)
                if time.monotonic() >= deadline:
                    raise self.channel.failure("received nothing from", None)
                self._changed.wait(deadline - time.monotonic())
            self._changed.notify_all()  # the receiving thread may wait for room
            return message

    def messages(self, timeout: float) -> Iterator[Message]:
        """take() until the channel's last message."""
        while True:
            message = self.take(timeout)
            yield message
            if message.ends:
                return

    def ready(self) -> bool:
        """Whether a message is waiting (rank 0 polls its reports between steps)."""
        with self._changed:
            return any(held.uses == 0 for held in self._held)

    def statistics(self) -> dict[str, float]:
        """How stale the inputs taken since the last call were, and how the buffer was used; then reset."""
        with self._changed:
            statistics, self._statistics = self._statistics, _Statistics()
            return statistics.summary()

    def _receive(self) -> None:
        try:
            while True:
                message = self.channel.receive()
                with self._changed:
                    if message.kind == DATA or message.kind == SKIP:
                        self._make_room()
                        self._newest = max(self._newest, message.step)
                    self._held.append(_Held(message))
                    self._statistics.buffered_max = max(self._statistics.buffered_max, self._data_held())
                    self._changed.notify_all()
                if message.ends:
                    return
        except Exception as error:  # noqa: BLE001 - handed to the main thread
            with self._changed:
                self._error = error
                self._changed.notify_all()

    def _make_room(self) -> None:
        """Before a data message joins: wait for room (queue), or drop the oldest data message (async)."""
        if self.capacity is None:
            return
        if self.reuse_cap is None:
            while self._data_held() >= self.capacity:
                self._changed.wait()
            return
        if self._data_held() >= self.capacity:
            oldest = next(held for held in self._held if held.message.kind != CONTROL)
            self._held.remove(oldest)
            self._statistics.dropped += oldest.uses == 0

    def _data_held(self) -> int:
        return sum(held.message.kind != CONTROL for held in self._held)

    def _pick(self) -> Message | None:
        if self.reuse_cap is None:
            return self._held.pop(0).message if self._held else None
        control = next((i for i, held in enumerate(self._held) if held.message.kind == CONTROL), len(self._held))
        before = self._held[:control]
        unused = [held for held in before if held.uses == 0]
        if not unused and control < len(self._held):
            return self._held.pop(control).message
        reusable = unused or [held for held in before if held.uses < self.reuse_cap]
        if not reusable:
            return None
        held = reusable[-1]
        held.uses += 1
        self._statistics.took(self._newest - held.message.step, held.uses)
        if held.uses == self.reuse_cap:
            self._held.remove(held)
        return held.message


@dataclass
class _Statistics:
    """Inputs taken by an async stage: staleness counts the predecessor's steps between the input taken and the
    newest input received; uses is 1 for a fresh input, n for its (n-1)-th reuse."""

    taken: int = 0
    staleness_sum: int = 0
    staleness_max: int = 0
    uses_max: int = 0
    reused: int = 0
    dropped: int = 0
    buffered_max: int = 0

    def took(self, staleness: int, uses: int) -> None:
        self.taken += 1
        self.staleness_sum += staleness
        self.staleness_max = max(self.staleness_max, staleness)
        self.uses_max = max(self.uses_max, uses)
        self.reused += uses > 1

    def summary(self) -> dict[str, float]:
        return {
            "steps": self.taken,
            "staleness_mean": self.staleness_sum / max(self.taken, 1),
            "staleness_max": self.staleness_max,
            "uses_max": self.uses_max,
            "reused": self.reused,
            "dropped": self.dropped,
            "buffered_max": self.buffered_max,
        }
