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
async fn split_reads_ack_when_done_and_eof_mid_frame() {
    let our_hello = framed(
        &Hello::new(
            2,
            framewire_codec::ack::DEFAULT_WINDOW_BYTES,
            8 * 1024 * 1024,
        )
        .to_bytes(),
    );
    let peer_hello = framed(&Hello::new(4, 1024, 1024).to_bytes());
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
        // Asking for the next message acks the one before at once (the application is done
        // with it).
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
    assert_eq!(conn.state().peer_hello(), Some(Hello::new(4, 1024, 1024)));
    assert_eq!(
        conn.state().ack_sent_through(),
        0,
        "handed out is not done: no ack yet"
    );

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
    assert_eq!(conn.state().ack_sent_through(), 1);
}

/// A protocol violation read right after a message was handed out (the read that decides
/// whether to ack at once) is reported typed by the next poll, not as `Failed`: the client
/// tells a misbehaving peer from a dropped connection by it.
#[tokio::test]
async fn violation_read_after_take_is_reported_typed() {
    use bytes::{Bytes, BytesMut};
    use framewire_codec::ack::AckFrame;
    use futures::SinkExt;
    use tokio::io::AsyncWriteExt;

    fn encode(frames: &[AckFrame<&[u8]>]) -> BytesMut {
        let mut codec = FrameCodec::new();
        let mut dst = BytesMut::new();
        for f in frames {
            f.encode(&mut codec, &mut dst).unwrap();
        }
        dst
    }
    fn data(seq: u64) -> AckFrame<&'static [u8]> {
        AckFrame::Data {
            seq,
            redelivery: false,
            payload: b"m",
        }
    }

    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        let mut conn = AckFramed::builder().window(8).new_framed(ours);
        peer.write_all(&encode(&[
            AckFrame::Hello(Hello::new(8, 1024, 1024)),
            data(1),
            data(2),
        ]))
        .await
        .unwrap();

        let d = conn.next().await.unwrap().unwrap();
        assert_eq!((d.seq, d.payload), (1, Bytes::from_static(b"m")));
        peer.write_all(&encode(&[data(4)])).await.unwrap();

        // Taking DATA 2 empties the inbox, so DATA 4 is read right then: DATA 2 is still
        // delivered, the violation comes with the next poll.
        let d = conn.next().await.unwrap().unwrap();
        assert_eq!(d.seq, 2);
        let err = conn.next().await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                AckError::DataOutOfSequence {
                    expected: 3,
                    got: 4
                }
            ),
            "{err:?}"
        );
        assert!(err.is_peer_fault());
        // Reported once: the stream is over and the sink fails fast.
        assert!(conn.next().await.is_none());
        let again = conn.flush().await.unwrap_err();
        assert!(matches!(again, AckError::Failed { .. }), "{again:?}");
    })
    .await
    .unwrap();
}
