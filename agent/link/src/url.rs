//! Broker URLs: `mqtts://host:port` (TLS, default port 8883) and `mqtt://host:port` (plain TCP,
//! default port 1883, for loopback tests; [`BrokerUrl::parse`] logs a warning for it).

use std::fmt;

use crate::LinkError;

/// Transport of a broker URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `mqtts://`: TLS, server certificate and host name verified.
    Tls,
    /// `mqtt://`: plain TCP. Only for tests on loopback.
    Plain,
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS or plain.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets). Also the name the server certificate
    /// is verified against.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtts://host[:port]` or `mqtt://host[:port]`; IPv6 literals in brackets
    /// (`mqtts://[::1]:8883`). A trailing `/` is accepted; any other path, user info or query
    /// is refused. Logs a warning for `mqtt://`.
    pub fn parse(url: &str) -> Result<BrokerUrl, LinkError> {
        let u = Self::parse_quiet(url)?;
        if u.scheme == Scheme::Plain {
            log::warn!("broker {url}: plain mqtt:// without TLS; use mqtts:// outside tests");
        }
        Ok(u)
    }

    /// [`BrokerUrl::parse`] without the warning.
    pub fn parse_quiet(url: &str) -> Result<BrokerUrl, LinkError> {
        let bad = |reason| LinkError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let (scheme, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (Scheme::Tls, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (Scheme::Plain, r)
        } else {
            return Err(bad("must start with mqtts:// (or mqtt:// for plain tests)"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "only host and port are allowed (no path, user or query)",
            ));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| bad("unclosed '[' in IPv6 address"))?;
            let host = &r[..end];
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address inside [ ]"));
            }
            let after = &r[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after ']'")),
            };
            (host, port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(bad("IPv6 addresses must be written in [ ]"))
                }
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = match port {
            None => match scheme {
                Scheme::Tls => 8883,
                Scheme::Plain => 1883,
            },
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad("port must be a number 1..=65535")),
            },
        };
        Ok(BrokerUrl {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.scheme {
            Scheme::Tls => "mqtts",
            Scheme::Plain => "mqtt",
        };
        if self.host.contains(':') {
            write!(f, "{s}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{s}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (&'static str, Option<(Scheme, &'static str, u16)>);

    #[test]
    fn parses_and_defaults_ports() {
        let cases: &[Case] = &[
            (
                "mqtts://broker.example:9000",
                Some((Scheme::Tls, "broker.example", 9000)),
            ),
            (
                "mqtts://broker.example",
                Some((Scheme::Tls, "broker.example", 8883)),
            ),
            (
                "mqtts://broker.example/",
                Some((Scheme::Tls, "broker.example", 8883)),
            ),
            ("mqtt://127.0.0.1", Some((Scheme::Plain, "127.0.0.1", 1883))),
            (
                "mqtt://127.0.0.1:1884",
                Some((Scheme::Plain, "127.0.0.1", 1884)),
            ),
            ("mqtts://[::1]:8884", Some((Scheme::Tls, "::1", 8884))),
            ("mqtts://[::1]", Some((Scheme::Tls, "::1", 8883))),
            ("tcp://host:1", None),
            ("host:8883", None),
            ("mqtts://", None),
            ("mqtts://:8883", None),
            ("mqtts://h:0", None),
            ("mqtts://h:99999", None),
            ("mqtts://h:x", None),
            ("mqtts://h/path", None),
            ("mqtts://u@h", None),
            ("mqtts://::1:8883", None),
            ("mqtts://[::1", None),
            ("mqtts://[nothex]:1", None),
        ];
        for (text, want) in cases {
            let got = BrokerUrl::parse_quiet(text).ok();
            let got = got.as_ref().map(|u| (u.scheme, u.host.as_str(), u.port));
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "mqtts://h:1",
            "mqtt://10.0.0.1:1883",
            "mqtts://[fd00::1]:8883",
        ] {
            assert_eq!(BrokerUrl::parse_quiet(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn error_names_the_url() {
        let e = BrokerUrl::parse_quiet("http://x").unwrap_err().to_string();
        assert!(e.contains("\"http://x\""), "{e}");
    }
}
