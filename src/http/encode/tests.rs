use super::*;

#[test]
fn header_validation() {
    assert!(valid_header("X-Ok", "a\tb \u{e9}"));
    assert!(!valid_header("", "v"));
    assert!(!valid_header("Bad Name", "v"));
    assert!(!valid_header("X:", "v"));
    assert!(!valid_header("X", "a\r\nX-Injected: 1"));
    assert!(!valid_header("X", "a\nb"));
    assert!(!valid_header("X", "a\0b"));
    assert_eq!(reason(431), "Request Header Fields Too Large");
    assert_eq!(reason(299), "");
}

#[test]
fn response_encoding() {
    let r = Response::new(200)
        .with_header("Content-Length", "99")
        .with_header("connection", "keep-alive")
        .with_header("X-A", "b")
        .with_body("text/plain", b"hi".to_vec());
    let out = encode_response(&r, false, ConnHeader::Close).expect("valid");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\nhi"
    );
    let head = encode_response(&r, true, ConnHeader::None).expect("valid");
    assert!(head.ends_with(b"Content-Length: 2\r\n\r\n"));
    let no_content = encode_response(&Response::new(204), false, ConnHeader::None);
    assert_eq!(
        no_content.expect("valid"),
        b"HTTP/1.1 204 No Content\r\n\r\n"
    );
    let bad = Response::new(200).with_header("X", "a\r\nX-Injected: 1");
    assert!(encode_response(&bad, false, ConnHeader::None).is_err());
    assert!(encode_response(&Response::new(101), false, ConnHeader::None).is_err());
}
