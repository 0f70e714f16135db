#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/<target>/ from the wire transcripts in the
repository (crates/protocols/tests/fixtures/wire, JSON Lines as described in its README) plus a few hand-made
inputs for what the transcripts do not cover (Loom, topics, envelopes) and the example config.

Usage: scripts/fuzz_seeds.py [WIRE_DIR]   (default: crates/protocols/tests/fixtures/wire)

Each seed is laid out as its fuzz target reads it (see fuzz/src/lib.rs): a leading selector byte where the target
picks a mode, and a chunk-size byte before a byte stream.
"""

import hashlib
import json
import pathlib
import struct
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
CHUNK_ALL = 255  # chunked(): 256-byte pieces


def lines(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


def write(target, data):
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    (folder / name).write_bytes(data)


def c2s_streams(path):
    """The raw client-to-server bytes of each connection of a transcript."""
    streams = {}
    for line in lines(path):
        if line.get("dir") == "c2s" and "hex" in line:
            streams.setdefault(line["conn"], bytearray()).extend(bytes.fromhex(line["hex"]))
    return [bytes(s) for s in streams.values()]


def ws_messages(path, direction="c2s"):
    for line in lines(path):
        if line.get("dir") == direction and "payload_hex" in line and line.get("ws_opcode") in (1, 2):
            yield bytes.fromhex(line["payload_hex"])


def stomp(wire):
    for path in sorted((wire / "stomp").glob("*.jsonl")):
        for stream in c2s_streams(path):
            for version in (0, 3):
                write("stomp_frame", bytes([version, CHUNK_ALL]) + stream)
            write("stomp_frame", bytes([0, 6]) + stream)


def messageloop(wire):
    for path in sorted((wire / "messageloop").glob("*-ws-json.jsonl")):
        frames = list(ws_messages(path))
        for setting in range(4):
            write("messageloop_json", bytes([setting]) + b"\0".join(frames))
        for frame in frames:
            write("messageloop_json", b"\0" + frame)
    for path in sorted((wire / "messageloop").glob("*-ws-protobuf.jsonl")):
        frames = [f for f in ws_messages(path) if len(f) < 256]
        packed = b"".join(bytes([len(f)]) + f for f in frames)
        for setting in range(4):
            write("messageloop_protobuf", bytes([setting]) + packed)


def goomerang(wire):
    for path in sorted((wire / "goomerang").glob("*.jsonl")):
        for message in ws_messages(path):
            write("goomerang_frame", message)


def chanserv(wire):
    for path in sorted((wire / "chanserv").glob("*.jsonl")):
        for stream in c2s_streams(path):
            write("astranet_op", bytes([CHUNK_ALL]) + stream)
            write("astranet_op", bytes([28]) + stream)
        # Request frames: a master stream's DATA (the Go writer sends the length prefix and the body as two ops).
        streams = {}
        for line in lines(path):
            if line.get("dir") == "c2s" and line.get("astranet_op_name") == "OP_DATA" and line.get("data_hex"):
                key = (line["conn"], line.get("remote_port"), line.get("local_port"))
                streams.setdefault(key, bytearray()).extend(bytes.fromhex(line["data_hex"]))
        for data in streams.values():
            write("chanserv_request", bytes([CHUNK_ALL]) + bytes(data))
    for body in [b"orders.eu\norders.*;from=latest\nmetrics.>", b'{"topics":["a.#"]}', b"PUB orders.eu\nhello"]:
        write("chanserv_request", bytes([CHUNK_ALL]) + struct.pack(">I", len(body)) + body)


def uvarint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def loom():
    for role, name, room, token in [(b"P", b"p1", b"default", b"t"), (b"C", b"c1", b"orders.eu", b"")]:
        hello = b"LOOM\x04" + role + b"".join(uvarint(len(f)) + f for f in (name, room, token))
        write("loom_hello", bytes([CHUNK_ALL]) + hello)
        write("loom_hello", bytes([0]) + hello + b"trailing")
    message = b""
    for key, body in [(b"k1", b"hello"), (b"key-2", b"x" * 300)]:
        message += uvarint(len(key)) + key + uvarint(len(body)) + uvarint(7)
        for i in range(0, len(body), 128):
            chunk = body[i:i + 128]
            message += uvarint(len(chunk)) + chunk
        message += b"\0"
    write("loom_message", bytes([CHUNK_ALL]) + message)
    write("loom_message", bytes([2]) + message)
    write("loom_ack", bytes([CHUNK_ALL]) + uvarint(1) + uvarint(1) + uvarint(1) + uvarint(300) + uvarint(9) + uvarint(0))


def topics():
    for pattern, topic, other in [
        (b"orders.*", b"orders.eu", b"orders.#"),
        (b"a.#.b.#", b"a.x.b.y.z", b"a.>"),
        (b"#.a.#.a.#.a.#.b", b"a.a.a.a.a.a.a.a.b", b"#"),
        (b"chat.**", b"chat.room.1", b"chat.>"),
        (b"$rpc.goomerang.pkg%2EMsg", b"$rpc.goomerang.pkg%2EMsg", b"$rpc.*"),
        (b"x%20y.%_.>", b"x y..z", b"*.*.*"),
    ]:
        write("topic", pattern + b"\0" + topic + b"\0" + other)


def envelope():
    def put(b):
        return struct.pack(">I", len(b)) + b

    def opt(b):
        return b"\0" if b is None else b"\1" + put(b)

    for topic, payload, ctype, headers in [
        (b"orders.eu", b"hello", b"text/plain", [(b"x-user", b"alice")]),
        (b"$inbox.5.r%2E1", b"\0bin\xff", None, []),
    ]:
        body = b"GWE\x01" + put(topic) + put(payload) + opt(ctype) + opt(b"key") + opt(None) + opt(b"corr")
        body += opt(None) + b"\x01" + struct.pack(">Q", 7) + (42).to_bytes(16, "big") + struct.pack(">Q", 1700000000000)
        body += b"\x01" + struct.pack(">QQ", 3, 9) + struct.pack(">I", len(headers))
        body += b"".join(put(n) + put(v) for n, v in headers)
        write("envelope", body)


def mqtt():
    def packet(first, body):
        length, n = b"", len(body)
        while True:
            byte, n = n % 128, n // 128
            length += bytes([byte | (0x80 if n else 0)])
            if not n:
                break
        return bytes([first]) + length + body

    def s(text):
        return struct.pack(">H", len(text)) + text

    for level, props in [(4, b""), (5, b"\x00")]:
        connect = packet(0x10, s(b"MQTT") + bytes([level, 0x02, 0, 30]) + props + s(b"seed"))
        subscribe = packet(0x82, b"\x00\x01" + props + s(b"a/+/#") + b"\x01")
        publish = packet(0x34, s(b"a/b") + b"\x00\x02" + props + b"payload")
        pubrel = packet(0x62, b"\x00\x02")
        # The first byte picks the level (0 before CONNECT, 1 = 3.1.1, 2 = 5.0), the second the chunk size.
        write("mqtt_packet", bytes([0, 7]) + connect + subscribe + publish + pubrel + b"\xc0\x00\xe0\x00")
        write("mqtt_packet", bytes([level - 3, 255]) + subscribe + publish + pubrel)


def config():
    write("config", (ROOT / "config" / "gatewayd.toml").read_bytes())
    write("config", b'[stomp.tcp]\nenabled = true\naddress = "127.0.0.1:0"\n[[bus.groups]]\ntopics = "a.#"\n')


def main():
    wire = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "crates/protocols/tests/fixtures/wire"
    if wire.is_dir():
        stomp(wire)
        messageloop(wire)
        goomerang(wire)
        chanserv(wire)
    else:
        print(f"{wire}: no wire transcripts, writing the hand-made seeds only", file=sys.stderr)
    loom()
    topics()
    envelope()
    mqtt()
    config()


if __name__ == "__main__":
    main()
