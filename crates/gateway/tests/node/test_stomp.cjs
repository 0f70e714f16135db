// @stomp/stompjs over WebSocket against gatewayd's stomp.ws listener, plus raw WebSocket framing cases.
// Run by crates/gateway/tests/stomp.rs (support/node.rs) with STOMP_WS_URL and GATEWAYD_ADMIN set.
"use strict";

const assert = require("node:assert/strict");
const { Client } = require("@stomp/stompjs");
const WebSocket = require("ws");

const url = process.env.STOMP_WS_URL;
const admin = process.env.GATEWAYD_ADMIN;
const PROTOCOLS = ["v12.stomp", "v11.stomp", "v10.stomp"];

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

const topic = (all, name) => all.find((t) => t.topic === name);

function connect() {
  let socket;
  const client = new Client({
    webSocketFactory: () => (socket = new WebSocket(url, PROTOCOLS)),
    reconnectDelay: 0,
    heartbeatIncoming: 1000,
    heartbeatOutgoing: 1000,
    debug: () => {},
  });
  const connected = new Promise((resolve, reject) => {
    client.onConnect = (frame) => resolve(frame);
    client.onStompError = (frame) => reject(new Error(frame.headers.message));
    client.onWebSocketError = (e) => reject(e);
  });
  client.activate();
  return deadline(connected, 5000, "CONNECTED").then((frame) => ({ client, frame, socket }));
}

function nextMessage(queue) {
  return deadline(
    new Promise((resolve) => (queue.waiter = resolve)).then(() => queue.items.shift()),
    5000,
    "MESSAGE",
  );
}

function inbox() {
  const queue = { items: [], waiter: null };
  queue.push = (m) => {
    queue.items.push(m);
    if (queue.waiter) {
      const w = queue.waiter;
      queue.waiter = null;
      w();
    }
  };
  queue.next = () => (queue.items.length ? Promise.resolve(queue.items.shift()) : nextMessage(queue));
  return queue;
}

async function stompjsPubSub() {
  const { client, frame, socket } = await connect();
  assert.equal(frame.headers.version, "1.2");
  assert.equal(socket.protocol, "v12.stomp");
  const got = inbox();
  client.subscribe("/topic/js.chat", (m) => got.push(m), { id: "chat" });
  await waitFor("the topic subscription", (all) => topic(all, "js.chat")?.fanout_subscribers === 1);

  const receipt = new Promise((resolve) => client.watchForReceipt("r-1", resolve));
  client.publish({ destination: "/topic/js.chat", body: "héllo", headers: { receipt: "r-1", "x-tag": "a:b" } });
  await deadline(receipt, 5000, "RECEIPT");
  const text = await got.next();
  assert.equal(text.body, "héllo");
  assert.equal(text.headers["x-tag"], "a:b");
  assert.equal(text.headers.destination, "/topic/js.chat");

  const binary = new Uint8Array([0, 1, 2, 0, 255, 254]);
  client.publish({ destination: "/topic/js.chat", binaryBody: binary, headers: { "content-type": "application/octet-stream" } });
  const bin = await got.next();
  assert.deepEqual(Array.from(bin.binaryBody), Array.from(binary));
  assert.equal(bin.headers["content-type"], "application/octet-stream");
  await client.deactivate();
}

async function stompjsQueueNackRedelivers() {
  const { client } = await connect();
  const got = inbox();
  client.subscribe("/queue/js.jobs", (m) => got.push(m), { id: "jobs", ack: "client-individual" });
  await waitFor("the queue member", (all) => topic(all, "js.jobs")?.group?.members === 1);
  client.publish({ destination: "/queue/js.jobs", body: "job" });
  const first = await got.next();
  assert.equal(first.headers.redelivered, undefined);
  first.nack();
  const again = await got.next();
  assert.equal(again.body, "job");
  assert.equal(again.headers.redelivered, "true");
  again.ack();
  await waitFor("the ack", (all) => topic(all, "js.jobs")?.group?.unacked === 0);
  await client.deactivate();
}

function rawSocket() {
  const ws = new WebSocket(url, ["v12.stomp"]);
  const messages = [];
  let waiter = null;
  ws.on("message", (data, isBinary) => {
    messages.push({ data: Buffer.from(data), isBinary });
    if (waiter) {
      const w = waiter;
      waiter = null;
      w();
    }
  });
  const next = (what) =>
    messages.length
      ? Promise.resolve(messages.shift())
      : deadline(new Promise((r) => (waiter = r)).then(() => messages.shift()), 5000, what);
  const open = new Promise((resolve, reject) => {
    ws.on("open", resolve);
    ws.on("error", reject);
  });
  return { ws, next, open };
}

async function rawFramingAcrossMessages() {
  const { ws, next, open } = rawSocket();
  await deadline(open, 5000, "WebSocket open");
  // One frame split over two messages, and the rest of it plus a whole SUBSCRIBE in one message.
  ws.send("CONNECT\naccept-ver");
  ws.send("sion:1.2\nhost:x\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/js.raw\n\n\0");
  const connected = await next("CONNECTED");
  assert.equal(connected.isBinary, false);
  assert.match(connected.data.toString(), /^CONNECTED\n/);
  await waitFor("the raw subscription", (all) => topic(all, "js.raw")?.fanout_subscribers === 1);
  const body = Buffer.from([0xff, 0x00, 0xfe]);
  ws.send(Buffer.concat([Buffer.from("SEND\ndestination:/topic/js.raw\ncontent-length:3\n\n"), body, Buffer.from([0])]));
  let message = await next("binary MESSAGE");
  while (message.data.equals(Buffer.from("\n"))) message = await next("binary MESSAGE");
  assert.equal(message.isBinary, true, "a non-UTF-8 body goes out as a binary message");
  const text = message.data.toString("latin1");
  assert.match(text, /^MESSAGE\n/);
  assert.ok(message.data.includes(Buffer.concat([Buffer.from("\n\n"), body, Buffer.from([0])])));
  ws.send("SEND\ndestination:/topic/js.raw\n\nplain text\0");
  let textMessage = await next("text MESSAGE");
  assert.equal(textMessage.isBinary, false);
  assert.match(textMessage.data.toString(), /plain text\0/);
  ws.close();
}

(async () => {
  const tests = [stompjsPubSub, stompjsQueueNackRedelivers, rawFramingAcrossMessages];
  for (const test of tests) {
    await test();
    console.log(`ok ${test.name}`);
  }
  console.log(`${tests.length} passed`);
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
