use super::*;
use std::string::String;
use std::vec::Vec;

const PART: &str = r#"{"schema":2,"kind":"part","gateway":"gw-espoo","version":1764694800123,"digest":"5e1c0a9d3b27f4e8","part":0,"parts":2,"zone":{"suffix":"k8s.internal","local":"local","ttl":30,"service_ttl":10,"family":"dual","nodes":3},"first_node":0,"nodes":[{"name":"worker-2","tier":"near","v4":"192.168.200.2","v6":"fd00::2"},null,{"name":"worker-7","tier":"other","v4":"192.168.200.7"}],"services":[{"ns":"default","name":"hello-world","short":true,"ports":["_http._tcp:30080"],"hosts":"0,2"},{"ns":"shop","name":"web","ports":["_443._tcp:30443","_http._tcp:30081"],"hosts":"2"}]}"#;

const DELTA: &str = r#"{"schema":2,"kind":"delta","gateway":"gw-espoo","base":10,"version":11,"digest":"0c55e2f1aa93d07b","node_drop":"1","node_set":[{"index":2,"name":"worker-7","tier":"other","v4":"192.168.200.8"}],"del":[{"ns":"shop","name":"old"}],"set":[{"ns":"shop","name":"web","ports":["_http._tcp:30081"],"hosts":"0,2"}],"hosts":[{"ns":"ops","name":"node-exporter","add":"17","del":"4,9"}]}"#;

const NOTICE: &str = r#"{"schema":2,"kind":"notice","gateway":"gw-espoo","version":1764694900000,"digest":"77d0c3e1b2a49f60"}"#;

use ErrorKind as K;

/// (what, message, text replaced, replacement, expected error kind or `None` when accepted).
/// Each case is a valid message with one edit.
const CASES: &[(&str, &str, &str, &str, Option<ErrorKind>)] = &[
    ("part as documented", PART, "", "", None),
    ("delta as documented", DELTA, "", "", None),
    ("notice as documented", NOTICE, "", "", None),
    (
        "fields in another order",
        NOTICE,
        r#""schema":2,"kind":"notice","#,
        r#""kind":"notice","schema":2,"#,
        None,
    ),
    (
        "white space",
        NOTICE,
        r#""schema":2,"#,
        " \"schema\" :\n 2 ,\t",
        None,
    ),
    (
        "escaped name",
        PART,
        r#""ns":"shop""#,
        r#""ns":"sh\u006fp""#,
        None,
    ),
    (
        "schema 3, whatever else",
        PART,
        r#""schema":2,"#,
        r#""schema":3,"x":[1],"#,
        Some(K::UnsupportedSchema(3)),
    ),
    (
        "schema as string",
        PART,
        r#""schema":2"#,
        r#""schema":"2""#,
        Some(K::WrongType("schema")),
    ),
    (
        "no schema",
        NOTICE,
        r#""schema":2,"#,
        "",
        Some(K::MissingField("schema")),
    ),
    (
        "unknown kind",
        NOTICE,
        r#""notice""#,
        r#""snapshot""#,
        Some(K::UnknownKind),
    ),
    (
        "unknown top field",
        NOTICE,
        r#""schema":2,"#,
        r#""schema":2,"extra":{},"#,
        Some(K::UnknownField),
    ),
    (
        "duplicate field",
        NOTICE,
        r#""schema":2,"#,
        r#""schema":2,"version":1,"#,
        Some(K::DuplicateField("version")),
    ),
    (
        "base in a notice",
        NOTICE,
        r#""schema":2,"#,
        r#""schema":2,"base":1,"#,
        Some(K::FieldNotForKind("base")),
    ),
    (
        "nodes in a delta",
        DELTA,
        r#""schema":2,"#,
        r#""schema":2,"nodes":[],"#,
        Some(K::FieldNotForKind("nodes")),
    ),
    (
        "delta without base",
        DELTA,
        r#""base":10,"#,
        "",
        Some(K::MissingField("base")),
    ),
    (
        "part without services",
        PART,
        r#","services":[{"ns":"default","name":"hello-world","short":true,"ports":["_http._tcp:30080"],"hosts":"0,2"},{"ns":"shop","name":"web","ports":["_443._tcp:30443","_http._tcp:30081"],"hosts":"2"}]"#,
        "",
        Some(K::MissingField("services")),
    ),
    (
        "gateway with a space",
        NOTICE,
        "gw-espoo",
        "gw espoo",
        Some(K::Invalid("gateway")),
    ),
    (
        "gateway too long",
        NOTICE,
        "gw-espoo",
        "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg",
        Some(K::Invalid("gateway")),
    ),
    (
        "version negative",
        NOTICE,
        "1764694900000",
        "-1",
        Some(K::BadNumber("version")),
    ),
    (
        "version fraction",
        NOTICE,
        "1764694900000",
        "1.5",
        Some(K::BadNumber("version")),
    ),
    (
        "version exponent",
        NOTICE,
        "1764694900000",
        "1e3",
        Some(K::BadNumber("version")),
    ),
    (
        "version above u64",
        NOTICE,
        "1764694900000",
        "18446744073709551616",
        Some(K::OutOfRange("version")),
    ),
    (
        "version u64 max",
        NOTICE,
        "1764694900000",
        "18446744073709551615",
        None,
    ),
    (
        "digest upper case",
        NOTICE,
        "77d0c3e1b2a49f60",
        "77D0C3E1B2A49F60",
        Some(K::Invalid("digest")),
    ),
    (
        "digest short",
        NOTICE,
        "77d0c3e1b2a49f60",
        "77d0c3e1b2a49f6",
        Some(K::Invalid("digest")),
    ),
    (
        "delta version not newer",
        DELTA,
        r#""version":11"#,
        r#""version":10"#,
        Some(K::Invalid("version")),
    ),
    (
        "delta across the wrap",
        DELTA,
        r#""base":10,"version":11"#,
        r#""base":18446744073709551615,"version":0"#,
        None,
    ),
    (
        "part beyond parts",
        PART,
        r#""part":0"#,
        r#""part":2"#,
        Some(K::OutOfRange("part")),
    ),
    (
        "no parts",
        PART,
        r#""parts":2"#,
        r#""parts":0"#,
        Some(K::OutOfRange("parts")),
    ),
    (
        "too many parts",
        PART,
        r#""parts":2"#,
        r#""parts":65"#,
        Some(K::OutOfRange("parts")),
    ),
    (
        "first node beyond slots",
        PART,
        r#""first_node":0"#,
        r#""first_node":4"#,
        Some(K::OutOfRange("first_node")),
    ),
    (
        "more nodes than slots",
        PART,
        r#""nodes":3}"#,
        r#""nodes":2}"#,
        Some(K::IndexOutOfRange("nodes")),
    ),
    (
        "slots above the limit",
        PART,
        r#""nodes":3}"#,
        r#""nodes":4097}"#,
        Some(K::OutOfRange("nodes")),
    ),
    (
        "probe port (issue 14)",
        PART,
        r#""nodes":3}"#,
        r#""nodes":3,"probe":80}"#,
        None,
    ),
    (
        "probe port 0",
        PART,
        r#""nodes":3}"#,
        r#""nodes":3,"probe":0}"#,
        Some(K::Invalid("probe")),
    ),
    (
        "probe port above 65535",
        PART,
        r#""nodes":3}"#,
        r#""nodes":3,"probe":65536}"#,
        Some(K::OutOfRange("probe")),
    ),
    (
        "suffix upper case",
        PART,
        "k8s.internal",
        "K8s.internal",
        Some(K::Invalid("suffix")),
    ),
    (
        "suffix trailing dot",
        PART,
        "k8s.internal",
        "k8s.internal.",
        Some(K::Invalid("suffix")),
    ),
    (
        "local not a label",
        PART,
        r#""local":"local""#,
        r#""local":"lo.cal""#,
        Some(K::Invalid("local")),
    ),
    (
        "ttl above 2^31-1",
        PART,
        r#""ttl":30"#,
        r#""ttl":2147483648"#,
        Some(K::OutOfRange("ttl")),
    ),
    (
        "family unknown",
        PART,
        r#""dual""#,
        r#""both""#,
        Some(K::Invalid("family")),
    ),
    (
        "zone field unknown",
        PART,
        r#""family":"dual""#,
        r#""family":"dual","x":1"#,
        Some(K::UnknownField),
    ),
    (
        "zone field missing",
        PART,
        r#""service_ttl":10,"#,
        "",
        Some(K::MissingField("service_ttl")),
    ),
    (
        "node without address",
        PART,
        r#","v4":"192.168.200.7""#,
        "",
        Some(K::MissingField("v4")),
    ),
    (
        "node bad v4",
        PART,
        "192.168.200.7",
        "192.168.200",
        Some(K::Invalid("v4")),
    ),
    (
        "node v4 in v6",
        PART,
        "fd00::2",
        "192.168.200.2",
        Some(K::Invalid("v6")),
    ),
    (
        "node name upper case",
        PART,
        "worker-7",
        "Worker-7",
        Some(K::Invalid("name")),
    ),
    (
        "node name with dots",
        PART,
        "worker-7",
        "ip-10-0-0-7.ec2.internal",
        None,
    ),
    (
        "tiers near, zone",
        PART,
        r#""tier":"other""#,
        r#""tier":"zone""#,
        None,
    ),
    (
        "tiers going back",
        PART,
        r#"null,{"name":"worker-7","tier":"other""#,
        r#"{"name":"w-x","tier":"other","v4":"10.0.0.1"},{"name":"worker-7","tier":"zone""#,
        Some(K::NotAscending("tier")),
    ),
    (
        "tier unknown",
        PART,
        r#""tier":"near""#,
        r#""tier":"far""#,
        Some(K::Invalid("tier")),
    ),
    (
        "node index in a part",
        PART,
        r#"{"name":"worker-2""#,
        r#"{"index":0,"name":"worker-2""#,
        Some(K::UnknownField),
    ),
    (
        "node as a number",
        PART,
        "null,",
        "7,",
        Some(K::WrongType("node")),
    ),
    (
        "services not ascending",
        PART,
        r#""ns":"shop""#,
        r#""ns":"abc""#,
        Some(K::NotAscending("services")),
    ),
    (
        "service twice",
        PART,
        r#""ns":"shop","name":"web""#,
        r#""ns":"default","name":"hello-world""#,
        Some(K::NotAscending("services")),
    ),
    (
        "service name not a label",
        PART,
        r#""name":"web""#,
        r#""name":"we_b""#,
        Some(K::Invalid("name")),
    ),
    (
        "service without hosts",
        PART,
        r#","hosts":"2""#,
        "",
        Some(K::MissingField("hosts")),
    ),
    (
        "service with no host",
        PART,
        r#""hosts":"2""#,
        r#""hosts":"""#,
        Some(K::Invalid("hosts")),
    ),
    (
        "host beyond slots",
        PART,
        r#""hosts":"2""#,
        r#""hosts":"3""#,
        Some(K::IndexOutOfRange("hosts")),
    ),
    (
        "hosts not ascending",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"2,0""#,
        Some(K::NotAscending("hosts")),
    ),
    (
        "hosts repeated",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"2,2""#,
        Some(K::NotAscending("hosts")),
    ),
    (
        "short not a bool",
        PART,
        r#""short":true"#,
        r#""short":1"#,
        Some(K::WrongType("short")),
    ),
    (
        "ports not ascending",
        PART,
        r#""_443._tcp:30443","_http._tcp:30081""#,
        r#""_http._tcp:30081","_443._tcp:30443""#,
        Some(K::NotAscending("ports")),
    ),
    (
        "port sctp",
        PART,
        "_http._tcp:30080",
        "_http._sctp:30080",
        Some(K::Invalid("ports")),
    ),
    (
        "port zero",
        PART,
        "_http._tcp:30080",
        "_http._tcp:0",
        Some(K::Invalid("ports")),
    ),
    (
        "service field unknown",
        PART,
        r#""short":true"#,
        r#""short":true,"ttl":5"#,
        Some(K::UnknownField),
    ),
    (
        "node_drop not ascending",
        DELTA,
        r#""node_drop":"1""#,
        r#""node_drop":"3,1""#,
        Some(K::NotAscending("node_drop")),
    ),
    (
        "node_set without index",
        DELTA,
        r#""index":2,"#,
        "",
        Some(K::MissingField("index")),
    ),
    (
        "node_set index at the limit",
        DELTA,
        r#""index":2"#,
        r#""index":4096"#,
        Some(K::OutOfRange("index")),
    ),
    (
        "del with hosts",
        DELTA,
        r#""name":"old"}"#,
        r#""name":"old","add":"1"}"#,
        Some(K::UnknownField),
    ),
    (
        "hosts add and del the same",
        DELTA,
        r#""add":"17""#,
        r#""add":"4""#,
        Some(K::Invalid("del")),
    ),
    (
        "hosts add not ascending",
        DELTA,
        r#""add":"17""#,
        r#""add":"17,3""#,
        Some(K::NotAscending("add")),
    ),
    (
        "hosts without add and del",
        DELTA,
        r#","add":"17","del":"4,9""#,
        "",
        None,
    ),
    (
        "set host at the limit",
        DELTA,
        r#""hosts":"0,2""#,
        r#""hosts":"0,4096""#,
        Some(K::OutOfRange("hosts")),
    ),
    (
        "hosts as ranges",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0-2""#,
        None,
    ),
    (
        "hosts as an array",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":[0,2]"#,
        Some(K::WrongType("hosts")),
    ),
    (
        "adjacent hosts not one range",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0,1""#,
        Some(K::NotAscending("hosts")),
    ),
    (
        "overlapping ranges",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0-1,1-2""#,
        Some(K::NotAscending("hosts")),
    ),
    (
        "range backwards",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"2-0""#,
        Some(K::NotAscending("hosts")),
    ),
    (
        "range of one",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"2-2""#,
        Some(K::NotAscending("hosts")),
    ),
    (
        "range beyond slots",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0-3""#,
        Some(K::IndexOutOfRange("hosts")),
    ),
    (
        "host with a leading zero",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0,02""#,
        Some(K::Invalid("hosts")),
    ),
    (
        "host list with a space",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0, 2""#,
        Some(K::Invalid("hosts")),
    ),
    (
        "host list trailing comma",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0,2,""#,
        Some(K::Invalid("hosts")),
    ),
    (
        "host list escaped",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0,\u0032""#,
        Some(K::Invalid("hosts")),
    ),
    (
        "host index of five digits",
        PART,
        r#""hosts":"0,2""#,
        r#""hosts":"0,10000""#,
        Some(K::OutOfRange("hosts")),
    ),
    (
        "DaemonSet range at the limit",
        DELTA,
        r#""hosts":"0,2""#,
        r#""hosts":"0-4095""#,
        None,
    ),
    ("not an object", NOTICE, NOTICE, "[1]", Some(K::NotObject)),
    (
        "trailing comma (the door)",
        NOTICE,
        "}",
        ",}",
        Some(K::Json(json::ErrorKind::Unexpected)),
    ),
    (
        "raw control character (the door)",
        NOTICE,
        "gw-espoo",
        "gw-\u{1}",
        Some(K::Json(json::ErrorKind::ControlInString)),
    ),
    (
        "too deep (the door)",
        DELTA,
        r#""set":["#,
        r#""set":[[[[1]]],"#,
        Some(K::Json(json::ErrorKind::TooDeep)),
    ),
];

#[derive(Default)]
struct Log(Vec<String>);

impl Visitor for Log {
    fn envelope(&mut self, env: &Envelope) -> Result<(), &'static str> {
        self.0
            .push(std::format!("env {:?} {}", env.kind, env.version));
        Ok(())
    }
    fn node(&mut self, index: u16, node: Option<&Node>) -> Result<(), &'static str> {
        self.0
            .push(std::format!("node {index} {:?}", node.map(|n| n.name)));
        Ok(())
    }
    fn node_drop(&mut self, index: u16) -> Result<(), &'static str> {
        self.0.push(std::format!("drop {index}"));
        Ok(())
    }
    fn node_set(&mut self, index: u16, node: &Node) -> Result<(), &'static str> {
        self.0.push(std::format!("set node {index} {}", node.name));
        Ok(())
    }
    fn service_del(&mut self, ns: &str, name: &str) -> Result<(), &'static str> {
        self.0.push(std::format!("del {ns}/{name}"));
        Ok(())
    }
    fn service(&mut self, s: &ServiceRef<'_>) -> Result<(), &'static str> {
        self.0
            .push(std::format!("svc {}/{} {:?}", s.ns, s.name, s.hosts));
        Ok(())
    }
    fn hosts(
        &mut self,
        ns: &str,
        name: &str,
        add: &[u16],
        del: &[u16],
    ) -> Result<(), &'static str> {
        self.0
            .push(std::format!("hosts {ns}/{name} +{add:?} -{del:?}"));
        Ok(())
    }
}

#[test]
fn cases() {
    let mut scratch = Scratch::new();
    for (what, base, from, to, want) in CASES {
        let msg = if from.is_empty() {
            String::from(*base)
        } else {
            assert!(base.contains(from), "{what}: {from:?} not in the message");
            base.replacen(from, to, 1)
        };
        let got = decode(msg.as_bytes(), &mut scratch, &mut Log::default());
        assert_eq!(got.err().map(|e| e.kind), *want, "{what}: {msg}");
    }
}

#[test]
fn items_come_in_application_order() {
    let mut log = Log::default();
    // Fields in reverse order in the text: the visitor still sees the envelope first and the
    // operations in the order node_drop, node_set, del, set, hosts.
    let reversed = r#"{"hosts":[{"ns":"a","name":"b","add":"1"}],"set":[{"ns":"a","name":"c","hosts":"0"}],"del":[{"ns":"a","name":"d"}],"node_set":[{"index":1,"name":"n","tier":"near","v6":"::1"}],"node_drop":"0","digest":"0000000000000000","version":2,"base":1,"gateway":"g","kind":"delta","schema":2}"#;
    decode(reversed.as_bytes(), &mut Scratch::new(), &mut log).unwrap();
    assert_eq!(
        log.0,
        [
            "env Delta 2",
            "drop 0",
            "set node 1 n",
            "del a/d",
            "svc a/c [0]",
            "hosts a/b +[1] -[]"
        ]
    );
    let mut log = Log::default();
    let env = decode(PART.as_bytes(), &mut Scratch::new(), &mut log).unwrap();
    assert_eq!(env.zone.unwrap().nodes, 3);
    assert_eq!(
        log.0,
        [
            "env Part 1764694800123",
            "node 0 Some(\"worker-2\")",
            "node 1 None",
            "node 2 Some(\"worker-7\")",
            "svc default/hello-world [0, 2]",
            "svc shop/web [2]"
        ]
    );
}

#[test]
fn a_refusing_visitor_stops_the_decoding() {
    struct No;
    impl Visitor for No {
        fn service(&mut self, _: &ServiceRef<'_>) -> Result<(), &'static str> {
            Err("storage full")
        }
    }
    let e = decode(PART.as_bytes(), &mut Scratch::new(), &mut No).unwrap_err();
    assert_eq!(e.kind, K::Refused("storage full"));
    assert_eq!(&PART[e.offset..e.offset + 7], r#"{"ns":""#);
}

#[test]
fn a_too_large_message_is_refused_at_the_door() {
    let mut msg = String::from(NOTICE);
    msg.insert_str(1, &" ".repeat(crate::v2::MAX_MESSAGE_BYTES));
    let e = decode(msg.as_bytes(), &mut Scratch::new(), &mut Log::default()).unwrap_err();
    assert_eq!(e.kind, K::Json(json::ErrorKind::TooLarge));
}

/// The reader behind the door never panics on bytes the door would refuse: every prefix of
/// valid messages, given straight to `decode_checked`.
#[test]
fn unchecked_prefixes_never_panic() {
    for m in [PART, DELTA, NOTICE] {
        for end in 0..m.len() {
            let _ = decode_checked(
                &m.as_bytes()[..end],
                &mut Scratch::new(),
                &mut Log::default(),
            );
        }
    }
}

#[test]
fn errors_print_what_and_where() {
    let e = decode(b"{\"schema\":3}", &mut Scratch::new(), &mut Log::default()).unwrap_err();
    assert_eq!(
        std::format!("{e}"),
        "unsupported schema 3 (this agent reads 2) at byte 10"
    );
}
