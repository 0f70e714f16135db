//! Writing in upstream MessageLoop's Redis layout (`messageloop_layout = "ml2"`): the shared epoch
//! (`SET ml2:broker:epoch <uuid> NX`, then `GET`), and a local publish on a MessageLoop channel as an upstream node
//! publishes it. On a history topic one script runs `INCR ml2:stream:seq:<channel>`, `XADD ml2:stream:<channel>
//! MAXLEN ~ <max_messages> * s <seq> data <json>` and `PEXPIRE` on both keys (the rule's `ttl`, else upstream's
//! 24 h), sets `ml2:stream:retained:<channel>` to the first retained offset and publishes the JSON with `off` and
//! `seq` on `ml2:pubsub:<channel>`. Upstream does the last two after its script; inside it, gatewayd's own
//! messages reach Pub/Sub in stream order. Without history only the Pub/Sub copy is sent (no `off`).

use std::time::Duration;

use core_bus::config::HistoryPolicy;
use core_bus::Envelope;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::Value;

use super::ml2_keys::{self, EPOCH_KEY};
use super::ml2_message::Data;

/// Upstream's history lifetime when a rule sets none.
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Appends and publishes one message: KEYS seq counter, stream, retained marker; ARGV max length, data JSON, TTL in
/// ms, Pub/Sub channel. Returns the seq and the entry id. Lua numbers are doubles, so `offset` computes
/// `(ms << 20) | seq` (above 2^53) in decimal, seven digits at a time.
const APPEND: &str = r#"
local function offset(id)
  local dash = string.find(id, '-', 1, true)
  local ms = string.sub(id, 1, dash - 1)
  local carry = tonumber(string.sub(id, dash + 1))
  local parts = {}
  local i = #ms
  while i > 0 or carry > 0 do
    local chunk = 0
    if i > 0 then
      chunk = tonumber(string.sub(ms, math.max(1, i - 6), i))
      i = i - 7
    end
    local v = chunk * 1048576 + carry
    local low = v % 10000000
    carry = (v - low) / 10000000
    table.insert(parts, 1, string.format('%07d', low))
  end
  local text = string.gsub(table.concat(parts), '^0+', '')
  if text == '' then text = '0' end
  return text
end
local seq = redis.call('INCR', KEYS[1])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 's', seq, 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
redis.call('SET', KEYS[3], offset(first[1][1]), 'PX', ARGV[3])
local live = string.sub(ARGV[2], 1, -2) .. ',"off":' .. offset(id) .. ',"seq":' .. seq .. '}'
redis.call('PUBLISH', ARGV[4], live)
return {seq, id}
"#;

/// The layout's shared state on one node.
pub(super) struct Ml2 {
    /// The bus epoch and upstream's epoch text, once read from Redis.
    epoch: Mutex<Option<(u64, String)>>,
    /// This node's id, written into every message's `id`.
    node: u64,
}

impl Ml2 {
    pub(super) fn new(node: u64) -> Ml2 {
        Ml2 {
            epoch: Mutex::new(None),
            node,
        }
    }

    pub(super) fn epoch(&self) -> Option<(u64, String)> {
        self.epoch.lock().clone()
    }

    /// Reads (creating it if no node did) the shared epoch.
    pub(super) async fn read_epoch(
        &self,
        connection: &mut MultiplexedConnection,
    ) -> redis::RedisResult<(u64, String)> {
        redis::cmd("SET")
            .arg(EPOCH_KEY)
            .arg(ml2_keys::new_epoch())
            .arg("NX")
            .query_async::<Value>(connection)
            .await?;
        let name: String = redis::cmd("GET")
            .arg(EPOCH_KEY)
            .query_async(connection)
            .await?;
        let epoch = (ml2_keys::epoch_number(&name), name);
        *self.epoch.lock() = Some(epoch.clone());
        Ok(epoch)
    }

    /// Stores (with `history`) and publishes a local message of `channel`.
    pub(super) async fn publish(
        &self,
        connection: &mut MultiplexedConnection,
        envelope: &Envelope,
        channel: &str,
        history: Option<&HistoryPolicy>,
    ) -> anyhow::Result<()> {
        let epoch = self
            .epoch()
            .ok_or_else(|| anyhow::anyhow!("the ml2 epoch is not known yet"))?;
        let data = Data::from_envelope(envelope, channel, &epoch.1, self.node);
        if let Some(policy) = history {
            let ttl = if policy.ttl.is_zero() {
                DEFAULT_TTL
            } else {
                policy.ttl
            };
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            redis::cmd("EVAL")
                .arg(APPEND)
                .arg(3)
                .arg(ml2_keys::seq_key(channel))
                .arg(ml2_keys::stream(channel))
                .arg(ml2_keys::retained_key(channel))
                .arg(policy.max_messages.max(1))
                .arg(data.to_json())
                .arg(ttl_ms)
                .arg(ml2_keys::pubsub(channel))
                .query_async::<Value>(connection)
                .await?;
            return Ok(());
        }
        redis::cmd("PUBLISH")
            .arg(ml2_keys::pubsub(channel))
            .arg(data.to_json())
            .query_async::<i64>(connection)
            .await?;
        Ok(())
    }
}
