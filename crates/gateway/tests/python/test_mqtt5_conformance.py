"""paho-mqtt 2.x (PyPI) against gatewayd's MQTT 5.0 rules that took more than a codec: shared subscriptions (a
group per share name, wildcard filters), topic aliases from the server, No Local across a resumed session, the
will going when the session ends, enhanced authentication refused, and the reason string of a refused SUBSCRIBE
(left out after Request Problem Information 0).

Run by crates/gateway/tests/mqtt.rs with MQTT_ADDRESS and MQTT_TLS_ADDRESS set (gatewayd's
mqtt.topic_alias_maximum is the default 16; the token `limited` may subscribe to `allowed/#` only).
"""

import queue
import socket
import struct
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from test_mqtt import HOST, PORT, WAIT, Peer, connected

V5 = mqtt.MQTTv5


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def until_marker(peer, marker):
    """Every message `peer` receives up to `marker` (a payload), in order. Sent after the messages under test by the
    same publisher, the marker arrives after all of them, so nothing is left in flight when this returns."""
    got = []
    while True:
        message = peer.receive()
        if message.payload == marker:
            return got
        got.append(message)


def subscribe_options(peer, topic, **options):
    peer.client.subscribe(topic, options=mqtt.SubscribeOptions(qos=1, **options))
    return [code.value for code in peer.subacks.get(timeout=WAIT)]


def test_each_share_name_gets_its_own_copy_and_members_split_it():
    base = unique("shared")
    a = [connected(V5) for _ in range(2)]
    b = connected(V5)
    for member in a:
        assert [c.value for c in member.subscribe(f"$share/a/{base}/t", 1)] == [1]
        assert [c.value for c in member.subscribe(f"{base}/mark", 1)] == [1]
    assert [c.value for c in b.subscribe(f"$share/b/{base}/t", 1)] == [1]
    assert [c.value for c in b.subscribe(f"{base}/mark", 1)] == [1]
    publisher = connected(V5)
    for n in range(10):
        publisher.publish(f"{base}/t", str(n).encode(), qos=1)
    publisher.publish(f"{base}/mark", b"mark", qos=1)
    per_member = [[m.payload for m in until_marker(member, b"mark")] for member in a]
    assert sorted(per_member[0] + per_member[1], key=int) == [str(n).encode() for n in range(10)]
    assert all(per_member), per_member
    assert [m.payload for m in until_marker(b, b"mark")] == [str(n).encode() for n in range(10)]
    for peer in (*a, b, publisher):
        peer.close()


def test_a_shared_subscription_takes_a_wildcard_filter():
    base = unique("wshared")
    members = [connected(V5) for _ in range(2)]
    for member in members:
        assert [c.value for c in member.subscribe(f"$share/g/{base}/+/x", 1)] == [1]
        member.subscribe(f"{base}/mark", 1)
    publisher = connected(V5)
    topics = [f"{base}/{n}/x" for n in range(6)]
    for topic in topics:
        publisher.publish(topic, topic.encode(), qos=1)
    publisher.publish(f"{base}/other/y", b"not matched", qos=1)
    publisher.publish(f"{base}/mark", b"mark", qos=1)
    got = [m for member in members for m in until_marker(member, b"mark")]
    assert sorted(m.topic for m in got) == sorted(topics)
    assert all(m.payload == m.topic.encode() for m in got)
    for peer in (*members, publisher):
        peer.close()


def test_no_local_on_a_shared_subscription_is_a_protocol_error():
    peer = connected(V5)
    disconnected = queue.Queue()
    peer.client.reconnect_delay_set(min_delay=60, max_delay=60)
    peer.client.on_disconnect = lambda c, u, flags, rc, props: disconnected.put(rc)
    peer.client.subscribe(f"$share/g/{unique('nl')}", options=mqtt.SubscribeOptions(qos=1, noLocal=True))
    assert disconnected.get(timeout=WAIT).value == 0x82
    peer.client.loop_stop()


def test_the_server_sends_topic_aliases_up_to_the_clients_maximum():
    base = unique("salias")
    properties = Properties(PacketTypes.CONNECT)
    properties.TopicAliasMaximum = 2
    subscriber = Peer(V5)
    assert subscriber.connect(properties)[1] == 0
    subscriber.subscribe(f"{base}/#", 1)
    publisher = connected(V5)
    sent = ["a", "a", "b", "c", "b", "a", "c"]
    for level in sent:
        publisher.publish(f"{base}/{level}", level.encode(), qos=1)
    got = [subscriber.receive() for _ in sent]
    seen = [(m.payload, m.topic, getattr(m.properties, "TopicAlias", None)) for m in got]
    # paho 2.x leaves an aliased topic empty: the wire is what the test sees.
    assert seen == [
        (b"a", f"{base}/a", 1),
        (b"a", "", 1),
        (b"b", f"{base}/b", 2),
        (b"c", f"{base}/c", None),
        (b"b", "", 2),
        (b"a", "", 1),
        (b"c", f"{base}/c", None),
    ]
    subscriber.close()
    publisher.close()


def test_no_topic_alias_without_the_clients_topic_alias_maximum():
    base = unique("noalias")
    subscriber = connected(V5)
    subscriber.subscribe(f"{base}/t", 1)
    publisher = connected(V5)
    for _ in range(3):
        publisher.publish(f"{base}/t", b"x", qos=1)
    got = [subscriber.receive() for _ in range(3)]
    assert [(m.topic, hasattr(m.properties, "TopicAlias")) for m in got] == [(f"{base}/t", False)] * 3
    subscriber.close()
    publisher.close()


def test_a_resumed_session_keeps_no_local_for_what_it_published_before():
    base = unique("nolocal")
    client_id = unique("nl-client")
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 60
    first = Peer(V5, client_id=client_id, clean=True)
    assert first.connect(properties)[1] == 0
    assert subscribe_options(first, f"{base}/t", noLocal=True) == [1]
    assert subscribe_options(first, f"{base}/mark") == [1]
    # A publish and a DISCONNECT in one write: gatewayd reads both before it takes anything from the session's
    # queue, so the client's own message is still queued when the session is kept.
    first.client.loop_stop()
    topic = f"{base}/t".encode()
    body = struct.pack(">H", len(topic)) + topic + b"\x00" + b"own"
    sock = first.client.socket()
    sock.sendall(bytes([0x30, len(body)]) + body + b"\xe0\x00")
    sock.settimeout(WAIT)
    assert sock.recv(16) == b""
    other = connected(V5)
    other.publish(f"{base}/t", b"other", qos=1)
    other.publish(f"{base}/mark", b"mark", qos=1)
    back = Peer(V5, client_id=client_id, clean=False)
    flags, rc, _ = back.connect(properties)
    assert (rc, flags.session_present) == (0, True)
    assert [m.payload for m in until_marker(back, b"mark")] == [b"other"]
    back.close()
    other.close()


def test_the_will_goes_when_the_session_ends_before_its_delay():
    base = unique("willend")
    watcher = connected(V5)
    watcher.subscribe(f"{base}/#", 1)
    will_properties = Properties(PacketTypes.WILLMESSAGE)
    will_properties.WillDelayInterval = 30
    connect = Properties(PacketTypes.CONNECT)
    connect.SessionExpiryInterval = 1
    gone = Peer(V5, will=(f"{base}/gone", b"session over", 1, False, will_properties))
    assert gone.connect(connect)[1] == 0
    dropped_at = time.time()
    gone.drop()
    message = watcher.receive(wait=10)
    assert (message.topic, message.payload) == (f"{base}/gone", b"session over")
    assert 0.9 <= time.time() - dropped_at < 10
    watcher.close()


def raw_connect(properties):
    """A 5.0 CONNECT with `properties` (already encoded) on a raw socket, and what gatewayd answers."""
    body = b"\x00\x04MQTT\x05\x02\x00\x1e" + bytes([len(properties)]) + properties
    client_id = b"raw-auth"
    body += struct.pack(">H", len(client_id)) + client_id
    sock = socket.create_connection((HOST, PORT), timeout=WAIT)
    sock.sendall(bytes([0x10, len(body)]) + body)
    answer = b""
    while True:
        chunk = sock.recv(256)
        if not chunk:
            break
        answer += chunk
    sock.close()
    return answer


def test_enhanced_authentication_is_refused_with_its_reason_code():
    method = Properties(PacketTypes.CONNECT)
    method.AuthenticationMethod = "SCRAM-SHA-1"
    method.AuthenticationData = b"client-first"
    refused = Peer(V5)
    _, rc, _ = refused.connect(method)
    assert rc.value == 0x8C
    refused.client.loop_stop()
    # Authentication Data without a method (0x16, two-byte length, data): a Protocol Error, said in the CONNACK's
    # reason string (0x1F); the connection closes after the CONNACK.
    answer = raw_connect(b"\x16\x00\x02ab")
    why = b"authentication data without an authentication method"
    properties = b"\x1f" + struct.pack(">H", len(why)) + why
    assert answer == bytes([0x20, 3 + len(properties), 0, 0x82, len(properties)]) + properties, answer


def refused_suback(connect_properties):
    """The reason codes and properties of the SUBACK a client of the `limited` token gets for `secret/#`."""
    peer = Peer(V5, password="limited")
    subacks = queue.Queue()
    peer.client.on_subscribe = lambda c, u, mid, codes, props: subacks.put((codes, props))
    assert peer.connect(connect_properties)[1] == 0
    peer.client.subscribe("secret/#", qos=1)
    codes, properties = subacks.get(timeout=WAIT)
    peer.close()
    return [code.value for code in codes], properties


def test_a_refused_subscribe_says_why_unless_the_client_asked_for_no_problem_information():
    codes, properties = refused_suback(None)
    assert codes == [0x87]
    assert properties.ReasonString == "not authorized to subscribe to secret/#"
    no_problems = Properties(PacketTypes.CONNECT)
    no_problems.RequestProblemInformation = 0
    codes, properties = refused_suback(no_problems)
    assert codes == [0x87]
    assert not hasattr(properties, "ReasonString")
