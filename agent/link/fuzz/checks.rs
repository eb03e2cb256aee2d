//! The checks behind the fuzz targets, one function per target: each takes the fuzzer's
//! bytes and panics when a property does not hold. Shared with the crate's regression test
//! (`tests/regressions.rs`), which runs them over the seed corpus and every input a fuzzer
//! found (`tests/regressions/TARGET/`).

// Each fuzz target uses one of these.
#![allow(dead_code)]

use bytes::BytesMut;
use sdwan_link::client::read_packet;
use sdwan_link::topics::check_segment;
use sdwan_link::{BrokerUrl, Status, TopicKind, Topics};

/// Broker URL parsing: any text as `--broker`. Must never panic; an accepted URL prints
/// (Display) as a URL that parses to the same broker, and the error names the URL.
pub fn broker_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match BrokerUrl::parse_quiet(text) {
        Ok(u) => {
            assert!(!u.host.is_empty());
            assert_ne!(u.port, 0);
            let shown = u.to_string();
            match BrokerUrl::parse_quiet(&shown) {
                Ok(again) => assert_eq!(again, u, "{text:?} shown as {shown:?}"),
                Err(e) => panic!("{text:?} shown as {shown:?}, which is refused: {e}"),
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
        }
    }
}

/// Topic prefixes and topic parsing: the input split at its first newline into a prefix
/// and a topic (or a gateway id / node name). Must never panic; a topic built for a valid
/// segment parses back to that segment and kind; a parsed topic rebuilds to itself.
pub fn topics(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (prefix, rest) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(t) = Topics::new(prefix) else {
        return;
    };
    assert!(!t.prefix().ends_with('/'));
    // Whatever parses rebuilds to the same topic.
    if let Some(kind) = t.parse(rest) {
        let rebuilt = match kind {
            TopicKind::GatewayZone(g) => t.gateway_zone(g),
            TopicKind::GatewayStatus(g) => t.gateway_status(g),
            TopicKind::NodeProxy(n) => t.node_proxy(n),
            TopicKind::NodeStatus(n) => t.node_status(n),
        };
        assert_eq!(rebuilt, rest);
    }
    // A valid segment round-trips through every builder.
    if check_segment("segment", rest).is_ok() {
        assert_eq!(
            t.parse(&t.gateway_zone(rest)),
            Some(TopicKind::GatewayZone(rest))
        );
        assert_eq!(
            t.parse(&t.gateway_status(rest)),
            Some(TopicKind::GatewayStatus(rest))
        );
        assert_eq!(
            t.parse(&t.node_proxy(rest)),
            Some(TopicKind::NodeProxy(rest))
        );
        assert_eq!(
            t.parse(&t.node_status(rest)),
            Some(TopicKind::NodeStatus(rest))
        );
    }
    // The wildcard subscriptions are not themselves parsed as a topic.
    assert_eq!(t.parse(&t.all_gateway_status()), None);
    assert_eq!(t.parse(&t.all_node_status()), None);
}

/// Status documents: any bytes as a retained status message (the master reads those of every
/// agent). Must never panic; an accepted document re-emitted with `to_json` parses to the same
/// status, and so does every status built from the accepted one's text fields.
pub fn status(data: &[u8]) {
    if let Ok(s) = Status::from_json(data) {
        let json = s.to_json();
        match Status::from_json(json.as_bytes()) {
            Ok(again) => assert_eq!(again, s, "{json}"),
            Err(e) => panic!("re-emitted {json:?} is refused: {e}"),
        }
    }
    // Any text as the error field and version: what the agent emits, the master reads, up to
    // the door's size (the agent shortens its error to fit); beyond it, refused for its size.
    if let Ok(text) = std::str::from_utf8(data) {
        let s = Status::online(Some(7), Some(text.to_string()), text);
        let json = s.to_json();
        match Status::from_json(json.as_bytes()) {
            Ok(again) => assert_eq!(again, s, "{json}"),
            Err(e) if json.len() > 16 * 1024 => {
                assert!(e.to_string().contains("the limit is 16384"), "{e}")
            }
            Err(e) => panic!("emitted {json:?} is refused: {e}"),
        }
    }
}

/// MQTT packets from the broker, through the client's one door (`client::read_packet`, a
/// 1,000-byte limit so that both sides of it are reached). Must never panic; reading the
/// bytes in one buffer and reading them as they arrive one byte at a time give the same
/// packets and end the same way (an error, or bytes left waiting for more); a packet over the
/// limit is refused from its header.
pub fn mqtt_packet(data: &[u8]) {
    const MAX: usize = 1000;
    // All at once.
    let mut whole = BytesMut::from(data);
    let mut at_once = Vec::new();
    let end_at_once = loop {
        match read_packet(&mut whole, MAX) {
            Ok(Some(p)) => at_once.push(p),
            Ok(None) => break Ok(whole.len()),
            Err(e) => break Err(e.to_string()),
        }
    };
    // One byte at a time.
    let mut buf = BytesMut::new();
    let mut trickled = Vec::new();
    let mut end_trickled = Ok(0);
    'feed: for b in data {
        buf.extend_from_slice(&[*b]);
        loop {
            match read_packet(&mut buf, MAX) {
                Ok(Some(p)) => trickled.push(p),
                Ok(None) => break,
                Err(e) => {
                    end_trickled = Err(e.to_string());
                    break 'feed;
                }
            }
        }
    }
    if end_trickled.is_ok() {
        end_trickled = Ok(buf.len());
    }
    assert_eq!(at_once, trickled);
    assert_eq!(end_at_once, end_trickled);
    if let Err(e) = &end_at_once {
        if e.contains("over this client's limit") {
            assert!(e.contains(&format!("limit of {MAX} bytes")), "{e}");
        }
    }
}
