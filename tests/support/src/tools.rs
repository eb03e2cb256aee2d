//! Tools the tests run, and where they come from.

use std::path::PathBuf;

/// The Debian package that provides `tool` (as `tests/setup.sh` installs it).
pub fn package_of(tool: &str) -> &str {
    match tool {
        "dig" | "nsupdate" => "bind9-dnsutils",
        "kdig" => "knot-dnsutils",
        "knotd" | "knotc" => "knot",
        "nsd" => "nsd",
        "dnsmasq" => "dnsmasq-base",
        "dnsperf" => "dnsperf",
        "mosquitto" => "mosquitto",
        "mosquitto_pub" | "mosquitto_sub" => "mosquitto-clients",
        "nginx" => "nginx-light",
        "openssl" => "openssl",
        "curl" => "curl",
        "ip" => "iproute2",
        other => other,
    }
}

/// Finds `tool` in `PATH` (and the sbin directories, where Debian puts daemons), or panics
/// with "install PACKAGE (tests/setup.sh does)". Tests that need a peer fail loudly without it.
#[track_caller]
pub fn require_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "`{tool}` not found: install {} (tests/setup.sh does)",
        package_of(tool)
    );
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh() {
        assert!(require_tool("sh").ends_with("sh"));
    }

    #[test]
    #[should_panic(
        expected = "`no-such-tool-x` not found: install no-such-tool-x (tests/setup.sh does)"
    )]
    fn missing_tool_names_the_package() {
        require_tool("no-such-tool-x");
    }
}
