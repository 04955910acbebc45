//! Where rlmd may deliver webhooks (`RLM_WEBHOOK_ALLOW`) and how hard it tries.
//!
//! A webhook URL is a request to make rlmd send an HTTP request: aimed at an internal
//! address it would reach what the operator never meant to expose. So without an allowlist
//! only public addresses are accepted (checked on the addresses the name resolves to, at
//! delivery, and the connection goes to the address checked); with one, only its hosts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use reqwest::Url;

use super::{ConfigError, Vars};

#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Hosts deliveries may go to (`host`, `*.domain`, either with `:port`); empty: any
    /// public address.
    pub allow: Vec<HostPattern>,
    /// Time one delivery attempt may take.
    pub timeout: Duration,
    /// How long a failing delivery is retried.
    pub retry_for: Duration,
    /// The wait before the first retry; it doubles after each, up to five minutes.
    pub first_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostPattern {
    /// Lower case; `*.example.com` matches the subdomains of example.com.
    host: String,
    port: Option<u16>,
}

impl WebhookPolicy {
    pub(super) fn from_vars(env: &Vars) -> Result<Self, ConfigError> {
        let allow = env
            .get("RLM_WEBHOOK_ALLOW")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        HostPattern::parse(p).ok_or_else(|| ConfigError {
                            name: "RLM_WEBHOOK_ALLOW".into(),
                            value: raw.clone(),
                            reason: format!("{p:?} is not a host, *.domain or host:port"),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            allow,
            timeout: env.seconds("RLM_WEBHOOK_TIMEOUT_S", 10.0)?,
            retry_for: env.seconds("RLM_WEBHOOK_RETRY_FOR_S", 3600.0)?,
            first_backoff: env.seconds("RLM_WEBHOOK_BACKOFF_S", 1.0)?,
        })
    }

    /// Checks a webhook URL at submit: what can be known without resolving its name.
    pub fn check(&self, raw: &str) -> Result<Url, String> {
        if raw.len() > 2048 {
            return Err("`webhook.url` is longer than 2048 characters".into());
        }
        let url = Url::parse(raw).map_err(|e| format!("`webhook.url` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("`webhook.url` must be an http or https URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("`webhook.url` must not carry credentials; sign with `secret`".into());
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(80);
        if self.allow.is_empty() {
            let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().ok();
            if host == "localhost"
                || host.ends_with(".localhost")
                || literal.is_some_and(|ip| !is_public(ip))
            {
                return Err(format!(
                    "`webhook.url`: {host} is not a public address; an operator can allow \
                     internal hosts with RLM_WEBHOOK_ALLOW"
                ));
            }
        } else if !self.allows(&host, port) {
            return Err(format!(
                "`webhook.url`: {host}:{port} is not in this server's RLM_WEBHOOK_ALLOW"
            ));
        }
        Ok(url)
    }

    /// True when the allowlist names this host (an allowlisted host is trusted wherever it
    /// resolves to).
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|pattern| pattern.matches(host, port))
    }
}

impl HostPattern {
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.to_ascii_lowercase();
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (format!("[{host}]"), port)
        } else if let Some((host, port)) = raw.rsplit_once(':').filter(|(h, _)| !h.contains(':')) {
            (host.to_string(), Some(port.parse().ok()?))
        } else {
            (raw.clone(), None)
        };
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        valid.then_some(Self { host, port })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.')),
            None => self.host == host,
        }
    }
}

/// An address on the public internet: not loopback, private, link-local, shared, reserved,
/// multicast or for documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || first == 0x0064)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &str) -> WebhookPolicy {
        let vars = Vars([("RLM_WEBHOOK_ALLOW".to_string(), allow.to_string())].into());
        WebhookPolicy::from_vars(&vars).unwrap()
    }

    #[test]
    fn without_an_allowlist_only_public_hosts_pass() {
        let open = policy("");
        assert!(open.check("https://hooks.example.com/rlmd").is_ok());
        for internal in [
            "http://127.0.0.1:9000/",
            "http://localhost/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:192.168.1.1]/",
            "http://100.64.0.1/",
        ] {
            assert!(open.check(internal).is_err(), "{internal}");
        }
        assert!(open.check("ftp://example.com/").is_err());
        assert!(open.check("https://user:pw@example.com/").is_err());
        assert!(open.check("not a url").is_err());
    }

    #[test]
    fn an_allowlist_names_hosts_domains_and_ports() {
        let list = policy("127.0.0.1:9000, *.example.com, hooks.internal");
        assert!(list.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(list.check("http://127.0.0.1:9001/hook").is_err());
        assert!(list.check("https://a.example.com/").is_ok());
        assert!(
            list.check("https://example.com/").is_err(),
            "*.domain is subdomains"
        );
        assert!(list.check("https://evilexample.com/").is_err());
        assert!(list.check("http://hooks.internal:8080/").is_ok());
        assert!(list.check("https://public.example.org/").is_err());
    }

    #[test]
    fn a_bad_pattern_is_refused() {
        let vars = Vars([("RLM_WEBHOOK_ALLOW".to_string(), "host:notaport".to_string())].into());
        assert!(WebhookPolicy::from_vars(&vars).is_err());
    }
}
