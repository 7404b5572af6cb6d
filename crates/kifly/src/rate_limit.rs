//! Per-token rate limits (GCRA), behind a trait so cluster mode can share them through Redis.
//!
//! GCRA keeps one number per key, the "theoretical arrival time" (TAT). A limit of N requests per P
//! seconds emits one request every T = P/N; a request is allowed when it would not push the TAT more
//! than P ahead of now. This allows a burst of N, then one every T, and gives exact values for the
//! contract's headers: `remaining` is how many more fit now, `reset` is how long until the bucket is
//! full again, `Retry-After` how long until the next request fits. [`gcra`] and [`decide`] hold the
//! arithmetic; the Redis limiter (`rate_limit_redis`) runs the same step in a Lua script so that an
//! in-process and a shared limiter agree to the request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::auth::AuthState;
use crate::config::RateSetting;
use crate::error::ApiError;

/// The outcome of one check, with everything the headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the window is full again.
    pub reset_secs: u64,
    /// Whole seconds until a request would be allowed (0 when allowed).
    pub retry_after_secs: u64,
}

/// A shared or local store of rate-limit state.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    async fn check(&self, key: &str, rate: RateSetting) -> Decision;
}

/// The GCRA step: given the stored TAT (ns since the epoch, 0 if none) and now, returns the decision
/// and the TAT to store (unchanged when denied).
pub fn gcra(stored_tat_ns: i128, now_ns: i128, rate: RateSetting) -> (Decision, i128) {
    let period = period_ns(rate);
    let interval = period / i128::from(rate.limit);
    let tat = stored_tat_ns.max(now_ns);
    let new_tat = tat + interval;
    if new_tat - now_ns <= period {
        (decide(true, new_tat - now_ns, rate), new_tat)
    } else {
        (decide(false, tat - now_ns, rate), stored_tat_ns)
    }
}

fn period_ns(rate: RateSetting) -> i128 {
    i128::from(rate.period_secs) * 1_000_000_000
}

/// The headers' values from a GCRA outcome. `ahead_ns` is how far the stored TAT is ahead of now
/// after the request (allowed) or without it (denied). Shared by every limiter implementation.
pub fn decide(allowed: bool, ahead_ns: i128, rate: RateSetting) -> Decision {
    let period = period_ns(rate);
    let interval = period / i128::from(rate.limit);
    let ceil_secs =
        |ns: i128| -> u64 { u64::try_from((ns.max(0) + 999_999_999) / 1_000_000_000).unwrap_or(u64::MAX) };
    if allowed {
        let remaining =
            u32::try_from((period - ahead_ns).max(0) / interval).unwrap_or(u32::MAX).min(rate.limit);
        Decision {
            allowed,
            limit: rate.limit,
            remaining,
            reset_secs: ceil_secs(ahead_ns),
            retry_after_secs: 0,
        }
    } else {
        Decision {
            allowed,
            limit: rate.limit,
            remaining: 0,
            reset_secs: ceil_secs(ahead_ns),
            retry_after_secs: ceil_secs(ahead_ns + interval - period).max(1),
        }
    }
}

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or_default()
}

/// Single-node limiter: TATs in a map, pruned as they fall into the past.
#[derive(Default)]
pub struct InProcessLimiter {
    tats: Mutex<HashMap<String, i128>>,
}

#[async_trait]
impl RateLimiter for InProcessLimiter {
    async fn check(&self, key: &str, rate: RateSetting) -> Decision {
        let now = now_ns();
        let Ok(mut tats) = self.tats.lock() else {
            // A poisoned lock means a panic elsewhere; fail open rather than refusing all traffic.
            return Decision {
                allowed: true,
                limit: rate.limit,
                remaining: rate.limit,
                reset_secs: 0,
                retry_after_secs: 0,
            };
        };
        if tats.len() > 100_000 {
            tats.retain(|_, tat| *tat > now);
        }
        let stored = tats.get(key).copied().unwrap_or(0);
        let (decision, tat) = gcra(stored, now, rate);
        tats.insert(key.to_string(), tat);
        decision
    }
}

/// Which bucket a request counts against.
fn group(path: &str) -> &'static str {
    if path == "/api/mcp" || path.starts_with("/api/mcp/") {
        "mcp"
    } else if path == "/api/agent/feedback" {
        "feedback"
    } else {
        "agent"
    }
}

/// The limit check of an agent API request ([`crate::http::is_agent_api`]) to `path`, whose
/// extensions hold the [`AuthState`]: counts it against the caller's bucket (per token, or per
/// client IP for requests without a valid key). `None` when that bucket's group is not limited;
/// otherwise the caller answers [`Decision::refusal`] when it is not allowed, and puts
/// [`Decision::set_headers`] on every response.
pub async fn check(app: &App, path: &str, extensions: &Extensions) -> Option<Decision> {
    let caller = match extensions.get::<AuthState>() {
        Some(AuthState::Authenticated(caller)) => Some(caller),
        _ => None,
    };
    let group = caller.map(|_| group(path));
    let rate = match group {
        Some(group) => app.rates.for_group(group),
        None => app.rates.anon,
    };
    // The bucket key is built only when the group is limited.
    let rate = rate?;
    let key = match (caller, group) {
        (Some(caller), Some(group)) => format!("{group}:{}", caller.id()),
        _ => {
            let ip = extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "local".into());
            format!("anon:{ip}")
        }
    };
    let decision = app.limiter.check(&key, rate).await;
    if !decision.allowed {
        metrics::counter!("kifly_rate_limit_rejections_total").increment(1);
    }
    Some(decision)
}

impl Decision {
    /// The `429 rate_limited` answer to a request that is not allowed.
    pub fn refusal(&self) -> Response {
        ApiError::rate_limited(self.retry_after_secs).into_response()
    }

    /// Sets the `x-ratelimit-*` headers.
    pub fn set_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_secs));
    }
}

/// The configured limit per group; `None` = off.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub agent: Option<RateSetting>,
    pub mcp: Option<RateSetting>,
    pub feedback: Option<RateSetting>,
    pub anon: Option<RateSetting>,
}

impl Rates {
    fn for_group(&self, group: &str) -> Option<RateSetting> {
        match group {
            "mcp" => self.mcp,
            "feedback" => self.feedback,
            _ => self.agent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i128 = 1_000_000_000;

    #[test]
    fn gcra_allows_a_burst_then_refills_one_per_interval() {
        let rate = RateSetting { limit: 60, period_secs: 60 };
        let now = 1_000 * SEC;
        let mut tat = 0;
        for i in 0..60u32 {
            let (d, t) = gcra(tat, now, rate);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
            assert_eq!(d.reset_secs, u64::from(i) + 1);
            tat = t;
        }
        let (d, _) = gcra(tat, now, rate);
        assert!(!d.allowed);
        assert_eq!((d.remaining, d.retry_after_secs, d.reset_secs), (0, 1, 60));
        let (d, _) = gcra(tat, now + SEC, rate);
        assert!(d.allowed, "one interval later one more fits");
        assert_eq!(d.remaining, 0);
    }
}
