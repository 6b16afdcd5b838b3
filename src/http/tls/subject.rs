//! Who a client certificate names: [`principal`] reads the subject's common name, else the
//! first subject alternative name, else the serial number, out of the certificate's DER.
//!
//! By the time this runs, rustls (webpki) has parsed and verified the certificate, so this is
//! not a validator: it walks just the few fields it needs (certificate → tbsCertificate →
//! subject, extensions → subjectAltName), each length checked against what is left, and gives
//! up on anything unexpected. About 100 lines; the alternative was a new X.509 crate (the
//! `der` crate in the tree has no X.509 types) for three fields.

/// The longest principal kept, in characters; longer names are cut.
const MAX_PRINCIPAL: usize = 256;

/// `2.5.4.3`, id-at-commonName.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// `2.5.29.17`, id-ce-subjectAltName.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;

/// Reads DER elements (tag, contents) off the front of a slice.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element: its one-byte tag and its contents. `None` at the end or on bad input.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags: none of the fields read here
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, rest) = rest.split_at_checked(n)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        };
        let (contents, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((tag, contents))
    }

    /// The next element's contents if it has tag `want`.
    fn expect(&mut self, want: u8) -> Option<&'a [u8]> {
        self.next().and_then(|(tag, v)| (tag == want).then_some(v))
    }
}

/// The principal a client certificate (DER) names: its subject's common name, else its first
/// subject alternative name (DNS name, email, URI or IP address), else `serial:<hex>`. Control
/// characters become `?`; at most [`MAX_PRINCIPAL`] characters. `unnamed` if the certificate
/// cannot be read at all (it was verified, so this does not happen in practice).
pub(crate) fn principal(cert: &[u8]) -> String {
    let name = fields(cert).map(|(serial, subject, exts)| {
        common_name(subject)
            .or_else(|| exts.and_then(first_alt_name))
            .unwrap_or_else(|| format!("serial:{}", hex(serial)))
    });
    let name = name.unwrap_or_else(|| "unnamed".into());
    name.chars()
        .take(MAX_PRINCIPAL)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Of a certificate: its serial number, its subject and its extensions (if any).
type Fields<'a> = (&'a [u8], &'a [u8], Option<&'a [u8]>);

/// The serial number, the subject and the extensions (if any) of a certificate.
fn fields(cert: &[u8]) -> Option<Fields<'_>> {
    let cert = Der(cert).expect(SEQUENCE)?;
    let mut tbs = Der(Der(cert).expect(SEQUENCE)?);
    let (mut tag, mut value) = tbs.next()?;
    if tag == 0xa0 {
        (tag, value) = tbs.next()?; // [0] version
    }
    if tag != INTEGER {
        return None;
    }
    let serial = value;
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let subject = tbs.expect(SEQUENCE)?;
    tbs.expect(SEQUENCE)?; // subject public key info
    let mut exts = None;
    while let Some((tag, value)) = tbs.next() {
        if tag == 0xa3 {
            exts = Der(value).expect(SEQUENCE);
        }
    }
    Some((serial, subject, exts))
}

/// The first common name of a distinguished name.
fn common_name(name: &[u8]) -> Option<String> {
    let mut rdns = Der(name);
    while let Some((tag, rdn)) = rdns.next() {
        if tag != SET {
            return None;
        }
        let mut atvs = Der(rdn);
        while let Some(atv) = atvs.expect(SEQUENCE) {
            let mut atv = Der(atv);
            if atv.expect(OID)? == OID_CN {
                let (tag, value) = atv.next()?;
                return directory_string(tag, value).filter(|s| !s.is_empty());
            }
        }
    }
    None
}

/// A DirectoryString (UTF8String, PrintableString, IA5String, TeletexString, BMPString).
fn directory_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 => std::str::from_utf8(value).ok().map(str::to_owned),
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        0x1e => {
            let units = value
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

/// The first DNS name, email, URI or IP address in the subjectAltName extension.
fn first_alt_name(exts: &[u8]) -> Option<String> {
    let mut exts = Der(exts);
    while let Some(ext) = exts.expect(SEQUENCE) {
        let mut ext = Der(ext);
        if ext.expect(OID)? != OID_SAN {
            continue;
        }
        let (mut tag, mut value) = ext.next()?;
        if tag == BOOLEAN {
            (tag, value) = ext.next()?; // critical
        }
        if tag != OCTET_STRING {
            return None;
        }
        let mut names = Der(Der(value).expect(SEQUENCE)?);
        while let Some((tag, value)) = names.next() {
            let found = match tag {
                // rfc822Name, dNSName, uniformResourceIdentifier: IA5String
                0x81 | 0x82 | 0x86 => std::str::from_utf8(value).ok().map(str::to_owned),
                0x87 => ip_address(value),
                _ => None,
            };
            if let Some(n) = found.filter(|n| !n.is_empty()) {
                return Some(n);
            }
        }
        return None;
    }
    None
}

fn ip_address(b: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(std::net::Ipv4Addr::from(v4).to_string());
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|v6| std::net::Ipv6Addr::from(v6).to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
