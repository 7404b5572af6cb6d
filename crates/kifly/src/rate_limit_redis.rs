//! The shared rate limiter for cluster mode: the GCRA step of [`crate::rate_limit`] as one atomic Lua
//! script in Redis, using Redis's clock, so a token's limit holds across all nodes together.
//!
//! If Redis cannot be reached (or answers slower than [`REDIS_TIMEOUT`]) the node keeps serving and
//! limits with its own in-process limiter until Redis answers again. We chose availability over a
//! strict global limit: refusing all traffic because the limiter's store is down would turn a cache
//! outage into a full outage, and the fallback still bounds each token to N × the limit across N
//! nodes. Each switch is logged once, and `kifly_rate_limit_fallback_total` counts fallback decisions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::config::RateSetting;
use crate::rate_limit::{Decision, InProcessLimiter, RateLimiter, decide};

/// Longest a request waits for the limiter before falling back.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// KEYS[1]: bucket; ARGV[1]: period (µs); ARGV[2]: limit.
/// Returns {allowed (1/0), µs the TAT is ahead of now (after the request if allowed)}.
const GCRA_LUA: &str = r"
local period = tonumber(ARGV[1])
local interval = math.floor(period / tonumber(ARGV[2]))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now <= period then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  return {1, new_tat - now}
end
return {0, tat - now}
";

pub struct RedisLimiter {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    fallback: InProcessLimiter,
    degraded: AtomicBool,
}

impl RedisLimiter {
    /// Validates the URL; the connection is made on first use (and re-made by the manager after
    /// failures), so a node starts even while Redis is down.
    pub fn new(url: &str) -> Result<RedisLimiter, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis_url: {e}"))?;
        Ok(RedisLimiter {
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(GCRA_LUA),
            fallback: InProcessLimiter::default(),
            degraded: AtomicBool::new(false),
        })
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        self.connection
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
    }

    async fn shared_check(&self, key: &str, rate: RateSetting) -> redis::RedisResult<Decision> {
        let mut conn = self.connection().await?;
        let period_us = i64::from(rate.period_secs) * 1_000_000;
        let (allowed, ahead_us): (i64, i64) = self
            .script
            .key(format!("kifly:rl:{key}"))
            .arg(period_us)
            .arg(rate.limit)
            .invoke_async(&mut conn)
            .await?;
        Ok(decide(allowed == 1, i128::from(ahead_us) * 1000, rate))
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, rate: RateSetting) -> Decision {
        let outcome = tokio::time::timeout(REDIS_TIMEOUT * 2, self.shared_check(key, rate)).await;
        match outcome {
            Ok(Ok(decision)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("redis rate limiter reachable again; limits are shared across nodes");
                }
                decision
            }
            failure => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    let reason = match failure {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    tracing::warn!(error = %reason, "redis rate limiter unreachable; limiting per node until it returns");
                }
                metrics::counter!("kifly_rate_limit_fallback_total").increment(1);
                self.fallback.check(key, rate).await
            }
        }
    }
}
