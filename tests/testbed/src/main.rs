//! `sdwan-testbed`: helpers the namespace testbed (`tests/testbed/run.sh`) runs.
//!
//! Layout:
//! - `certs DIR SPEC...`: writes a CA (`DIR/ca.pem`) and, for each `server:CN:SAN[,SAN...]`,
//!   a server certificate, for each `client:CN` a client certificate (`DIR/CN.pem`,
//!   `DIR/CN.key`), with the same code the Rust tests use (`sdwan_testsupport::certs`).
//! - `apiserver KUBECONFIG`: runs the in-process fake Kubernetes API server
//!   (`sdwan-fake-apiserver`) on a free port of 127.0.0.1 of the network namespace it is
//!   started in, writes a kubeconfig pointing at it, prints its URL on stdout and serves until
//!   SIGTERM or SIGINT arrives. The cluster is changed through its REST API
//!   (POST, PUT, DELETE), e.g. with curl.
//! - `measure API_URL NS_PREFIX RUNS WORKERS PROXY OUT.csv HOST:GATEWAY_IP...`: the
//!   convergence measurement of `bench/convergence/run.sh` (`sdwan_testbed::measure`).
//!
//! Errors go to stderr with exit status 2 (bad arguments) or 1 (anything else).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sdwan_fake_apiserver::FakeApiServer;
use sdwan_testsupport::certs::Ca;

const USAGE: &str = "usage: sdwan-testbed certs DIR (server:CN:SAN[,SAN...] | client:CN)...\n       sdwan-testbed apiserver KUBECONFIG\n       sdwan-testbed measure API_URL NS_PREFIX RUNS WORKERS PROXY(0|1) OUT.csv HOST:GATEWAY_IP...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("certs") if args.len() >= 2 => certs(Path::new(&args[1]), &args[2..]),
        Some("apiserver") if args.len() == 2 => apiserver(PathBuf::from(&args[1])),
        Some("measure") => sdwan_testbed::measure::main(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn certs(dir: &Path, specs: &[String]) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("sdwan-testbed certs: cannot create {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    let ca = Ca::new(dir, "sdwan-testbed");
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let (files, cn) = match parts.as_slice() {
            ["server", cn, sans] => {
                let sans: Vec<&str> = sans.split(',').collect();
                (ca.server_for(cn, &sans), *cn)
            }
            ["client", cn] => (ca.client(cn), *cn),
            _ => {
                eprintln!("sdwan-testbed certs: bad certificate spec {spec:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        for (from, ext) in [(&files.cert, "pem"), (&files.key, "key")] {
            let to = dir.join(format!("{cn}.{ext}"));
            if *from != to {
                if let Err(e) = std::fs::copy(from, &to) {
                    eprintln!(
                        "sdwan-testbed certs: cannot copy {} to {}: {e}",
                        from.display(),
                        to.display()
                    );
                    return ExitCode::from(1);
                }
            }
        }
    }
    let ca_to = dir.join("ca.pem");
    if ca.cert() != ca_to {
        if let Err(e) = std::fs::copy(ca.cert(), &ca_to) {
            eprintln!("sdwan-testbed certs: cannot write {}: {e}", ca_to.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn apiserver(kubeconfig: PathBuf) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sdwan-testbed apiserver: no runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let api = match FakeApiServer::start().await {
            Ok(api) => api,
            Err(e) => {
                eprintln!("sdwan-testbed apiserver: cannot listen: {e}");
                return ExitCode::from(1);
            }
        };
        let tmp = kubeconfig.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, api.kubeconfig_yaml())
            .and_then(|()| std::fs::rename(&tmp, &kubeconfig))
        {
            eprintln!(
                "sdwan-testbed apiserver: cannot write {}: {e}",
                kubeconfig.display()
            );
            return ExitCode::from(1);
        }
        println!("{}", api.url());
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("sdwan-testbed apiserver: no SIGTERM handler: {e}");
                    return ExitCode::from(1);
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        drop(api);
        ExitCode::SUCCESS
    })
}
