//! The tutorial and mirror handlers, written once: the examples use them through
//! `framewire_examples` (`echo_server`, `metrics_server`, `lb_backend`, `sticky_demo`, `ack_demo`,
//! `loadgen serve`), and the server's and client's tests include this file with `#[path]`
//! (a crate cannot depend on the examples package), so every test runs the handler an
//! example runs. Each is a [`framewire_server::Handler`] as it stands:
//! `server.serve(tutorial::<()>)`.

use framewire_server::{Connection, ServerError};

/// The tutorial's conversation: greet with `你好欢迎你`, answer every frame with the frame
/// plus `好`, end at `q` (what `echo_server` runs by default).
pub async fn tutorial<S>(mut conn: Connection<S>) -> Result<(), ServerError> {
    conn.send("你好欢迎你").await?;
    while let Some(frame) = conn.recv().await? {
        if &frame[..] == b"q" {
            break;
        }
        conn.send([&frame[..], "好".as_bytes()].concat()).await?;
    }
    Ok(())
}

/// Byte-for-byte echo; a burst of pipelined frames is answered with one write (what
/// `echo_server --mirror` runs). The frames are forwarded as runs, as they arrived
/// ([`Connection::recv_run`]): one split of the read buffer and one copy per burst, not per
/// frame. In ack mode each message is one run.
pub async fn mirror<S>(mut conn: Connection<S>) -> Result<(), ServerError> {
    while let Some(run) = conn.recv_run().await? {
        conn.feed_run(run).await?;
        while let Some(more) = conn.try_recv_run()? {
            conn.feed_run(more).await?;
        }
        conn.flush().await?;
    }
    Ok(())
}

/// [`mirror`] frame by frame ([`Connection::recv`] and [`Connection::feed_bytes`], so frames
/// of 1 KiB and more are written from the read buffer they arrived in, without a copy): the
/// shape of a handler that looks at each message. `loadgen serve --impl framewire-each`
/// measures it next to `mirror`.
pub async fn mirror_each<S>(mut conn: Connection<S>) -> Result<(), ServerError> {
    while let Some(frame) = conn.recv().await? {
        conn.feed_bytes(frame).await?;
        while let Some(more) = conn.try_recv()? {
            conn.feed_bytes(more).await?;
        }
        conn.flush().await?;
    }
    Ok(())
}
