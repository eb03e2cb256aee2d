//! DNS name rules used when turning Kubernetes names into record names.

/// Longest name on the wire, in octets.
pub const MAX_NAME_OCTETS: usize = 255;

/// One DNS label as we emit them: 1..=63 characters of `a-z`, `0-9` and `-`, not starting or
/// ending with `-`. (Kubernetes service and namespace names always are; node names may have
/// dots or be longer.)
pub fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A dotted name of [`valid_label`]s.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.split('.').all(valid_label)
}

/// Wire length of `relative` under `origin` (both without trailing dot): every label plus
/// its length octet, plus the root octet.
pub fn wire_len(relative: &str, origin: &str) -> usize {
    relative.len() + 1 + origin.len() + 1 + 1
}
