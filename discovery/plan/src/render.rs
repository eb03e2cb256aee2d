//! Rendering: [`ZoneContent`] to zone payload v1 (`docs/payload.md`) and [`ProxyContent`]
//! to the proxy payload (`docs/payload-proxy.md`, with the files `nginx` renders), written
//! straight into bytes.

use std::fmt::{self, Write as _};

use crate::content::{ProxyContent, RecordType, ZoneContent};
use crate::listing::ProxyService;

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(Bytes(out), "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

struct Bytes<'a>(&'a mut Vec<u8>);
impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl ZoneContent {
    /// The zone payload v1 (`docs/payload.md`) for `gateway_id` with `serial`: same content,
    /// id and serial give the same bytes.
    pub fn render(&self, gateway_id: &str, serial: u32) -> Vec<u8> {
        let c = &self.cluster;
        let mut out = Vec::with_capacity(4096);
        let _ = write!(
            Bytes(&mut out),
            "{{\"version\":1,\"serial\":{serial},\"gateway\":"
        );
        json_str(&mut out, gateway_id);
        out.extend_from_slice(b",\"origin\":");
        json_str(&mut out, &c.origin);
        let _ = write!(Bytes(&mut out), ",\"ttl\":{},\"records\":[", c.ttl);
        let mut first = true;
        c.emit_zone(
            &self.order,
            &mut |name: &str, t: RecordType, data: &str, ttl: Option<u32>| {
                out.extend_from_slice(if first { b"\n" } else { b",\n" });
                first = false;
                out.extend_from_slice(b"{\"name\":");
                json_str(&mut out, name);
                let _ = write!(Bytes(&mut out), ",\"type\":\"{}\",\"data\":", t.as_str());
                json_str(&mut out, data);
                if let Some(ttl) = ttl {
                    let _ = write!(Bytes(&mut out), ",\"ttl\":{ttl}");
                }
                out.push(b'}');
            },
        );
        out.extend_from_slice(b"\n]}\n");
        out
    }
}

impl ProxyContent {
    /// The proxy payload draft (`docs/payload-proxy.md`) for `node` with `serial`.
    pub fn render(&self, node: &str, serial: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        let _ = write!(
            Bytes(&mut out),
            "{{\"version\":1,\"serial\":{serial},\"node\":"
        );
        json_str(&mut out, node);
        out.extend_from_slice(b",\"suffix\":");
        json_str(&mut out, &self.cluster.origin);
        out.extend_from_slice(b",\"local_label\":");
        json_str(&mut out, &self.cluster.local_label);
        out.extend_from_slice(b",\"services\":[");
        let write_svcs =
            |out: &mut Vec<u8>, svcs: &[ProxyService], nodes: Option<&[Vec<String>]>| {
                for (i, s) in svcs.iter().enumerate() {
                    out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
                    out.extend_from_slice(b"{\"namespace\":");
                    json_str(out, &s.namespace);
                    out.extend_from_slice(b",\"name\":");
                    json_str(out, &s.name);
                    let _ = write!(Bytes(out), ",\"unique\":{},\"ports\":[", s.unique);
                    for (j, p) in s.ports.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(b"{\"name\":");
                        match &p.name {
                            Some(n) => json_str(out, n),
                            None => out.extend_from_slice(b"null"),
                        }
                        let _ = write!(
                            Bytes(out),
                            ",\"protocol\":\"{}\",\"port\":{},\"node_port\":{}}}",
                            p.protocol.as_k8s(),
                            p.port,
                            p.node_port
                        );
                    }
                    out.push(b']');
                    if let Some(nodes) = nodes {
                        out.extend_from_slice(b",\"nodes\":[");
                        for (j, n) in nodes[i].iter().enumerate() {
                            if j > 0 {
                                out.push(b',');
                            }
                            json_str(out, n);
                        }
                        out.push(b']');
                    }
                    out.push(b'}');
                }
            };
        let local = self.local_services();
        write_svcs(&mut out, &local, None);
        out.extend_from_slice(b"],\"elsewhere\":[");
        let elsewhere = self.elsewhere();
        let (svcs, nodes): (Vec<ProxyService>, Vec<Vec<String>>) =
            elsewhere.iter().cloned().unzip();
        write_svcs(&mut out, &svcs, Some(&nodes));
        // Issue 5: the rendered files and the directory they are rendered for.
        let settings = &self.cluster.proxy;
        let view = crate::nginx::ProxyView {
            node,
            suffix: &self.cluster.origin,
            local_label: &self.cluster.local_label,
            settings,
            local: &local,
            elsewhere: &elsewhere,
        };
        out.extend_from_slice(b"],\n\"dir\":");
        json_str(&mut out, settings.dir_trimmed());
        out.extend_from_slice(b",\n\"files\":{\"sdwan.conf\":");
        json_str(
            &mut out,
            &crate::nginx::render_conf_listen(&view, self.has_ipv6()),
        );
        out.extend_from_slice(b",\n\"help.html\":");
        json_str(&mut out, &crate::nginx::render_help(&view));
        out.extend_from_slice(b"}}\n");
        out
    }
}
