"""Cross-protocol legs with third-party clients: stomp.py (STOMP 1.2 over TCP) and `websockets` (MessageLoop JSON
over WebSocket, and raw STOMP frames over STOMP's WebSocket listener). Text and binary bodies with NUL bytes must
arrive byte-exact, with the metadata docs/conversion.md lists for the pair.

Run by crates/gateway/tests/matrix.rs with STOMP_ADDRESS, STOMP_WS, MESSAGELOOP_WS and GATEWAYD_ADMIN set.
"""

import base64
import json
import os
import queue
import time
import urllib.request

import stomp
from websockets.sync.client import connect as ws_connect

WAIT = 10.0
TEXT = "héllo\u0000matrix"
BINARY = b"\x00\xff\xfe\x00binary\x80\x00"


def address(var):
    host, port = os.environ[var].rsplit(":", 1)
    return (host, int(port))


STOMP = address("STOMP_ADDRESS")
STOMP_WS = os.environ["STOMP_WS"]
MESSAGELOOP_WS = os.environ["MESSAGELOOP_WS"]
ADMIN = os.environ["GATEWAYD_ADMIN"]


def fanout(name, n):
    deadline = time.time() + 10
    while True:
        with urllib.request.urlopen(f"http://{ADMIN}/api/topics") as response:
            topics = {t["topic"]: t for t in json.load(response)}
        if topics.get(name, {}).get("fanout_subscribers") == n:
            return
        assert time.time() < deadline, f"timed out waiting for {n} subscribers of {name}"
        time.sleep(0.01)


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.messages = queue.Queue()

    def on_message(self, frame):
        self.messages.put(frame)


def stomp_client():
    conn = stomp.Connection12([STOMP], auto_decode=False)
    collector = Collector()
    conn.set_listener("collector", collector)
    conn.connect("guest", "guest", wait=True)
    return conn, collector


def messageloop_client():
    ws = ws_connect(MESSAGELOOP_WS, subprotocols=["messageloop+json"])
    ws.send(json.dumps({"id": "c", "connect": {"client_id": "py-matrix", "version": "2.0.0"}}))
    recv_kind(ws, "connected")
    return ws


def recv_kind(ws, kind):
    for _ in range(50):
        envelope = json.loads(ws.recv(timeout=WAIT))
        if kind in envelope:
            return envelope
    raise AssertionError(f"no {kind}")


def test_stomp_py_to_messageloop_websocket():
    name = "py.matrix.stomp-to-ml"
    ws = messageloop_client()
    ws.send(json.dumps({"id": "s", "subscribe": {"subscriptions": [{"channel": name, "ephemeral": True}]}}))
    recv_kind(ws, "subscribe_ack")
    fanout(name, 1)
    conn, _ = stomp_client()
    conn.send(f"/topic/{name}", TEXT.encode(), content_type="text/plain", headers={"x-trace": "t-1"})
    conn.send(f"/topic/{name}", BINARY, content_type="application/octet-stream", headers={"x-trace": "t-2"})
    text = recv_kind(ws, "publication")["publication"]["messages"][0]
    assert text["channel"] == name
    assert text["payload"] == {"content_type": "text/plain", "text": TEXT}
    assert text["metadata"]["entries"] == {"x-trace": "t-1"}
    binary = recv_kind(ws, "publication")["publication"]["messages"][0]
    assert binary["payload"]["content_type"] == "application/octet-stream"
    assert base64.b64decode(binary["payload"]["binary"]) == BINARY
    assert binary["metadata"]["entries"] == {"x-trace": "t-2"}
    conn.disconnect()
    ws.close()


def test_messageloop_websocket_to_stomp_py():
    name = "py.matrix.ml-to-stomp"
    conn, got = stomp_client()
    conn.subscribe(f"/topic/{name}", "s", ack="auto")
    fanout(name, 1)
    ws = messageloop_client()
    ws.send(json.dumps({"id": "p1", "publish": {"channel": name, "payload": {"text": TEXT},
                                                 "metadata": {"entries": {"x-trace": "t-1"}}}}))
    recv_kind(ws, "publish_ack")
    ws.send(json.dumps({"id": "p2", "publish": {"channel": name, "payload": {
        "content_type": "application/octet-stream", "binary": base64.b64encode(BINARY).decode()}}}))
    recv_kind(ws, "publish_ack")
    text = got.messages.get(timeout=WAIT)
    assert text.body == TEXT.encode()
    assert text.headers["content-type"] == "text/plain"
    assert text.headers["x-trace"] == "t-1"
    binary = got.messages.get(timeout=WAIT)
    assert binary.body == BINARY
    assert binary.headers["content-type"] == "application/octet-stream"
    assert "x-trace" not in binary.headers
    conn.disconnect()
    ws.close()


def stomp_ws_frame(command, headers, body=b""):
    head = command + "\n" + "".join(f"{k}:{v}\n" for k, v in headers.items())
    return head.encode() + f"content-length:{len(body)}\n\n".encode() + body + b"\x00"


def parse_stomp_ws(data):
    if isinstance(data, str):
        data = data.encode()
    head, _, rest = data.partition(b"\n\n")
    lines = head.decode().split("\n")
    headers = dict(line.split(":", 1) for line in lines[1:])
    if "content-length" in headers:
        return lines[0], headers, rest[:int(headers["content-length"])]
    return lines[0], headers, rest[:rest.index(b"\x00")]


def test_stomp_websocket_and_stomp_py_exchange_binary_bodies():
    name = "py.matrix.ws-to-tcp"
    conn, got = stomp_client()
    conn.subscribe(f"/topic/{name}", "s", ack="auto")
    fanout(name, 1)
    with ws_connect(STOMP_WS, subprotocols=["v12.stomp"]) as ws:
        assert ws.subprotocol == "v12.stomp"
        ws.send(stomp_ws_frame("CONNECT", {"accept-version": "1.2", "host": "gatewayd", "heart-beat": "0,0"}))
        command, _, _ = parse_stomp_ws(ws.recv(timeout=WAIT))
        assert command == "CONNECTED"
        ws.send(stomp_ws_frame("SUBSCRIBE", {"id": "w", "destination": f"/topic/{name}.back"}))
        fanout(f"{name}.back", 1)
        ws.send(stomp_ws_frame("SEND", {"destination": f"/topic/{name}", "content-type": "application/octet-stream",
                                        "JMSXGroupID": "k-1"}, BINARY))
        frame = got.messages.get(timeout=WAIT)
        assert frame.body == BINARY
        assert frame.headers["JMSXGroupID"] == "k-1"
        conn.send(f"/topic/{name}.back", BINARY, content_type="application/octet-stream")
        command, headers, body = parse_stomp_ws(ws.recv(timeout=WAIT))
        assert command == "MESSAGE"
        assert body == BINARY
        assert headers["content-type"] == "application/octet-stream"
    conn.disconnect()
