//! The `AckFramed` adapter over scripted I/O (`tokio_test::io::Builder`): frames split across
//! reads at awkward points, the ACK written as soon as the last buffered message is taken, and
//! end of stream in the middle of a frame.

// Helpers outside #[test] functions unwrap too: this is test code.
#![allow(clippy::unwrap_used)]

use framewire_codec::ack::{data_header, AckError, AckFramed, Hello};
use framewire_codec::{FrameCodec, FrameError};
use futures::StreamExt;

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

#[tokio::test]
async fn split_reads_ack_on_take_and_eof_mid_frame() {
    let our_hello = framed(&Hello::new(2, 8 * 1024 * 1024).to_bytes());
    let peer_hello = framed(&Hello::new(4, 1024).to_bytes());
    let mut data = data_header(1, true).to_vec();
    data.extend_from_slice(b"hi");
    let data = framed(&data);
    let ack = framed(&[3, 0, 0, 0, 0, 0, 0, 0, 1]);

    let io = tokio_test::io::Builder::new()
        .write(&our_hello)
        // The peer's HELLO and DATA arrive cut at arbitrary points.
        .read(&peer_hello[..7])
        .read(&[&peer_hello[7..], &data[..3]].concat())
        .read(&data[3..])
        // Taking the only buffered message acks it at once.
        .write(&ack)
        // Then 6 bytes of a 12-byte frame, and end of stream.
        .read(&[0, 0, 0, 12, 2, 0])
        .build();

    let mut conn = AckFramed::builder()
        .window(2)
        .wrap(FrameCodec::new().framed(io));
    let d = conn.next().await.unwrap().unwrap();
    assert_eq!(
        (d.seq, &d.payload[..], d.redelivered),
        (1, &b"hi"[..], true)
    );
    assert_eq!(conn.state().peer_hello(), Some(Hello::new(4, 1024)));
    assert_eq!(conn.state().ack_sent_through(), 1);

    let err = conn.next().await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            AckError::Frame(FrameError::TruncatedFrame {
                received: 2,
                expected: 12
            })
        ),
        "{err:?}"
    );
    assert!(conn.next().await.is_none());
}
