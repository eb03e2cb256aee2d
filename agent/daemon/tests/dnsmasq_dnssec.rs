//! The branch router's dnsmasq with DNSSEC validation on (OpenWrt `option dnssec 1`: root
//! trust anchor, `dnssec-check-unsigned`) in front of a real agent on loopback: the suffix
//! forwarded with `server=/SUFFIX/` must still resolve, not SERVFAIL (issue 12, item 13).
//! dnsmasq turns validation off for a domain it forwards to a `server=/domain/`, unless a
//! trust anchor is given for that domain, so neither the default `k8s.internal` (a private
//! TLD) nor a subzone of a signed domain needs more than what the OpenWrt package sets.

use sdwan_testsupport::{dig, Agent, Dnsmasq, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_sdwan-agent");

/// A zone for `suffix` with a private-range answer (OpenWrt's rebind protection must let it
/// through for the suffix) and an SRV set.
fn zone(suffix: &str) -> String {
    format!(
        r#"{{"version":1,"serial":3,"gateway":"gw-espoo","origin":"{suffix}","ttl":30,"records":[
            {{"name":"local","type":"A","data":"192.168.200.3"}},
            {{"name":"worker1","type":"A","data":"192.168.200.3"}},
            {{"name":"hello-world.default","type":"A","data":"192.168.200.3"}},
            {{"name":"_http._tcp.hello-world.default","type":"SRV","data":"0 0 30080 worker1"}}]}}"#
    )
}

/// (query arguments after the suffix is filled in for `{s}`, expected status, expected data)
const CASES: &[(&[&str], &str, &[&str])] = &[
    (&["local.{s}", "A"], "NOERROR", &["192.168.200.3"]),
    (
        &["+dnssec", "local.{s}", "A"],
        "NOERROR",
        &["192.168.200.3"],
    ),
    (
        &["+tcp", "hello-world.default.{s}", "A"],
        "NOERROR",
        &["192.168.200.3"],
    ),
    (
        &["_http._tcp.hello-world.default.{s}", "SRV"],
        "NOERROR",
        &["0 0 30080 worker1.{s}."],
    ),
    (&["nope.{s}", "A"], "NXDOMAIN", &[]),
];

#[test]
fn validating_dnsmasq_forwards_the_suffix_without_servfail() {
    // The default, a private TLD; a subzone of a signed public domain; a name under the
    // signed, delegated gTLD .services (where the former default was).
    for suffix in ["k8s.internal", "k8s.example.com", "sdwan.services"] {
        let dir = TempDir::new("dnssec");
        let z = dir.write("zone.json", zone(suffix));
        let agent = Agent::start(BIN, &["--zone-file", z.to_str().unwrap()]);
        let dnsmasq = Dnsmasq::start_validating(suffix, agent.dns, &["--stop-dns-rebind"]);
        for (args, status, data) in CASES {
            let args: Vec<String> = args.iter().map(|a| a.replace("{s}", suffix)).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let a = dig(dnsmasq.addr, &args);
            assert_eq!(
                a.status.as_deref(),
                Some(*status),
                "{args:?}:\n{}",
                a.stdout
            );
            let rtype = args[args.len() - 1];
            let want: Vec<String> = data.iter().map(|d| d.replace("{s}", suffix)).collect();
            assert_eq!(a.answer_data(rtype), want, "{args:?}:\n{}", a.stdout);
        }
        // Validation was on, and the forwarded suffix is exempt, as the man page says.
        let log = dnsmasq.child.stderr();
        assert!(log.contains("DNSSEC validation enabled"), "{log}");
        assert!(
            log.contains("configured with trust anchor for <root>"),
            "{log}"
        );
        assert!(
            log.contains(&format!("for domain {suffix} (no DNSSEC)")),
            "{log}"
        );
    }
}

#[test]
fn a_trust_anchor_for_the_suffix_turns_answers_into_servfail() {
    // What not to configure: with a trust anchor for the suffix dnsmasq validates it, and the
    // agent's unsigned answers are bogus. Shows the test above runs a validating dnsmasq.
    let suffix = "k8s.internal";
    let dir = TempDir::new("dnssec-anchor");
    let z = dir.write("zone.json", zone(suffix));
    let agent = Agent::start(BIN, &["--zone-file", z.to_str().unwrap()]);
    let anchor = format!(
        "--trust-anchor={suffix},20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"
    );
    let dnsmasq = Dnsmasq::start_validating(suffix, agent.dns, &[&anchor]);
    let a = dig(dnsmasq.addr, &[&format!("local.{suffix}"), "A"]);
    assert_eq!(a.status.as_deref(), Some("SERVFAIL"), "{}", a.stdout);
}
