//! The client-certificate subject reader.

use crate::http::{self};

/// The longest principal [`subject`] accepts (the reader's own cap).
const MAX_PRINCIPAL: usize = 256;

/// The client-certificate subject reader (`http/tls/subject.rs`), on a certificate's DER.
///
/// The reader runs only on certificates rustls has verified, but walks DER itself; the input
/// is any bytes (the committed corpus starts from real certificates). Invariants:
/// * nothing panics, whatever the input;
/// * the principal is never empty, at most 256 characters, without control characters, and
///   the same on a second read;
/// * only the first DER element counts: bytes after it change nothing;
/// * a prefix that cuts the first element short reads as `unnamed`.
///
/// (A name may itself read `serial:…`: the first run found a certificate whose email SAN is
/// `serial:carol@example`, so the serial fallback is not told apart from a name here; see
/// docs/security.md on that collision.)
pub fn subject(data: &[u8]) {
    let p = http::cert_principal(data);
    let chars = p.chars().count();
    assert!(chars > 0 && chars <= MAX_PRINCIPAL, "{p:?}");
    assert!(!p.chars().any(char::is_control), "{p:?}");
    assert_eq!(http::cert_principal(data), p, "not deterministic");
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0x30, 0x03, 0x02, 0x01, 0x00]);
    let same = http::cert_principal(&longer);
    if let Some(len) = first_element_len(data) {
        assert_eq!(same, p, "bytes after the certificate changed its principal");
        if len > 1 {
            let cut = http::cert_principal(&data[..len - 1]);
            assert_eq!(cut, "unnamed", "a truncated certificate was read");
        }
    }
}

/// The length (header and contents) of the first DER element of `data`, when it is a
/// SEQUENCE that is whole: what the subject reader treats as the certificate.
fn first_element_len(data: &[u8]) -> Option<usize> {
    let (&tag, rest) = data.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, 2 + n)
    };
    let total = header.checked_add(len)?;
    (total <= data.len()).then_some(total)
}
