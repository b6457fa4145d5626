//! Typed messages (bincode 2) in plain and ack mode; a frame that does not decode is an error
//! for that message only.

mod common;

use common::{spawn_ack_server, spawn_echo, within, AckEcho, Echo};
use framewire_client::{Client, ClientError};
use framewire_codec::typed::TypedError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Chat {
    id: u64,
    user: String,
    text: String,
    tags: Vec<String>,
}

fn chat(id: u64) -> Chat {
    Chat {
        id,
        user: format!("user{}", id % 3),
        text: "你好".repeat(id as usize % 5),
        tags: (0..id % 4).map(|t| format!("t{t}")).collect(),
    }
}

#[tokio::test]
async fn plain_typed_round_trip_and_call() {
    within(async {
        let addr = spawn_echo(Echo::MIRROR).await;
        let mut client = Client::connect(addr).await.unwrap();
        for id in 0..20 {
            client.send_typed(&chat(id)).await.unwrap();
        }
        for id in 0..20 {
            let got: Chat = client.recv_typed().await.unwrap().unwrap();
            assert_eq!(got, chat(id));
        }
        let back: Chat = client.call_typed(&chat(99)).await.unwrap();
        assert_eq!(back, chat(99));
    })
    .await;
}

#[tokio::test]
async fn bad_frame_is_an_error_for_that_message_only() {
    within(async {
        let addr = spawn_echo(Echo::MIRROR).await;
        let mut client = Client::connect(addr).await.unwrap();
        // A u64 id, then a string claiming 250 bytes with only 2 present: does not decode.
        client.send([1u8, 250, b'h', b'i']).await.unwrap();
        client.send_typed(&chat(7)).await.unwrap();
        let err = client.recv_typed::<Chat>().await.unwrap_err();
        assert!(
            matches!(err, ClientError::Typed(TypedError::Decode { len: 4, .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains("frame of 4 bytes"), "{err}");
        let good: Chat = client.recv_typed().await.unwrap().unwrap();
        assert_eq!(good, chat(7));
    })
    .await;
}

#[tokio::test]
async fn split_halves_typed() {
    within(async {
        let addr = spawn_echo(Echo::MIRROR).await;
        let (mut tx, mut rx) = Client::connect(addr).await.unwrap().split();
        let writer = tokio::spawn(async move {
            for id in 0..100 {
                tx.send_typed(&chat(id)).await.unwrap();
            }
        });
        for id in 0..100 {
            assert_eq!(rx.recv_typed::<Chat>().await.unwrap().unwrap(), chat(id));
        }
        writer.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn ack_typed_round_trip_with_receipts() {
    within(async {
        let (addr, _log) = spawn_ack_server(AckEcho {
            window: 8,
            echo: true,
            greeting: None,
        })
        .await;
        let mut client = Client::builder().connect_ack(addr).await.unwrap();
        for id in 0..10 {
            let receipt = client.send_typed(&chat(id)).await.unwrap();
            let got = client.recv_typed::<Chat>().await.unwrap().unwrap();
            assert_eq!(got.value, chat(id));
            assert!(!got.redelivered);
            assert_eq!(receipt.await.unwrap().seq, id + 1);
        }
        // A message that does not decode, then a good one: both taken, only the first fails.
        client.send(vec![0xffu8; 3]).await.unwrap();
        client.send_typed(&chat(5)).await.unwrap();
        assert!(matches!(
            client.recv_typed::<Chat>().await,
            Err(ClientError::Typed(_))
        ));
        assert_eq!(
            client.recv_typed::<Chat>().await.unwrap().unwrap().value,
            chat(5)
        );
        client.close().await.unwrap();
    })
    .await;
}
