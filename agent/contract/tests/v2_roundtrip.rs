//! Payload v2 end to end on owned data: the master's encoder, the agent's decoder, assembly
//! of parts and application of deltas, on synthetic zones at issue 11's scale.

mod v2_common;

use sdwan_contract::v2::accept::{self, AssemblyError, PartAction, PartSet, Progress};
use sdwan_contract::v2::decode::{decode, PartDigest, Scratch};
use sdwan_contract::v2::encode::{decode_owned, Delta, EncodeError, Message, Snapshot};
use sdwan_contract::v2::{Digest, Tier, Version, MAX_MESSAGE_BYTES};
use sdwan_testsupport::Rng;

fn decode_parts(parts: &[Vec<u8>]) -> Vec<Message> {
    parts.iter().map(|p| decode_owned(p).unwrap()).collect()
}

#[test]
fn a_snapshot_at_scale_round_trips_through_parts_in_any_order() {
    let snap = v2_common::snapshot(1);
    let parts = snap.encode().unwrap();
    assert!(parts.len() > 1, "this zone needs several parts");
    for p in &parts {
        assert!(p.len() <= MAX_MESSAGE_BYTES, "part of {} bytes", p.len());
    }
    let mut msgs = decode_parts(&parts);
    // Every part re-encodes to its own bytes: the encoding is canonical.
    for (m, p) in msgs.iter().zip(&parts) {
        assert_eq!(&m.encode().unwrap(), p);
    }
    let mut rng = Rng::new(7);
    for _ in 0..5 {
        for i in (1..msgs.len()).rev() {
            msgs.swap(i, rng.below(i + 1));
        }
        let back = Snapshot::assemble(&msgs).unwrap();
        assert_eq!(back, snap);
        assert_eq!(back.digest(), snap.digest());
    }
    // The agent's way: the digest summed from the decoded items, without a heap.
    let mut scratch = Scratch::new();
    let mut sum = PartDigest::default();
    for p in parts.iter().rev() {
        decode(p, &mut scratch, &mut sum).unwrap();
    }
    assert_eq!(sum.sum, snap.digest());
}

#[test]
fn parts_that_do_not_make_one_snapshot_are_refused() {
    let snap = v2_common::snapshot(2);
    let parts = snap.encode().unwrap();
    let msgs = decode_parts(&parts);
    assert!(msgs.len() >= 2);
    // A part missing.
    assert_eq!(
        Snapshot::assemble(&msgs[1..]),
        Err(EncodeError::Parts("a part is missing"))
    );
    // A part twice.
    let mut twice = msgs.clone();
    twice.push(msgs[0].clone());
    assert_eq!(
        Snapshot::assemble(&twice),
        Err(EncodeError::Parts("a part twice"))
    );
    // A part of another version (the same content, published again later).
    let mut later = snap.clone();
    later.version = Version(snap.version.0 + 1);
    let other = decode_parts(&later.encode().unwrap());
    let mixed = vec![msgs[0].clone(), other[1].clone()];
    assert_eq!(
        Snapshot::assemble(&mixed),
        Err(EncodeError::Parts("parts of different snapshots"))
    );
    // A torn snapshot: one part from other content under the same version and digest.
    let mut changed = snap.clone();
    changed.services.pop();
    let mut torn_parts = changed.encode().unwrap();
    let last = torn_parts.len() - 1;
    let text = String::from_utf8(torn_parts[last].clone()).unwrap();
    let text = text.replace(
        &format!("\"digest\":\"{}\"", changed.digest()),
        &format!("\"digest\":\"{}\"", snap.digest()),
    );
    torn_parts[last] = text.into_bytes();
    let mut torn = msgs.clone();
    torn[last] = decode_owned(&torn_parts[last]).unwrap();
    assert_eq!(torn_parts.len(), parts.len());
    assert_eq!(Snapshot::assemble(&torn), Err(EncodeError::DigestMismatch));
}

/// One random change of the kinds the master makes between two versions.
fn mutate(s: &mut Snapshot, rng: &mut Rng) {
    let slots = s.nodes.len();
    match rng.below(8) {
        0 => {
            let i = rng.below(s.services.len());
            s.services.remove(i);
        }
        1 => {
            let name = format!("new-{}", rng.next_u64() % 1_000_000);
            let svc = v2_common::service(rng, "team-00".into(), name, slots);
            if let Err(at) = s
                .services
                .binary_search_by(|x| (&x.ns[..], &x.name[..]).cmp(&(&svc.ns[..], &svc.name[..])))
            {
                s.services.insert(at, svc);
            }
        }
        2 | 3 => {
            // An endpoint moves: one host more or one fewer.
            let i = rng.below(s.services.len());
            let h = &mut s.services[i].hosts;
            let x = rng.below(slots) as u16;
            match h.binary_search(&x) {
                Ok(k) if h.len() > 1 => {
                    h.remove(k);
                }
                Ok(_) => {}
                Err(k) => h.insert(k, x),
            }
        }
        4 => {
            let i = rng.below(s.services.len());
            s.services[i].ports = v2_common::ports(rng);
        }
        5 => {
            let i = rng.below(s.services.len());
            s.services[i].short = !s.services[i].short;
        }
        6 => {
            // A worker goes NotReady.
            let i = rng.below(slots);
            s.nodes[i] = None;
        }
        _ => {
            // A worker comes back (or changes address) in its own slot, keeping its tier.
            let i = rng.below(slots);
            let tier = s.nodes[..i]
                .iter()
                .rev()
                .flatten()
                .map(|n| n.tier)
                .next()
                .unwrap_or(Tier::Near);
            let mut n = v2_common::node(i, tier, rng);
            n.name = sdwan_contract::v2::Str::new(&format!("back-{i}")).unwrap();
            let later_tier = s.nodes[i + 1..].iter().flatten().map(|n| n.tier).next();
            if later_tier.is_none_or(|t| t >= tier) {
                s.nodes[i] = Some(n);
            }
        }
    }
}

#[test]
fn deltas_between_versions_apply_to_exactly_the_next_content() {
    let mut rng = Rng::new(11);
    let mut cur = v2_common::snapshot(3);
    for round in 0..100 {
        let mut next = cur.clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut next, &mut rng);
        }
        next.version = cur.version.next(cur.version.0 + rng.below(3) as u64);
        next.check().unwrap();
        let d = Delta::between(&cur, &next).unwrap();
        let bytes = d.encode().unwrap();
        let Message::Delta(back) = decode_owned(&bytes).unwrap() else {
            panic!("not a delta");
        };
        assert_eq!(back, d, "round {round}");
        // Only on exactly its base.
        let mut elsewhere = next.clone();
        assert_eq!(elsewhere.apply(&back), Err(EncodeError::WrongBase));
        assert_eq!(elsewhere, next);
        // A wrong digest leaves the content as it was.
        let mut lying = back.clone();
        lying.digest = Digest(lying.digest.0 ^ 1);
        let mut kept = cur.clone();
        assert_eq!(kept.apply(&lying), Err(EncodeError::DigestMismatch));
        assert_eq!(kept, cur);
        cur.apply(&back).unwrap();
        assert_eq!(cur, next, "round {round}");
    }
}

/// Issue 11: "one service change: at most 2 MB delivered by the broker to all sessions
/// together" at 2,000 gateways, including a DaemonSet on every worker losing one endpoint.
#[test]
fn one_service_change_delivers_at_most_2_mb_to_2000_gateways() {
    let snap = v2_common::snapshot(4);
    let slots = snap.nodes.len();
    let daemonset = snap
        .services
        .iter()
        .position(|s| s.hosts.len() == slots)
        .expect("a DaemonSet");
    let small = snap
        .services
        .iter()
        .position(|s| s.hosts.len() == 2)
        .unwrap();
    type Change = fn(&mut Vec<u16>);
    let cases: [(&str, usize, Change); 3] = [
        ("DaemonSet loses a worker", daemonset, |h| {
            h.remove(250);
        }),
        ("endpoint moves", small, |h| {
            h[0] = if h[0] == 0 { 1 } else { 0 };
            h.sort_unstable();
        }),
        ("scale out by one", small, |h| {
            let x = (0..).find(|x| !h.contains(x)).unwrap();
            h.push(x);
            h.sort_unstable();
        }),
    ];
    for (what, i, change) in cases {
        let mut next = snap.clone();
        change(&mut next.services[i].hosts);
        next.version = Version(snap.version.0 + 1);
        let d = Delta::between(&snap, &next).unwrap().encode().unwrap();
        let total = d.len() * 2000;
        println!(
            "{what}: delta {} bytes, x 2,000 gateways = {total} bytes",
            d.len()
        );
        assert!(total <= 2_000_000, "{what}: {total} bytes");
    }
}

/// The JSON examples of docs/payload-v2.md are messages this decoder accepts.
#[test]
fn the_documented_examples_decode() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/payload-v2.md"
    ))
    .unwrap();
    // The zone's examples: the proxy section has its own (tests/proxy_v2.rs).
    let doc = doc.split("## Proxy payload v2").next().unwrap();
    let mut n = 0;
    for block in doc.split("```json\n").skip(1) {
        let json = block.split("```").next().unwrap();
        decode_owned(json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {json}"));
        n += 1;
    }
    assert_eq!(n, 3);
}

/// What an agent does with the parts it receives, heap-free: decide (`accept::part`), stage,
/// and swap only when `PartSet` says the snapshot is complete and its digest matches.
fn agent_assembles(
    held: Option<accept::Held>,
    parts: &[&[u8]],
) -> Result<Option<accept::Held>, AssemblyError> {
    let mut scratch = Scratch::new();
    let mut set = PartSet::new();
    for p in parts {
        // First the envelope only (a visitor that takes nothing), then the items.
        let env = decode(p, &mut scratch, &mut PartDigest::default()).unwrap();
        match accept::part(held, set.staging(), env.version, env.digest) {
            PartAction::Restart => set.restart(&env),
            PartAction::Stage if !set.has(env.part) => {}
            _ => continue,
        }
        let mut items = PartDigest::default();
        decode(p, &mut scratch, &mut items).unwrap();
        if set.add(&env, items.nodes, items.sum)? == Progress::Complete {
            return Ok(set.staging());
        }
    }
    Ok(None)
}

#[test]
fn the_agent_swaps_only_a_complete_snapshot_with_its_digest() {
    let snap = v2_common::snapshot(5);
    let parts = snap.encode().unwrap();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let want = accept::Held {
        version: snap.version,
        digest: snap.digest(),
    };
    // In order, reversed, with a part repeated (a retained message delivered twice).
    assert_eq!(agent_assembles(None, &refs), Ok(Some(want)));
    let rev: Vec<&[u8]> = refs.iter().rev().copied().collect();
    assert_eq!(agent_assembles(None, &rev), Ok(Some(want)));
    let mut twice = vec![refs[0]];
    twice.extend(&refs);
    assert_eq!(agent_assembles(None, &twice), Ok(Some(want)));
    // A part missing: nothing to swap.
    assert_eq!(agent_assembles(None, &refs[1..]), Ok(None));
    // Already held: every part is a replay.
    assert_eq!(agent_assembles(Some(want), &refs), Ok(None));
    // A newer snapshot's parts arriving midway restart the staging; the older ones left are
    // ignored, and the newer one completes.
    let mut newer = snap.clone();
    newer.version = Version(snap.version.0 + 5);
    newer.services.remove(0);
    let nparts = newer.encode().unwrap();
    let mut mixed: Vec<&[u8]> = vec![refs[0]];
    mixed.extend(nparts.iter().map(Vec::as_slice));
    mixed.extend(&refs[1..]);
    let got = agent_assembles(None, &mixed).unwrap().unwrap();
    assert_eq!(got.version, newer.version);
    // Torn: other content under the same version and digest.
    let mut other = snap.clone();
    other.services.remove(0);
    let oparts = other.encode().unwrap();
    let last = oparts.len() - 1;
    let forged = String::from_utf8(oparts[last].clone())
        .unwrap()
        .replace(&other.digest().to_string(), &snap.digest().to_string())
        .into_bytes();
    assert_eq!(oparts.len(), parts.len());
    let mut torn = refs.clone();
    torn[last] = &forged;
    assert_eq!(
        agent_assembles(None, &torn),
        Err(AssemblyError::DigestMismatch)
    );
}
