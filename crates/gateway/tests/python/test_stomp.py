"""stomp.py (PyPI) against gatewayd's STOMP listeners over TCP and TLS.

Run by crates/gateway/tests/stomp.rs with STOMP_ADDRESS, STOMP_TLS_ADDRESS and GATEWAYD_ADMIN set.
"""

import json
import os
import queue
import socket
import time
import urllib.request

import pytest
import stomp

WAIT = 5.0


def address(var):
    host, port = os.environ[var].rsplit(":", 1)
    return (host, int(port))


TCP = address("STOMP_ADDRESS")
TLS = address("STOMP_TLS_ADDRESS")
ADMIN = os.environ["GATEWAYD_ADMIN"]


def topics():
    with urllib.request.urlopen(f"http://{ADMIN}/api/topics") as response:
        return {t["topic"]: t for t in json.load(response)}


def wait_for(what, check):
    deadline = time.time() + 10
    while True:
        if check(topics()):
            return
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def fanout(name, n):
    wait_for(f"{n} subscribers of {name}", lambda t: t.get(name, {}).get("fanout_subscribers") == n)


def members(name, n):
    wait_for(f"{n} members of {name}", lambda t: (t.get(name, {}).get("group") or {}).get("members") == n)


def unacked(name, n):
    wait_for(f"{n} unacked on {name}", lambda t: (t.get(name, {}).get("group") or {}).get("unacked") == n)


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.messages = queue.Queue()
        self.receipts = queue.Queue()
        self.errors = queue.Queue()
        self.heart_beats = 0
        self.connected = None

    def on_connected(self, frame):
        self.connected = frame

    def on_message(self, frame):
        self.messages.put(frame)

    def on_receipt(self, frame):
        self.receipts.put(frame.headers["receipt-id"])

    def on_error(self, frame):
        self.errors.put(frame)

    def on_heartbeat(self):
        self.heart_beats += 1

    def message(self, timeout=WAIT):
        return self.messages.get(timeout=timeout)

    def nothing(self, timeout=0.3):
        with pytest.raises(queue.Empty):
            self.messages.get(timeout=timeout)


def connect(cls=stomp.Connection12, where=TCP, tls=False, connect_headers=None, **kwargs):
    conn = cls([where], **kwargs)
    if tls:
        conn.set_ssl(for_hosts=[where], verify=False)
    collector = Collector()
    conn.set_listener("collector", collector)
    conn.connect("guest", "guest", wait=True, headers=connect_headers or {})
    return conn, collector


@pytest.mark.parametrize(
    "cls,version",
    [(stomp.Connection10, "1.0"), (stomp.Connection11, "1.1"), (stomp.Connection12, "1.2")],
)
def test_connect_publish_receive_each_version(cls, version):
    conn, got = connect(cls)
    assert got.connected.headers["version"] == version
    name = f"py.v{version.replace('.', '')}"
    if cls is stomp.Connection10:
        conn.subscribe(f"/topic/{name}", id="s", ack="auto")
    else:
        conn.subscribe(f"/topic/{name}", "s", ack="auto")
    fanout(name, 1)
    conn.send(f"/topic/{name}", "hello", headers={"x-version": version})
    frame = got.message()
    assert frame.body == "hello"
    assert frame.headers["x-version"] == version
    assert frame.headers["subscription"] == "s"
    conn.disconnect()


def test_binary_body_with_nul():
    conn, got = connect(auto_decode=False)
    conn.subscribe("/topic/py.bin", "b")
    fanout("py.bin", 1)
    body = b"\x00\x01\xff\x00binary\x00"
    conn.send("/topic/py.bin", body, content_type="application/octet-stream")
    frame = got.message()
    assert frame.body == body
    assert frame.headers["content-type"] == "application/octet-stream"
    conn.disconnect()


def test_auto_ack_queue():
    conn, got = connect()
    conn.subscribe("/queue/py.auto", "a", ack="auto")
    members("py.auto", 1)
    conn.send("/queue/py.auto", "one")
    assert got.message().body == "one"
    unacked("py.auto", 0)
    conn.disconnect()


def test_client_ack_is_cumulative():
    conn, got = connect()
    conn.subscribe("/queue/py.cumulative", "c", ack="client")
    members("py.cumulative", 1)
    for i in range(3):
        conn.send("/queue/py.cumulative", f"m{i}")
    frames = [got.message() for _ in range(3)]
    assert [f.body for f in frames] == ["m0", "m1", "m2"]
    assert all(f.headers["ack"] == f.headers["message-id"] for f in frames)
    unacked("py.cumulative", 3)
    conn.ack(frames[2].headers["ack"], receipt="acked")
    assert got.receipts.get(timeout=WAIT) == "acked"
    unacked("py.cumulative", 0)
    conn.disconnect()


def test_client_individual_nack_redelivers():
    conn, got = connect()
    conn.subscribe("/queue/py.individual", "i", ack="client-individual")
    members("py.individual", 1)
    conn.send("/queue/py.individual", "a")
    conn.send("/queue/py.individual", "b")
    a, b = got.message(), got.message()
    assert "redelivered" not in a.headers
    conn.ack(b.headers["ack"])
    conn.nack(a.headers["ack"])
    again = got.message()
    assert again.body == "a"
    assert again.headers["redelivered"] == "true"
    conn.ack(again.headers["ack"])
    unacked("py.individual", 0)
    conn.disconnect()


def test_1_1_ack_by_message_id_and_subscription():
    conn, got = connect(stomp.Connection11)
    conn.subscribe("/queue/py.v11ack", "s", ack="client-individual")
    members("py.v11ack", 1)
    conn.send("/queue/py.v11ack", "x")
    frame = got.message()
    assert "ack" not in frame.headers
    conn.nack(frame.headers["message-id"], "s")
    again = got.message()
    assert again.headers["redelivered"] == "true"
    conn.ack(again.headers["message-id"], "s")
    unacked("py.v11ack", 0)
    conn.disconnect()


def test_unacked_messages_are_redelivered_after_disconnect():
    first, got = connect()
    first.subscribe("/queue/py.redeliver", "r", ack="client")
    members("py.redeliver", 1)
    first.send("/queue/py.redeliver", "job")
    assert got.message().body == "job"
    first.disconnect()
    second, got2 = connect()
    second.subscribe("/queue/py.redeliver", "r", ack="client")
    frame = got2.message()
    assert frame.body == "job"
    assert frame.headers["redelivered"] == "true"
    second.ack(frame.headers["ack"])
    second.disconnect()


def test_receipts_for_every_frame_that_asks():
    conn, got = connect()
    conn.subscribe("/topic/py.receipts", "s", receipt="sub")
    assert got.receipts.get(timeout=WAIT) == "sub"
    conn.send("/topic/py.receipts", "m", receipt="send")
    assert got.receipts.get(timeout=WAIT) == "send"
    assert got.message().body == "m"
    conn.unsubscribe("s", receipt="unsub")
    assert got.receipts.get(timeout=WAIT) == "unsub"
    conn.send("/topic/py.receipts", "late", receipt="send2")
    assert got.receipts.get(timeout=WAIT) == "send2"
    got.nothing()
    conn.disconnect()


def test_transaction_commit_and_abort():
    conn, got = connect()
    conn.subscribe("/queue/py.tx", "t")
    members("py.tx", 1)
    tx = conn.begin()
    conn.send("/queue/py.tx", "held", transaction=tx)
    got.nothing()
    conn.commit(tx)
    assert got.message().body == "held"
    tx = conn.begin()
    conn.send("/queue/py.tx", "dropped", transaction=tx)
    conn.abort(tx, receipt="aborted")
    assert got.receipts.get(timeout=WAIT) == "aborted"
    got.nothing()
    conn.disconnect()


def test_transactional_ack():
    conn, got = connect()
    conn.subscribe("/queue/py.txack", "t", ack="client-individual")
    members("py.txack", 1)
    conn.send("/queue/py.txack", "x")
    frame = got.message()
    tx = conn.begin()
    conn.ack(frame.headers["ack"], transaction=tx)
    conn.abort(tx, receipt="abort")
    assert got.receipts.get(timeout=WAIT) == "abort"
    unacked("py.txack", 1)
    tx = conn.begin()
    conn.ack(frame.headers["ack"], transaction=tx)
    conn.commit(tx)
    unacked("py.txack", 0)
    conn.disconnect()


def test_heart_beats_keep_a_live_client_and_close_a_silent_one():
    conn, got = connect(heartbeats=(200, 200))
    assert got.connected.headers["heart-beat"] == "200,200"
    time.sleep(1.2)
    assert conn.is_connected()
    assert got.heart_beats >= 2
    conn.disconnect()

    silent = socket.create_connection(TCP, timeout=WAIT)
    silent.sendall(b"CONNECT\naccept-version:1.2\nhost:x\nheart-beat:200,0\n\n\x00")
    data = b""
    started = time.time()
    while True:
        chunk = silent.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"CONNECTED\n")
    assert time.time() - started < 3


def test_temp_queue_request_reply():
    responder, requests = connect()
    responder.subscribe("/queue/py.rpc", "rpc")
    members("py.rpc", 1)
    requester, replies = connect()
    requester.send("/queue/py.rpc", "ping", headers={"reply-to": "/temp-queue/answers", "correlation-id": "c-1"})
    request = requests.message()
    assert request.body == "ping"
    assert request.headers["reply-to"].startswith("/reply-queue/")
    assert request.headers["correlation-id"] == "c-1"
    responder.send(request.headers["reply-to"], "pong", headers={"correlation-id": "c-1"})
    reply = replies.message()
    assert reply.body == "pong"
    assert reply.headers["subscription"] == "/temp-queue/answers"
    assert reply.headers["correlation-id"] == "c-1"
    requester.disconnect()
    responder.disconnect()


def test_competing_consumers_each_message_once():
    consumers = [connect() for _ in range(2)]
    for conn, _ in consumers:
        conn.subscribe("/queue/py.work", "w")
    members("py.work", 2)
    producer, _ = connect()
    for i in range(50):
        producer.send("/queue/py.work", f"job{i}")
    seen = []
    counts = []
    for _, got in consumers:
        n = 0
        while True:
            try:
                # The first may take up to WAIT; half a second after the last ends this consumer's share.
                seen.append(got.message(timeout=0.5 if n else WAIT).body)
                n += 1
            except queue.Empty:
                break
        counts.append(n)
    assert sorted(seen) == sorted(f"job{i}" for i in range(50))
    assert all(n > 0 for n in counts), counts
    for conn, _ in consumers + [(producer, None)]:
        conn.disconnect()


def test_tls_listener():
    conn, got = connect(where=TLS, tls=True)
    conn.subscribe("/topic/py.tls", "s")
    fanout("py.tls", 1)
    conn.send("/topic/py.tls", "secret")
    assert got.message().body == "secret"
    conn.disconnect()


def durable_queue(owner, name):
    """The bus topic of a durable subscription's queue: `$durable.<owner>.<name>`, one token each."""
    escape = lambda part: part.replace("%", "%25").replace(".", "%2E")
    return f"$durable.{escape(owner)}.{escape(name)}"


def retained(name, n):
    wait_for(f"{n} kept on {name}", lambda t: (t.get(name, {}).get("group") or {}).get("retained") == n)


def no_forwarder(topic):
    wait_for(f"no subscriber of {topic}", lambda t: t.get(topic, {}).get("fanout_subscribers", 0) == 0)


def test_rabbitmq_durable_subscription_keeps_messages_while_away():
    durable = {"durable": "true", "auto-delete": "false"}
    name = durable_queue("py-d1", "py.durable")
    conn, got = connect()
    conn.subscribe("/topic/py.durable", "py-d1", ack="client-individual", headers=durable)
    members(name, 1)
    conn.disconnect()
    members(name, 0)
    producer, sent = connect()
    for i in range(3):
        producer.send("/topic/py.durable", f"away-{i}")
    retained(name, 3)

    conn, got = connect()
    conn.subscribe("/topic/py.durable", "py-d1", ack="client-individual", headers=durable)
    for i in range(3):
        frame = got.message()
        assert frame.body == f"away-{i}"
        assert frame.headers["destination"] == "/topic/py.durable"
        assert frame.headers["subscription"] == "py-d1"
        conn.ack(frame.headers["ack"])
    producer.send("/topic/py.durable", "live")
    assert got.message().body == "live"

    conn.unsubscribe("py-d1", headers=dict(durable, receipt="deleted"))
    assert got.receipts.get(timeout=WAIT) == "deleted"
    no_forwarder("py.durable")
    producer.send("/topic/py.durable", "after-delete", headers={"receipt": "sent"})
    assert sent.receipts.get(timeout=WAIT) == "sent"
    conn.subscribe("/topic/py.durable", "py-d1", headers=durable)
    members(name, 1)
    got.nothing()
    conn.unsubscribe("py-d1", headers=durable)
    producer.disconnect()
    conn.disconnect()


def test_activemq_durable_subscription_by_client_id():
    named = {"activemq.subscriptionName": "py-sub"}
    name = durable_queue("py-app", "py-sub")
    conn, got = connect(stomp.Connection11, connect_headers={"client-id": "py-app"})
    conn.subscribe("/topic/py.amq.#", "s", headers=named)
    members(name, 1)
    conn.disconnect()
    members(name, 0)
    producer, sent = connect()
    producer.send("/topic/py.amq.a.b", b"\x00kept\x00", content_type="application/octet-stream")
    retained(name, 1)

    conn, got = connect(stomp.Connection11, connect_headers={"client-id": "py-app"}, auto_decode=False)
    conn.subscribe("/topic/py.amq.#", "s", headers=named)
    frame = got.message()
    assert frame.body == b"\x00kept\x00"
    assert frame.headers["destination"] == "/topic/py.amq.a.b"
    conn.unsubscribe("s", headers=dict(named, receipt="deleted"))
    assert got.receipts.get(timeout=WAIT) == "deleted"
    producer.send("/topic/py.amq.a.b", "after-delete", headers={"receipt": "sent"})
    assert sent.receipts.get(timeout=WAIT) == "sent"
    conn.subscribe("/topic/py.amq.#", "s", headers=named)
    members(name, 1)
    got.nothing()
    conn.unsubscribe("s", headers=named)
    producer.disconnect()
    conn.disconnect()
