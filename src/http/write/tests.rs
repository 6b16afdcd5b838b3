use super::*;
use std::io::Read;
use std::net::TcpListener;

/// A connected pair on loopback: (our side, the peer's side).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ours = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (peer, _) = l.accept().expect("accept");
    (ours, peer)
}

#[test]
fn a_peer_that_never_reads_fails_the_writes_in_about_the_timeout() {
    // Many responses of 4 KiB: the kernel keeps taking a little more into a full queue, so
    // each write can complete; only the acknowledged count shows that nothing moves.
    let (ours, _peer) = pair();
    let timeout = Duration::from_millis(200);
    ours.set_write_timeout(Some(call_timeout(timeout)))
        .expect("timeout");
    let mut ours = Transport::plain(ours);
    let mut watch = Watch::default();
    let started = Instant::now();
    let response = vec![b'x'; 4096];
    let err = loop {
        if let Err(e) = watch.write_all(&mut ours, &response, timeout) {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "writes never fail"
        );
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let big = Watch::default().write_all(&mut ours, &vec![b'x'; 1 << 20], timeout);
    assert_eq!(big.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
}

#[test]
fn a_peer_that_reads_slowly_but_steadily_is_not_cut_off() {
    // 8 KiB every 5 ms for the first 4 MiB (about 2.6 s, far over the timeout), then as fast
    // as it can. A blocked write is woken only when much of the queue is acknowledged, so
    // calls wait long while the peer does make progress. The timeout is a whole second so
    // that a loaded machine's scheduling pauses are not taken for a peer that stopped reading.
    let (ours, mut peer) = pair();
    let timeout = Duration::from_secs(1);
    ours.set_write_timeout(Some(call_timeout(timeout)))
        .expect("timeout");
    let total = 16 << 20;
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut got = 0;
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        while got < total {
            match peer.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
            if got < 4 << 20 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        got
    });
    let started = Instant::now();
    let mut watch = Watch::default();
    let mut ours = Transport::plain(ours);
    for chunk in vec![b'x'; total].chunks(64 * 1024) {
        watch
            .write_all(&mut ours, chunk, timeout)
            .expect("a slow but steady reader");
    }
    assert!(started.elapsed() > timeout, "the writes never had to wait");
    drop(ours);
    assert_eq!(reader.join().expect("reader"), total);
}

#[test]
fn a_closed_peer_is_an_error() {
    let (ours, peer) = pair();
    drop(peer);
    let timeout = Duration::from_millis(200);
    ours.set_write_timeout(Some(call_timeout(timeout)))
        .expect("timeout");
    let until = Instant::now() + Duration::from_secs(5);
    let mut watch = Watch::default();
    let mut ours = Transport::plain(ours);
    while watch.write_all(&mut ours, b"hello", timeout).is_ok() {
        assert!(
            Instant::now() < until,
            "writes to a closed peer keep succeeding"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
