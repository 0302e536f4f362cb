//! Sign-in (SPEC section 6, "The desk is on a force network"): users from config with argon2
//! hashes; a session cookie for the page and HTTP Basic for API clients.
//!
//! - A name that does not exist is checked against a stand-in hash with the same cost as the
//!   real ones, so the answer takes as long either way and names cannot be listed.
//! - Repeated failures for a name or from an address are throttled ([`Throttle`]); at most
//!   [`HASHING_AT_ONCE`] password hashes run at a time, so a flood cannot starve the services.
//! - Sessions live in the database (only a hash of the token), so every desk instance sees the
//!   same ones and a sign-out ends a session everywhere. Each remembers the fingerprint of the
//!   password hash it was made with: a password change, a role change or removing the user ends
//!   it at once; so does `desk.session_idle_timeout` without a request, and 12 hours in all.

use crate::store;
use argon2::{PasswordHash, PasswordVerifier};
use lantern_shared::config::UserConfig;
use lantern_shared::domain::Role;
use lantern_shared::store::Db;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The session cookie over plain HTTP (`127.0.0.1` while trying Lantern).
pub const COOKIE: &str = "lantern_session";
/// The session cookie over HTTPS: the `__Host-` prefix binds it to this host, path `/`, Secure.
pub const SECURE_COOKIE: &str = "__Host-lantern_session";
/// How long a session lasts at most.
pub const SESSION_MAX_MS: i64 = 12 * 3_600_000;
/// A session's last request is written down at most this often.
const TOUCH_EVERY_MS: i64 = 60_000;
/// A verified Basic credential is remembered briefly: argon2 is slow on purpose.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Password hashes computed at once, at most.
pub const HASHING_AT_ONCE: usize = 2;
/// How long a sign-in waits for a turn to hash before it is told to try again.
const HASHING_WAIT: Duration = Duration::from_secs(10);

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
}

/// Why a sign-in did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Wrong name or password (which of the two is never said).
    Wrong,
    /// Too many failures for this name or from this address: try again after this many seconds.
    Throttled { retry_after_secs: u64 },
    /// Every hashing slot stayed busy: try again shortly.
    Busy,
}

/// The fingerprint of a password hash: sessions made with it end when it changes.
pub fn fingerprint(password_hash: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(password_hash.as_bytes())[..16])
}

fn token_hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

/// The user in force with this name, if they may sign in.
fn user_in_force<'a>(users: &'a [UserConfig], name: &str) -> Option<&'a UserConfig> {
    users.iter().find(|u| u.name == name)
}

/// Failures per name and per client address, and how long each must wait.
#[derive(Default)]
pub struct Throttle {
    entries: HashMap<String, Strikes>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Strikes {
    failures: u32,
    last_ms: i64,
    blocked_until_ms: i64,
}

impl Throttle {
    /// Failures allowed for one name before waits begin (then 1 s, 2 s, 4 s... up to 15 min).
    pub const NAME_FREE: u32 = 5;
    /// Failures allowed from one address (a shared workstation, many names) before waits begin.
    pub const ADDRESS_FREE: u32 = 20;
    /// Failures are forgotten after this long without another.
    const FORGET_MS: i64 = 15 * 60_000;
    const MAX_WAIT_MS: i64 = 15 * 60_000;

    fn keys(name: &str, from: Option<IpAddr>) -> Vec<(String, u32)> {
        let mut keys = vec![(format!("name:{}", name.to_lowercase()), Throttle::NAME_FREE)];
        if let Some(ip) = from {
            keys.push((format!("addr:{ip}"), Throttle::ADDRESS_FREE));
        }
        keys
    }

    /// How long this attempt must wait, if it must.
    pub fn wait_ms(&self, name: &str, from: Option<IpAddr>, now_ms: i64) -> Option<i64> {
        Throttle::keys(name, from)
            .into_iter()
            .filter_map(|(k, _)| self.entries.get(&k))
            .map(|s| s.blocked_until_ms - now_ms)
            .filter(|w| *w > 0)
            .max()
    }

    pub fn failed(&mut self, name: &str, from: Option<IpAddr>, now_ms: i64) {
        if self.entries.len() > 100_000 {
            self.entries.retain(|_, s| now_ms - s.last_ms < Throttle::FORGET_MS);
        }
        for (key, free) in Throttle::keys(name, from) {
            let s = self.entries.entry(key).or_default();
            if now_ms - s.last_ms > Throttle::FORGET_MS {
                *s = Strikes::default();
            }
            s.failures += 1;
            s.last_ms = now_ms;
            if s.failures >= free {
                let wait = (1000i64 << (s.failures - free).min(20)).min(Throttle::MAX_WAIT_MS);
                s.blocked_until_ms = now_ms + wait;
            }
        }
    }

    /// A success clears the name's failures (the address's stay: other names may be tried from it).
    pub fn succeeded(&mut self, name: &str) {
        self.entries.remove(&format!("name:{}", name.to_lowercase()));
    }
}

pub struct Auth {
    hashing: Semaphore,
    /// Password hashes computed, and the most ever computed at once (what the tests check).
    pub hashes: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
    pub most_at_once: std::sync::atomic::AtomicUsize,
    throttle: Mutex<Throttle>,
    /// Verified Basic credentials: key over name and password, with the fingerprint of the
    /// hash they were checked against.
    verified: Mutex<HashMap<[u8; 32], (User, String, Instant)>>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            hashing: Semaphore::new(HASHING_AT_ONCE),
            hashes: Default::default(),
            in_flight: Default::default(),
            most_at_once: Default::default(),
            throttle: Mutex::default(),
            verified: Mutex::default(),
        }
    }
}

/// A stand-in hash with the same cost parameters as the users' own, for names that do not
/// exist: checking against it takes as long as checking a real one.
fn stand_in_hash(users: &[UserConfig]) -> String {
    let params = users
        .iter()
        .find_map(|u| {
            let h = PasswordHash::new(&u.password_hash).ok()?;
            let algorithm = h.algorithm.as_str().to_string();
            let params = h.params.iter().map(|(k, v)| format!("{}={}", k.as_str(), v.as_str())).collect::<Vec<_>>().join(",");
            Some(format!("${algorithm}$v=19${params}"))
        })
        .unwrap_or_else(|| "$argon2id$v=19$m=19456,t=2,p=1".to_string());
    let salt = data_encoding::BASE64_NOPAD.encode(&rand::random::<[u8; 16]>());
    let hash = data_encoding::BASE64_NOPAD.encode(&rand::random::<[u8; 32]>());
    format!("{params}${salt}${hash}")
}

impl Auth {
    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        lantern_shared::runtime::lock(&self.throttle)
    }

    /// Checks a name and password against the users in force. `from` is the client's address;
    /// `now_ms` the desk's clock.
    pub async fn verify(
        &self,
        users: &[UserConfig],
        name: &str,
        password: &str,
        from: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<User, Refused> {
        if let Some(wait) = self.lock_throttle().wait_ms(name, from, now_ms) {
            return Err(Refused::Throttled { retry_after_secs: (wait as u64).div_ceil(1000).max(1) });
        }
        let key: [u8; 32] =
            Sha256::new().chain_update(name.as_bytes()).chain_update([0]).chain_update(password.as_bytes()).finalize().into();
        let cached = lantern_shared::runtime::lock(&self.verified).get(&key).cloned();
        if let Some((u, print, at)) = cached {
            let current = user_in_force(users, &u.name);
            if at.elapsed() < VERIFIED_TTL && current.is_some_and(|c| c.role == u.role && fingerprint(&c.password_hash) == print) {
                return Ok(u);
            }
        }
        let found = user_in_force(users, name).cloned();
        let target = found.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| stand_in_hash(users));
        let Ok(permit) = tokio::time::timeout(HASHING_WAIT, self.hashing.acquire()).await else { return Err(Refused::Busy) };
        let password = password.to_string();
        use std::sync::atomic::Ordering::SeqCst;
        let now_hashing = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_at_once.fetch_max(now_hashing, SeqCst);
        self.hashes.fetch_add(1, SeqCst);
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&target).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        self.in_flight.fetch_sub(1, SeqCst);
        drop(permit);
        match found.filter(|_| ok) {
            Some(u) => {
                self.lock_throttle().succeeded(name);
                let user = User { name: u.name.clone(), role: u.role };
                let mut verified = lantern_shared::runtime::lock(&self.verified);
                verified.retain(|_, (_, _, at)| at.elapsed() < VERIFIED_TTL);
                verified.insert(key, (user.clone(), fingerprint(&u.password_hash), Instant::now()));
                Ok(user)
            }
            None => {
                self.lock_throttle().failed(name, from, now_ms);
                Err(Refused::Wrong)
            }
        }
    }

    /// Starts a session and returns its token; the database keeps only the token's hash.
    pub async fn start_session(&self, db: &Db, users: &[UserConfig], user: &User, now_ms: i64) -> Result<String, sqlx::Error> {
        let token = data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>());
        let print = user_in_force(users, &user.name).map(|u| fingerprint(&u.password_hash)).unwrap_or_default();
        let session =
            store::NewSession { token_hash: &token_hash(&token), name: &user.name, role: user.role.as_str(), fingerprint: &print };
        store::start_session(db, &session, now_ms, now_ms - SESSION_MAX_MS).await?;
        Ok(token)
    }

    pub async fn end_session(&self, db: &Db, token: &str) -> Result<(), sqlx::Error> {
        store::end_session(db, &token_hash(token)).await
    }

    /// The user a session token belongs to, while the session lasts: not idle for `idle_ms`,
    /// under 12 hours old, its user still in config with the same role and password.
    pub async fn session(&self, db: &Db, token: &str, users: &[UserConfig], now_ms: i64, idle_ms: i64) -> Option<User> {
        let hash = token_hash(token);
        let s = match store::session(db, &hash).await {
            Ok(s) => s?,
            Err(e) => {
                tracing::warn!(error = %e, "could not read a desk session");
                return None;
            }
        };
        let role = Role::parse(&s.role)?;
        let current = user_in_force(users, &s.name)?;
        let live = now_ms - s.created_ms < SESSION_MAX_MS
            && now_ms - s.last_seen_ms.max(s.created_ms) < idle_ms
            && current.role == role
            && fingerprint(&current.password_hash) == s.fingerprint;
        if !live {
            if let Err(e) = store::end_session(db, &hash).await {
                tracing::warn!(error = %e, "could not delete an ended desk session");
            }
            return None;
        }
        if now_ms - s.last_seen_ms > TOUCH_EVERY_MS {
            if let Err(e) = store::touch_session(db, &hash, now_ms).await {
                tracing::warn!(error = %e, "could not note a desk session's use");
            }
        }
        Some(User { name: s.name, role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_for_a_name_back_off_and_a_success_clears_them() {
        let mut t = Throttle::default();
        let ip: Option<IpAddr> = "10.0.0.7".parse().ok();
        for _ in 0..Throttle::NAME_FREE - 1 {
            t.failed("Nora", ip, 0);
        }
        assert_eq!(t.wait_ms("nora", ip, 0), None, "a few mistakes are free");
        t.failed("nora", ip, 0);
        assert_eq!(t.wait_ms("nora", None, 0), Some(1000));
        t.failed("nora", ip, 1000);
        assert_eq!(t.wait_ms("nora", None, 1000), Some(2000), "each further failure doubles the wait");
        assert_eq!(t.wait_ms("ian", None, 1000), None, "another name from elsewhere is not held up");
        t.succeeded("nora");
        assert_eq!(t.wait_ms("nora", None, 1000), None);
    }

    #[test]
    fn many_names_from_one_address_are_throttled_too() {
        let mut t = Throttle::default();
        let ip: Option<IpAddr> = "10.0.0.9".parse().ok();
        for i in 0..Throttle::ADDRESS_FREE {
            t.failed(&format!("user{i}"), ip, 0);
        }
        assert!(t.wait_ms("someone-new", ip, 0).is_some());
        assert!(t.wait_ms("someone-new", "10.0.0.10".parse().ok(), 0).is_none());
    }

    #[test]
    fn the_stand_in_hash_has_the_users_cost() {
        let users = [UserConfig {
            name: "nora".into(),
            role: Role::Nurse,
            password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into(),
            disabled: false,
        }];
        let h = stand_in_hash(&users);
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{h}");
        assert!(PasswordHash::new(&h).is_ok(), "{h}");
        assert!(stand_in_hash(&[]).starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }
}
