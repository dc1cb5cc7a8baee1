//! Abuse controls that hold across replicas: request rate limits per principal, a limit per
//! client address on requests that end unauthenticated and refused (applied before
//! authentication), login limits per client IP, a lockout that doubles with each further failed
//! login for one username, and the revocation of access tokens at logout.

mod counters;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mcp_shared::{Settings, crypto};
use redis::aio::ConnectionManager;
use uuid::Uuid;

pub use counters::Counters;

use crate::{
    audit,
    error::{ApiError, ErrorCode},
    principal::Principal,
};

/// The rate-limit window.
const WINDOW: Duration = Duration::from_secs(60);
/// Failed logins for a username are counted over this long.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest a username stays locked.
const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct Guard {
    counters: Counters,
    per_principal: u32,
    logins_per_ip: u32,
    max_failures: u32,
    preauth_limit: u32,
    preauth_window: Duration,
    /// Addresses over the pre-authentication limit, until when. Each replica learns it from the
    /// shared count as it counts a denial itself, so the check before authentication is a
    /// lookup in memory: a flood costs the shared store nothing once an address is cut off.
    blocked: Arc<Mutex<HashMap<String, Instant>>>,
}

/// Most addresses a replica remembers as blocked; past it, expired ones are dropped first, and a
/// new one is not remembered (it is still counted, and refused by other replicas).
const MAX_BLOCKED: usize = 100_000;

fn retry_after(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Usernames are client input: key them by a digest, never raw.
fn user_key(username: &str) -> String {
    crypto::sha256_hex(username.trim().to_lowercase().as_bytes())[..24].to_string()
}

impl Guard {
    pub fn new(settings: &Settings, redis: Option<ConnectionManager>) -> std::io::Result<Self> {
        let flags_file = if redis.is_none() {
            settings.security_flags_path()
        } else {
            None
        };
        Ok(Self {
            counters: Counters::new(redis, flags_file)?,
            per_principal: settings.rate_limit_per_minute,
            logins_per_ip: settings.login_rate_limit_per_minute,
            max_failures: settings.login_max_failures,
            preauth_limit: settings.preauth_limit,
            preauth_window: settings.preauth_window,
            blocked: Arc::default(),
        })
    }

    /// Before authentication: the time left when `ip` is over the limit of refused
    /// unauthenticated requests. Memory only, so it costs nothing per request.
    pub fn preauth_blocked(&self, ip: IpAddr) -> Option<Duration> {
        if self.preauth_limit == 0 {
            return None;
        }
        let blocked = self.blocked.lock().ok()?;
        let until = *blocked.get(&address_block(ip))?;
        until.checked_duration_since(Instant::now())
    }

    /// After a request from `ip` ended unauthenticated and refused: counts it, and once the
    /// address is past the limit, remembers it as blocked until its window ends. The count is
    /// a plain counter: when the store is down it is skipped (fails open).
    pub async fn preauth_denied(&self, ip: IpAddr) {
        if self.preauth_limit == 0 {
            return;
        }
        let address = address_block(ip);
        let count = match self
            .counters
            .hit(&format!("preauth:{address}"), self.preauth_window)
            .await
        {
            Ok(count) => count,
            Err(e) => {
                tracing::warn!(error = %e, "pre-authentication counter unavailable");
                return;
            }
        };
        // The limit-th refusal closes the window's allowance: the next request is refused.
        if count.hits < u64::from(self.preauth_limit) {
            return;
        }
        let Ok(mut blocked) = self.blocked.lock() else {
            return;
        };
        let now = Instant::now();
        if blocked.len() >= MAX_BLOCKED {
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < MAX_BLOCKED {
            if !blocked.contains_key(&address) {
                tracing::warn!(%address, limit = self.preauth_limit, "too many refused unauthenticated requests: address blocked");
            }
            blocked.insert(address, now + count.resets_in);
        }
    }

    /// The answer to a request from a blocked address.
    pub fn preauth_refusal(&self, wait: Duration) -> ApiError {
        rate_limited(
            format!(
                "more than {} refused unauthenticated requests from this address in {} s; wait, and check the credentials being sent",
                self.preauth_limit,
                self.preauth_window.as_secs()
            ),
            wait,
        )
    }

    /// Admits an authenticated request: its access token must not be revoked, and its principal
    /// must be within the rate limit. When the shared store is down, a token that could have
    /// been revoked is refused (503): revocation fails closed. A principal without one (an
    /// agent key) is admitted and the outage logged: the plain request count fails open.
    pub async fn admit(&self, principal: &Principal) -> Result<(), ApiError> {
        let window = if self.per_principal == 0 {
            Duration::ZERO
        } else {
            WINDOW
        };
        let mut flags = Vec::with_capacity(2);
        if let Some(jti) = principal.token_id {
            flags.push(format!("revoked:{jti}"));
        }
        if let Some(family) = principal.token_family {
            flags.push(format!("revoked-family:{family}"));
        }
        let counter = format!("rl:{}:{}", principal.role.as_str(), principal.id);
        let answer = self.counters.hit_and_check(&counter, window, &flags).await;
        let (count, revoked) = match answer {
            Ok(answer) => answer,
            Err(e) if !flags.is_empty() => return Err(store_down(&e, "token revocation check")),
            Err(e) => {
                tracing::warn!(error = %e, "rate-limit store unavailable");
                return Ok(());
            }
        };
        if revoked {
            return Err(ApiError::unauthorized(
                "this token was revoked by a logout; log in again",
            ));
        }
        if self.per_principal > 0 && count.hits > u64::from(self.per_principal) {
            tracing::warn!(actor = %principal.actor(), "rate limit exceeded");
            return Err(rate_limited(
                format!(
                    "more than {} requests in a minute; slow down",
                    self.per_principal
                ),
                count.resets_in,
            ));
        }
        Ok(())
    }

    /// Before checking a password: the client IP's login rate and the username's lockout.
    pub async fn admit_login(
        &self,
        ip: Option<std::net::IpAddr>,
        username: &str,
    ) -> Result<(), ApiError> {
        if self.logins_per_ip > 0 {
            let ip = ip.map_or_else(|| "unknown".to_string(), address_block);
            let count = self
                .counters
                .hit(&format!("login-ip:{ip}"), WINDOW)
                .await
                .map_err(|e| store_down(&e, "login rate limit"))?;
            if count.hits > u64::from(self.logins_per_ip) {
                tracing::warn!(%ip, "login rate limit exceeded");
                audit::note_security_event("auth.login_rate_limited", None);
                return Err(rate_limited(
                    format!(
                        "more than {} login attempts in a minute from this address",
                        self.logins_per_ip
                    ),
                    count.resets_in,
                ));
            }
        }
        if self.max_failures > 0 {
            let lock = self
                .counters
                .flag_ttl(&format!("lock:{}", user_key(username)))
                .await
                .map_err(|e| store_down(&e, "login lockout check"))?;
            if let Some(left) = lock {
                tracing::warn!("login refused: username locked after repeated failures");
                audit::note_security_event("auth.login_locked", None);
                return Err(rate_limited(
                    "too many failed logins for this user; try again later",
                    left,
                ));
            }
        }
        Ok(())
    }

    /// Counts a failed login; past the allowed failures the username is locked for a period
    /// that doubles with each further failure (2 s, 4 s, 8 s … up to 15 minutes). A failure
    /// that cannot be counted is a 503: the lockout fails closed.
    pub async fn login_failed(&self, username: &str) -> Result<(), ApiError> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let key = user_key(username);
        let failures = self
            .counters
            .hit(&format!("login-fail:{key}"), FAILURE_WINDOW)
            .await
            .map_err(|e| store_down(&e, "login failure count"))?
            .hits;
        if failures >= u64::from(self.max_failures) {
            let doublings = (failures - u64::from(self.max_failures)).min(20) as u32;
            let lock = (Duration::from_secs(2) * 2u32.pow(doublings)).min(MAX_LOCKOUT);
            tracing::warn!(
                failures,
                lock_seconds = lock.as_secs(),
                "repeated failed logins: username locked"
            );
            self.counters
                .set_flag(&format!("lock:{key}"), lock)
                .await
                .map_err(|e| store_down(&e, "login lockout"))?;
        }
        Ok(())
    }

    pub async fn login_succeeded(&self, username: &str) {
        let _ = self
            .counters
            .clear(&format!("login-fail:{}", user_key(username)))
            .await;
    }

    /// Revokes an access token, and every access token from the same login, until they would
    /// have expired anyway (`access_ttl` bounds the family's).
    pub async fn revoke(
        &self,
        token_id: Uuid,
        family: Option<Uuid>,
        expires_at: i64,
        access_ttl: Duration,
    ) -> Result<(), ApiError> {
        let left = (expires_at - chrono::Utc::now().timestamp()).max(1) as u64;
        let mut flags = vec![(format!("revoked:{token_id}"), Duration::from_secs(left + 5))];
        if let Some(f) = family {
            flags.push((
                format!("revoked-family:{f}"),
                access_ttl + Duration::from_secs(5),
            ));
        }
        for (flag, ttl) in flags {
            self.counters.set_flag(&flag, ttl).await.map_err(|e| {
                tracing::error!(error = %e, "token revocation not stored");
                ApiError::unavailable("rate-limit store")
            })?;
        }
        Ok(())
    }
}

impl Guard {
    /// Whether the principal's access token (or its login) was revoked, counting nothing.
    pub async fn is_revoked(&self, principal: &Principal) -> redis::RedisResult<bool> {
        let mut flags = Vec::with_capacity(2);
        if let Some(jti) = principal.token_id {
            flags.push(format!("revoked:{jti}"));
        }
        if let Some(family) = principal.token_family {
            flags.push(format!("revoked-family:{family}"));
        }
        if flags.is_empty() {
            return Ok(false);
        }
        let (_, revoked) = self
            .counters
            .hit_and_check("check", Duration::ZERO, &flags)
            .await?;
        Ok(revoked)
    }

    /// Revokes every access token of one login (`family`) until the newest could have expired.
    pub async fn revoke_family(&self, family: Uuid, access_ttl: Duration) -> Result<(), ApiError> {
        self.counters
            .set_flag(
                &format!("revoked-family:{family}"),
                access_ttl + Duration::from_secs(5),
            )
            .await
            .map_err(|e| store_down(&e, "token revocation"))
    }
}

/// The unit login limits count: an IPv4 address, or an IPv6 /64 (one host can use a whole /64,
/// so a per-address count would be trivial to dodge).
fn address_block(ip: IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The store could not answer a question security depends on: refuse (503 with `Retry-After`)
/// rather than guess.
fn store_down(e: &redis::RedisError, what: &str) -> ApiError {
    tracing::error!(error = %e, what, "security store unavailable: refusing");
    ApiError::unavailable("rate-limit store")
}

fn rate_limited(message: impl Into<String>, wait: Duration) -> ApiError {
    ApiError::new(ErrorCode::RateLimited, message).retry_after(retry_after(wait).max(1))
}
