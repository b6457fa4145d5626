//! Shapes a new user writes first, compiled and run: each one failed to compile before.

use std::time::Duration;

use framewire_client::Client;
use framewire_server::{Connection, Server, ServerError};

#[tokio::test]
async fn bind_tuple_and_connect_to_local_addr() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let mut client = Client::connect(server.local_addr().to_string())
        .await
        .unwrap();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve_until(
        |mut conn: Connection| async move {
            while let Some(frame) = conn.recv().await? {
                conn.send(frame).await?;
            }
            Ok::<_, ServerError>(())
        },
        tokio::signal::ctrl_c(),
    ));
    assert_eq!(&client.call("ping").await.unwrap()[..], b"ping");
    client.close().await.unwrap();
    handle.shutdown();
    serving.await.unwrap();
}

#[tokio::test]
async fn builder_kept_in_a_let() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().clone();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(|mut conn: Connection| async move {
        let mut shutdown = conn.shutdown_signal();
        loop {
            tokio::select! {
                frame = conn.recv() => match frame? {
                    Some(frame) => conn.send(frame).await?,
                    None => break,
                },
                () = &mut shutdown => break,
            }
        }
        Ok::<_, ServerError>(())
    }));
    let builder = Client::builder().connect_timeout(Duration::from_secs(5));
    let mut client = builder.connect(addr.to_string()).await.unwrap();
    assert_eq!(&client.call("x").await.unwrap()[..], b"x");
    client.close().await.unwrap();
    handle.shutdown();
    serving.await.unwrap();
}
