//! When and how long to wait before trying a model call again, as the providers' own SDKs
//! do it: exponential backoff with jitter, and the server's own `retry-after` when it gives one.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::config::ProviderSettings;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_wait: Duration,
}

impl RetryPolicy {
    pub fn from_settings(settings: &ProviderSettings) -> Self {
        Self {
            max_retries: settings.max_retries,
            base_delay: Duration::from_millis(500),
            max_wait: settings.max_retry_wait,
        }
    }

    /// The wait before retry number `retry` (0-based): the server's wish if it stated one,
    /// otherwise `base * 2^retry` with up to 25% jitter taken off, capped at `max_wait`.
    pub fn delay(&self, retry: u32, headers: Option<&HeaderMap>) -> Duration {
        if let Some(wait) = headers.and_then(retry_after) {
            return wait.min(self.max_wait);
        }
        let exp = self.base_delay.saturating_mul(1u32 << retry.min(16));
        let jitter = 1.0 - fastrand::f64() * 0.25;
        exp.mul_f64(jitter).min(self.max_wait)
    }
}

/// Status codes worth another try: timeouts, conflicts, rate limits and server errors.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// An explicit `x-should-retry: true|false` from the server overrides the status code.
pub fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `retry-after-ms`, or `retry-after` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = header_str(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = humantime::parse_rfc3339_weak(value)
        .ok()
        .or_else(|| httpdate(value))?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// Parses an IMF-fixdate such as `Wed, 21 Oct 2015 07:28:00 GMT`.
fn httpdate(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let rfc3339 = format!("{year}-{month:02}-{day:0>2}T{time}Z");
    humantime::parse_rfc3339(&rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_forms_are_understood() {
        assert_eq!(
            retry_after(&headers("retry-after", "2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers("retry-after-ms", "250")),
            Some(Duration::from_millis(250))
        );
        let past = retry_after(&headers("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(past, Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("retry-after", "soon")), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_wait: Duration::from_millis(500),
        };
        let first = policy.delay(0, None);
        assert!(first <= Duration::from_millis(100) && first >= Duration::from_millis(75));
        assert_eq!(policy.delay(10, None), Duration::from_millis(500));
        let wish = headers("retry-after", "30");
        assert_eq!(policy.delay(0, Some(&wish)), Duration::from_millis(500));
    }

    #[test]
    fn which_statuses_are_retried() {
        for status in [408, 409, 429, 500, 502, 503, 529] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }
}
