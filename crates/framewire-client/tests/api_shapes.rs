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

/// Replies to "slow" after 2 s (of tokio's clock) and to anything else at once.
async fn slow_then_fast() -> (framewire_server::Address, framewire_server::ServerHandle) {
    let server = Server::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = server.local_addr().clone();
    let handle = server.handle();
    tokio::spawn(server.serve(|mut conn: Connection| async move {
        while let Some(frame) = conn.recv().await? {
            if &frame[..] == b"slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            conn.send(frame).await?;
        }
        Ok::<_, ServerError>(())
    }));
    (addr, handle)
}

/// The desync: a timeout wrapped around `call`, then another call, which returned the
/// first call's late reply. Now it is an error, never the wrong reply.
#[tokio::test(start_paused = true)]
async fn cancelled_call_never_yields_its_reply_to_the_next_call() {
    let (addr, handle) = slow_then_fast().await;
    let mut client = Client::connect(&addr).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(1), client.call("slow")).await;
    assert!(first.is_err(), "the slow call should time out");
    match client.call("fast").await {
        Err(framewire_client::ClientError::CallAbandoned) => {}
        other => panic!("expected CallAbandoned, got {other:?}"),
    }
    assert!(matches!(
        client.recv().await,
        Err(framewire_client::ClientError::CallAbandoned)
    ));
    handle.shutdown();
}

#[tokio::test(start_paused = true)]
async fn call_timeout_fails_and_closes_the_pairing() {
    let (addr, handle) = slow_then_fast().await;
    let mut client = Client::connect(&addr).await.unwrap();
    let reply = client
        .call_timeout("quick", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(&reply[..], b"quick");
    match client.call_timeout("slow", Duration::from_secs(1)).await {
        Err(framewire_client::ClientError::CallTimeout { timeout }) => {
            assert_eq!(timeout, Duration::from_secs(1))
        }
        other => panic!("expected CallTimeout, got {other:?}"),
    }
    assert!(matches!(
        client.call_timeout("fast", Duration::from_secs(5)).await,
        Err(framewire_client::ClientError::CallAbandoned)
    ));
    handle.shutdown();
}

/// A plain client whose peer opens with an ack-mode HELLO (as an ack-mode peer that speaks
/// first does): a clear error, not the HELLO handed out as a reply. (framewire's own ack-mode
/// server waits for the client's HELLO, so against it a plain client sees the connection
/// closed instead: ClosedByPeer with nothing received.)
#[tokio::test]
async fn plain_client_on_ack_peer_is_told_so() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // An ack-mode HELLO: kind 0x01, magic FWAK, version 2, then flags, windows, max
        // frame length, session id and delivered-through (zeros here).
        let mut hello = vec![0x01];
        hello.extend_from_slice(&framewire_codec::ack::MAGIC);
        hello.push(framewire_codec::ack::VERSION);
        hello.resize(framewire_codec::ack::HELLO_LEN, 0);
        let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&hello);
        socket.write_all(&frame).await.unwrap();
        socket
    });
    let mut client = Client::connect(addr).await.unwrap();
    let err = client.call("hello").await.unwrap_err();
    assert!(
        matches!(
            err,
            framewire_client::ClientError::PeerSpeaksAckMode { version: 2 }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("connect_ack"), "{err}");
    // And it stays an error: the HELLO is never handed out later either.
    assert!(matches!(
        client.recv().await,
        Err(framewire_client::ClientError::PeerSpeaksAckMode { .. })
    ));
    drop(peer.await.unwrap());
}

/// A send after a failed send names the failure that closed the connection.
#[tokio::test]
async fn closed_after_an_error_names_the_error() {
    let server = Server::bind(("127.0.0.1", 0)).await.unwrap();
    let client = Client::connect(server.local_addr()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let handle = server.handle();
    tokio::spawn(server.serve(move |mut conn: Connection| {
        let tx = tx.lock().unwrap().take();
        async move {
            // The client has gone: keep sending until the reset surfaces.
            let mut first = None;
            for _ in 0..100_000 {
                if let Err(e) = conn.send([0u8; 1024]).await {
                    first = Some(e.to_string());
                    break;
                }
                tokio::task::yield_now().await;
            }
            let later = conn.send("again").await.unwrap_err();
            if let Some(tx) = tx {
                let _ = tx.send((first, later.to_string()));
            }
        }
    }));
    drop(client);
    let (first, later) = rx.await.unwrap();
    let first = first.expect("a send to a closed peer failed");
    assert!(later.contains(&first), "{later:?} does not name {first:?}");
    handle.shutdown();
}

/// Ack mode: a write timeout caused by a full peer window says so (not "0 bytes waiting").
#[tokio::test]
async fn ack_write_timeout_names_the_full_window() {
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let tx = std::sync::Mutex::new(Some(tx));
    let server = Server::builder()
        .ack_mode(2)
        .write_timeout(Some(Duration::from_millis(200)))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = server.local_addr().clone();
    let handle = server.handle();
    tokio::spawn(server.serve(move |mut conn: Connection| {
        let tx = tx.lock().unwrap().take();
        async move {
            let mut outcome = String::from("all sent");
            for i in 0..3 {
                if let Err(e) = conn.send(format!("m{i}")).await {
                    outcome = e.to_string();
                    break;
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(outcome);
            }
        }
    }));
    // Connected, never takes a message: no ACK ever comes back.
    let client = Client::builder()
        .ack_window(2)
        .reconnect(framewire_client::ReconnectPolicy::never())
        .connect_ack(&addr)
        .await
        .unwrap();
    let outcome = rx.await.unwrap();
    assert!(outcome.contains("window stayed full"), "{outcome}");
    assert!(outcome.contains("2 messages"), "{outcome}");
    drop(client);
    handle.shutdown();
}

/// Every builder consumes `self` and returns it, so a chain can be kept in a `let` and
/// finished later (with the codec's and ack mode's `&mut self` setters this was E0716: the
/// temporary builder was dropped while borrowed).
#[tokio::test]
async fn codec_and_ack_builders_kept_in_a_let() {
    use framewire_codec::ack::{AckConfig, AckFramed};
    use framewire_codec::{ByteOrder, FrameCodec};

    let codec = FrameCodec::builder()
        .max_frame_len(1024)
        .byte_order(ByteOrder::LittleEndian);
    assert_eq!(codec.build().max_frame_len(), 1024);

    let config = AckConfig::new().window(2).max_unacked(3);
    assert_eq!((config.get_window(), config.get_max_unacked()), (2, 3));

    let ack = AckFramed::builder().config(config).write_high_water(4096);
    assert_eq!(ack.ack_config(), config);

    // A server and a client take the kept builders as they are.
    let server = Server::builder()
        .codec(codec)
        .ack_config(config)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().clone();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(|mut conn: Connection| async move {
        while let Some(frame) = conn.recv().await? {
            conn.send(frame).await?;
        }
        Ok::<_, ServerError>(())
    }));
    let client = Client::builder().codec(codec).ack_config(config);
    let mut client = client.connect_ack(&addr).await.unwrap();
    let receipt = client.send(&b"kept"[..]).await.unwrap();
    assert_eq!(&client.recv().await.unwrap().unwrap().payload[..], b"kept");
    receipt.await.unwrap();
    client.close().await.unwrap();
    handle.shutdown();
    serving.await.unwrap();
}

/// One rule for timeouts and limits: those that can be off take `impl Into<Option<_>>` (the
/// value itself, or `None`), those that cannot take the value. Passing a bare `Duration` to
/// `stall_timeout`, `write_timeout`, `keepalive`, `peer_timeout`, `ack_timeout`,
/// `ack_deadlock_grace` or `max_elapsed` was E0308 (they took `Option<Duration>` while
/// `idle_timeout` took either).
#[test]
fn timeouts_take_a_duration_or_none() {
    use framewire_client::ReconnectPolicy;
    use framewire_codec::ack::AckConfig;

    let secs = Duration::from_secs;
    let config = AckConfig::new().keepalive(secs(5)).peer_timeout(None);
    assert_eq!(config.get_keepalive(), Some(secs(5)));
    assert_eq!(config.get_peer_timeout(), None);
    let config = config.keepalive(None).peer_timeout(Some(secs(7)));
    assert_eq!(
        (config.get_keepalive(), config.get_peer_timeout()),
        (None, Some(secs(7)))
    );

    let policy = ReconnectPolicy::default()
        .max_elapsed(secs(30))
        .max_attempts(5);
    assert_eq!(policy.elapsed_limit(), Some(secs(30)));
    assert_eq!(policy.attempt_limit(), Some(5));
    let policy = policy.max_elapsed(None).max_attempts(None);
    assert_eq!(
        (policy.elapsed_limit(), policy.attempt_limit()),
        (None, None)
    );

    let _client = Client::builder()
        .connect_timeout(secs(1))
        .ack_timeout(secs(10))
        .ack_deadlock_grace(None)
        .reconnect(policy);
    let _server = Server::builder()
        .idle_timeout(secs(60))
        .stall_timeout(secs(30))
        .write_timeout(None)
        .min_receive_rate(100)
        .max_connections_per_ip(None)
        .grace_period(secs(5));
}

/// `FrameCodec`'s `Sink` has one item type (`Bytes`), so a plain `framed.flush()` and
/// `framed.close()` compile (with an encoder for every `AsRef<[u8]>` they were E0283: type
/// annotations needed).
#[tokio::test]
async fn framed_flush_and_close_need_no_annotation() {
    use futures::{SinkExt, StreamExt};

    let (a, b) = tokio::io::duplex(1024);
    let mut framed = framewire_codec::FrameCodec::new().framed(a);
    framed.feed("one".into()).await.unwrap();
    framed.feed(bytes::Bytes::from(vec![2u8])).await.unwrap();
    framed.flush().await.unwrap();
    framed.close().await.unwrap();
    let mut peer = framewire_codec::FrameCodec::new().framed(b);
    assert_eq!(&peer.next().await.unwrap().unwrap()[..], b"one");
    assert_eq!(&peer.next().await.unwrap().unwrap()[..], [2u8]);
    assert!(peer.next().await.is_none());
}
