"""paho-mqtt 2.x (PyPI) against gatewayd's MQTT listener, at MQTT 3.1.1 and 5.0.

Run by crates/gateway/tests/mqtt.rs with MQTT_ADDRESS and MQTT_TLS_ADDRESS set.
"""

import os
import queue
import socket
import ssl
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
import pytest

WAIT = 5.0
QUIET = 0.5

HOST, PORT = os.environ["MQTT_ADDRESS"].rsplit(":", 1)
PORT = int(PORT)
TLS_PORT = int(os.environ["MQTT_TLS_ADDRESS"].rsplit(":", 1)[1])

VERSIONS = [mqtt.MQTTv311, mqtt.MQTTv5]


class Peer:
    """A paho client on its own network thread, with what it received in queues."""

    def __init__(self, version, client_id=None, clean=True, will=None, password=None, tls=False):
        self.version = version
        self.client_id = client_id or f"py-{uuid.uuid4().hex[:8]}"
        kwargs = {}
        if version == mqtt.MQTTv311:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=version,
            **kwargs,
        )
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.connacks.put((flags, rc, props))
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(codes)
        if will:
            self.client.will_set(*will)
        if password is not None:
            self.client.username_pw_set("user", password)
        self.clean = clean
        self.port = PORT
        if tls:
            # The listener's certificate is self-signed.
            self.client.tls_set(cert_reqs=ssl.CERT_NONE)
            self.client.tls_insecure_set(True)
            self.port = TLS_PORT

    def connect(self, properties=None):
        if self.version == mqtt.MQTTv5:
            self.client.connect(HOST, self.port, keepalive=30, clean_start=self.clean, properties=properties)
        else:
            self.client.connect(HOST, self.port, keepalive=30)
        self.client.loop_start()
        flags, rc, props = self.connacks.get(timeout=WAIT)
        return flags, rc, props

    def subscribe(self, topic, qos):
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=WAIT)

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(WAIT)
        assert info.is_published()

    def receive(self, wait=WAIT):
        return self.messages.get(timeout=wait)

    def nothing(self):
        with pytest.raises(queue.Empty):
            self.messages.get(timeout=QUIET)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT."""
        self.client.socket().shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()


def connected(version, **kwargs):
    peer = Peer(version, **kwargs)
    _, rc, _ = peer.connect()
    assert rc == 0, rc
    return peer


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip_at_each_qos(version, qos):
    subscriber = connected(version)
    publisher = connected(version)
    topic = f"rt/{version}/{qos}"
    assert [int(c.value if hasattr(c, "value") else c) for c in subscriber.subscribe(topic, 2)] == [2]
    for n in range(3):
        publisher.publish(topic, f"m{n}".encode(), qos=qos)
    for n in range(3):
        message = subscriber.receive()
        assert message.topic == topic
        assert message.payload == f"m{n}".encode()
        assert message.qos == qos
        assert not message.retain
    subscriber.close()
    publisher.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_messages_are_kept_and_cleared(version):
    topic = f"ret/{version}/x"
    publisher = connected(version)
    publisher.publish(topic, b"kept", qos=1, retain=True)
    late = connected(version)
    late.subscribe(f"ret/{version}/+", 1)
    message = late.receive()
    assert (message.topic, message.payload, message.retain) == (topic, b"kept", True)
    publisher.publish(topic, b"", qos=1, retain=True)
    later = connected(version)
    later.subscribe(topic, 1)
    later.nothing()
    for peer in (publisher, late, later):
        peer.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_will_on_abnormal_close_only(version):
    watcher = connected(version)
    watcher.subscribe(f"will/{version}/#", 1)
    gone = connected(version, will=(f"will/{version}/gone", b"bye", 1, False))
    gone.drop()
    message = watcher.receive()
    assert (message.topic, message.payload) == (f"will/{version}/gone", b"bye")
    polite = connected(version, will=(f"will/{version}/polite", b"bye", 1, False))
    polite.close()
    watcher.nothing()
    watcher.close()


def test_shared_subscriptions_split_the_messages():
    members = [connected(mqtt.MQTTv5) for _ in range(2)]
    for member in members:
        assert [c.value for c in member.subscribe("$share/g/shared/t", 1)] == [1]
    publisher = connected(mqtt.MQTTv5)
    for n in range(20):
        publisher.publish("shared/t", str(n).encode(), qos=1)
    got = []
    deadline = time.time() + WAIT
    while len(got) < 20 and time.time() < deadline:
        for member in members:
            try:
                got.append(member.messages.get(timeout=0.05).payload)
            except queue.Empty:
                pass
    assert sorted(got, key=int) == [str(n).encode() for n in range(20)]
    for member in members:
        member.nothing()
        member.close()
    publisher.close()


def test_v5_properties_reach_the_subscriber():
    subscriber = connected(mqtt.MQTTv5)
    subscriber.subscribe("props/t", 1)
    publisher = connected(mqtt.MQTTv5)
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("k1", "v1"), ("k2", "v2")]
    properties.ContentType = "text/plain"
    properties.ResponseTopic = "props/reply"
    properties.CorrelationData = b"corr-1"
    properties.MessageExpiryInterval = 60
    publisher.publish("props/t", b"hello", qos=1, properties=properties)
    message = subscriber.receive()
    got = message.properties
    assert got.UserProperty == [("k1", "v1"), ("k2", "v2")]
    assert got.ContentType == "text/plain"
    assert got.ResponseTopic == "props/reply"
    assert got.CorrelationData == b"corr-1"
    assert 0 < got.MessageExpiryInterval <= 60
    subscriber.close()
    publisher.close()


def test_v5_topic_alias():
    subscriber = connected(mqtt.MQTTv5)
    subscriber.subscribe("alias/t", 0)
    publisher = connected(mqtt.MQTTv5)
    first = Properties(PacketTypes.PUBLISH)
    first.TopicAlias = 3
    publisher.publish("alias/t", b"1", properties=first)
    publisher.publish("", b"2", properties=first)
    assert [subscriber.receive().payload for _ in range(2)] == [b"1", b"2"]
    subscriber.close()
    publisher.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_kept_session_gets_what_was_published_while_away(version):
    client_id = f"keeper-{version}"
    properties = None
    if version == mqtt.MQTTv5:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 60
    keeper = Peer(version, client_id=client_id, clean=False)
    keeper.connect(properties)
    keeper.subscribe(f"keep/{version}", 1)
    keeper.close()
    publisher = connected(version)
    publisher.publish(f"keep/{version}", b"while away", qos=1)
    back = Peer(version, client_id=client_id, clean=False)
    flags, rc, _ = back.connect(properties)
    assert rc == 0
    assert flags.session_present
    assert back.receive().payload == b"while away"
    back.close()
    publisher.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_second_connection_takes_the_client_id_over(version):
    first = connected(version, client_id=f"twin-{version}")
    # paho reconnects on its own; taken over, the first client must stay away.
    first.client.reconnect_delay_set(min_delay=60, max_delay=60)
    disconnected = queue.Queue()
    first.client.on_disconnect = lambda c, u, flags, rc, props: disconnected.put(rc)
    second = connected(version, client_id=f"twin-{version}")
    rc = disconnected.get(timeout=WAIT)
    if version == mqtt.MQTTv5:
        assert rc.value == 0x8E
    first.client.loop_stop()
    second.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_credentials(version):
    good = Peer(version, password="secret")
    assert good.connect()[1] == 0
    good.close()
    bad = Peer(version, password="nope")
    _, rc, _ = bad.connect()
    assert rc != 0
    bad.client.loop_stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_tls_listener(version):
    subscriber = connected(version, tls=True)
    subscriber.subscribe("tls/t", 1)
    publisher = connected(version)
    publisher.publish("tls/t", b"over tls", qos=1)
    message = subscriber.receive()
    assert (message.topic, message.payload) == ("tls/t", b"over tls")
    subscriber.close()
    publisher.close()


def test_v5_will_delay_and_its_cancellation():
    watcher = connected(mqtt.MQTTv5)
    watcher.subscribe("delayed/#", 1)
    properties = Properties(PacketTypes.WILLMESSAGE)
    # Long enough that the reconnect below lands within it on a loaded CI machine (1 s did not, once).
    properties.WillDelayInterval = 3
    # The will waits for its delay only while the session lasts (a session expiry of 0 would send it at once).
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 10

    # Gone for good: the will comes after its delay.
    gone = Peer(mqtt.MQTTv5, will=("delayed/gone", b"late", 1, False, properties))
    assert gone.connect(session)[1] == 0
    dropped_at = time.time()
    gone.drop()
    message = watcher.receive(WAIT + 3)
    assert (message.topic, message.payload) == ("delayed/gone", b"late")
    assert time.time() - dropped_at >= 2.9

    # Back within the delay with the same client id: no will.
    flaky = Peer(mqtt.MQTTv5, client_id="flaky", will=("delayed/flaky", b"late", 1, False, properties))
    assert flaky.connect(session)[1] == 0
    flaky.drop()
    back = connected(mqtt.MQTTv5, client_id="flaky")
    with pytest.raises(queue.Empty):
        watcher.messages.get(timeout=4.0)
    back.close()
    watcher.close()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [1, 2])
def test_many_in_flight_arrive_in_order(version, qos):
    """More messages than the in-flight window (receive_maximum = 64): gatewayd sends them as acknowledgements free
    the window, in order."""
    subscriber = connected(version)
    subscriber.subscribe(f"many/{version}/{qos}", qos)
    publisher = connected(version)
    infos = [
        publisher.client.publish(f"many/{version}/{qos}", str(n).encode(), qos=qos) for n in range(300)
    ]
    for info in infos:
        info.wait_for_publish(WAIT)
    got = [int(subscriber.receive().payload) for _ in range(300)]
    assert got == list(range(300))
    subscriber.nothing()
    subscriber.close()
    publisher.close()


def test_v5_subscription_identifiers_come_back():
    subscriber = connected(mqtt.MQTTv5)
    properties = Properties(PacketTypes.SUBSCRIBE)
    properties.SubscriptionIdentifier = 7
    subscriber.client.subscribe("subid/+", 1, properties=properties)
    subscriber.subacks.get(timeout=WAIT)
    publisher = connected(mqtt.MQTTv5)
    publisher.publish("subid/x", b"tagged", qos=1)
    message = subscriber.receive()
    assert message.properties.SubscriptionIdentifier == [7]
    subscriber.close()
    publisher.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_overlapping_subscriptions_get_one_copy(version):
    """A message matching two of a client's filters arrives once, at the higher QoS, with (5.0) both
    subscription identifiers."""
    subscriber = connected(version)
    for n, (topic, qos) in enumerate([("overlap/+", 1), ("overlap/#", 0), ("overlap/x", 2)], start=1):
        if version == mqtt.MQTTv5:
            properties = Properties(PacketTypes.SUBSCRIBE)
            properties.SubscriptionIdentifier = n
            subscriber.client.subscribe(topic, qos, properties=properties)
            subscriber.subacks.get(timeout=WAIT)
        else:
            subscriber.subscribe(topic, qos)
    publisher = connected(version)
    publisher.publish("overlap/x", b"once", qos=2)
    message = subscriber.receive()
    assert message.payload == b"once"
    assert message.qos == 2
    if version == mqtt.MQTTv5:
        assert sorted(message.properties.SubscriptionIdentifier) == [1, 2, 3]
    subscriber.nothing()
    subscriber.close()
    publisher.close()


def test_v5_retain_as_published_keeps_the_flag_on_live_messages():
    keeping = connected(mqtt.MQTTv5)
    keeping.client.subscribe("rap/x", options=mqtt.SubscribeOptions(qos=1, retainAsPublished=True))
    keeping.subacks.get(timeout=WAIT)
    clearing = connected(mqtt.MQTTv5)
    clearing.subscribe("rap/x", 1)
    publisher = connected(mqtt.MQTTv5)
    publisher.publish("rap/x", b"retained", qos=1, retain=True)
    publisher.publish("rap/x", b"plain", qos=1)
    kept = [keeping.receive(), keeping.receive()]
    assert [(m.payload, m.retain) for m in kept] == [(b"retained", True), (b"plain", False)]
    cleared = [clearing.receive(), clearing.receive()]
    assert [(m.payload, m.retain) for m in cleared] == [(b"retained", False), (b"plain", False)]
    publisher.publish("rap/x", b"", qos=1, retain=True)
    for peer in (keeping, clearing, publisher):
        peer.close()


def test_v311_live_messages_never_carry_retain():
    subscriber = connected(mqtt.MQTTv311)
    subscriber.subscribe("rap311/x", 1)
    publisher = connected(mqtt.MQTTv311)
    publisher.publish("rap311/x", b"retained", qos=1, retain=True)
    message = subscriber.receive()
    assert (message.payload, message.retain) == (b"retained", False)
    publisher.publish("rap311/x", b"", qos=1, retain=True)
    subscriber.close()
    publisher.close()
