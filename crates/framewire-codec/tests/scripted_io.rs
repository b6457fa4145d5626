//! Scripted IO through `FramedRead`: short reads, pending reads, EOF mid-header and mid-payload.

use std::time::Duration;

use framewire_codec::{FrameCodec, FrameError};
use futures::StreamExt;
use tokio_test::io::Builder;
use tokio_util::codec::FramedRead;

#[tokio::test]
async fn short_reads_and_pending_between_them() {
    let mock = Builder::new()
        .read(b"\x00")
        .wait(Duration::from_millis(5))
        .read(b"\x00\x00\x05he")
        .read(b"llo\x00\x00")
        .wait(Duration::from_millis(5))
        .read(b"\x00\x00\x00\x00\x00\x01")
        .read(b"q")
        .build();
    let mut framed = FramedRead::new(mock, FrameCodec::new());
    assert_eq!(framed.next().await.unwrap().unwrap(), &b"hello"[..]);
    assert_eq!(framed.next().await.unwrap().unwrap(), &b""[..]);
    assert_eq!(framed.next().await.unwrap().unwrap(), &b"q"[..]);
    assert!(framed.next().await.is_none());
}

#[tokio::test]
async fn coalesced_frames_in_one_read() {
    let mock = Builder::new()
        .read(b"\x00\x00\x00\x01a\x00\x00\x00\x01b\x00\x00\x00\x01c")
        .build();
    let framed = FramedRead::new(mock, FrameCodec::new());
    let got: Vec<_> = framed.map(|f| f.unwrap()).collect().await;
    assert_eq!(got, vec![&b"a"[..], &b"b"[..], &b"c"[..]]);
}

#[tokio::test]
async fn eof_mid_header() {
    let mock = Builder::new().read(b"\x00\x00\x00\x01a\x00\x00").build();
    let mut framed = FramedRead::new(mock, FrameCodec::new());
    assert_eq!(framed.next().await.unwrap().unwrap(), &b"a"[..]);
    let err = framed.next().await.unwrap().unwrap_err();
    assert!(
        matches!(err, FrameError::TruncatedHeader { received: 2 }),
        "{err}"
    );
    assert!(framed.next().await.is_none());
}

#[tokio::test]
async fn eof_mid_payload() {
    let mock = Builder::new()
        .read(b"\x00\x00\x00\x08abc")
        .read(b"de")
        .build();
    let mut framed = FramedRead::new(mock, FrameCodec::new());
    let err = framed.next().await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::TruncatedFrame {
                received: 5,
                expected: 8
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn io_error_is_reported_as_io() {
    let mock = Builder::new()
        .read(b"\x00\x00")
        .read_error(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ))
        .build();
    let mut framed = FramedRead::new(mock, FrameCodec::new());
    let err = framed.next().await.unwrap().unwrap_err();
    assert!(matches!(&err, FrameError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset));
}
