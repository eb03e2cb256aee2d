//! DNS name rules used when turning Kubernetes names into record names.

/// Longest name on the wire, in octets.
pub const MAX_NAME_OCTETS: usize = 255;

/// One DNS label as we emit them: 1..=63 characters of `a-z`, `0-9` and `-`, not starting or
/// ending with `-`. (Kubernetes service and namespace names always are; node names may have
/// dots or be longer.)
/// The same rule as the contract's [`sdwan_contract::v2::is_label`], which both sides share.
pub fn valid_label(label: &str) -> bool {
    sdwan_contract::v2::is_label(label)
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
