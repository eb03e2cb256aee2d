//! A real nginx (Debian's `/usr/sbin/nginx`) with its own prefix directory, every path
//! (pid, temp dirs, logs) inside it, including the files `include` names; tiny HTTP backends
//! standing in for NodePorts; and a raw HTTP/1.1 GET.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::{require_tool, wait_until, ChildGuard};

/// A running nginx in the foreground. Dropped (or [`Nginx::stop`]ped), it gets SIGTERM, its
/// own fast-shutdown signal, so the master stops its workers before it exits; the harness
/// then waits until no process of its group is left (SIGKILL of the group after
/// [`crate::child::STOP_GRACE`]).
#[derive(Debug)]
pub struct Nginx {
    prefix: PathBuf,
    bin: PathBuf,
    child: ChildGuard,
}

impl Nginx {
    /// Writes `<prefix>/nginx.conf` whose `http` block includes `include` (a path or glob; a
    /// glob may match nothing yet) and starts nginx in the foreground. Returns once nginx has
    /// written its pid file.
    pub fn start(prefix: &Path, include: &str) -> Nginx {
        let bin = require_tool("nginx");
        for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"] {
            fs::create_dir_all(prefix.join("tmp").join(d)).unwrap();
        }
        let p = prefix.display();
        let mut conf = String::new();
        let _ = writeln!(
            conf,
            "worker_processes 1;\npid {p}/nginx.pid;\nerror_log stderr;"
        );
        let _ = writeln!(conf, "events {{ worker_connections 64; }}");
        let _ = writeln!(conf, "http {{\n    access_log off;");
        for (d, dir) in [
            ("client_body_temp_path", "body"),
            ("proxy_temp_path", "proxy"),
            ("fastcgi_temp_path", "fastcgi"),
            ("uwsgi_temp_path", "uwsgi"),
            ("scgi_temp_path", "scgi"),
        ] {
            let _ = writeln!(conf, "    {d} {p}/tmp/{dir};");
        }
        let _ = writeln!(conf, "    include {include};\n}}");
        fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.args(Self::base_args(prefix))
            .args(["-g", "daemon off;"]);
        let mut child = ChildGuard::spawn("nginx", &mut cmd).stop_signal(libc::SIGTERM);
        let pid = prefix.join("nginx.pid");
        wait_until(Duration::from_secs(10), "nginx wrote its pid file", || {
            if let Some(st) = child.try_exit() {
                panic!("nginx exited at start ({st}):\n{}", child.stderr());
            }
            pid.exists()
        });
        Nginx {
            prefix: prefix.to_path_buf(),
            bin,
            child,
        }
    }

    fn base_args(prefix: &Path) -> Vec<String> {
        let p = prefix.display().to_string();
        vec![
            "-p".into(),
            format!("{p}/"),
            "-c".into(),
            format!("{p}/nginx.conf"),
            "-e".into(),
            "stderr".into(),
        ]
    }

    fn command(&self, extra: &str) -> String {
        format!(
            "{} {} {extra}",
            self.bin.display(),
            Self::base_args(&self.prefix).join(" ")
        )
    }

    /// A shell command that checks the configuration (`nginx -t`).
    pub fn check_cmd(&self) -> String {
        self.command("-t -q")
    }

    /// A shell command that reloads this nginx (`nginx -s reload`).
    pub fn reload_cmd(&self) -> String {
        self.command("-s reload")
    }

    /// The master's pid, which is also its process group's id (its workers are in it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops nginx as dropping it does and returns the master's exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.child.stop()
    }

    /// nginx's stderr so far.
    pub fn stderr(&self) -> String {
        self.child.stderr()
    }
}

/// A tiny HTTP server on a loopback port answering every request with 200 and the body
/// `service <name> path <path> host <Host> xff <X-Forwarded-For> proto <X-Forwarded-Proto>
/// upgrade <Upgrade> connection <Connection>` (runs until the process ends).
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Backend {
    /// Starts the backend for service `name`.
    pub fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let name = name.to_string();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let name = name.clone();
                thread::spawn(move || serve(stream, &name));
            }
        });
        Backend { port }
    }
}

fn serve(mut s: TcpStream, name: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let header = |h: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(h).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let body = format!(
        "service {name} path {path} host {} xff {} proto {} upgrade {} connection {}",
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        header("upgrade"),
        header("connection")
    );
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// An HTTP response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body (nginx and the backends send `Content-Length` bodies with `Connection: close`).
    pub body: String,
}

/// `GET path` on `127.0.0.1:port` with `Host: host`; `None` when the connection fails.
pub fn http_get(port: u16, host: &str, path: &str) -> Option<Response> {
    http_get_with(port, host, path, "Connection: close\r\n")
}

/// [`http_get`] with `headers` (each line ending in CRLF) instead of `Connection: close`.
pub fn http_get_with(port: u16, host: &str, path: &str, headers: &str) -> Option<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}User-Agent: sdwan-test\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Response {
        status,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::{children_of, group_members};
    use crate::TempDir;

    fn start_with_worker(prefix: &TempDir) -> Nginx {
        let nginx = Nginx::start(
            prefix.path(),
            &prefix.join("none-*.conf").display().to_string(),
        );
        wait_until(Duration::from_secs(10), "nginx's worker to start", || {
            group_members(nginx.pid()).len() >= 2
        });
        nginx
    }

    #[test]
    fn dropping_nginx_leaves_no_worker_behind() {
        let prefix = TempDir::new("nginx-drop");
        let nginx = start_with_worker(&prefix);
        let pgid = nginx.pid();
        let workers = children_of(pgid);
        assert!(!workers.is_empty(), "nginx has no worker");
        drop(nginx);
        assert_eq!(group_members(pgid), Vec::<u32>::new());
        // Whatever their group: the workers are gone (SIGKILL of the master alone left them).
        let alive: Vec<u32> = workers
            .into_iter()
            .filter(|w| std::path::Path::new(&format!("/proc/{w}")).exists())
            .collect();
        assert_eq!(alive, Vec::<u32>::new(), "nginx workers left running");
    }

    #[test]
    fn nginx_is_stopped_by_its_own_signal_not_sigkill() {
        let prefix = TempDir::new("nginx-stop");
        let mut nginx = start_with_worker(&prefix);
        let st = nginx.stop().expect("master reaped");
        // Exit 0: SIGTERM made the master stop its workers and exit; no SIGKILL fallback.
        assert_eq!(st.code(), Some(0), "{st}: {}", nginx.stderr());
        assert_eq!(group_members(nginx.pid()), Vec::<u32>::new());
    }
}
