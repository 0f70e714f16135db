"""Loom v4 over raw QUIC with aioquic, a QUIC stack independent of quinn, using the byte-exact test vectors of
docs/protocols/loom.md ("Test vectors"). The gateway runs with a static token "t" so the vectors' hellos are
accepted."""
import asyncio
import json
import os
import ssl
import urllib.request

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StopSendingReceived, StreamDataReceived

HOST, PORT = os.environ["GATEWAYD_LOOM"].rsplit(":", 1)
ADMIN = os.environ["GATEWAYD_ADMIN"]

# Producer hello p1/default/t and consumer hello c1/default/t.
PRODUCER_HELLO = bytes.fromhex("4c4f4f4d04500270310764656661756c740174")
CONSUMER_HELLO = bytes.fromhex("4c4f4f4d04430263310764656661756c740174")
# Key "k", declared size 5, msg id 7, body "hello" in one chunk, EOM.
MESSAGE = bytes.fromhex("016b0507056865" "6c6c6f00")
TIMEOUT = 20


def with_id(message: bytes, msg_id: int) -> bytes:
    """The test vectors' message with another one-byte msg id (the server assigns its own)."""
    return message[:3] + bytes([msg_id]) + message[4:]


class Loom(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = {}
        self.ended = set()
        self.stopped = {}
        self.changed = asyncio.Event()

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self.received[event.stream_id] = self.received.get(event.stream_id, b"") + event.data
            if event.end_stream:
                self.ended.add(event.stream_id)
        elif isinstance(event, StopSendingReceived):
            self.stopped[event.stream_id] = event.error_code
        self.changed.set()

    def open(self, data: bytes, end: bool = False) -> int:
        stream_id = self._quic.get_next_available_stream_id()
        self.send(stream_id, data, end)
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False):
        self._quic.send_stream_data(stream_id, data, end_stream=end)
        self.transmit()

    async def until(self, check):
        async def wait():
            while not check():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), TIMEOUT)


def configuration() -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=["loom/1"])
    config.verify_mode = ssl.CERT_NONE
    return config


def consumers_on(topic: str) -> int:
    with urllib.request.urlopen(f"http://{ADMIN}/api/topics", timeout=10) as response:
        for entry in json.load(response):
            if entry["topic"] == topic and entry.get("group"):
                return entry["group"]["members"]
    return 0


async def wait_consumers(topic: str, n: int):
    async def poll():
        while await asyncio.to_thread(consumers_on, topic) != n:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), TIMEOUT)


def test_vectors_through_gatewayd():
    async def run():
        async with connect(HOST, int(PORT), configuration=configuration(), create_protocol=Loom) as consumer:
            stream = consumer.open(CONSUMER_HELLO)
            await wait_consumers("default", 1)
            async with connect(HOST, int(PORT), configuration=configuration(), create_protocol=Loom) as producer:
                producer.open(PRODUCER_HELLO + MESSAGE + with_id(MESSAGE, 0), end=True)
                first = with_id(MESSAGE, 1)
                await consumer.until(lambda: len(consumer.received.get(stream, b"")) >= len(first))
                assert consumer.received[stream] == first
                # Stop-and-wait: nothing more until the ack `01 01`.
                await asyncio.sleep(0.3)
                assert consumer.received[stream] == first
                consumer.send(stream, bytes.fromhex("0101"))
                both = first + with_id(MESSAGE, 2)
                await consumer.until(lambda: len(consumer.received[stream]) >= len(both))
                assert consumer.received[stream] == both

    asyncio.run(run())


def test_refused_hello_gets_fin_and_stop_sending():
    async def run():
        async with connect(HOST, int(PORT), configuration=configuration(), create_protocol=Loom) as client:
            bad_version = PRODUCER_HELLO[:4] + b"\x03" + PRODUCER_HELLO[5:]
            bad_token = PRODUCER_HELLO[:-1] + b"x"
            streams = [client.open(bad_version), client.open(bad_token)]
            await client.until(lambda: all(s in client.ended and s in client.stopped for s in streams))
            for s in streams:
                assert client.received.get(s, b"") == b""
                assert client.stopped[s] == 1
            # The connection stays usable.
            ok = client.open(PRODUCER_HELLO + MESSAGE, end=True)
            await client.until(lambda: ok in client.ended)
            assert client.received.get(ok, b"") == b""
            assert ok not in client.stopped

    asyncio.run(run())
