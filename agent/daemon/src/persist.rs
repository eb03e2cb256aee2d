//! The last applied zone payload on disk (`--state-dir`), so the agent serves it at boot,
//! before and without the broker.
//!
//! [`save`] writes `zone.json.tmp`, fsyncs it, renames it over `zone.json` and fsyncs the
//! directory: after a power cut or `kill -9` the file is the old payload or the new one, whole.
//! [`write_atomic`], the one function that writes files (the zone here, the worker's proxy
//! files), creates the temporary file exclusively, never through a link, and removes it when
//! anything fails.
//! [`load`] re-validates the file with the core like any payload from the broker; a missing,
//! unreadable, corrupt or truncated file is logged and ignored, never fatal.
//!
//! Payload v2 (`docs/payload-v2.md`): [`save_v2`] writes the zone in use, re-encoded as its
//! snapshot parts by the contract's encoder, one JSON message per line, into
//! [`V2_STATE_FILE`] (atomically, as above); [`load_v2`] reads it back (bounded) through the
//! same door as the broker's parts (`Staging::part`: decoding, assembly, digest check).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use log::{info, warn};

use sdwan_agent_core::v2zone::{PartStatus, Staging, Work};
use sdwan_contract::v2::encode::{Message, PartData, Service};
use sdwan_contract::v2::{Node, Port, Str, MAX_MESSAGE_BYTES, MAX_PARTS};

use crate::store::{load_payload, OwnedZone, OwnedZoneV2};

/// The persisted payload's file name inside the state directory.
pub const STATE_FILE: &str = "zone.json";
/// The temporary file written before the rename.
pub const TEMP_FILE: &str = "zone.json.tmp";

/// Path of the persisted payload.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Makes sure the agent can keep zones in `dir`: creates it (and its parents; mode 0700) when
/// missing, then creates and removes [`TEMP_FILE`] in it, as [`save`] will. Called at start,
/// after privileges are dropped, so a directory the agent cannot write is refused at once
/// instead of failing at the first zone.
pub fn prepare_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if !dir.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    let probe = dir.join(TEMP_FILE);
    File::create(&probe)?;
    fs::remove_file(&probe)
}

/// Writes `payload` atomically and durably as the persisted zone.
pub fn save(dir: &Path, payload: &[u8]) -> io::Result<()> {
    write_atomic(dir, STATE_FILE, payload)
}

/// Writes `dir/name` atomically and durably: `dir/name.tmp`, fsync, rename, fsync of `dir`.
/// Readers see the old contents or the new, whole (also used for the proxy files).
///
/// The temporary file is created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`): whatever already
/// has its name (a file left by a crash, or a link planted by someone who may write the
/// directory) is unlinked, never followed, and the creation tried once more; a directory
/// there is an error. On any failure (a full disk, a failed fsync or rename) the temporary
/// file is removed and `dir/name` is left as it was.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    write_atomic_with(dir, name, contents, |f, c| f.write_all(c))
}

/// [`write_atomic`] with the writing of the contents into the temporary file done by
/// `write` (tests make it fail midway).
fn write_atomic_with(
    dir: &Path,
    name: &str,
    contents: &[u8],
    write: impl FnOnce(&mut File, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = create_exclusive(&tmp)?;
    let written = write(&mut f, contents)
        .and_then(|()| f.sync_all())
        .and_then(|()| {
            drop(f);
            fs::rename(&tmp, dir.join(name))
        });
    if let Err(e) = written {
        // Unlinks the name (what we created), never anything it might point to.
        if let Err(r) = fs::remove_file(&tmp) {
            if r.kind() != io::ErrorKind::NotFound {
                warn!("cannot remove {}: {r}", tmp.display());
            }
        }
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// Creates `path` for writing, exclusively and without following a link at `path`. Something
/// already there that is not a directory is unlinked first (once).
fn create_exclusive(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(path)?;
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a directory", path.display()),
                ));
            }
            warn!(
                "removing {} left in the way ({}), not following it",
                path.display(),
                if meta.file_type().is_symlink() {
                    "a symbolic link"
                } else {
                    "a stale temporary file"
                }
            );
            fs::remove_file(path)?;
            open()
        }
        r => r,
    }
}

/// Reads `r` to its end, but never more than `max + 1` bytes: `Ok(None)` when it holds more
/// than `max` (the caller names its limit), so a huge file or `/dev/zero` cannot fill the
/// memory. The one bounded read for every file the agent takes in: zone file, config file,
/// persisted zone, known-good proxy files.
pub fn read_at_most(r: impl io::Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(r, max as u64 + 1), &mut bytes)?;
    Ok((bytes.len() <= max).then_some(bytes))
}

/// Loads and validates the persisted zone. `gateway_id`, when given, must match the payload's
/// `gateway`. Returns `None` (after logging why) when there is nothing usable.
pub fn load(dir: &Path, gateway_id: Option<&str>) -> Option<(OwnedZone, Vec<u8>)> {
    let path = state_file(dir);
    let max = sdwan_agent_core::payload::MAX_PAYLOAD_BYTES;
    let bytes = match fs::File::open(&path).and_then(|f| read_at_most(f, max)) {
        Ok(Some(b)) => b,
        Ok(None) => {
            warn!(
                "persisted zone {} is larger than {max} bytes, ignored",
                path.display()
            );
            return None;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            info!("no persisted zone in {}", dir.display());
            return None;
        }
        Err(e) => {
            warn!("persisted zone {} unreadable, ignored: {e}", path.display());
            return None;
        }
    };
    let zone = match load_payload(&bytes) {
        Ok(z) => z,
        Err(e) => {
            warn!(
                "persisted zone {} is corrupt or truncated, ignored: {e}",
                path.display()
            );
            return None;
        }
    };
    if let Some(id) = gateway_id {
        if zone.gateway() != id {
            warn!(
                "persisted zone {} is for gateway {:?}, not {id:?}; ignored",
                path.display(),
                zone.gateway()
            );
            return None;
        }
    }
    Some((zone, bytes))
}

/// The persisted v2 zone's file name inside the state directory.
pub const V2_STATE_FILE: &str = "zone-v2.jsonl";

/// Largest v2 state file: every part at its largest, one newline each.
pub const V2_STATE_MAX: usize = MAX_PARTS * (MAX_MESSAGE_BYTES + 1);

/// A stored node as the contract's owned node.
fn node_of(zone: &OwnedZoneV2, slot: u16) -> Option<Node> {
    let n = zone.node(slot)?;
    Some(Node {
        name: Str::new(std::str::from_utf8(n.name).ok()?)?,
        tier: n.tier,
        v4: n.v4.map(std::net::Ipv4Addr::from),
        v6: n.v6.map(std::net::Ipv6Addr::from),
    })
}

/// The `i`th stored service as the contract's owned service.
fn service_of(zone: &OwnedZoneV2, i: usize) -> Option<Service> {
    let s = zone.service(i)?;
    Some(Service {
        ns: String::from_utf8_lossy(s.ns).into_owned(),
        name: String::from_utf8_lossy(s.name).into_owned(),
        short: s.short(),
        ports: s
            .ports()
            .filter_map(|p| {
                Some(Port {
                    label: Str::new(std::str::from_utf8(p.label).ok()?)?,
                    proto: p.proto,
                    node_port: p.node_port,
                })
            })
            .collect(),
        hosts: s.hosts().collect(),
    })
}

/// The zone's snapshot parts, written to `out` one per line, item by item: each node and each
/// service is encoded on its own by the contract's encoder (`Message::Part` of that one item,
/// the item's text cut out between the part's fixed head and its closing `]}`), so that only
/// one item is ever held, not a whole owned snapshot and its text (which doubled the agent's
/// peak memory). A first pass measures the items and plans the parts (node slots first, then
/// services, as many as fit in [`MAX_MESSAGE_BYTES`]); the second writes them. The loader
/// checks every part and the digest, as for the broker's. Returns the number of parts.
pub fn encode_parts(zone: &OwnedZoneV2, out: &mut impl Write) -> io::Result<usize> {
    let bad = |what: &str| io::Error::other(format!("cannot encode the zone: {what}"));
    let held = zone.held().ok_or_else(|| bad("no zone held"))?;
    let header = *zone.header().ok_or_else(|| bad("no zone held"))?;
    let part = |k: u8, parts: u8, first: u16, nodes: Vec<Option<Node>>, services| {
        Message::Part(Box::new(PartData {
            gateway: zone.gateway().to_string(),
            version: held.version,
            digest: held.digest,
            part: k,
            parts,
            zone: header,
            first_node: first,
            nodes,
            services,
        }))
        .encode()
        .map_err(|e| bad(&e.to_string()))
    };
    const SERVICES: &[u8] = b"],\"services\":[";
    const END: &[u8] = b"]}";
    // A part's text is `head nodes SERVICES services END`; an empty one is `head SERVICES END`.
    let head = |k: u8, parts: u8, first: u16| -> io::Result<Vec<u8>> {
        let mut t = part(k, parts, first, Vec::new(), Vec::new())?;
        t.truncate(t.len() - SERVICES.len() - END.len());
        Ok(t)
    };
    let base = head(0, 0, 0)?.len();
    let node_text = |slot: u16| -> io::Result<Vec<u8>> {
        let t = part(0, 0, 0, vec![node_of(zone, slot)], Vec::new())?;
        Ok(t[base..t.len() - SERVICES.len() - END.len()].to_vec())
    };
    let service_text = |i: usize| -> io::Result<Vec<u8>> {
        let s = service_of(zone, i).ok_or_else(|| bad("service record"))?;
        let t = part(0, 0, 0, Vec::new(), vec![s])?;
        Ok(t[base + SERVICES.len()..t.len() - END.len()].to_vec())
    };
    // The fixed text at its longest (part numbers and first node at their widest).
    let fixed = head(u8::MAX, u8::MAX, u16::MAX)?.len() + SERVICES.len() + END.len();
    let room = MAX_MESSAGE_BYTES - fixed;
    let (slots, services) = (header.nodes, zone.service_count());
    // (first node, nodes, first service, services) per part.
    let mut plan: Vec<(u16, u16, usize, usize)> = Vec::new();
    let mut cur = (0u16, 0u16, 0usize, 0usize);
    let mut used = 0;
    let lens = (0..slots)
        .map(|slot| io::Result::Ok((true, node_text(slot)?.len())))
        .chain((0..services).map(|i| io::Result::Ok((false, service_text(i)?.len()))));
    for item in lens {
        let (is_node, len) = item?;
        if len + 1 > room {
            return Err(bad("an item larger than a message"));
        }
        if used + len + 1 > room {
            plan.push(cur);
            cur = (cur.0 + cur.1, 0, cur.2 + cur.3, 0);
            used = 0;
        }
        used += len + 1;
        if is_node {
            cur.1 += 1;
        } else {
            cur.3 += 1;
        }
    }
    plan.push(cur);
    if plan.len() > MAX_PARTS {
        return Err(bad("more than 64 parts"));
    }
    let n = plan.len() as u8;
    for (k, &(fnode, nn, fsvc, ns)) in plan.iter().enumerate() {
        out.write_all(&head(k as u8, n, fnode)?)?;
        for (j, slot) in (fnode..fnode + nn).enumerate() {
            if j > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&node_text(slot)?)?;
        }
        out.write_all(SERVICES)?;
        for (j, i) in (fsvc..fsvc + ns).enumerate() {
            if j > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&service_text(i)?)?;
        }
        out.write_all(END)?;
        out.write_all(b"\n")?;
    }
    Ok(plan.len())
}

/// Writes the v2 zone in use atomically and durably as [`V2_STATE_FILE`]: its snapshot
/// parts, one per line ([`encode_parts`]).
pub fn save_v2(dir: &Path, zone: &OwnedZoneV2) -> io::Result<()> {
    write_atomic_with(dir, V2_STATE_FILE, &[], |f, _| {
        let mut w = io::BufWriter::new(f);
        encode_parts(zone, &mut w)?;
        w.flush()
    })
}

/// [`load_v2`] with a fresh heap of `gateway::ZONE_HEAP_BYTES` and working memory.
pub fn load_v2_zone(dir: &Path, gateway_id: &str) -> Option<Box<OwnedZoneV2>> {
    let mut work = Box::new(Work::new());
    load_v2(dir, gateway_id, crate::gateway::heap(), &mut work)
}

/// Loads the persisted v2 zone for `gateway_id` into a zone over `heap`: every line a
/// snapshot part, taken through `Staging::part` like the broker's. Returns `None` (after
/// logging why) when the file is missing, too large, unreadable, or not one whole snapshot
/// of this gateway with the digest it declares.
pub fn load_v2(
    dir: &Path,
    gateway_id: &str,
    heap: Box<[u8]>,
    work: &mut Work,
) -> Option<Box<OwnedZoneV2>> {
    let path = dir.join(V2_STATE_FILE);
    let bytes = match fs::File::open(&path).and_then(|f| read_at_most(f, V2_STATE_MAX)) {
        Ok(Some(b)) => b,
        Ok(None) => {
            warn!(
                "persisted v2 zone {} is larger than {V2_STATE_MAX} bytes, ignored",
                path.display()
            );
            return None;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            info!("no persisted v2 zone in {}", dir.display());
            return None;
        }
        Err(e) => {
            warn!(
                "persisted v2 zone {} unreadable, ignored: {e}",
                path.display()
            );
            return None;
        }
    };
    match parse_v2(&bytes, Some(gateway_id), heap, work) {
        Ok(zone) => Some(zone),
        Err(why) => {
            warn!(
                "persisted v2 zone {} is corrupt or truncated, ignored: {why}",
                path.display()
            );
            None
        }
    }
}

/// Parses a payload v2 snapshot file: its parts, one message per line (what [`save_v2`]
/// writes and `sdwan-discovery plan` writes as `<id>.v2.jsonl`), for `gateway` (`None`: the
/// gateway its first part names), into a zone over `heap`. Each line goes through
/// `Staging::part` like a part from the broker (decoding, assembly, digest check); the error
/// names the line.
pub fn parse_v2(
    bytes: &[u8],
    gateway: Option<&str>,
    heap: Box<[u8]>,
    work: &mut Work,
) -> Result<Box<OwnedZoneV2>, String> {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    let named: String;
    let gateway = match gateway {
        Some(g) => g,
        None => {
            let Some((_, first)) = lines.clone().next() else {
                return Err("empty".into());
            };
            let mut scratch = sdwan_contract::v2::decode::Scratch::new();
            let env =
                crate::gateway::peek(first, &mut scratch).map_err(|e| format!("line 1: {e}"))?;
            named = env.gateway.as_str().to_owned();
            &named
        }
    };
    let mut staging = Box::new(Staging::new(heap));
    for (n, line) in lines.by_ref() {
        match staging.part(gateway, None, line, work) {
            Ok(PartStatus::Waiting(_)) => {}
            Ok(PartStatus::Complete) => break,
            Ok(PartStatus::Skipped(a)) => return Err(format!("line {}: part {a:?}", n + 1)),
            Err(e) => return Err(format!("line {}: {e}", n + 1)),
        }
    }
    if !staging.is_complete() {
        return Err("not a whole snapshot".into());
    }
    let mut zone = Box::new(OwnedZoneV2::new(Box::default()));
    staging.swap_into(&mut zone);
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdwan_contract::v2::encode::Snapshot;

    fn payload(gw: &str, serial: u32) -> String {
        format!(
            r#"{{"version":1,"serial":{serial},"gateway":"{gw}","origin":"k8s.internal","ttl":30,"records":[{{"name":"svc","type":"A","data":"10.0.0.1"}}]}}"#
        )
    }

    fn tmp() -> sdwan_testsupport::TempDir {
        sdwan_testsupport::TempDir::new("persist")
    }

    /// A snapshot of `services` services on 300 nodes, each service on 200 of them: several
    /// parts.
    fn v2_snapshot(services: usize) -> Snapshot {
        use sdwan_contract::v2::{Family, Tier, Version, ZoneHeader};
        Snapshot {
            gateway: "gw-a".into(),
            version: Version(u64::MAX),
            zone: ZoneHeader {
                suffix: Str::new("k8s.internal").unwrap(),
                local: Str::new("local").unwrap(),
                ttl: 30,
                service_ttl: 10,
                family: Family::Dual,
                nodes: 300,
                probe: None,
            },
            nodes: (0..300u16)
                .map(|i| {
                    (i % 7 != 3).then(|| Node {
                        name: Str::new(&format!("worker-{i}")).unwrap(),
                        tier: Tier::Other,
                        v4: Some([10, 1, (i >> 8) as u8, i as u8].into()),
                        v6: (i % 2 == 0).then(|| [0xfd00, 0, 0, 0, 0, 0, 0, i].into()),
                    })
                })
                .collect(),
            services: (0..services)
                .map(|i| Service {
                    ns: format!("ns-{:02}", i % 10),
                    name: format!("svc-{i:05}"),
                    short: i % 3 == 0,
                    ports: vec![Port::parse("_http._tcp:30080").unwrap()],
                    hosts: (0..200)
                        .map(|h| ((h * 3 + i) % 300) as u16)
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_v2_zone_persists_as_its_snapshot_parts_and_loads_back() {
        use sdwan_contract::v2::encode::decode_owned;
        let mut snap = v2_snapshot(2000);
        snap.services
            .sort_by(|a, b| (&a.ns, &a.name).cmp(&(&b.ns, &b.name)));
        let parts = snap.encode().unwrap();
        assert!(parts.len() >= 2, "{} parts", parts.len());
        let dir = tmp();
        // The master's parts as the file: loaded through the door.
        let mut file = Vec::new();
        for p in &parts {
            file.extend_from_slice(p);
            file.push(b'\n');
        }
        fs::write(dir.join(V2_STATE_FILE), &file).unwrap();
        let zone = load_v2_zone(dir.path(), "gw-a").expect("loads");
        assert_eq!(zone.held().unwrap().digest, snap.digest());
        assert!(
            load_v2_zone(dir.path(), "gw-b").is_none(),
            "another gateway's file"
        );
        // Saved again part by part: the same content, the same digest.
        save_v2(dir.path(), &zone).unwrap();
        let saved = fs::read(dir.join(V2_STATE_FILE)).unwrap();
        let msgs: Vec<_> = saved
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| decode_owned(l).unwrap())
            .collect();
        assert!(msgs.iter().all(|m| m.encode().is_ok()));
        assert_eq!(Snapshot::assemble(&msgs).unwrap(), snap);
        assert!(saved
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= MAX_MESSAGE_BYTES));
        let again = load_v2_zone(dir.path(), "gw-a").expect("loads again");
        assert_eq!(again.held(), zone.held());
        assert!(!dir.join(format!("{V2_STATE_FILE}.tmp")).exists());
    }

    /// A snapshot file with no gateway given (`--zone-file`) is the gateway its parts name;
    /// with one given it must be that gateway's; a file cut anywhere is refused naming a line.
    #[test]
    fn a_v2_file_is_the_gateway_it_names_whole_or_refused() {
        let mut snap = v2_snapshot(2000);
        snap.services
            .sort_by(|a, b| (&a.ns, &a.name).cmp(&(&b.ns, &b.name)));
        let mut file = Vec::new();
        for p in snap.encode().unwrap() {
            file.extend_from_slice(&p);
            file.push(b'\n');
        }
        let mut work = Box::new(Work::new());
        let heap = || vec![0u8; 4 << 20].into_boxed_slice();
        let zone = parse_v2(&file, None, heap(), &mut work).expect("parses");
        assert_eq!(
            (zone.gateway(), zone.held().unwrap().digest),
            ("gw-a", snap.digest())
        );
        assert!(parse_v2(&file, Some("gw-a"), heap(), &mut work).is_ok());
        let other = parse_v2(&file, Some("gw-b"), heap(), &mut work).unwrap_err();
        assert!(other.starts_with("line 1: "), "{other}");
        for cut in [1, file.len() / 3, file.len() / 2, file.len() - 2] {
            let e = parse_v2(&file[..cut], None, heap(), &mut work).unwrap_err();
            assert!(
                e.starts_with("line ") || e == "not a whole snapshot",
                "cut at {cut}: {e}"
            );
        }
        assert_eq!(
            parse_v2(b"\n\n", None, heap(), &mut work).unwrap_err(),
            "empty"
        );
    }

    #[test]
    fn save_then_load_round_trips_and_replaces() {
        let dir = tmp();
        save(dir.path(), payload("gw-a", 1).as_bytes()).unwrap();
        save(dir.path(), payload("gw-a", 2).as_bytes()).unwrap();
        let (zone, bytes) = load(dir.path(), Some("gw-a")).unwrap();
        assert_eq!(zone.serial(), 2);
        assert_eq!(bytes, payload("gw-a", 2).as_bytes());
        assert!(!dir.join(TEMP_FILE).exists(), "temporary file left behind");
    }

    #[test]
    fn unusable_state_is_ignored_not_fatal() {
        let good = payload("gw-a", 7);
        // (case, state file contents, gateway id checked)
        type Case<'a> = (&'a str, Option<Vec<u8>>, Option<&'a str>);
        let cases: [Case; 6] = [
            ("missing", None, Some("gw-a")),
            ("empty", Some(Vec::new()), Some("gw-a")),
            (
                "truncated",
                Some(good.as_bytes()[..good.len() / 2].to_vec()),
                Some("gw-a"),
            ),
            ("garbage", Some(vec![0xff; 4096]), Some("gw-a")),
            (
                "other gateway",
                Some(payload("gw-b", 7).into_bytes()),
                Some("gw-a"),
            ),
            ("a directory", None, None),
        ];
        for (case, contents, gw) in cases {
            let dir = tmp();
            match (&contents, case) {
                (Some(c), _) => fs::write(state_file(dir.path()), c).unwrap(),
                (None, "a directory") => fs::create_dir(state_file(dir.path())).unwrap(),
                (None, _) => {}
            }
            assert!(load(dir.path(), gw).is_none(), "{case}: loaded");
        }
    }

    #[test]
    fn a_link_planted_at_the_temp_name_is_not_followed() {
        // (file written, what is planted at FILE.tmp)
        let cases = [
            ("help.html", "link to the victim"),
            ("zone.json", "link to the victim"),
            ("sdwan.conf", "dangling link"),
            ("help.html", "stale temporary file"),
        ];
        for (name, planted) in cases {
            let dir = tmp();
            let elsewhere = sdwan_testsupport::TempDir::new("persist-victim");
            let victim = elsewhere.write("victim", "precious");
            let missing = elsewhere.join("created-through-the-link");
            let temp = dir.join(format!("{name}.tmp"));
            match planted {
                "link to the victim" => std::os::unix::fs::symlink(&victim, &temp).unwrap(),
                "dangling link" => std::os::unix::fs::symlink(&missing, &temp).unwrap(),
                _ => fs::write(&temp, "half a file").unwrap(),
            }
            write_atomic(dir.path(), name, b"new contents").unwrap();
            let case = format!("{name} with a {planted}");
            assert_eq!(fs::read_to_string(&victim).unwrap(), "precious", "{case}");
            assert!(!missing.exists(), "{case}: created through the link");
            assert_eq!(fs::read(dir.join(name)).unwrap(), b"new contents", "{case}");
            let meta = fs::symlink_metadata(dir.join(name)).unwrap();
            assert!(meta.file_type().is_file(), "{case}: not a regular file");
            assert!(
                !temp.exists() && fs::symlink_metadata(&temp).is_err(),
                "{case}"
            );
        }
    }

    #[test]
    fn a_write_that_fails_midway_leaves_no_temp_file_and_the_old_file_intact() {
        let dir = tmp();
        save(dir.path(), b"old payload").unwrap();
        // The disk fills up after 5 bytes.
        let enospc = |f: &mut File, c: &[u8]| {
            f.write_all(&c[..5])?;
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        };
        let e = write_atomic_with(dir.path(), STATE_FILE, b"new payload", enospc).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(fs::read(state_file(dir.path())).unwrap(), b"old payload");
        assert!(!dir.join(TEMP_FILE).exists(), "partial temporary file left");
        // The next write goes through.
        save(dir.path(), b"new payload").unwrap();
        assert_eq!(fs::read(state_file(dir.path())).unwrap(), b"new payload");
        assert!(!dir.join(TEMP_FILE).exists());
    }

    #[test]
    fn a_directory_at_the_temp_name_is_a_clear_error_and_loses_nothing() {
        let dir = tmp();
        save(dir.path(), b"old payload").unwrap();
        fs::create_dir(dir.join(TEMP_FILE)).unwrap();
        let e = save(dir.path(), b"new payload").unwrap_err();
        assert!(
            e.to_string().ends_with("zone.json.tmp is a directory"),
            "{e}"
        );
        assert_eq!(fs::read(state_file(dir.path())).unwrap(), b"old payload");
        assert!(
            dir.join(TEMP_FILE).is_dir(),
            "the directory is not ours to remove"
        );
    }

    #[test]
    fn save_into_a_missing_directory_fails_cleanly() {
        let dir = tmp();
        let e = save(&dir.join("nope"), b"{}").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
