"""An independent MessageLoop client: Python `websockets` for the JSON WebSocket path and `grpcio` for gRPC,
following the worked examples of the wire reference (§6). The protobuf messages are built at runtime from a
small FileDescriptorProto written here (no generated code, no .proto compiler)."""
import json
import os
import queue

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WS = os.environ["MESSAGELOOP_WS"]
GRPC = os.environ["MESSAGELOOP_GRPC"]
TIMEOUT = 10


def recv_kind(ws, kind):
    for _ in range(50):
        envelope = json.loads(ws.recv(timeout=TIMEOUT))
        if kind in envelope:
            return envelope
    raise AssertionError(f"no {kind}")


def test_worked_example_over_json_websocket():
    with connect(WS, subprotocols=["messageloop+json"]) as ws:
        assert ws.subprotocol == "messageloop+json"
        ws.send(json.dumps({"id": "1763800000000000000-1", "connect": {
            "client_id": "go-client-1", "client_type": "sdk", "version": "2.0.0"}}))
        connected = json.loads(ws.recv(timeout=TIMEOUT))
        assert connected["id"] == "1763800000000000000-1"
        assert connected["connected"]["session_id"]
        assert int(connected["time"]) > 0
        ws.send(json.dumps({"id": "2", "subscribe": {"subscriptions": [{"channel": "chat.messages"}]}}))
        ack = recv_kind(ws, "subscribe_ack")
        assert ack["id"] == "2"
        assert ack["subscribe_ack"]["recover"] == "RECOVER_STATE_NONE"
        assert ack["subscribe_ack"]["presence"][0]["clients"][0]["client_id"] == "go-client-1"
        ws.send(json.dumps({"id": "3", "publish": {"channel": "chat.messages", "payload": {
            "content_type": "application/json", "json": {"text": "hi"}}}}))
        publish_ack = recv_kind(ws, "publish_ack")
        assert publish_ack["publish_ack"]["id"] == "3"
        publication = recv_kind(ws, "publication")
        message = publication["publication"]["messages"][0]
        assert message["channel"] == "chat.messages"
        assert message["payload"] == {"content_type": "application/json", "json": {"text": "hi"}}
        ws.send(json.dumps({"id": "4", "ping": {}}))
        assert recv_kind(ws, "pong")["id"] == "4"


def test_frame_before_connect_closes_with_3500():
    with connect(WS, subprotocols=["messageloop+json"]) as ws:
        ws.send(json.dumps({"id": "1", "ping": {}}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 3500
        assert closed.value.rcvd.reason == "invalid token"


def build_messages():
    """The G2 envelope subset, with the field numbers of the G2 protobuf schema (docs/protocols/messageloop.md, "Generations")."""
    f = descriptor_pb2.FileDescriptorProto(name="ml_test.proto", package="mltest", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def message(name, *fields, oneof=None):
        m = f.message_type.add(name=name)
        if oneof:
            m.oneof_decl.add(name=oneof)
        for number, field_name, kind, type_name, label, in_oneof in fields:
            field = m.field.add(name=field_name, number=number, type=kind,
                                label=label or T.LABEL_OPTIONAL)
            if type_name:
                field.type_name = f".mltest.{type_name}"
            if in_oneof:
                field.oneof_index = 0

    S, U64, MSG = T.TYPE_STRING, T.TYPE_UINT64, T.TYPE_MESSAGE
    REP = T.LABEL_REPEATED
    message("Empty")
    message("Connect", (1, "client_id", S, None, None, False), (2, "client_type", S, None, None, False),
            (3, "token", S, None, None, False), (4, "version", S, None, None, False))
    message("Subscription", (1, "channel", S, None, None, False))
    message("Subscribe", (1, "subscriptions", MSG, "Subscription", REP, False))
    message("Payload", (1, "content_type", S, None, None, False), (4, "text", S, None, None, False))
    message("Publish", (1, "channel", S, None, None, False), (2, "payload", MSG, "Payload", None, False))
    message("InboundMessage", (1, "id", S, None, None, False), (3, "connect", MSG, "Connect", None, True),
            (4, "subscribe", MSG, "Subscribe", None, True), (6, "publish", MSG, "Publish", None, True),
            (11, "ping", MSG, "Empty", None, True), oneof="envelope")
    message("Error", (1, "code", S, None, None, False), (2, "type", S, None, None, False),
            (3, "message", S, None, None, False))
    message("Connected", (1, "session_id", S, None, None, False), (4, "stream_epoch", S, None, None, False))
    message("Position", (1, "stream_epoch", S, None, None, False), (2, "offset", U64, None, None, False))
    message("PublishAck", (1, "id", S, None, None, False), (2, "position", MSG, "Position", None, False))
    message("Message", (1, "id", S, None, None, False), (2, "channel", S, None, None, False),
            (3, "position", MSG, "Position", None, False), (4, "payload", MSG, "Payload", None, False))
    message("Publication", (1, "messages", MSG, "Message", REP, False))
    message("OutboundMessage", (1, "id", S, None, None, False), (2, "time", U64, None, None, False),
            (3, "error", MSG, "Error", None, True), (4, "connected", MSG, "Connected", None, True),
            (5, "subscribe_ack", MSG, "Empty", None, True), (7, "publish_ack", MSG, "PublishAck", None, True),
            (8, "publication", MSG, "Publication", None, True), (15, "presence", MSG, "Empty", None, True),
            (18, "pong", MSG, "Empty", None, True), oneof="envelope")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"mltest.{name}"))


def test_grpc_g2_stream():
    cls = build_messages()
    Inbound, Outbound = cls("InboundMessage"), cls("OutboundMessage")
    requests = queue.Queue()

    def outgoing():
        while True:
            item = requests.get()
            if item is None:
                return
            yield item

    with grpc.insecure_channel(GRPC) as channel:
        call = channel.stream_stream(
            "/messageloop.client.v2.MessageLoopService/MessageLoop",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=Outbound.FromString,
        )(outgoing(), timeout=TIMEOUT)
        requests.put(Inbound(id="1", connect=cls("Connect")(client_id="py", client_type="sdk", version="2.0.0")))
        connected = next(call)
        assert connected.id == "1" and connected.WhichOneof("envelope") == "connected"
        assert connected.connected.session_id
        requests.put(Inbound(id="2", subscribe=cls("Subscribe")(
            subscriptions=[cls("Subscription")(channel="py.grpc")])))
        assert next(call).WhichOneof("envelope") == "subscribe_ack"
        requests.put(Inbound(id="3", publish=cls("Publish")(
            channel="py.grpc", payload=cls("Payload")(content_type="text/plain", text="hello"))))
        seen = {}
        while len(seen) < 2:
            out = next(call)
            kind = out.WhichOneof("envelope")
            if kind in ("publish_ack", "publication"):
                seen[kind] = out
        assert seen["publish_ack"].publish_ack.id == "3"
        message = seen["publication"].publication.messages[0]
        assert message.channel == "py.grpc"
        assert message.payload.text == "hello"
        # A second Connect ends the session: DISCONNECT_ERROR, then status OK.
        requests.put(Inbound(id="4", connect=cls("Connect")(version="2.0.0")))
        notice = next(call)
        assert notice.error.code == "DISCONNECT_ERROR"
        assert notice.error.type == "transport_error"
        assert notice.error.message == "bad request"
        with pytest.raises(StopIteration):
            next(call)
        assert call.code() == grpc.StatusCode.OK
        requests.put(None)
