//! Plain mode is byte-identical to tokio-util's `LengthDelimitedCodec` defaults, both ways.

mod common;

use bytes::{Bytes, BytesMut};
use common::{decode_chunks, encode_all, sample_frames};
use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

#[test]
fn identical_encodings() {
    let frames = sample_frames();
    let ours = encode_all(&mut FrameCodec::new(), &frames);
    let mut theirs = BytesMut::new();
    let mut ldc = LengthDelimitedCodec::new();
    for f in &frames {
        ldc.encode(Bytes::copy_from_slice(f), &mut theirs).unwrap();
    }
    assert_eq!(ours, theirs);
}

#[test]
fn we_decode_their_stream_and_they_decode_ours() {
    let frames = sample_frames();
    let mut theirs = BytesMut::new();
    let mut ldc = LengthDelimitedCodec::new();
    for f in &frames {
        ldc.encode(Bytes::copy_from_slice(f), &mut theirs).unwrap();
    }
    let got = decode_chunks(FrameCodec::new(), theirs.chunks(7)).unwrap();
    assert_eq!(got.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), frames);

    let mut ours = encode_all(&mut FrameCodec::new(), &frames);
    let mut ldc = LengthDelimitedCodec::new();
    let mut got = Vec::new();
    while let Some(f) = ldc.decode_eof(&mut ours).unwrap() {
        got.push(f.to_vec());
    }
    assert_eq!(got, frames);
}

#[tokio::test]
async fn over_loopback_tcp_both_directions() {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A tokio-util echo server.
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(sock, LengthDelimitedCodec::new());
            while let Some(frame) = framed.next().await {
                framed.send(frame.unwrap().freeze()).await.unwrap();
            }
        });
        let sock = TcpStream::connect(addr).await.unwrap();
        let mut client = FrameCodec::new().framed(sock);
        for f in sample_frames() {
            client
                .send(bytes::Bytes::copy_from_slice(&f[..]))
                .await
                .unwrap();
            assert_eq!(client.next().await.unwrap().unwrap(), &f[..]);
        }
        drop(client);
        server.await.unwrap();
    })
    .await
    .expect("test timed out");
}
