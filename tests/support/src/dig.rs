//! Asking a DNS server with the real clients `dig` (BIND) and `kdig` (Knot), and reading their
//! output back into a [`DigAnswer`].

use std::net::SocketAddr;
use std::process::Command;

use crate::require_tool;

/// One resource record line of a dig/kdig section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    /// Owner name as printed (with the trailing dot, in the case the server sent).
    pub name: String,
    /// TTL.
    pub ttl: u32,
    /// Type mnemonic, e.g. `A`, `SRV`, `SOA`.
    pub rtype: String,
    /// The data, fields separated by single spaces.
    pub data: String,
}

/// What dig/kdig printed, read back. When the client retried over TCP after a truncated UDP
/// answer, the fields describe the last answer printed.
#[derive(Debug, Clone, Default)]
pub struct DigAnswer {
    /// The client's exit code (dig: 0 = got an answer, 9 = no reply).
    pub exit: i32,
    /// Everything printed.
    pub stdout: String,
    /// Everything printed to stderr.
    pub stderr: String,
    /// RCODE name from the header, e.g. `NOERROR`, `NXDOMAIN`; `None` when there was no answer.
    pub status: Option<String>,
    /// Header flags, lower case: `qr`, `aa`, `tc`, `rd`, `ra`.
    pub flags: Vec<String>,
    /// Answer section.
    pub answer: Vec<Rr>,
    /// Authority section.
    pub authority: Vec<Rr>,
    /// Additional section (without the OPT pseudo-record).
    pub additional: Vec<Rr>,
}

impl DigAnswer {
    /// True when the header had `flag` (e.g. `"aa"`).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The data of the answer records of type `rtype`, sorted.
    pub fn answer_data(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(rtype))
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }

    /// Reads dig or kdig output.
    pub fn parse(stdout: &str) -> DigAnswer {
        let mut out = DigAnswer {
            stdout: stdout.to_string(),
            ..Default::default()
        };
        let lines: Vec<&str> = stdout.lines().collect();
        let Some(start) = lines.iter().rposition(|l| l.contains("->>HEADER<<-")) else {
            return out;
        };
        #[derive(PartialEq)]
        enum Sec {
            None,
            Answer,
            Authority,
            Additional,
        }
        let mut sec = Sec::None;
        for line in &lines[start..] {
            let t = line.trim();
            if let Some(i) = t.find("status: ") {
                let rest = &t[i + 8..];
                let end = rest.find([',', ';', ' ']).unwrap_or(rest.len());
                out.status = Some(rest[..end].to_string());
                continue;
            }
            let lower = t.to_ascii_lowercase();
            if lower.starts_with(";; flags:") {
                let rest = &t[9..];
                let end = rest.find(';').unwrap_or(rest.len());
                out.flags = rest[..end]
                    .split_whitespace()
                    .map(|f| f.to_ascii_lowercase())
                    .collect();
                continue;
            }
            if t.starts_with(";;") && t.ends_with("SECTION:") {
                sec = if t.contains("ANSWER") {
                    Sec::Answer
                } else if t.contains("AUTHORITY") {
                    Sec::Authority
                } else if t.contains("ADDITIONAL") {
                    Sec::Additional
                } else {
                    Sec::None
                };
                continue;
            }
            if t.is_empty() || t.starts_with(';') {
                if t.is_empty() || t.starts_with(";;") {
                    sec = if t.is_empty() { Sec::None } else { sec };
                }
                continue;
            }
            if sec == Sec::None {
                continue;
            }
            let f: Vec<&str> = t.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            let (ttl, rest) = match f[1].parse::<u32>() {
                Ok(ttl) => (ttl, &f[2..]),
                Err(_) => (0, &f[1..]),
            };
            let rest = if rest.first().is_some_and(|c| *c == "IN") {
                &rest[1..]
            } else {
                rest
            };
            if rest.is_empty() {
                continue;
            }
            let rr = Rr {
                name: f[0].to_string(),
                ttl,
                rtype: rest[0].to_string(),
                data: rest[1..].join(" "),
            };
            match sec {
                Sec::Answer => out.answer.push(rr),
                Sec::Authority => out.authority.push(rr),
                Sec::Additional if rr.rtype != "OPT" => out.additional.push(rr),
                _ => {}
            }
        }
        out
    }
}

fn run(tool: &str, server: SocketAddr, args: &[&str]) -> DigAnswer {
    let path = require_tool(tool);
    let port = server.port().to_string();
    let at = format!("@{}", server.ip());
    let mut cmd = Command::new(&path);
    cmd.arg(&at).arg("-p").arg(&port);
    match tool {
        "kdig" => cmd.args(["+time=2", "+retry=1"]),
        _ => cmd.args(["+time=2", "+tries=2"]),
    };
    cmd.args(args);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let mut a = DigAnswer::parse(&String::from_utf8_lossy(&o.stdout));
    a.exit = o.status.code().unwrap_or(-1);
    a.stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    a
}

/// Runs `dig @IP -p PORT +time=2 +tries=2 ARGS...` against `server` and reads the output.
#[track_caller]
pub fn dig(server: SocketAddr, args: &[&str]) -> DigAnswer {
    run("dig", server, args)
}

/// Runs `kdig @IP -p PORT +time=2 +retry=1 ARGS...` against `server` and reads the output.
#[track_caller]
pub fn kdig(server: SocketAddr, args: &[&str]) -> DigAnswer {
    run("kdig", server, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dig_output() {
        let out = "\
; <<>> DiG 9.18 <<>> @127.0.0.1 -p 5353 _http._tcp.hello-world.default.k8s.internal SRV
;; Truncated, retrying in TCP mode.
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; QUESTION SECTION:
;_http._tcp.hello-world.default.k8s.internal. IN SRV

;; ANSWER SECTION:
_http._tcp.hello-world.default.k8s.internal. 10 IN SRV 0 0 30080 worker1.k8s.internal.

;; ADDITIONAL SECTION:
worker1.k8s.internal. 30\tIN\tA\t192.168.200.2

;; Query time: 0 msec
";
        let a = DigAnswer::parse(out);
        assert_eq!(a.status.as_deref(), Some("NOERROR"));
        assert_eq!(a.flags, ["qr", "aa", "rd"]);
        assert!(a.has_flag("aa") && !a.has_flag("tc"));
        assert_eq!(a.answer_data("SRV"), ["0 0 30080 worker1.k8s.internal."]);
        assert_eq!(a.answer[0].ttl, 10);
        assert_eq!(a.additional.len(), 1);
        assert_eq!(a.additional[0].data, "192.168.200.2");
    }

    #[test]
    fn parses_kdig_output() {
        let out = "\
;; ->>HEADER<<- opcode: QUERY; status: NXDOMAIN; id: 51060
;; Flags: qr aa rd; QUERY: 1; ANSWER: 0; AUTHORITY: 1; ADDITIONAL: 1

;; EDNS PSEUDOSECTION:
;; Version: 0; flags: ; UDP size: 1232 B; ext-rcode: NOERROR

;; QUESTION SECTION:
;; nope.k8s.internal.\t\tIN\tA

;; AUTHORITY SECTION:
k8s.internal.\t30\tIN\tSOA\tns.k8s.internal. hostmaster.k8s.internal. 1 3600 600 86400 30

;; Received 120 B
";
        let a = DigAnswer::parse(out);
        assert_eq!(a.status.as_deref(), Some("NXDOMAIN"));
        assert!(a.has_flag("aa"));
        assert!(a.answer.is_empty());
        assert_eq!(a.authority[0].rtype, "SOA");
    }
}
