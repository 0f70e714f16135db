// mqtt.js (npm) over gatewayd's MQTT WebSocket listener, at MQTT 3.1.1 and 5.0: subscribe, QoS 0/1/2 round
// trips, and a retained message. Run by crates/gateway/tests/mqtt.rs with MQTT_WS_URL set.

const mqtt = require("mqtt");
const assert = require("assert");

const URL = process.env.MQTT_WS_URL;
const WAIT = 5000;

function connect(protocolVersion) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(URL, { protocolVersion, reconnectPeriod: 0, connectTimeout: WAIT });
    client.once("connect", () => resolve(client));
    client.once("error", reject);
  });
}

function nextMessage(client) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no message")), WAIT);
    client.once("message", (topic, payload, packet) => {
      clearTimeout(timer);
      resolve({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain });
    });
  });
}

async function roundTrips(version) {
  const subscriber = await connect(version);
  const publisher = await connect(version);
  const granted = await subscriber.subscribeAsync(`js/${version}/#`, { qos: 2 });
  assert.strictEqual(granted[0].qos, 2);
  for (const qos of [0, 1, 2]) {
    const received = nextMessage(subscriber);
    await publisher.publishAsync(`js/${version}/q${qos}`, `m${qos}`, { qos });
    const message = await received;
    assert.deepStrictEqual(message, { topic: `js/${version}/q${qos}`, payload: `m${qos}`, qos, retain: false });
  }
  await publisher.publishAsync(`js/${version}/retained`, "kept", { qos: 1, retain: true });
  const late = await connect(version);
  const retained = nextMessage(late);
  await late.subscribeAsync(`js/${version}/retained`, { qos: 1 });
  const message = await retained;
  assert.deepStrictEqual(message, { topic: `js/${version}/retained`, payload: "kept", qos: 1, retain: true });
  for (const client of [subscriber, publisher, late]) {
    await client.endAsync();
  }
}

(async () => {
  await roundTrips(4);
  await roundTrips(5);
  console.log("mqtt.js over WebSocket: passed");
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
