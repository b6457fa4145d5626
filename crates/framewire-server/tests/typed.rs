//! Typed messages: `recv_typed` / `send_typed`, per-message decode errors.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use bytes::Bytes;
use common::*;
use framewire_codec::ack::AckFramed;
use framewire_codec::typed::{self, Bincode};
use framewire_server::{Connection, Server, ServerError};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
    qty: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Reply {
    Accepted { id: u64, total: u64 },
    Rejected(String),
}

/// Answers every order; a message that is not an `Order` gets a `Rejected` reply and the
/// conversation goes on.
async fn shop(mut conn: Connection) -> Result<(), ServerError> {
    loop {
        match conn.recv_typed::<Order>().await {
            Ok(Some(order)) => {
                let reply = Reply::Accepted {
                    id: order.id,
                    total: u64::from(order.qty) * 3,
                };
                conn.send_typed(&reply).await?;
            }
            Ok(None) => return Ok(()),
            Err(ServerError::Typed(e)) => conn.send_typed(&Reply::Rejected(e.to_string())).await?,
            Err(e) => return Err(e),
        }
    }
}

fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item-{id}"),
        qty: id as u32 + 1,
    }
}

#[tokio::test]
async fn typed_round_trip_and_a_bad_message_only_costs_that_message() {
    within(async {
        let server = spawn(Server::builder(), shop).await;
        let mut c = client(server.addr).await;
        c.send(typed::encode::<Bincode, _>(&order(1)).unwrap())
            .await
            .unwrap();
        let reply: Reply = typed::decode::<Bincode, _>(&next_frame(&mut c).await.unwrap()).unwrap();
        assert_eq!(reply, Reply::Accepted { id: 1, total: 6 });

        // Not an Order: a varint id, then a string length far beyond the frame.
        c.send(Bytes::from_static(&[1, 0xfc, 0xff, 0xff, 0xff, 0x7f]))
            .await
            .unwrap();
        let reply: Reply = typed::decode::<Bincode, _>(&next_frame(&mut c).await.unwrap()).unwrap();
        assert!(
            matches!(reply, Reply::Rejected(ref why) if why.contains("6 bytes")),
            "{reply:?}"
        );

        // The connection is intact.
        c.send(typed::encode::<Bincode, _>(&order(2)).unwrap())
            .await
            .unwrap();
        let reply: Reply = typed::decode::<Bincode, _>(&next_frame(&mut c).await.unwrap()).unwrap();
        assert_eq!(reply, Reply::Accepted { id: 2, total: 9 });

        let stats = server.handle.stats();
        assert_eq!(
            (stats.errors.decode, stats.frames_in, stats.frames_out),
            (1, 3, 3)
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn typed_messages_in_ack_mode() {
    within(async {
        let server = spawn(Server::builder().ack_mode(4), shop).await;
        let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = AckFramed::builder().window(4).new_framed(stream);
        for id in 0..10 {
            c.send(typed::encode::<Bincode, _>(&order(id)).unwrap())
                .await
                .unwrap();
            let d = c.next().await.unwrap().unwrap();
            let reply: Reply = typed::decode::<Bincode, _>(&d.payload).unwrap();
            assert_eq!(
                reply,
                Reply::Accepted {
                    id,
                    total: (id + 1) * 3
                }
            );
        }
        c.close().await.unwrap();
        let stats = wait_for(&server.handle, |s| s.active == 0).await;
        assert_eq!((stats.frames_in, stats.frames_out), (10, 10));
        server.stop().await;
    })
    .await;
}
