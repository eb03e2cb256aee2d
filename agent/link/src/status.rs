//! The status document an agent publishes, retained, on `P/gateways/ID/status` or
//! `P/nodes/NODE/status`:
//! `{"state":"online"|"offline","serial":42|null,"error":"text"|null,"version":"0.1.0"}`.
//! `serial` is the serial in use, `error` the last rejection or failure (null when the last
//! payload was applied). An agent on payload v2 adds `"held":V,"digest":"16 hex"` (the
//! version and content digest it serves) and, when it waits for a snapshot in vain,
//! `"want":"snapshot"` (`docs/payload-v2.md`), after `error`; a gateway that probes its workers adds
//! `"reach":{...}` ([`Reach`]) after those. The last will is the same document with `"state":"offline"`.
//!
//! [`Status::to_json`] is a hand-written emitter (no serde_json in the agent binary);
//! [`Status::from_json`] parses with serde-json-core, behind the checked door
//! ([`sdwan_contract::json::STATUS`]: at most 16 KiB, 4 levels of nesting, RFC 8259): any
//! gateway may publish on its own status topic, and the master reads it (issue 12: a retained
//! document nested 200,000 deep overflowed the master's stack at every start). The type also
//! derives serde's `Deserialize`. Unknown fields are ignored when parsing, so later agents may
//! add some (within the door's depth).

use std::fmt::Write as _;

use sdwan_contract::json;
use serde::Deserialize;

/// Whether the agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Connected and applying payloads.
    Online,
    /// The last will (or a clean shutdown).
    Offline,
}

/// One status document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// Online or offline.
    pub state: State,
    /// Serial of the payload in use, `None` when the agent has none yet.
    pub serial: Option<u32>,
    /// The last error (rejected payload, failed apply), `None` after a successful apply.
    pub error: Option<String>,
    /// Why the agent's previous broker connection dropped, `None` when none has since the
    /// agent started. Emitted (before `version`) only when set.
    #[serde(default)]
    pub disconnect: Option<String>,
    /// Payload v2 (`docs/payload-v2.md`): the version of the content in use (`held`), `None`
    /// when none. Emitted (after `error`) only when set or when `digest` is.
    #[serde(default)]
    pub held: Option<u64>,
    /// Payload v2: the digest of the content in use, 16 lower-case hex digits.
    #[serde(default)]
    pub digest: Option<String>,
    /// Payload v2: `"snapshot"` when the agent waited for a whole snapshot and none came (the
    /// master then republishes it). Emitted only when set.
    #[serde(default)]
    pub want: Option<String>,
    /// Branch autonomy (issue 14): what the gateway's probes see of the workers it may answer
    /// with. Emitted (after `want`) only when the agent probes.
    #[serde(default)]
    pub reach: Option<Reach>,
    /// Agent version (`CARGO_PKG_VERSION`).
    pub version: String,
}

/// The most worker names a status lists as down ([`Reach::down`]); more are counted in
/// [`Reach::more`]. Keeps a gateway's status small (the master reads every status at start).
pub const MAX_REACH_DOWN: usize = 32;

/// A gateway's view of the workers it probes:
/// `"reach":{"workers":500,"down":["w1","w7"],"more":0,"rtt_ms":[3,7,12]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reach {
    /// How many workers the agent probes.
    pub workers: u32,
    /// Node names of the workers it sees down (after hysteresis), ascending, at most
    /// [`MAX_REACH_DOWN`].
    pub down: Vec<String>,
    /// How many more workers are down than `down` lists.
    #[serde(default)]
    pub more: u32,
    /// The probes' round-trip time to the workers seen up, in milliseconds: `[p50, p90, max]`
    /// over the workers' smoothed RTTs; `None` (emitted as `null`) when none is up.
    #[serde(default)]
    pub rtt_ms: Option<[u32; 3]>,
}

impl Reach {
    /// Appends `,"reach":{...}`.
    fn push_json(&self, s: &mut String) {
        let _ = write!(s, ",\"reach\":{{\"workers\":{},\"down\":[", self.workers);
        for (i, name) in self.down.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            push_json_string(s, name);
        }
        let _ = write!(s, "],\"more\":{},\"rtt_ms\":", self.more);
        match self.rtt_ms {
            Some([a, b, c]) => {
                let _ = write!(s, "[{a},{b},{c}]");
            }
            None => s.push_str("null"),
        }
        s.push('}');
    }
}

/// A status document that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStatus(pub String);

impl std::fmt::Display for BadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status document: {}", self.0)
    }
}

impl std::error::Error for BadStatus {}

impl Status {
    /// An online status.
    pub fn online(serial: Option<u32>, error: Option<String>, version: &str) -> Status {
        Status {
            state: State::Online,
            serial,
            error,
            disconnect: None,
            held: None,
            digest: None,
            want: None,
            reach: None,
            version: version.to_string(),
        }
    }

    /// The offline document used as last will.
    pub fn offline(serial: Option<u32>, version: &str) -> Status {
        Status {
            state: State::Offline,
            serial,
            error: None,
            disconnect: None,
            held: None,
            digest: None,
            want: None,
            reach: None,
            version: version.to_string(),
        }
    }

    /// The JSON document, fields in the documented order.
    pub fn to_json(&self) -> String {
        let extra = |t: &Option<String>| t.as_ref().map_or(0, |e| e.len() + 16);
        let mut s = String::with_capacity(64 + extra(&self.error) + extra(&self.disconnect));
        s.push_str("{\"state\":");
        s.push_str(match self.state {
            State::Online => "\"online\"",
            State::Offline => "\"offline\"",
        });
        s.push_str(",\"serial\":");
        match self.serial {
            Some(n) => {
                let _ = write!(s, "{n}");
            }
            None => s.push_str("null"),
        }
        s.push_str(",\"error\":");
        match &self.error {
            Some(e) => push_json_string(&mut s, e),
            None => s.push_str("null"),
        }
        if self.held.is_some() || self.digest.is_some() {
            s.push_str(",\"held\":");
            match self.held {
                Some(n) => {
                    let _ = write!(s, "{n}");
                }
                None => s.push_str("null"),
            }
            s.push_str(",\"digest\":");
            match &self.digest {
                Some(d) => push_json_string(&mut s, d),
                None => s.push_str("null"),
            }
        }
        if let Some(w) = &self.want {
            s.push_str(",\"want\":");
            push_json_string(&mut s, w);
        }
        if let Some(r) = &self.reach {
            r.push_json(&mut s);
        }
        if let Some(d) = &self.disconnect {
            s.push_str(",\"disconnect\":");
            push_json_string(&mut s, d);
        }
        s.push_str(",\"version\":");
        push_json_string(&mut s, &self.version);
        s.push('}');
        s
    }

    /// Parses a status document; refuses one above [`json::STATUS`] (size or depth) or not
    /// RFC 8259 JSON before any parser recurses into it.
    pub fn from_json(bytes: &[u8]) -> Result<Status, BadStatus> {
        json::check(bytes, json::STATUS).map_err(|e| {
            BadStatus(match e.kind {
                json::ErrorKind::TooLarge => format!(
                    "{} bytes, the limit is {}",
                    bytes.len(),
                    json::STATUS.max_bytes
                ),
                json::ErrorKind::TooDeep => format!(
                    "nested deeper than {} levels of arrays and objects at byte {}",
                    json::STATUS.max_depth,
                    e.offset
                ),
                _ => format!("invalid JSON: {e}"),
            })
        })?;
        let mut scratch = vec![0u8; bytes.len()];
        let (status, _) = serde_json_core::from_slice_escaped::<Status>(bytes, &mut scratch)
            .map_err(|e| BadStatus(e.to_string()))?;
        if let Some(r) = &status.reach {
            if r.down.len() > MAX_REACH_DOWN {
                return Err(BadStatus(format!(
                    "reach.down lists {} workers, the limit is {MAX_REACH_DOWN}",
                    r.down.len()
                )));
            }
        }
        Ok(status)
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_string(s: &mut String, text: &str) {
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_the_documented_shape() {
        let s = Status::online(Some(42), None, "0.1.0");
        assert_eq!(
            s.to_json(),
            r#"{"state":"online","serial":42,"error":null,"version":"0.1.0"}"#
        );
        let s = Status::offline(None, "0.1.0");
        assert_eq!(
            s.to_json(),
            r#"{"state":"offline","serial":null,"error":null,"version":"0.1.0"}"#
        );
    }

    #[test]
    fn reach_is_emitted_after_want_and_round_trips() {
        let mut s = Status::online(None, None, "0.1.0");
        s.held = Some(5);
        s.digest = Some("00000000000000ff".into());
        s.reach = Some(Reach {
            workers: 3,
            down: vec!["w1".into(), "w\"7".into()],
            more: 0,
            rtt_ms: Some([3, 7, 12]),
        });
        let json = s.to_json();
        assert_eq!(
            json,
            r#"{"state":"online","serial":null,"error":null,"held":5,"digest":"00000000000000ff","reach":{"workers":3,"down":["w1","w\"7"],"more":0,"rtt_ms":[3,7,12]},"version":"0.1.0"}"#
        );
        assert_eq!(Status::from_json(json.as_bytes()).unwrap(), s);
        s.reach = Some(Reach {
            workers: 0,
            down: vec![],
            more: 0,
            rtt_ms: None,
        });
        assert_eq!(Status::from_json(s.to_json().as_bytes()).unwrap(), s);
    }

    #[test]
    fn reach_listing_too_many_workers_is_refused() {
        let names: Vec<String> = (0..=MAX_REACH_DOWN).map(|i| format!("\"w{i}\"")).collect();
        let doc = format!(
            r#"{{"state":"online","serial":null,"error":null,"reach":{{"workers":99,"down":[{}]}},"version":"0.1.0"}}"#,
            names.join(",")
        );
        let e = Status::from_json(doc.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("reach.down lists 33 workers"), "{e}");
    }

    #[test]
    fn round_trips_awkward_error_text() {
        let s = Status::online(
            Some(7),
            Some("record 3: bad \"data\" \\ tab\there\nline\u{1}é".into()),
            "0.1.0",
        );
        let json = s.to_json();
        assert_eq!(Status::from_json(json.as_bytes()).unwrap(), s);
    }

    #[test]
    fn disconnect_reason_is_emitted_only_when_set_and_round_trips() {
        let mut s = Status::online(Some(3), None, "0.1.0");
        s.disconnect = Some("I/O: connection reset".into());
        let json = s.to_json();
        assert_eq!(
            json,
            r#"{"state":"online","serial":3,"error":null,"disconnect":"I/O: connection reset","version":"0.1.0"}"#
        );
        assert_eq!(Status::from_json(json.as_bytes()).unwrap(), s);
    }

    #[test]
    fn v2_fields_are_emitted_when_set_and_round_trip() {
        let mut s = Status::online(None, None, "0.1.0");
        s.held = Some(u64::MAX);
        s.digest = Some("0c55e2f1aa93d07b".into());
        s.want = Some("snapshot".into());
        let json = s.to_json();
        assert_eq!(
            json,
            r#"{"state":"online","serial":null,"error":null,"held":18446744073709551615,"digest":"0c55e2f1aa93d07b","want":"snapshot","version":"0.1.0"}"#
        );
        assert_eq!(Status::from_json(json.as_bytes()).unwrap(), s);
    }

    #[test]
    fn ignores_unknown_fields_and_refuses_garbage() {
        let s = Status::from_json(
            br#"{"state":"offline","serial":null,"error":null,"version":"9","extra":[1,{"a":2}]}"#,
        )
        .unwrap();
        assert_eq!(s.state, State::Offline);
        assert!(Status::from_json(b"{\"state\":\"sleepy\"}").is_err());
        assert!(Status::from_json(b"not json").is_err());
    }

    /// Issue 12: any gateway may publish its own status, and serde-json-core skips unknown
    /// fields by recursion; 200,000 levels (400 KB) overflowed the master's stack. Refused at
    /// the door now, in one pass, whatever the container kind and wherever it sits.
    #[test]
    fn deeply_nested_status_is_refused_without_recursion() {
        let valid = r#"{"state":"online","serial":1,"error":null,"version":"0.1.0""#;
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            for depth in [5, 200_000] {
                let doc = format!(
                    "{valid},\"x\":{}1{}}}",
                    open.repeat(depth),
                    close.repeat(depth)
                );
                let e = Status::from_json(doc.as_bytes()).unwrap_err().to_string();
                if depth > 100 {
                    assert!(e.contains("bytes, the limit is 16384"), "{e}");
                } else {
                    assert!(e.contains("nested deeper than 4 levels"), "{e}");
                }
            }
        }
        // Within the size limit: refused for its depth.
        let doc = format!("{valid},\"x\":{}1{}}}", "[".repeat(8000), "]".repeat(8000));
        let e = Status::from_json(doc.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("nested deeper than 4 levels of arrays and objects at byte 67"),
            "{e}"
        );
        // Three levels inside the document are fine (fields a later agent may add).
        let doc = format!("{valid},\"x\":[{{\"y\":[1]}}]}}");
        assert_eq!(Status::from_json(doc.as_bytes()).unwrap().serial, Some(1));
    }

    #[test]
    fn raw_control_character_in_a_status_string_is_refused() {
        let e = Status::from_json(
            b"{\"state\":\"online\",\"serial\":1,\"error\":\"a\nb\",\"version\":\"1\"}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("raw control character in a string at byte 39"),
            "{e}"
        );
    }
}
