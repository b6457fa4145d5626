//! `TypedFramed` over real streams: a frame that does not deserialize costs only itself, fatal
//! errors are fatal, and the sink survives per-message errors.

mod typed_common;

use std::time::Duration;

use bytes::Bytes;
use framewire_codec::typed::{self, Bincode, Postcard, TypedError, TypedFramed};
use framewire_codec::{FrameCodec, FrameError};
use futures::{SinkExt, StreamExt};
use serde::{Serialize, Serializer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use typed_common::{Chat, Event};

const LIMIT: Duration = Duration::from_secs(10);

fn chat(id: u64) -> Chat {
    Chat {
        id,
        user: "ana".into(),
        text: format!("message {id}"),
        timestamp: 1_700_000_000 + id,
    }
}

/// `[u32 BE length][payload]`
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small test payload");
    [&len.to_be_bytes()[..], payload].concat()
}

fn good(id: u64) -> Vec<u8> {
    typed::encode::<Bincode, _>(&chat(id))
        .expect("encodes")
        .to_vec()
}

/// Scripted reads, split at awkward places: good, undecodable, trailing bytes, good.
#[tokio::test]
async fn bad_frames_between_good_ones_over_scripted_io() {
    let bad = vec![0xffu8; 7];
    let trailing = [good(2), vec![9, 9]].concat();
    let mut wire = Vec::new();
    wire.extend(frame(&good(1)));
    wire.extend(frame(&bad));
    wire.extend(frame(&trailing));
    wire.extend(frame(&good(3)));
    // Deliver in 5-byte reads so headers and payloads are split everywhere.
    let mut builder = tokio_test::io::Builder::new();
    for chunk in wire.chunks(5) {
        builder.read(chunk);
    }
    let io = builder.build();
    let mut typed = TypedFramed::<_, Chat, Chat>::new(FrameCodec::new().framed(io));

    let run = async {
        assert_eq!(typed.next().await.transpose().expect("ok"), Some(chat(1)));

        let err = typed.next().await.expect("item").expect_err("bad frame");
        assert!(matches!(err, TypedError::Decode { len: 7, .. }), "{err}");
        assert!(err.is_connection_usable());

        let err = typed
            .next()
            .await
            .expect("item")
            .expect_err("trailing bytes");
        assert!(
            matches!(err, TypedError::TrailingBytes { len, consumed, .. }
                if len == trailing.len() && consumed == trailing.len() - 2),
            "{err}"
        );

        assert_eq!(typed.next().await.transpose().expect("ok"), Some(chat(3)));
        assert!(typed.next().await.is_none());
    };
    timeout(LIMIT, run).await.expect("finished in time");
}

/// Loopback TCP: a raw sender interleaves undecodable frames; every good message arrives, in
/// order, and the count of errors matches.
#[tokio::test]
async fn bad_frame_then_good_frame_over_loopback() {
    let run = async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sender = tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let mut typed = TypedFramed::<_, Chat, Chat>::new(FrameCodec::new().framed(stream));
            for id in 0..20u64 {
                if id % 3 == 0 {
                    // Not a Chat: a bare u8 leaves the struct short.
                    typed
                        .get_mut()
                        .send(Bytes::from_static(&[42]))
                        .await
                        .expect("raw send");
                }
                typed.send(chat(id)).await.expect("typed send");
            }
            typed.close().await.expect("close");
        });

        let (stream, _) = listener.accept().await.expect("accept");
        let mut typed = TypedFramed::<_, Chat, Chat>::new(FrameCodec::new().framed(stream));
        let mut got = Vec::new();
        let mut bad = 0;
        while let Some(item) = typed.next().await {
            match item {
                Ok(msg) => got.push(msg.id),
                Err(e) => {
                    assert!(e.is_connection_usable(), "{e}");
                    assert_eq!(e.frame_len(), Some(1));
                    bad += 1;
                }
            }
        }
        sender.await.expect("sender task");
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert_eq!(bad, 7);
    };
    timeout(LIMIT, run).await.expect("finished in time");
}

/// Different In and Out types, and postcard, over an in-memory duplex.
#[tokio::test]
async fn request_response_types_with_postcard() {
    let run = async {
        let (a, b) = tokio::io::duplex(4096);
        let mut client = TypedFramed::<_, Chat, Event, Postcard>::new(FrameCodec::new().framed(a));
        let mut server = TypedFramed::<_, Event, Chat, Postcard>::new(FrameCodec::new().framed(b));
        client
            .send_ref(&Event::Join {
                user: "bo".into(),
                admin: false,
            })
            .await
            .expect("send");
        let ev = server.next().await.expect("item").expect("decodes");
        assert_eq!(
            ev,
            Event::Join {
                user: "bo".into(),
                admin: false
            }
        );
        server.send(chat(9)).await.expect("reply");
        assert_eq!(client.next().await.transpose().expect("ok"), Some(chat(9)));
    };
    timeout(LIMIT, run).await.expect("finished in time");
}

/// A value whose `Serialize` fails.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refused with code 17"))
    }
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum MaybeBad {
    Good(u32),
    Bad(Unencodable),
}

/// An unencodable value and an oversized value fail their `send` only; the sink keeps working
/// and nothing half-encoded reaches the wire.
#[tokio::test]
async fn sink_survives_per_message_errors() {
    let run = async {
        let (a, b) = tokio::io::duplex(4096);
        let small = FrameCodec::builder().max_frame_len(16).build();
        let mut tx = TypedFramed::<_, (), MaybeBad>::new(small.framed(a));
        let mut rx = TypedFramed::<_, u32, ()>::new(FrameCodec::new().framed(b));

        let err = tx
            .send(MaybeBad::Bad(Unencodable))
            .await
            .expect_err("unencodable");
        assert!(matches!(err, TypedError::Encode { .. }), "{err}");
        assert!(err.to_string().contains("17"), "{err}");
        assert!(err.is_connection_usable());

        tx.send(MaybeBad::Good(1)).await.expect("sink still works");

        let mut big = TypedFramed::<_, (), String>::new(tx.into_inner());
        let err = big.send("x".repeat(100)).await.expect_err("too long");
        assert!(
            matches!(
                err,
                TypedError::Frame(FrameError::OutgoingTooLong { len: 101, max: 16 })
            ),
            "{err}"
        );
        assert!(err.is_connection_usable());
        let mut tx = TypedFramed::<_, (), MaybeBad>::new(big.into_inner());
        tx.send(MaybeBad::Good(2)).await.expect("sink still works");
        drop(tx);

        assert_eq!(rx.next().await.transpose().expect("ok"), Some(1));
        assert_eq!(rx.next().await.transpose().expect("ok"), Some(2));
        assert!(rx.next().await.is_none());
    };
    timeout(LIMIT, run).await.expect("finished in time");
}

/// End of stream inside a frame is a fatal frame error and ends the stream.
#[tokio::test]
async fn truncated_frame_leaves_the_connection_unusable() {
    let mut wire = frame(&good(1));
    wire.extend(&frame(&good(2))[..6]);
    let io = tokio_test::io::Builder::new().read(&wire).build();
    let mut typed = TypedFramed::<_, Chat, Chat>::new(FrameCodec::new().framed(io));
    let run = async {
        assert_eq!(typed.next().await.transpose().expect("ok"), Some(chat(1)));
        let err = typed.next().await.expect("item").expect_err("truncated");
        assert!(!err.is_connection_usable(), "{err}");
        assert!(matches!(
            err,
            TypedError::Frame(FrameError::TruncatedFrame { received: 2, .. })
        ));
        assert!(typed.next().await.is_none());
    };
    timeout(LIMIT, run).await.expect("finished in time");
}

/// Works over tokio-util's LengthDelimitedCodec too (its error is io::Error).
#[tokio::test]
async fn over_length_delimited_codec() {
    let mut wire = frame(&good(1));
    wire.extend(frame(&[0xff]));
    wire.extend(frame(&good(2)));
    let reader = FramedRead::new(&wire[..], LengthDelimitedCodec::new());
    // LengthDelimitedCodec yields BytesMut; map to Bytes.
    let frames = reader.map(|r| r.map(bytes::BytesMut::freeze));
    let mut typed = TypedFramed::<_, Chat, ()>::new(frames);
    let run = async {
        let items: Vec<_> = (&mut typed).collect().await;
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().ok(), Some(&chat(1)));
        assert!(matches!(items[1], Err(TypedError::Decode { len: 1, .. })));
        assert_eq!(items[2].as_ref().ok(), Some(&chat(2)));
    };
    timeout(LIMIT, run).await.expect("finished in time");
}
