//! The server's `metrics` feature seen through `metrics-exporter-prometheus`, as
//! `examples/metrics_server.rs` uses it: after an echo and a refused connection, the rendered
//! text carries the server's counts. One test in this binary: the recorder is process-wide.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use framewire_codec::FrameCodec;
use framewire_examples::mirror;
use framewire_server::Server;
use futures::{SinkExt, StreamExt};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

#[tokio::test]
async fn stats_reach_prometheus() {
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let server = Server::builder()
        .accept_filter(|peer| peer.ip() != Some([127, 0, 0, 2].into()))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().tcp().unwrap();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(mirror::<()>));
    let body = tokio::time::timeout(Duration::from_secs(20), async {
        let mut client = Framed::new(TcpStream::connect(addr).await.unwrap(), FrameCodec::new());
        for payload in ["one", "two", "three"] {
            client
                .send(bytes::Bytes::copy_from_slice(payload.as_bytes()))
                .await
                .unwrap();
            assert_eq!(
                &client.next().await.unwrap().unwrap()[..],
                payload.as_bytes()
            );
        }
        drop(client);
        // Refused by the filter.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let refused = socket.connect(addr).await.unwrap();
        while handle.stats().refused_by_filter == 0 || handle.stats().active > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(refused);
        handle.shutdown();
        // The server publishes its last snapshot as it stops.
        serving.await.unwrap();
        prometheus.render()
    })
    .await
    .unwrap();
    let server_label = format!("server=\"{addr}\"");
    let value = |name: &str, label: &str| -> Option<String> {
        body.lines()
            .find(|l| l.starts_with(name) && l.contains(&server_label) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    println!("{body}");
    let frames_in = value("framewire_server_frames_total", "direction=\"in\"");
    assert_eq!(frames_in.as_deref(), Some("3"), "{body}");
    let frames_out = value("framewire_server_frames_total", "direction=\"out\"");
    assert_eq!(frames_out.as_deref(), Some("3"), "{body}");
    let bytes_in = value("framewire_server_bytes_total", "direction=\"in\"");
    assert_eq!(bytes_in.as_deref(), Some("23"), "{body}");
    let accepted = value("framewire_server_connections_accepted_total", "");
    assert_eq!(accepted.as_deref(), Some("1"), "{body}");
    let refused = value(
        "framewire_server_connections_refused_total",
        "reason=\"filter\"",
    );
    assert_eq!(refused.as_deref(), Some("1"), "{body}");
    let active = value("framewire_server_connections_active", "");
    assert_eq!(active.as_deref(), Some("0"), "{body}");
}
