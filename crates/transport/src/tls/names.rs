//! The subject common names of a certificate, read from its DER without
//! a parser crate: what `--peer-cert-allowed-cn` compares and what
//! `--client-cert-auth` takes as the user's name.

/// One DER element: its tag, its contents and what follows it. `None` if
/// the input is cut short or uses a length form DER forbids.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The common names (OID 2.5.4.3) in a certificate's subject; empty if
/// the certificate does not parse (it then never matches).
pub(super) fn subject_common_names(cert: &[u8]) -> Vec<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const VERSION: u8 = 0xa0;
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    let subject = || -> Option<&[u8]> {
        let (SEQUENCE, cert, _) = der_element(cert)? else {
            return None;
        };
        let (SEQUENCE, tbs, _) = der_element(cert)? else {
            return None;
        };
        let mut rest = tbs;
        let (tag, _, after) = der_element(rest)?;
        if tag == VERSION {
            rest = after;
        }
        // serial, signature algorithm, issuer, validity; then the subject.
        for _ in 0..4 {
            rest = der_element(rest)?.2;
        }
        let (SEQUENCE, subject, _) = der_element(rest)? else {
            return None;
        };
        Some(subject)
    };
    let mut names = Vec::new();
    let Some(mut rdns) = subject() else {
        return names;
    };
    while let Some((tag, rdn, rest)) = der_element(rdns) {
        rdns = rest;
        if tag != SET {
            continue;
        }
        let mut attributes = rdn;
        while let Some((SEQUENCE, attribute, rest)) = der_element(attributes) {
            attributes = rest;
            if let Some((OID, oid, value)) = der_element(attribute)
                && oid == COMMON_NAME
                && let Some((_, text, _)) = der_element(value)
            {
                names.push(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_is_found_in_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "keel");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "member-1");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_common_names(cert.der()), vec!["member-1"]);
    }

    #[test]
    fn garbage_has_no_common_name_and_does_not_panic() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x02, 0x30, 0x00],
        ] {
            assert!(subject_common_names(bytes).is_empty());
        }
        let mut x = 1u32;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8 | if len % 3 == 0 { 0x30 } else { 0 }
                })
                .collect();
            let _ = subject_common_names(&bytes);
        }
    }
}
