"""Messages between ranks: report payloads packed and unpacked, a Channel's encoding round-tripped through a
loopback in place of torch.distributed and through a real two-rank gloo group, one message in flight at a time,
failures naming both ranks; and the inbox policies (queue, newest-first reuse) in-process."""

from __future__ import annotations

import pickle
import queue
import threading
import time
from collections import deque
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import finish, fork_ranks

from greedy_infomax.engines import transport
from greedy_infomax.engines.transport import (
    CHECKPOINT,
    CONTROL,
    DATA,
    END,
    LOG,
    MAX_DIMS,
    REPORT,
    SKIP,
    Channel,
    Inbox,
    Message,
    pack,
    unpack,
)
from greedy_infomax.errors import GimError

CPU = torch.device("cpu")


def sender() -> Channel:
    return Channel(1, None, CPU, 0.3, "rank 0 (module 1)", "rank 1 (module 2)")


def assert_same(received, sent) -> None:
    """Equal nested values; tensors equal in dtype, shape and values."""
    assert type(received) is type(sent)
    if isinstance(sent, dict):
        assert received.keys() == sent.keys()
        for key in sent:
            assert_same(received[key], sent[key])
    elif isinstance(sent, (list, tuple)):
        assert len(received) == len(sent)
        for a, b in zip(received, sent):
            assert_same(a, b)
    elif torch.is_tensor(sent):
        assert received.dtype == sent.dtype and torch.equal(received, sent)
    else:
        assert received == sent


# -- report payloads ----------------------------------------------------------------------------------------------


def test_pack_and_unpack_round_trip_tensors_numbers_and_strings_in_nested_dicts():
    value = {
        "stage": 2,
        "losses": torch.tensor([0.5, 2.0])[:1],
        "name": "rank 1 (module 2)",
        "progress": {
            "step": 17,
            "ratio": 0.25,
            "done": False,
            "skipped": None,
            "steps": [1, 2, 3],
            "state": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3).T,
        },
    }
    packed = pack(value, CPU)
    assert packed.dtype == torch.uint8 and packed.dim() == 1
    assert_same(unpack(packed), value)


def test_unpack_refuses_to_run_code_a_payload_smuggles_in():
    """weights_only: a peer's bytes build no object of an arbitrary class on the rank that reads them."""
    with pytest.raises(pickle.UnpicklingError):
        unpack(pack({"stage": Path("x")}, CPU))


# -- a channel's encoding, over a loopback ------------------------------------------------------------------------


class Loopback:
    """Stands in for torch.distributed in transport.py: isend queues a copy, recv takes the oldest; `log` records
    every send and every wait on one, by the send's number."""

    def __init__(self, fail_wait: Exception | None = None) -> None:
        self.sent: deque[torch.Tensor] = deque()
        self.log: list[str] = []
        self.sends = 0
        self.fail_wait = fail_wait

    def isend(self, tensor: torch.Tensor, peer: int, group=None) -> Work:
        self.sent.append(tensor.clone())
        self.log.append(f"send {self.sends}")
        self.sends += 1
        return Work(self, self.sends - 1)

    def recv(self, tensor: torch.Tensor, peer: int, group=None) -> None:
        tensor.copy_(self.sent.popleft())


class Work:
    def __init__(self, loopback: Loopback, number: int) -> None:
        self.loopback, self.number = loopback, number

    def wait(self, timeout=None) -> bool:
        if self.loopback.fail_wait is not None:
            raise self.loopback.fail_wait
        self.loopback.log.append(f"wait {self.number}")
        return True


@pytest.fixture
def loopback(monkeypatch) -> Loopback:
    wire = Loopback()
    monkeypatch.setattr(transport, "dist", wire)
    return wire


TENSORS = {
    "float32": torch.randn(2, 3, 4, 5),
    "channels-last": torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last),
    "transposed": torch.randn(4, 6).T,
    "bfloat16": torch.randn(3, 7).bfloat16(),
    "float16": torch.randn(3).half(),
    "float64": torch.randn(2, 2, dtype=torch.float64),
    "int64": torch.arange(5),
    "uint8-max-dims": torch.arange(2, dtype=torch.uint8).reshape((2,) + (1,) * (MAX_DIMS - 1)),
    "scalar": torch.tensor(3.5),
}


@pytest.mark.parametrize("name", list(TENSORS))
def test_a_message_arrives_with_its_kind_step_flags_shape_dtype_and_values(loopback, name):
    tensor = TENSORS[name]
    channel = sender()
    channel.send(Message(DATA, 41, LOG | CHECKPOINT, tensor))
    received = channel.receive()
    assert (received.kind, received.step, received.flags) == (DATA, 41, LOG | CHECKPOINT)
    assert received.tensor.shape == tensor.shape and received.tensor.dtype == tensor.dtype
    assert torch.equal(received.tensor, tensor)
    assert not loopback.sent, "header and tensor both read"


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_the_receiver_gets_the_memory_layout_the_sender_had(loopback, layout):
    """So the receiver's convolutions see the very layout the sender produced."""
    channel = sender()
    channel.send(Message(DATA, 1, 0, torch.randn(2, 3, 4, 5).contiguous(memory_format=layout)))
    tensor = channel.receive().tensor
    assert tensor.is_contiguous(memory_format=layout)
    assert tensor.is_contiguous() == (layout == torch.contiguous_format)


def test_extra_tensors_arrive_with_the_message_in_order_each_with_its_own_shape_dtype_and_layout(loopback):
    """What the online probes read of a batch travels with its activations: (B,) int64 targets, activations."""
    extra = (torch.arange(4), TENSORS["channels-last"])
    channel = sender()
    channel.send(Message(DATA, 7, 0, TENSORS["float32"], extra))
    received = channel.receive()
    assert torch.equal(received.tensor, TENSORS["float32"]) and len(received.extra) == 2
    for got, sent in zip(received.extra, extra):
        assert_same(got, sent)
    assert received.extra[1].is_contiguous(memory_format=torch.channels_last)
    assert not loopback.sent, "every header and tensor read"


@pytest.mark.parametrize("kind", [SKIP, CONTROL])
def test_a_message_without_a_tensor_is_its_header_alone(loopback, kind):
    channel = sender()
    channel.send(Message(kind, 9, LOG | END))
    assert len(loopback.sent) == 1
    received = channel.receive()
    assert (received.kind, received.step, received.flags, received.tensor) == (kind, 9, LOG | END, None)
    assert received.ends


def test_a_tensor_with_more_dimensions_than_a_header_holds_is_refused_before_sending(loopback):
    with pytest.raises(GimError, match=f"9 dimensions; messages carry at most {MAX_DIMS}"):
        sender().send(Message(DATA, 1, 0, torch.zeros((1,) * 9)))
    assert not loopback.sent


def test_a_tensor_of_a_dtype_messages_do_not_carry_is_a_gim_error_before_anything_is_sent(loopback):
    with pytest.raises(GimError, match="a module's output is torch.complex64; messages carry torch.float32"):
        sender().send(Message(DATA, 1, 0, torch.zeros(2, dtype=torch.complex64)))
    assert not loopback.sent


def test_sending_waits_until_the_previous_message_is_received(loopback):
    """At most one message in flight: the header and tensor of message 1 are waited on before message 2 goes."""
    channel = sender()
    channel.send(Message(DATA, 1, 0, torch.zeros(2)))
    assert loopback.log == ["send 0", "send 1"]
    channel.send(Message(CONTROL, 1, END))
    assert loopback.log == ["send 0", "send 1", "wait 0", "wait 1", "send 2"]
    channel.flush()
    assert loopback.log[-1] == "wait 2"


def test_a_peer_lost_while_sending_is_a_gim_error_naming_both_ranks(monkeypatch):
    monkeypatch.setattr(transport, "dist", Loopback(fail_wait=RuntimeError("Connection closed by peer\ndetails")))
    channel = sender()
    channel.send(Message(DATA, 1, 0, torch.zeros(2)))
    with pytest.raises(
        GimError,
        match=r"^rank 0 \(module 1\): could not send to rank 1 \(module 2\): Connection "
        r"closed by peer\. That rank died or stalled; the newest checkpoint",
    ):
        channel.send(Message(DATA, 2, 0, torch.zeros(2)))


def test_silence_is_reported_with_the_timeout():
    error = sender().failure("received nothing from", None)
    assert str(error).startswith(
        "rank 0 (module 1): received nothing from rank 1 (module 2): nothing for 0.3 s (distributed.timeout)"
    )


# -- a channel over a real two-rank gloo group --------------------------------------------------------------------


def _messages() -> list[Message]:
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(2, 3, 4, 5, generator=generator).bfloat16().contiguous(memory_format=torch.channels_last)
    report = pack({"losses": torch.randn(3, generator=generator), "stage": 1}, CPU)
    return [
        Message(DATA, 1, 0, activations),
        Message(SKIP, 2),
        Message(REPORT, 2, LOG, report),
        Message(CONTROL, 2, CHECKPOINT | END),
    ]


def _exchange() -> int:
    """Rank 0 sends _messages() to rank 1 on a group of their own; rank 1's inbox must hand out the same ones."""
    dist.init_process_group("gloo")
    group = dist.new_group([0, 1])
    rank = dist.get_rank()
    channel = Channel(1 - rank, group, CPU, 10, f"rank {rank}", f"rank {1 - rank}")
    sent = _messages()
    if rank == 0:
        for message in sent:
            channel.send(message)
        channel.flush()
    else:
        received = list(Inbox(channel, capacity=1).messages(timeout=10))
        assert [(m.kind, m.step, m.flags) for m in received] == [(m.kind, m.step, m.flags) for m in sent]
        assert received[0].tensor.is_contiguous(memory_format=torch.channels_last)
        assert_same(received[0].tensor, sent[0].tensor)
        assert received[1].tensor is None and received[3].tensor is None
        assert_same(unpack(received[2].tensor), unpack(sent[2].tensor))
    dist.destroy_process_group()
    return 0


def test_two_ranks_exchange_messages_over_their_own_gloo_group(tmp_path):
    ranks = fork_ranks(2, tmp_path, _exchange)
    codes = finish(ranks, timeout=60)
    assert codes == [0, 0], "\n".join(rank.output for rank in ranks)


# -- inbox policies, in-process ----------------------------------------------------------------------------------


class FakeChannel(Channel):
    """A channel whose messages come from a list; asking for one past the end blocks (or raises `error`)."""

    def __init__(self, messages: list[Message], error: Exception | None = None) -> None:
        super().__init__(1, None, CPU, 0.3, "rank 2 (module 3)", "rank 1 (module 2)")
        self.messages = queue.Queue()
        for message in messages:
            self.messages.put(message)
        self.error = error
        self.asked = 0
        self.drained = threading.Event()

    def receive(self) -> Message:
        self.asked += 1
        if self.messages.empty():
            self.drained.set()  # every earlier message is in the inbox by now
            if self.error is not None:
                raise self.error
        return self.messages.get()


def data(step: int) -> Message:
    return Message(DATA, step, tensor=torch.full((1,), float(step)))


def test_async_inbox_keeps_the_newest_reuses_up_to_the_cap_then_times_out():
    channel = FakeChannel([data(1), data(2), data(3), data(4)])
    inbox = Inbox(channel, capacity=2, reuse_cap=2)
    assert channel.drained.wait(5)
    taken = [inbox.take(1).step for _ in range(4)]
    assert taken == [4, 3, 4, 3], "newest unused first, then the newest reusable; 1 and 2 were dropped"
    with pytest.raises(GimError, match=r"rank 2 \(module 3\): received nothing from rank 1 \(module 2\)"):
        inbox.take(0.2)
    statistics = inbox.statistics()
    assert statistics["dropped"] == 2 and statistics["buffered_max"] == 2 and statistics["uses_max"] == 2
    assert statistics["staleness_max"] == 1, "3 is one step older than the newest input, 4"


def test_async_inbox_hands_out_a_control_only_after_the_data_before_it():
    channel = FakeChannel([data(1), Message(CONTROL, 1, END), data(2)])
    inbox = Inbox(channel, capacity=2, reuse_cap=2)
    assert [message.kind for message in (inbox.take(1), inbox.take(1))] == [DATA, CONTROL]


def test_sync_inbox_is_a_bounded_queue():
    channel = FakeChannel([data(step) for step in range(1, 6)])
    inbox = Inbox(channel, capacity=2)
    time.sleep(0.3)
    assert channel.asked == 3, "holds 2 and waits for room before the 3rd joins"
    assert [inbox.take(1).step for _ in range(5)] == [1, 2, 3, 4, 5]


def test_inbox_reports_a_lost_sender_by_rank_and_module():
    inbox = Inbox(FakeChannel([], RuntimeError("Connection closed by peer")), capacity=2)
    with pytest.raises(GimError, match=r"lost rank 1 \(module 2\): Connection closed by peer"):
        inbox.take(5)
