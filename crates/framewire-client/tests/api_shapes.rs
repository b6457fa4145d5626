//! Shapes a new user writes first, compiled and run: each one failed to compile before.

use std::time::Duration;

use framewire_client::Client;
use framewire_server::{Connection, Server, ServerError};

#[tokio::test]
async fn bind_tuple_and_connect_to_local_addr() {
    let server = Server::bind(("127.0.0.1", 0)).await.unwrap();
    let mut client = Client::connect(server.local_addr()).await.unwrap();
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
    let mut client = builder.connect(&addr).await.unwrap();
    assert_eq!(&client.call("x").await.unwrap()[..], b"x");
    client.close().await.unwrap();
    handle.shutdown();
    serving.await.unwrap();
}

/// `unix:/path` binds like the client's `unix:/path` connects, and the socket file is gone
/// once serving has ended.
#[cfg(unix)]
#[tokio::test]
async fn unix_bind_connect_and_cleanup() {
    let dir = std::env::temp_dir().join(format!("framewire-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let server = Server::bind(format!("unix:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        server.local_addr().to_string(),
        format!("unix:{}", path.display())
    );
    let mut client = Client::connect(server.local_addr()).await.unwrap();
    assert_eq!(
        client.endpoint().to_string(),
        format!("unix:{}", path.display())
    );
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(|mut conn: Connection| async move {
        while let Some(frame) = conn.recv().await? {
            conn.send(frame).await?;
        }
        Ok::<_, ServerError>(())
    }));
    assert_eq!(&client.call("over unix").await.unwrap()[..], b"over unix");
    // A second server on the same path is refused while the first runs.
    let taken = Server::bind(format!("unix:{}", path.display()))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("echo.sock"), "{taken}");
    assert!(path.exists());
    client.close().await.unwrap();
    handle.shutdown();
    serving.await.unwrap();
    assert!(!path.exists(), "the socket file outlived the server");
    std::fs::remove_dir(&dir).unwrap();
}

/// A host with no port is a bad address on both sides, reported before any attempt.
#[tokio::test]
async fn host_without_port_is_a_bad_address() {
    let err = Client::connect("localhost").await.unwrap_err();
    assert!(
        matches!(err, framewire_client::ClientError::InvalidEndpoint { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no port"), "{err}");
    let err = Server::bind("localhost").await.unwrap_err();
    assert!(err.to_string().contains("no port"), "{err}");
}
