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

/// Polls `framed.next()` once: the mock delivers an 8 MiB header and then stalls.
fn buffer_after_stalled_header<D: tokio_util::codec::Decoder>(codec: D) -> usize {
    use futures::FutureExt;
    let mock = Builder::new()
        .read(&(8u32 * 1024 * 1024).to_be_bytes())
        .wait(Duration::from_secs(3600))
        .build();
    let mut framed = FramedRead::new(mock, codec);
    assert!(framed.next().now_or_never().is_none(), "no frame yet");
    framed.read_buffer().capacity()
}

#[tokio::test(start_paused = true)]
async fn stalled_8_mib_header_costs_kilobytes_not_megabytes() {
    let ours = buffer_after_stalled_header(FrameCodec::new());
    assert!(
        ours < 64 * 1024,
        "framewire buffer after header: {ours} bytes"
    );
    // tokio-util's codec reserves the announced length at once.
    let theirs = buffer_after_stalled_header(tokio_util::codec::LengthDelimitedCodec::new());
    assert!(
        theirs >= 8 * 1024 * 1024,
        "LengthDelimitedCodec buffer: {theirs} bytes"
    );
    eprintln!(
        "read buffer after a stalled 8 MiB header: framewire {ours} B, tokio-util {theirs} B"
    );
}
