//! The Redis store, for many replicas (`ROOST_REDIS_URL`: `redis://` or
//! `rediss://` over rustls, with an ACL user and password in the URL).
//! One reconnecting multiplexed connection for commands and one pub/sub
//! connection per watch. Every key starts with `roost:<deployment.id>:`.
//!
//! | what | key | how |
//! |---|---|---|
//! | revocations | `revoked` (sorted set, score: until) | `ZADD` + `PUBLISH revocations` |
//! | sign-in states | `once:<key>` | `SET NX PX` |
//! | activity | `activity` (sorted set, score: ms) | `ZADD GT`, read with `ZMSCORE` |
//! | leases | `lease:<name>` | `SET NX PX`, renewed by its holder (script) |
//! | slots | `slots:<name>` (sorted set, score: until, ms) | script: drop expired, count, add |
//! | profile choices | `profiles` (hash: slug → profile) | `HSET` / `HDEL` |
//! | audit trail | `audit` (stream) | `XADD MAXLEN ~`, read with `XREVRANGE` |
//! | quota use | `usage:<period start>` (hash: `<slug>:run`, `<slug>:cpu`) | `HINCRBYFLOAT`, expires after two periods |

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{Revocation, RevocationStream, Store, StoreError, StoreHealth, Usage, AUDIT_KEEP};
use crate::clock::now_secs;

/// How long a command may take before the store counts as down.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const HOLD_LEASE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0";

const TAKE_SLOT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0";

const SLOTS_TAKEN: &str = r"
local t = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], '(' .. (t[1] * 1000 + math.floor(t[2] / 1000)), '+inf')";

pub struct Shared {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    health: StoreHealth,
    hold_lease: Script,
    take_slot: Script,
    slots_taken: Script,
}

/// `url` with its password replaced, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

impl Shared {
    /// Connects (and authenticates) once, so a wrong password or an
    /// unreachable server is reported at start.
    pub async fn connect(url: &str, deployment: &str) -> Result<Shared, StoreError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(Shared {
            client,
            conn,
            prefix: format!("roost:{deployment}:"),
            health: StoreHealth::default(),
            hold_lease: Script::new(HOLD_LEASE),
            take_slot: Script::new(TAKE_SLOT),
            slots_taken: Script::new(SLOTS_TAKEN),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Notes the outcome in the store's health.
    fn seen<T>(&self, result: redis::RedisResult<T>) -> Result<T, StoreError> {
        match result {
            Ok(v) => {
                self.health.up();
                Ok(v)
            }
            Err(e) => {
                self.health.down(&e);
                Err(e.into())
            }
        }
    }
}

impl Store for Shared {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> &StoreHealth {
        &self.health
    }

    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let line = revocation.encode();
            let mut conn = self.conn.clone();
            let result = redis::pipe()
                .atomic()
                .zadd(self.key("revoked"), &line, revocation.until())
                .ignore()
                .zrembyscore(self.key("revoked"), "-inf", now_secs())
                .ignore()
                .publish(self.key("revocations"), &line)
                .ignore()
                .query_async::<()>(&mut conn)
                .await;
            self.seen(result)
        }
        .boxed()
    }

    fn revocations(&self) -> BoxFuture<'_, Result<Vec<Revocation>, StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<Vec<String>> = conn
                .zrangebyscore(self.key("revoked"), format!("({}", now_secs()), "+inf")
                .await;
            Ok(self
                .seen(result)?
                .iter()
                .filter_map(|l| Revocation::decode(l))
                .collect())
        }
        .boxed()
    }

    fn watch(&self) -> BoxFuture<'_, Result<RevocationStream, StoreError>> {
        async move {
            let subscribe = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(self.key("revocations")).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, subscribe).await {
                Ok(r) => self.seen(r)?,
                Err(_) => {
                    let e = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
                    return Err(self.seen::<()>(Err(e)).unwrap_err());
                }
            };
            let stream = pubsub
                .into_on_message()
                .filter_map(|msg| async move { msg.get_payload::<String>().ok().and_then(|l| Revocation::decode(&l)) })
                .boxed();
            Ok(stream)
        }
        .boxed()
    }

    fn use_once<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<Option<String>> = redis::cmd("SET")
                .arg(self.key(&format!("once:{key}")))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut conn)
                .await;
            Ok(self.seen(result)?.is_some())
        }
        .boxed()
    }

    fn record_activity<'a>(&'a self, seen: &'a [(Arc<str>, u64)]) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            if seen.is_empty() {
                return Ok(());
            }
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(self.key("activity")).arg("GT");
            for (slug, ms) in seen {
                cmd.arg(*ms).arg(slug.as_ref());
            }
            let mut conn = self.conn.clone();
            let result = cmd.query_async::<()>(&mut conn).await;
            self.seen(result)
        }
        .boxed()
    }

    fn last_activity<'a>(&'a self, slugs: &'a [Arc<str>]) -> BoxFuture<'a, Result<Vec<Option<u64>>, StoreError>> {
        async move {
            if slugs.is_empty() {
                return Ok(Vec::new());
            }
            let mut cmd = redis::cmd("ZMSCORE");
            cmd.arg(self.key("activity"));
            for slug in slugs {
                cmd.arg(slug.as_ref());
            }
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<Vec<Option<f64>>> = cmd.query_async(&mut conn).await;
            Ok(self.seen(result)?.into_iter().map(|s| s.map(|ms| ms as u64)).collect())
        }
        .boxed()
    }

    fn hold_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<i64> = self
                .hold_lease
                .key(self.key(&format!("lease:{name}")))
                .arg(holder)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut conn)
                .await;
            Ok(self.seen(result)? == 1)
        }
        .boxed()
    }

    fn take_slot<'a>(
        &'a self,
        name: &'a str,
        token: &'a str,
        max: u32,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<i64> = self
                .take_slot
                .key(self.key(&format!("slots:{name}")))
                .arg(token)
                .arg(max)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut conn)
                .await;
            Ok(self.seen(result)? == 1)
        }
        .boxed()
    }

    fn release_slot<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<()> = conn.zrem(self.key(&format!("slots:{name}")), token).await;
            self.seen(result)
        }
        .boxed()
    }

    fn slots_taken<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u32, StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<u32> = self
                .slots_taken
                .key(self.key(&format!("slots:{name}")))
                .invoke_async(&mut conn)
                .await;
            self.seen(result)
        }
        .boxed()
    }

    fn profile<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result = conn.hget(self.key("profiles"), slug).await;
            self.seen(result)
        }
        .boxed()
    }

    fn set_profile<'a>(&'a self, slug: &'a str, profile: Option<&'a str>) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result = match profile {
                Some(p) => conn.hset(self.key("profiles"), slug, p).await,
                None => conn.hdel(self.key("profiles"), slug).await,
            };
            self.seen(result)
        }
        .boxed()
    }

    fn append_audit<'a>(&'a self, record: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<()> = redis::cmd("XADD")
                .arg(self.key("audit"))
                .arg("MAXLEN")
                .arg("~")
                .arg(AUDIT_KEEP)
                .arg("*")
                .arg("r")
                .arg(record)
                .query_async(&mut conn)
                .await;
            self.seen(result)
        }
        .boxed()
    }

    fn recent_audit(&self, n: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        async move {
            let mut conn = self.conn.clone();
            // Each entry: its id, then its fields and values in one list.
            let result: redis::RedisResult<Vec<(String, Vec<String>)>> = redis::cmd("XREVRANGE")
                .arg(self.key("audit"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(n)
                .query_async(&mut conn)
                .await;
            Ok(self
                .seen(result)?
                .into_iter()
                .filter_map(|(_, fields)| match fields.as_slice() {
                    [name, record] if name == "r" => Some(record.clone()),
                    _ => None,
                })
                .collect())
        }
        .boxed()
    }

    fn add_usage<'a>(&'a self, slug: &'a str, window: u64, used: Usage) -> BoxFuture<'a, Result<Usage, StoreError>> {
        async move {
            let key = self.key(&format!("usage:{window}"));
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<(f64, f64)> = redis::pipe()
                .atomic()
                .cmd("HINCRBYFLOAT")
                .arg(&key)
                .arg(format!("{slug}:run"))
                .arg(used.run_secs)
                .cmd("HINCRBYFLOAT")
                .arg(&key)
                .arg(format!("{slug}:cpu"))
                .arg(used.cpu_secs)
                .cmd("EXPIREAT")
                .arg(&key)
                // Kept two periods past its start, and two days more (the
                // period is at least `now - window` long).
                .arg(now_secs() + 2 * now_secs().saturating_sub(window) + 2 * 86_400)
                .ignore()
                .query_async(&mut conn)
                .await;
            let (run_secs, cpu_secs) = self.seen(result)?;
            Ok(Usage { run_secs, cpu_secs })
        }
        .boxed()
    }

    fn usage<'a>(&'a self, slugs: &'a [Arc<str>], window: u64) -> BoxFuture<'a, Result<Vec<Usage>, StoreError>> {
        async move {
            if slugs.is_empty() {
                return Ok(Vec::new());
            }
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(self.key(&format!("usage:{window}")));
            for slug in slugs {
                cmd.arg(format!("{slug}:run")).arg(format!("{slug}:cpu"));
            }
            let mut conn = self.conn.clone();
            let result: redis::RedisResult<Vec<Option<f64>>> = cmd.query_async(&mut conn).await;
            let values = self.seen(result)?;
            Ok(values
                .chunks(2)
                .map(|pair| Usage {
                    run_secs: pair.first().copied().flatten().unwrap_or(0.0),
                    cpu_secs: pair.get(1).copied().flatten().unwrap_or(0.0),
                })
                .collect())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            redacted("redis://roost:hunter2@127.0.0.1:6379/0"),
            "redis://roost:***@127.0.0.1:6379/0"
        );
        assert_eq!(redacted("rediss://redis.internal:6380"), "rediss://redis.internal:6380");
        assert_eq!(redacted("not a url hunter2"), "(not a URL)");
    }
}
