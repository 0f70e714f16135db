// stompit (npm) over plain TCP against gatewayd's stomp.tcp listener. stompit is strict: it destroys the
// connection on a MESSAGE for an unknown subscription, a RECEIPT with an unknown id or a body, a CONNECTED with a
// body, an unknown server command or any ERROR, so every error it reports fails the test.
// Run by crates/gateway/tests/stomp.rs (support/node.rs) with STOMP_ADDRESS and GATEWAYD_ADMIN set.
"use strict";

const assert = require("node:assert/strict");
const stompit = require("stompit");

const [host, port] = process.env.STOMP_ADDRESS.split(":");
const admin = process.env.GATEWAYD_ADMIN;

function deadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function waitFor(what, check) {
  const until = Date.now() + 10000;
  for (;;) {
    const topics = await (await fetch(`http://${admin}/api/topics`)).json();
    if (check(topics)) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const group = (all, name) => all.find((t) => t.topic === name)?.group;

const errors = [];

function connect() {
  const connected = new Promise((resolve, reject) => {
    stompit.connect(
      {
        host,
        port: Number(port),
        connectHeaders: { host: "/", login: "guest", passcode: "guest", "heart-beat": "0,0" },
      },
      (error, client) => {
        if (error) return reject(error);
        client.on("error", (e) => errors.push(e));
        resolve(client);
      },
    );
  });
  return deadline(connected, 5000, "CONNECTED");
}

/// Messages of one subscription, in arrival order, with their bodies read as bytes.
function collector() {
  const items = [];
  let waiter = null;
  const listener = (error, message) => {
    if (error) return errors.push(error);
    const chunks = [];
    message.on("data", (c) => chunks.push(c));
    message.on("end", () => {
      items.push({ message, body: Buffer.concat(chunks) });
      if (waiter) {
        const w = waiter;
        waiter = null;
        w();
      }
    });
  };
  const next = () =>
    items.length
      ? Promise.resolve(items.shift())
      : deadline(new Promise((r) => (waiter = r)).then(() => items.shift()), 5000, "MESSAGE");
  return { listener, next };
}

function sendWithReceipt(client, headers, body) {
  return deadline(
    new Promise((resolve, reject) => {
      const frame = client.send(headers, { onReceipt: resolve, onError: reject });
      frame.write(body);
      frame.end();
    }),
    5000,
    "RECEIPT for SEND",
  );
}

function ackWithReceipt(client, message) {
  return deadline(
    new Promise((resolve, reject) => client.ack(message, {}, { onReceipt: resolve, onError: reject })),
    5000,
    "RECEIPT for ACK",
  );
}

function disconnect(client) {
  return deadline(
    new Promise((resolve, reject) => client.disconnect((error) => (error ? reject(error) : resolve()))),
    5000,
    "DISCONNECT",
  );
}

async function main() {
  const consumer = await connect();
  const got = collector();
  consumer.subscribe({ destination: "/queue/stompit.work", ack: "client" }, got.listener);
  await waitFor("the stompit consumer", (all) => group(all, "stompit.work")?.members === 1);

  const producer = await connect();
  const binary = Buffer.from([0x00, 0x01, 0xff, 0x00, 0x62, 0x69, 0x6e, 0x00]);
  await sendWithReceipt(
    producer,
    {
      destination: "/queue/stompit.work",
      "content-type": "application/octet-stream",
      "content-length": binary.length,
      "x-client": "stompit",
    },
    binary,
  );
  const first = await got.next();
  assert.deepEqual(first.body, binary);
  assert.equal(first.message.headers.destination, "/queue/stompit.work");
  assert.equal(first.message.headers["content-type"], "application/octet-stream");
  assert.equal(first.message.headers["x-client"], "stompit");
  assert.ok(first.message.headers.ack, "1.2 MESSAGE in client mode carries ack");
  await waitFor("one unacked", (all) => group(all, "stompit.work")?.unacked === 1);

  // client mode is cumulative: acking the second message settles both.
  await sendWithReceipt(producer, { destination: "/queue/stompit.work" }, "text body");
  const second = await got.next();
  assert.equal(second.body.toString("utf8"), "text body");
  await ackWithReceipt(consumer, second.message);
  await waitFor("everything acked", (all) => group(all, "stompit.work")?.unacked === 0);

  await disconnect(producer);
  await disconnect(consumer);
  assert.deepEqual(errors, [], "stompit saw no protocol error");
  console.log("stompit: passed");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
