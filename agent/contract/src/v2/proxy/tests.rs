use super::*;
use alloc::format;

fn header() -> ProxyHeader {
    ProxyHeader {
        suffix: "k8s.internal".into(),
        local: "local".into(),
        listen_port: 80,
        upstream_host: "127.0.0.1".into(),
        dir: "/etc/nginx/sdwan".into(),
        ipv6: true,
        nodes: 3,
    }
}

fn web() -> ProxyService {
    ProxyService {
        ns: "shop".into(),
        name: "web".into(),
        unique: false,
        ports: alloc::vec![
            ProxyPort::parse("https/TCP/443:30443").unwrap(),
            ProxyPort::parse("8080/TCP/8080:30081").unwrap(),
        ],
        here: true,
        nodes: alloc::vec![0],
    }
}

/// Test vectors, computed from the written rules by an independent implementation (Python,
/// in the commit that added them): if one changes, master and workers of different builds
/// disagree on every proxy.
#[test]
fn digest_vectors() {
    assert_eq!(header_hash("worker-2", &header()), 0x672c_5286_f7c7_744b);
    assert_eq!(node_hash(1, "worker-2"), 0xa9d1_d4df_1052_385a);
    assert_eq!(service_hash(&web()), 0x6918_aad0_195c_8741);
}

#[test]
fn every_field_counts_in_the_digest() {
    let base = service_hash(&web());
    let changes: [fn(&mut ProxyService); 6] = [
        |s| s.unique = true,
        |s| s.here = false,
        |s| s.nodes = alloc::vec![1],
        |s| s.ports[0].node_port = 30444,
        |s| s.ports[0].name = None,
        |s| s.ports[0].protocol = Protocol::Sctp,
    ];
    for (i, c) in changes.iter().enumerate() {
        let mut s = web();
        c(&mut s);
        assert_ne!(service_hash(&s), base, "change {i}");
    }
    let mut h = header();
    h.ipv6 = false;
    assert_ne!(
        header_hash("worker-2", &h),
        header_hash("worker-2", &header())
    );
    assert_ne!(
        header_hash("worker-3", &header()),
        header_hash("worker-2", &header())
    );
}

#[test]
fn ports_parse_and_print() {
    // (text, accepted)
    const CASES: &[(&str, bool)] = &[
        ("http/TCP/80:30080", true),
        ("80/TCP/80:30080", true),
        ("dns/UDP/53:30053", true),
        ("sig/SCTP/9000:30900", true),
        ("81/TCP/80:30080", false),
        ("080/TCP/80:30080", false),
        ("http/tcp/80:30080", false),
        ("http/TCP/0:30080", false),
        ("http/TCP/80:0", false),
        ("http/TCP/80:65536", false),
        ("http/TCP/80", false),
        ("http/TCP:30080", false),
        ("http/TCP/80/1:30080", false),
        ("HTTP/TCP/80:30080", false),
        ("-http/TCP/80:30080", false),
        ("abcdefghijklmnop/TCP/80:30080", false),
        ("/TCP/80:30080", false),
        ("http/TCP/+80:30080", false),
    ];
    for (s, ok) in CASES {
        let p = ProxyPort::parse(s);
        assert_eq!(p.is_some(), *ok, "{s:?}");
        if let Some(p) = p {
            assert!(p.is_valid());
            assert_eq!(format!("{p}"), *s);
        }
    }
}

#[test]
fn header_rules() {
    for (h, ok) in [
        ("127.0.0.1", true),
        ("::1", true),
        ("nginx-upstream.local", true),
        ("-bad", false),
        ("a..b", false),
        ("", false),
        ("a b", false),
    ] {
        assert_eq!(is_upstream_host(h), ok, "{h:?}");
    }
    for (d, ok) in [
        ("/etc/nginx/sdwan", true),
        ("/", true),
        ("/etc/nginx/sdwan/", false),
        ("etc/nginx", false),
        ("/etc/../root", false),
        ("/etc/nginx sdwan", false),
        ("/etc/\"x", false),
    ] {
        assert_eq!(is_proxy_dir(d), ok, "{d:?}");
    }
}

const PART: &str = r#"{"schema":2,"kind":"part","node":"worker-2","version":7,"digest":"0000000000000000","part":0,"parts":1,"proxy":{"suffix":"k8s.internal","local":"local","listen_port":80,"upstream_host":"127.0.0.1","dir":"/etc/nginx/sdwan","nodes":2},"first_node":0,"nodes":[{"name":"worker-1"},null],"services":[{"ns":"shop","name":"web","ports":["http/TCP/80:30080"],"here":true,"nodes":"0"}]}"#;

/// Each case replaces one piece of a valid part and names the error it must give.
#[test]
fn bad_messages_are_refused_with_a_clear_error() {
    // (from, to, error text)
    const CASES: &[(&str, &str, &str)] = &[
        ("\"schema\":2", "\"schema\":3", "unsupported schema 3"),
        ("\"kind\":\"part\"", "\"kind\":\"zone\"", "unknown kind"),
        (
            "\"node\":\"worker-2\"",
            "\"node\":\"worker 2\"",
            "field `node`: invalid value",
        ),
        (
            "\"node\":\"worker-2\",",
            "\"gateway\":\"worker-2\",",
            "unknown field",
        ),
        ("\"part\":0", "\"part\":1", "field `part`: out of range"),
        (
            "\"listen_port\":80",
            "\"listen_port\":0",
            "field `listen_port`: out of range",
        ),
        (
            "\"listen_port\":80",
            "\"listen_port\":65536",
            "field `listen_port`: out of range",
        ),
        (
            "\"dir\":\"/etc/nginx/sdwan\"",
            "\"dir\":\"/etc/../x\"",
            "field `dir`: invalid value",
        ),
        (
            "\"upstream_host\":\"127.0.0.1\"",
            "\"upstream_host\":\"a b\"",
            "field `upstream_host`: invalid value",
        ),
        (",\"nodes\":2}", "}", "missing field `nodes`"),
        (
            "null]",
            "{\"name\":\"worker-3\"},null]",
            "field `nodes`: node index out of range",
        ),
        (
            "{\"name\":\"worker-1\"}",
            "{\"name\":\"Worker-1\"}",
            "field `name`: invalid value",
        ),
        (
            "{\"name\":\"worker-1\"}",
            "{\"name\":\"worker-1\",\"tier\":\"near\"}",
            "unknown field",
        ),
        (
            "\"nodes\":\"0\"",
            "\"nodes\":\"2\"",
            "field `nodes`: node index out of range",
        ),
        (
            "\"nodes\":\"0\"",
            "\"nodes\":\"0,1\"",
            "field `nodes`: not strictly ascending",
        ),
        (
            "\"ports\":[\"http/TCP/80:30080\"]",
            "\"ports\":[\"http/TCP/80:30080\",\"http/TCP/80:30081\"]",
            "field `ports`: invalid value",
        ),
        (
            "\"ports\":[\"http/TCP/80:30080\"]",
            "\"ports\":[\"http/tcp/80:30080\"]",
            "field `ports`: invalid value",
        ),
        ("\"here\":true", "\"here\":1", "field `here`: wrong type"),
        (
            "\"ns\":\"shop\"",
            "\"ns\":\"Shop\"",
            "field `ns`: invalid value",
        ),
        (
            "\"services\":[",
            "\"services\":[{\"ns\":\"zz\",\"name\":\"a\"},",
            "field `services`: not strictly ascending",
        ),
        (
            "\"first_node\":0",
            "\"first_node\":3",
            "field `first_node`: out of range",
        ),
        (
            "\"version\":7",
            "\"version\":7.0",
            "field `version`: not a non-negative integer",
        ),
        (
            "\"digest\":\"0000000000000000\"",
            "\"digest\":\"00\"",
            "field `digest`: invalid value",
        ),
        (
            "\"version\":7,",
            "\"version\":7,\"base\":6,",
            "field `base` does not belong in this kind",
        ),
    ];
    assert!(decode(PART.as_bytes()).is_ok());
    for (from, to, want) in CASES {
        assert!(PART.contains(from), "{from}");
        let msg = PART.replacen(from, to, 1);
        let got = decode(msg.as_bytes()).expect_err(to);
        assert!(
            format!("{got}").contains(want),
            "{to}: got `{got}`, want `{want}`"
        );
    }
    // More than 8 link nodes.
    let many = PART
        .replace("\"nodes\":2}", "\"nodes\":20}")
        .replace("\"nodes\":\"0\"", "\"nodes\":\"0,2,4,6,8,10,12,14,16\"");
    let got = decode(many.as_bytes()).unwrap_err();
    assert!(
        format!("{got}").contains("field `nodes`: too many items"),
        "{got}"
    );
    // The door: depth and size.
    let deep = PART.replace("\"here\":true", "\"here\":[[[[true]]]]");
    assert!(matches!(
        decode(deep.as_bytes()).unwrap_err().kind,
        ErrorKind::Json(_)
    ));
    let mut big = PART.to_string();
    big.push_str(&" ".repeat(MAX_MESSAGE_BYTES));
    assert!(matches!(
        decode(big.as_bytes()).unwrap_err().kind,
        ErrorKind::Json(_)
    ));
}

#[test]
fn deltas_and_notices_decode_and_refuse() {
    let d = r#"{"schema":2,"kind":"delta","node":"w","base":1,"version":2,"digest":"0000000000000001","node_drop":"1","node_set":[{"index":0,"name":"a"}],"del":[{"ns":"a","name":"b"}],"set":[{"ns":"a","name":"c"}]}"#;
    let ProxyMessage::Delta(delta) = decode(d.as_bytes()).unwrap() else {
        panic!("not a delta")
    };
    assert_eq!(delta.encode().unwrap(), d.as_bytes());
    for (from, to, want) in [
        (
            "\"version\":2",
            "\"version\":1",
            "field `version`: invalid value",
        ),
        ("\"base\":1,", "", "missing field `base`"),
        (
            "\"node_set\":[{\"index\":0,\"name\":\"a\"}]",
            "\"node_set\":[{\"index\":1,\"name\":\"a\"},{\"index\":0,\"name\":\"b\"}]",
            "field `node_set`: not strictly ascending",
        ),
        (
            "\"node_set\":[{\"index\":0,\"name\":\"a\"}]",
            "\"node_set\":[{\"name\":\"a\"}]",
            "missing field `index`",
        ),
        (
            "\"del\":[{\"ns\":\"a\",\"name\":\"b\"}]",
            "\"del\":[{\"ns\":\"a\",\"name\":\"b\"},{\"ns\":\"a\",\"name\":\"b\"}]",
            "field `del`: not strictly ascending",
        ),
        (
            "\"set\":",
            "\"services\":",
            "field `services` does not belong in this kind",
        ),
    ] {
        let msg = d.replacen(from, to, 1);
        let got = decode(msg.as_bytes()).expect_err(to);
        assert!(
            format!("{got}").contains(want),
            "{to}: got `{got}`, want `{want}`"
        );
    }
    let n = r#"{"schema":2,"kind":"notice","node":"w","version":5,"digest":"0000000000000005"}"#;
    let m = decode(n.as_bytes()).unwrap();
    assert_eq!(m.node(), "w");
    assert_eq!(m.encode().unwrap(), n.as_bytes());
}

#[test]
fn a_part_re_encodes_to_its_own_bytes() {
    let m = decode(PART.as_bytes()).unwrap();
    assert_eq!(m.encode().unwrap(), PART.as_bytes());
    let ProxyMessage::Part(p) = &m else { panic!() };
    let snap = ProxySnapshot::assemble(core::slice::from_ref(&m));
    // The declared digest is zero, so assembly refuses it; with the right digest it works.
    assert_eq!(snap, Err(EncodeError::DigestMismatch));
    let fixed = ProxySnapshot {
        node: p.node.clone(),
        version: p.version,
        proxy: p.proxy.clone(),
        nodes: p.nodes.clone(),
        services: p.services.clone(),
    };
    let parts = fixed.encode().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        ProxySnapshot::assemble(&[decode(&parts[0]).unwrap()]).unwrap(),
        fixed
    );
}
