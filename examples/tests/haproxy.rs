//! framewire behind the real HAProxy (Debian package `haproxy`; `.ci/run` installs it): two
//! `lb_backend` processes behind one HAProxy speaking `send-proxy-v2` with health checks, all
//! on loopback ports, all started and stopped by the test.
//!
//! Without an `haproxy` binary the tests fail when `CI=true` and otherwise print a loud
//! "SKIPPED" message and pass (install it with `apt-get install haproxy`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use framewire_codec::FrameCodec;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_util::codec::Framed;

/// Upper bound for any one test; every wait inside is bounded too.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether `haproxy` can run here; panics in CI if not, so CI never skips silently.
fn haproxy_available() -> bool {
    let found = std::process::Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "haproxy is not installed; .ci/run should have installed it (apt-get install -y haproxy)"
        );
        eprintln!(
            "\n*** SKIPPED: haproxy is not installed, so the HAProxy tests did not run. \
             Install it (apt-get install -y haproxy) to run them. ***\n"
        );
    }
    found
}

/// A child process killed when dropped (a failed test leaves nothing running).
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A running `lb_backend`.
struct Backend {
    proc: Proc,
    addr: SocketAddr,
}

/// Starts `lb_backend` with `args` on `addr` (port 0 for any), trusting the balancer at
/// 127.0.0.1, and waits for its "listening on" line.
async fn backend(name: &str, addr: SocketAddr, args: &[&str]) -> Backend {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb_backend"))
        .args(["--addr", &addr.to_string(), "--trust", "127.0.0.1/32"])
        .args(["--name", name, "--greet"])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start lb_backend");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("lb_backend did not start within 10 s")
        .expect("read lb_backend's stdout")
        .expect("lb_backend exited before listening");
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from lb_backend: {line:?}"));
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Backend {
        proc: Proc { child },
        addr,
    }
}

/// A free loopback port (bound, then released for HAProxy to take).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// HAProxy in front of `backends`, listening on the returned address.
struct Haproxy {
    _proc: Proc,
    addr: SocketAddr,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The minimal configuration the README shows, on loopback ports: mode tcp, round robin,
/// `send-proxy-v2` and health checks every 200 ms (down after 1 failure, up after 1 success,
/// so the tests do not wait long).
fn haproxy_cfg(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut cfg = format!(
        "global\n    maxconn 512\n\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    retries 3\n    option redispatch\n\n\
         frontend fw\n    bind {listen}\n    default_backend servers\n\n\
         backend servers\n    balance roundrobin\n"
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "    server s{i} {b} send-proxy-v2 check inter 200ms fall 1 rise 1\n"
        ));
    }
    cfg
}

async fn haproxy(backends: &[SocketAddr]) -> Haproxy {
    let dir = std::env::temp_dir().join(format!(
        "framewire-haproxy-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = TempDir(dir);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = dir.0.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_cfg(addr, backends)).expect("write haproxy.cfg");
    let child = Command::new("haproxy")
        .arg("-db") // foreground, no daemon
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start haproxy: {e}"));
    let h = Haproxy {
        _proc: Proc { child },
        addr,
        _dir: dir,
    };
    // Wait (bounded) until HAProxy listens.
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("haproxy did not listen on {addr} within 5 s (see its messages above)");
}

type Client = Framed<TcpStream, FrameCodec>;

/// A plain framed client whose socket is bound to `source`.
async fn client_from(source: Ipv4Addr, addr: SocketAddr) -> (Client, SocketAddr) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind source address");
    let stream = socket.connect(addr).await.expect("connect to haproxy");
    let local = stream.local_addr().expect("local addr");
    (FrameCodec::new().framed(stream), local)
}

/// The greeting (`NAME PEER VIA`), or `None` if the connection was closed first.
async fn greeting(c: &mut Client) -> Option<(String, String, String)> {
    let frame = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("no greeting and no close within 10 s")?
        .ok()?;
    let text = String::from_utf8(frame.to_vec()).expect("utf-8 greeting");
    let mut parts = text.split(' ').map(str::to_owned);
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Waits (bounded) until HAProxy's health checks have both backends up: connections land on
/// both.
async fn wait_both_up(addr: SocketAddr) {
    for round in 0..100u8 {
        let mut seen = std::collections::HashSet::new();
        for k in 0..2u8 {
            // A fresh source address per probe: the backends cap connections per client IP.
            let (mut c, _) = client_from(Ipv4Addr::new(127, 0, 1 + k, round), addr).await;
            if let Some((name, _, _)) = greeting(&mut c).await {
                seen.insert(name);
            }
        }
        if seen.len() == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("HAProxy never had both backends up within 10 s");
}

#[tokio::test]
async fn handlers_see_clients_own_addresses_and_per_ip_caps_act_on_them() {
    if !haproxy_available() {
        return;
    }
    tokio::time::timeout(TEST_TIMEOUT, async {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let b1 = backend("b1", any, &["--per-ip", "1"]).await;
        let b2 = backend("b2", any, &["--per-ip", "1"]).await;
        let lb = haproxy(&[b1.addr, b2.addr]).await;
        wait_both_up(lb.addr).await;

        // Clients from five source addresses: each handler sees the client's own address and
        // port, relayed by HAProxy (127.0.0.1).
        let mut kept = Vec::new();
        for i in 2..7u8 {
            let source = Ipv4Addr::new(127, 0, 0, i);
            let (mut c, local) = client_from(source, lb.addr).await;
            let (name, peer, via) = greeting(&mut c).await.expect("served");
            assert_eq!(peer, local.to_string(), "backend {name} saw the wrong peer");
            assert!(via.starts_with("127.0.0.1:"), "balancer address: {via}");
            c.send(Bytes::from(format!("from {source}")))
                .await
                .expect("send");
            let echo = c.next().await.expect("echo").expect("echo frame");
            assert_eq!(&echo[..], format!("from {source}").as_bytes());
            kept.push(c);
        }

        // The per-IP cap (1 per backend) acts on the client address, not on HAProxy's: four
        // connections from 127.0.0.7 (round robin: b1, b2, b1, b2) get two slots, one per
        // backend, while the clients above, all relayed from the same HAProxy address, were
        // all served.
        let mut served = Vec::new();
        let mut closed = 0;
        let mut held = Vec::new();
        for _ in 0..4 {
            let (mut c, _) = client_from(Ipv4Addr::new(127, 0, 0, 7), lb.addr).await;
            match greeting(&mut c).await {
                Some((name, _, _)) => {
                    served.push(name);
                    held.push(c);
                }
                None => closed += 1,
            }
        }
        served.sort();
        assert_eq!(
            served,
            ["b1", "b2"],
            "one connection per backend for 127.0.0.7"
        );
        assert_eq!(closed, 2);
        // Another client address is still served.
        let (mut c, local) = client_from(Ipv4Addr::new(127, 0, 0, 8), lb.addr).await;
        let (_, peer, _) = greeting(&mut c).await.expect("served");
        assert_eq!(peer, local.to_string());
        drop((kept, held, b1.proc, b2.proc));
    })
    .await
    .expect("test timed out");
}
