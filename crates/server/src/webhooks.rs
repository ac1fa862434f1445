//! The webhook deliverer: sends the outbox's due events to their endpoints.
//!
//! Design note. Run transitions only write outbox rows (store-sql
//! `webhooks.rs`, in the transition's own transaction), so a slow or dead
//! receiver never slows the control plane: this loop, on every replica,
//! claims due events (`SKIP LOCKED` on PostgreSQL, so replicas share them)
//! and POSTs each with at most [`PARALLEL`] in flight, each bounded by
//! [`CONNECT_TIMEOUT`] and [`TOTAL_TIMEOUT`] and an answer read of at most
//! [`EXCERPT_BYTES`]. Every delivery carries the Standard Webhooks headers;
//! `webhook-id` is the outbox row's id, the same on every retry, so a
//! receiver can drop repeats. A failed attempt is retried after
//! [`retry_delay`] (5 s, 30 s, 2 m, 10 m, 30 m, then hourly: ~24 h over
//! [`MAX_ATTEMPTS`] attempts at the default base) and then given up as
//! `failed`; every attempt is recorded. Endpoints that resolve to loopback,
//! link-local, unspecified or the control plane's own addresses are refused
//! when saved and again at delivery, after resolution, by the client's own
//! resolver ([`Guard`]), so a re-pointed name cannot slip through between
//! check and connect. Invariants and their tests: each event reaches the
//! receiver with a valid signature and one id across retries, after a 500,
//! after the receiver was down, and across a SIGKILLed control plane
//! (`tests/webhooks.rs`); the retry schedule's bounds (unit tests below).

use crate::error::ApiError;
use crate::secrets_crypto::SecretRef;
use crate::state::AppState;
use minitower_core::api::{event_id, DeliveryOutcome};
use minitower_core::webhook::{self, Secret};
use minitower_store::{ClaimedEvent, DeliveryRecord};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Connecting to an endpoint gives up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole delivery (connect, send, answer) gives up after this.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight per replica.
pub const PARALLEL: usize = 8;
/// Most of an answer's body that is read and kept.
pub const EXCERPT_BYTES: usize = 1024;
/// Attempts per event before it is given up.
pub const MAX_ATTEMPTS: i64 = 29;
/// How often an idle deliverer looks for due events.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Shortest sleep when nothing could be claimed.
const MIN_WAIT: Duration = Duration::from_millis(50);
/// A claimed event is due again after this unless its attempt is recorded
/// (its deliverer died): longer than any delivery takes.
const CLAIM_TTL: Duration = Duration::from_secs(30);
/// Growth of the retry delay over the base, per attempt made.
const STEPS: [u32; 6] = [1, 6, 24, 120, 360, 720];

/// The wait after `attempts` failed attempts, or `None` when the event is
/// given up. With the default 5 s base: 5 s, 30 s, 2 m, 10 m, 30 m, then
/// 1 h until [`MAX_ATTEMPTS`].
pub fn retry_delay(base: Duration, attempts: i64) -> Option<Duration> {
    if !(1..MAX_ATTEMPTS).contains(&attempts) {
        return None;
    }
    let step = STEPS[(attempts as usize - 1).min(STEPS.len() - 1)];
    Some(base.saturating_mul(step))
}

/// Why an address may not be delivered to, or `None`.
pub fn refused(ip: IpAddr, own: &[IpAddr], allow_private: bool) -> Option<String> {
    (!allow_private && webhook::is_refused_address(ip, own)).then(|| {
        format!(
            "url: {ip} is a loopback, link-local or the control plane's own address \
             (set MINITOWER_WEBHOOK_ALLOW_PRIVATE=true to allow it)"
        )
    })
}

/// Checks an endpoint URL when it is saved: its form, then every address
/// its host resolves to. The error names the field (`url: ...`).
pub async fn check_endpoint(st: &AppState, text: &str) -> Result<url::Url, String> {
    let u = webhook::validate_endpoint_url(text).map_err(|e| e.to_string())?;
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("url: host {host:?} does not resolve: {e}"))?
            .collect(),
    };
    let own = own_addresses(st);
    for a in &addrs {
        if let Some(why) = refused(a.ip(), &own, st.config.webhook_allow_private) {
            return Err(why);
        }
    }
    Ok(u)
}

/// The control plane's own addresses: its listen address, or every address
/// of the host's interfaces when it listens on all of them (`0.0.0.0`,
/// `::`), since it then answers on each.
fn own_addresses(st: &AppState) -> Vec<IpAddr> {
    let listen = st
        .config
        .socket_addr()
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.ip());
    match listen {
        Some(ip) if ip.is_unspecified() => interface_addresses(),
        Some(ip) => vec![ip],
        None => Vec::new(),
    }
}

/// Every IP address of the host's network interfaces.
fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let a = a.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

/// The delivery client's resolver: names resolve as usual, and a name with
/// any refused address fails to resolve, so the check and the connection
/// use the same addresses.
struct Guard {
    own: Vec<IpAddr>,
    allow_private: bool,
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let own = self.own.clone();
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if let Some(why) = addrs.iter().find_map(|a| refused(a.ip(), &own, allow)) {
                return Err(why.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client deliveries use: bounded timeouts, no redirects (a
/// redirect could point anywhere), the guarded resolver.
pub fn client(st: &AppState) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("minitower-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(Guard {
            own: own_addresses(st),
            allow_private: st.config.webhook_allow_private,
        }))
        .build()
        .expect("the webhook HTTP client builds")
}

/// Runs until shutdown, delivering due events.
pub async fn run(st: Arc<AppState>) {
    let http = client(&st);
    let slots = Arc::new(Semaphore::new(PARALLEL));
    loop {
        // All slots busy (slow receivers): wait for one to free up, not
        // for the clock, so a due event cannot spin this loop.
        let free = slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = st.shutdown.cancelled() => return,
                p = slots.clone().acquire_owned() => drop(p),
            }
            continue;
        }
        let claimed = match st
            .store
            .claim_webhook_events(st.now(), free as i64, CLAIM_TTL)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming webhook events failed");
                Vec::new()
            }
        };
        if !claimed.is_empty() {
            for ev in claimed {
                // `free` permits were available and only this loop takes them.
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let (st, http) = (st.clone(), http.clone());
                tokio::spawn(async move {
                    deliver(&st, &http, ev).await;
                    drop(permit);
                });
            }
            continue;
        }
        // Nothing claimable: sleep until the next due event (at least
        // MIN_WAIT: one that is due but was taken by another replica must
        // not spin this loop), at most IDLE_POLL.
        let wait = next_wait(&st).await.max(MIN_WAIT);
        tokio::select! {
            _ = st.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long to sleep when nothing was due: until the next due event, at
/// most [`IDLE_POLL`] (another replica may have queued events meanwhile).
async fn next_wait(st: &AppState) -> Duration {
    match st.store.next_webhook_due().await {
        Ok(Some(at)) => (at - st.now()).to_std().unwrap_or_default().min(IDLE_POLL),
        _ => IDLE_POLL,
    }
}

/// What a signing secret is sealed for: its team (the row's id is not
/// known before the insert, and a team's endpoints trust each other).
fn secret_ref(team_id: i64) -> SecretRef<'static> {
    SecretRef {
        team_id,
        environment: "",
        name: "webhook-signing-secret",
        version: 0,
    }
}

/// Seals a new endpoint's signing secret with the server's key ring. The
/// column keeps its `whsec_` prefix (a CHECK of the table): what follows it
/// is the sealed form `v1.<key id>.<base64>`, whose dots no plain secret
/// (`whsec_<base64>`) has.
pub fn seal_secret(st: &AppState, team_id: i64, secret: &str) -> Result<String, ApiError> {
    let sealed = st
        .keys
        .seal(&secret_ref(team_id), secret.as_bytes())
        .map_err(ApiError::internal)?;
    Ok(format!("whsec_{sealed}"))
}

/// The signing secret of a claimed event: opened with the key ring, or
/// taken as it is from an endpoint made before secrets were sealed.
fn open_secret(st: &AppState, ev: &ClaimedEvent) -> Result<Secret, String> {
    let stored = ev.secret.strip_prefix("whsec_").unwrap_or(&ev.secret);
    let text = if !stored.contains('.') {
        ev.secret.clone()
    } else {
        let plain = st
            .keys
            .open(&secret_ref(ev.team_id), stored)
            .map_err(|e| e.to_string())?;
        String::from_utf8(plain).map_err(|_| "not UTF-8".to_string())?
    };
    Secret::parse(&text).map_err(|e| e.to_string())
}

/// One attempt: sign, POST, read the start of the answer, record it.
pub async fn deliver(st: &AppState, http: &reqwest::Client, ev: ClaimedEvent) {
    let started = Instant::now();
    let answer = match (open_secret(st, &ev), literal_refused(st, &ev.url)) {
        (_, Some(why)) => Err(why),
        (Ok(secret), None) => send(http, &secret, &ev, st.now().timestamp()).await,
        (Err(e), None) => Err(format!("stored secret unusable: {e}")),
    };
    let latency_ms = started.elapsed().as_millis() as i64;
    let attempts = ev.attempts + 1;
    let now = st.now();
    let (status_code, excerpt, error) = match answer {
        Ok((code, excerpt)) => (Some(i64::from(code)), Some(excerpt), None),
        Err(e) => (None, None, Some(e)),
    };
    let ok = status_code.is_some_and(|c| (200..300).contains(&c));
    let (outcome, next_attempt_at) = if ok {
        (DeliveryOutcome::Delivered, None)
    } else {
        match retry_delay(st.config.webhook_retry_base, attempts) {
            Some(d) => (
                DeliveryOutcome::Retry,
                Some(now + chrono::Duration::from_std(d).unwrap_or_default()),
            ),
            None => (DeliveryOutcome::Failed, None),
        }
    };
    let record = DeliveryRecord {
        outbox_id: ev.outbox_id,
        claim: ev.claim,
        status_code,
        latency_ms,
        response_excerpt: excerpt,
        error,
        outcome,
        next_attempt_at,
        now,
    };
    match st.store.record_webhook_delivery(record).await {
        Ok(true) => st.metrics.webhook_delivery(outcome.as_str()),
        Ok(false) => tracing::warn!(
            event = ev.outbox_id,
            "webhook claim ran out before recording"
        ),
        Err(e) => {
            tracing::warn!(event = ev.outbox_id, error = %e, "recording a webhook delivery failed")
        }
    }
}

/// An IP-literal host never reaches the resolver: it is checked here.
fn literal_refused(st: &AppState, text: &str) -> Option<String> {
    let ip = match url::Url::parse(text).ok()?.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    refused(ip, &own_addresses(st), st.config.webhook_allow_private)
}

/// POSTs the event; the status and up to [`EXCERPT_BYTES`] of the body,
/// or why nothing came back.
async fn send(
    http: &reqwest::Client,
    secret: &Secret,
    ev: &ClaimedEvent,
    timestamp: i64,
) -> Result<(u16, String), String> {
    let u = url::Url::parse(&ev.url).map_err(|e| format!("url: {e}"))?;
    let id = event_id(ev.outbox_id);
    let body = ev.payload.clone().into_bytes();
    let mut req = http
        .post(u)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (name, value) in webhook::headers(secret, &id, timestamp, &body) {
        req = req.header(name, value);
    }
    let mut resp = req.body(body).send().await.map_err(describe)?;
    let code = resp.status().as_u16();
    let mut kept = Vec::new();
    while kept.len() < EXCERPT_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => kept.extend_from_slice(&c),
            Ok(None) => break,
            // the status came; a broken body only shortens the excerpt
            Err(_) => break,
        }
    }
    kept.truncate(EXCERPT_BYTES);
    Ok((code, String::from_utf8_lossy(&kept).into_owned()))
}

/// A reqwest error as one line, with its cause (the resolver's refusal).
fn describe(e: reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_grows_to_hourly_and_gives_up_after_about_a_day() {
        let base = Duration::from_secs(5);
        let d: Vec<u64> = (1..=7)
            .map(|n| retry_delay(base, n).unwrap().as_secs())
            .collect();
        assert_eq!(d, [5, 30, 120, 600, 1800, 3600, 3600]);
        let total: Duration = (1..MAX_ATTEMPTS)
            .map(|n| retry_delay(base, n).unwrap())
            .sum();
        assert!(total > Duration::from_secs(20 * 3600) && total <= Duration::from_secs(24 * 3600));
        assert_eq!(retry_delay(base, MAX_ATTEMPTS), None);
        assert_eq!(retry_delay(base, 0), None);
        // the base scales the whole schedule (tests use milliseconds)
        assert_eq!(
            retry_delay(Duration::from_millis(100), 2),
            Some(Duration::from_millis(600))
        );
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        // The host's own interface addresses count as the control plane's
        // when it listens on all of them (loopback is among them).
        let ifaces = interface_addresses();
        assert!(ifaces.iter().any(|ip| ip.is_loopback()), "{ifaces:?}");
        let own: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap()];
        for ip in ["127.0.0.1", "::1", "169.254.169.254", "0.0.0.0", "10.0.0.5"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refused(ip, &own, false).unwrap().starts_with("url:"));
            assert!(refused(ip, &own, true).is_none());
        }
        assert!(refused("93.184.216.34".parse().unwrap(), &own, false).is_none());
    }
}
