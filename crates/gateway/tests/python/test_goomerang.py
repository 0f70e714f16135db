"""Independent Goomerang client: Python `websockets` + `protobuf` against gatewayd.

Sends the byte-exact frames of the reference's worked examples (§7 of goomerang.md) and checks what
gatewayd sends back, byte for byte apart from the `creation` timestamp, and parsed with a `Frame`
message class built from a descriptor at run time. Environment: GOOMERANG_ADDR (host:port of the
listener), GATEWAYD_ADMIN (base URL of the admin API, polled until subscriptions are visible).
"""

import asyncio
import json
import os
import time
import urllib.request

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2, wrappers_pb2
from websockets.asyncio.client import connect

ADDR = os.environ["GOOMERANG_ADDR"]
ADMIN = os.environ["GATEWAYD_ADMIN"]

# §7: creation = 1700000000 s + 500000000 ns.
TS = bytes.fromhex("2a0c0880e2cfaa061080cab5ee01")


def kind(name: str) -> bytes:
    return bytes([0x12, len(name)]) + name.encode()


# (a) Subscribe to `news`, 57 bytes.
SUBSCRIBE_NEWS = (
    kind("goomerang.protocol.SubscribeCmd") + bytes.fromhex("1806") + TS + bytes.fromhex("3a060a046e657773")
)
# (b) Publish MessageV1{"hi"} to `news` with user header a: b, 106 bytes.
PUBLISH_NEWS = (
    kind("goomerang.protocol.PublishCmd")
    + bytes.fromhex("1829")
    + TS
    + bytes.fromhex("320e0a096d6573736167652d61120162")
    + bytes.fromhex("3a29")
    + bytes.fromhex("0a046e657773")
    + kind("goomerang.example.MessageV1")
    + bytes.fromhex("1a040a026869")
)
# (c) Broadcast of the same message without headers, 86 bytes.
BROADCAST = (
    kind("goomerang.protocol.BroadcastCmd")
    + bytes.fromhex("1823")
    + TS
    + bytes.fromhex("3a23")
    + kind("goomerang.example.MessageV1")
    + bytes.fromhex("1a040a026869")
)
# (c) What a subscriber receives, split around the creation field gatewayd stamps itself.
DELIVERY_HEAD = kind("goomerang.example.MessageV1") + bytes.fromhex("1804")
DELIVERY_TAIL = bytes.fromhex("32060a0161120162") + bytes.fromhex("3a040a026869")
BROADCAST_TAIL = bytes.fromhex("3a040a026869")


def frame_class():
    """goomerang.protocol.Frame, built from a descriptor (the .proto is internal to the Go module)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="goomerang_test_protocol.proto",
        package="goomerang.protocol",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    frame = file.message_type.add(name="Frame")
    entry = frame.nested_type.add(name="HeadersEntry")
    entry.options.map_entry = True
    F = descriptor_pb2.FieldDescriptorProto
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    for name, number, type_ in [
        ("uuid", 1, F.TYPE_STRING),
        ("kind", 2, F.TYPE_STRING),
        ("payloadSize", 3, F.TYPE_INT64),
        ("is_sync", 4, F.TYPE_BOOL),
        ("payload", 7, F.TYPE_BYTES),
    ]:
        frame.field.add(name=name, number=number, type=type_, label=F.LABEL_OPTIONAL)
    frame.field.add(
        name="creation", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL, type_name=".google.protobuf.Timestamp"
    )
    frame.field.add(
        name="headers",
        number=6,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".goomerang.protocol.Frame.HeadersEntry",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("goomerang.protocol.Frame"))


Frame = frame_class()


def fanout_subscribers(topic: str) -> int:
    with urllib.request.urlopen(f"{ADMIN}/api/topics", timeout=5) as response:
        topics = json.load(response)
    return sum(t["fanout_subscribers"] for t in topics if t["topic"] == topic)


async def wait_for_subscribers(topic: str, count: int):
    deadline = time.monotonic() + 20
    while fanout_subscribers(topic) < count:
        assert time.monotonic() < deadline, f"no {count} subscribers on {topic}"
        await asyncio.sleep(0.01)


def split_creation(received: bytes, head: bytes) -> bytes:
    """Checks `head`, skips the creation field (tag 0x2a) gatewayd stamped, returns the rest."""
    assert received.startswith(head), received.hex()
    rest = received[len(head):]
    assert rest[0] == 0x2A, rest.hex()
    return rest[2 + rest[1]:]


async def receive(ws) -> bytes:
    message = await asyncio.wait_for(ws.recv(), timeout=10)
    assert isinstance(message, bytes), f"text from gatewayd: {message!r}"
    return message


def test_subscribe_publish_receive_with_the_reference_bytes():
    async def run():
        async with connect(f"ws://{ADDR}/ws", compression=None) as subscriber, connect(
            f"ws://{ADDR}/ws", compression=None
        ) as publisher:
            await subscriber.send(SUBSCRIBE_NEWS)
            await wait_for_subscribers("news", 1)
            await publisher.send(PUBLISH_NEWS)
            received = await receive(subscriber)
            assert split_creation(received, DELIVERY_HEAD) == DELIVERY_TAIL

            frame = Frame.FromString(received)
            assert frame.kind == "goomerang.example.MessageV1"
            assert frame.payloadSize == 4 and not frame.is_sync and frame.uuid == ""
            assert dict(frame.headers) == {"a": "b"}
            assert abs(frame.creation.seconds - time.time()) < 60
            # MessageV1 has the shape of a StringValue: field 1, string.
            assert wrappers_pb2.StringValue.FromString(frame.payload).value == "hi"

            await subscriber.close()
            assert subscriber.close_code == 1000, subscriber.close_code

    asyncio.run(run())


def test_broadcast_reaches_the_sender():
    async def run():
        async with connect(f"ws://{ADDR}/wss", compression=None) as ws:
            await wait_for_subscribers("$goomerang.broadcast", 1)
            await ws.send(BROADCAST)
            received = await receive(ws)
            assert split_creation(received, DELIVERY_HEAD) == BROADCAST_TAIL
            frame = Frame.FromString(received)
            assert len(frame.headers) == 0 and frame.payload == bytes.fromhex("0a026869")

    asyncio.run(run())


def test_pings_are_answered():
    async def run():
        async with connect(f"ws://{ADDR}/ws", compression=None, ping_interval=None) as ws:
            pong = await ws.ping(b"ping")
            latency = await asyncio.wait_for(pong, timeout=10)
            assert latency >= 0

    asyncio.run(run())
