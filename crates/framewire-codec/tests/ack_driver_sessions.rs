//! The one ack driver (`AckDriver`) with sessions: an accepting driver with a `SessionHub`
//! against a connecting driver with a session, over `tokio::io::duplex`, on virtual time.
//! Each connection of a session is a new driver; the client's state is carried over with
//! `AckState::reconnect`, as `AckClient` does.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framewire_codec::ack::{
    new_session_id, AckConfig, AckDriver, AckError, AckFrame, AckState, Hello, SessionHub,
    SessionId, SessionStatus, SessionStore,
};
use framewire_codec::FrameCodec;
use tokio::io::DuplexStream;

type Driver = AckDriver<DuplexStream>;

fn config() -> AckConfig {
    AckConfig::new()
        .window(8)
        .keepalive(Some(Duration::from_secs(5)))
        .peer_timeout(Some(Duration::from_secs(20)))
}

fn driver(io: DuplexStream, state: AckState) -> Driver {
    AckDriver::from_parts(
        io,
        FrameCodec::new(),
        BytesMut::new(),
        BytesMut::new(),
        state,
        64 * 1024,
    )
}

/// A server connection: an accepting driver answering sessions from `hub`.
fn server(io: DuplexStream, hub: &SessionHub) -> Driver {
    let state = AckState::accepting(config(), FrameCodec::new().max_frame_len());
    driver(io, state).with_sessions(hub)
}

/// The client's handshake and the server's accept, together.
async fn connect(client: &mut Driver, server: &mut Driver) {
    let (c, ()) = tokio::join!(client.handshake(), poll_fn(|cx| server.poll_accept(cx)));
    c.unwrap();
}

/// The client's connection is gone: its state, ready for the next one.
fn park(client: Driver) -> AckState {
    let (_, _, _, _, mut state, inbox) = client.into_parts();
    assert!(inbox.is_empty());
    state.reconnect(state.taken_through());
    state
}

async fn recv(d: &mut Driver) -> Result<Option<Bytes>, AckError> {
    poll_fn(|cx| d.poll_recv(cx))
        .await
        .map(|m| m.map(|d| d.payload))
}

/// Review-2 M2: the stored state a resume adopts came through `reconnect` (no timer state),
/// and the driver arms its timers once; a server connection polled before the client's
/// HELLO (always so on the takeover path) then ran no keepalive and no peer timeout after
/// the resume. A silent client must fail it with `PeerSilent`.
#[tokio::test(start_paused = true)]
async fn a_resumed_server_connection_keeps_its_timers() {
    let hub = SessionHub::new(SessionStore::new());
    let id = new_session_id().unwrap();

    let (c_io, s_io) = tokio::io::duplex(64 * 1024);
    let mut client = driver(c_io, AckState::with_session(config(), 1 << 20, id));
    let mut s1 = server(s_io, &hub);
    connect(&mut client, &mut s1).await;
    client
        .send(Bytes::from_static(b"one"), false)
        .await
        .unwrap();
    assert_eq!(recv(&mut s1).await.unwrap().unwrap(), "one");
    assert!(s1.detach_session(), "the session is kept");
    drop(s1);
    let state = park(client);

    let (c_io, s_io) = tokio::io::duplex(64 * 1024);
    let mut s2 = server(s_io, &hub);
    // Polled before the client's HELLO arrives: the timers start on the fresh state.
    assert!(poll_fn(|cx| Poll::Ready(s2.poll_accept(cx).is_pending())).await);
    let mut client = driver(c_io, state);
    connect(&mut client, &mut s2).await;
    assert_eq!(s2.state().session_status(), SessionStatus::Resumed);
    assert!(s2.poll_timeout().is_some(), "the resumed state has timers");

    // The client goes silent (its socket stays open; it never answers a PING).
    let r = tokio::time::timeout(Duration::from_secs(600), recv(&mut s2))
        .await
        .expect("the peer timeout ends the wait");
    assert!(
        matches!(
            r,
            Err(AckError::PeerSilent {
                timeout_ms: 20_000,
                ..
            })
        ),
        "{r:?}"
    );
    drop(client);
}

/// The client's HELLO resuming session `id`, length-prefixed, as a server would read it.
fn resume_hello(id: SessionId) -> BytesMut {
    let mut h = Hello::new(8, 1 << 20, 1 << 20);
    h.session = id;
    h.resume = true;
    let mut buf = BytesMut::new();
    AckFrame::<&[u8]>::Hello(h)
        .encode(&mut FrameCodec::new(), &mut buf)
        .unwrap();
    buf
}

/// Review-2 N1: a connection waiting to take a session over registered its waker with the
/// hub on every poll (no dedupe), and `try_recv`, which does no I/O and does not wait, tripped
/// the holder and registered a no-op waker.
#[tokio::test(start_paused = true)]
async fn a_takeover_wait_registers_one_waker_and_try_recv_neither_trips_nor_registers() {
    let hub = SessionHub::new(SessionStore::new());
    let id = new_session_id().unwrap();
    let (c_io, s_io) = tokio::io::duplex(64 * 1024);
    let mut client = driver(c_io, AckState::with_session(config(), 1 << 20, id));
    let mut holder = server(s_io, &hub);
    connect(&mut client, &mut holder).await;
    assert_eq!(hub.live(), 1);

    // A second connection whose HELLO (already read) names the held session: `try_recv`
    // settles nothing and leaves the holder alone.
    let (_c2, s_io) = tokio::io::duplex(64 * 1024);
    let state = AckState::accepting(config(), FrameCodec::new().max_frame_len());
    let mut waiting = AckDriver::from_parts(
        s_io,
        FrameCodec::new(),
        resume_hello(id),
        BytesMut::new(),
        state,
        64 * 1024,
    )
    .with_sessions(&hub);
    for _ in 0..10 {
        assert!(waiting.try_recv().unwrap().is_none());
    }
    assert_eq!((hub.taken_over(), hub.waiting()), (0, 0), "try_recv");
    holder
        .start_send(Bytes::from_static(b"still mine"), false)
        .expect("the holder was not told to end");

    // Polled (it waits): the holder is tripped once, and the waiter registered once however
    // often it is polled.
    poll_fn(|cx| {
        for _ in 0..100 {
            assert!(waiting.poll_accept(cx).is_pending());
        }
        Poll::Ready(())
    })
    .await;
    assert_eq!((hub.taken_over(), hub.waiting()), (1, 1), "poll_accept");
    assert!(matches!(
        holder.start_send(Bytes::from_static(b"late"), false),
        Err(AckError::SessionTakenOver)
    ));
    drop(client);
}
