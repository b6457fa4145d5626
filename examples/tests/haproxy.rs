//! framewire behind the real HAProxy (Debian package `haproxy`; `.ci/run` installs it): two
//! `lb_backend` processes behind one HAProxy speaking `send-proxy-v2` with health checks, all
//! on loopback ports, all started and stopped by the test.
//!
//! Without an `haproxy` binary the tests fail when `CI=true` and otherwise print a loud
//! "SKIPPED" message and pass (install it with `apt-get install haproxy`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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

/// Runs `test` if HAProxy is available (see [`haproxy_available`]), bounded by `limit`.
async fn with_haproxy(limit: Duration, test: impl std::future::Future<Output = ()>) {
    if haproxy_available() {
        tokio::time::timeout(limit, test)
            .await
            .expect("test timed out");
    }
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

/// One message a `--record` backend's handler took.
#[derive(Clone, Debug)]
struct Handled {
    /// The message number (its payload).
    n: u64,
    /// Flagged as a redelivery.
    redelivered: bool,
    /// Its message id as the handler saw it (`Delivery::id`, session hex `:` seq).
    id: String,
}

/// What a `--record` backend process logged, in order: what became of the client's session on
/// each connection (`New`, `Resumed`, `Lost`), and every message its handlers took.
#[derive(Clone, Debug, Default)]
struct Life {
    sessions: Vec<String>,
    handled: Vec<Handled>,
}

impl Life {
    /// How many connections found the session in state `status`.
    fn sessions(&self, status: &str) -> usize {
        self.sessions.iter().filter(|s| *s == status).count()
    }
}

type Record = Arc<Mutex<Life>>;

/// A running `lb_backend`.
struct Backend {
    proc: Proc,
    addr: SocketAddr,
    record: Record,
    reader: tokio::task::JoinHandle<()>,
}

/// Starts `lb_backend --name NAME` with `args` on `addr` (port 0 for any), trusting the
/// balancer at 127.0.0.1, and waits for its "listening on" line. Later `c STATUS` and
/// `m N R ID` lines (with `--record`) are collected into [`Backend::record`].
async fn backend(name: &str, addr: SocketAddr, args: &[&str]) -> Backend {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb_backend"))
        .args(["--addr", &addr.to_string(), "--trust", "127.0.0.1/32"])
        .args(["--name", name])
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
    let record = Record::default();
    let log = Arc::clone(&record);
    // Keep reading stdout (so the child never blocks on a full pipe) until it closes.
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let parts: Vec<&str> = line.split(' ').collect();
            let mut life = log.lock().expect("record lock");
            match parts[..] {
                ["c", status] => life.sessions.push(status.to_owned()),
                ["m", n, r, id] => life.handled.push(Handled {
                    n: n.parse().expect("numbered messages only"),
                    redelivered: r == "1",
                    id: id.to_owned(),
                }),
                _ => {}
            }
        }
    });
    Backend {
        proc: Proc { child },
        addr,
        record,
        reader,
    }
}

impl Backend {
    /// Messages recorded so far.
    fn recorded(&self) -> usize {
        self.record.lock().expect("record lock").handled.len()
    }

    /// Whether message `n` was recorded.
    fn took(&self, n: u64) -> bool {
        let life = self.record.lock().expect("record lock");
        life.handled.iter().rev().any(|h| h.n == n)
    }

    /// Sends `signal` (`"TERM"` or `"KILL"`), waits for the process to exit and for its
    /// stdout to be read to the end; returns everything it recorded.
    async fn stop(mut self, signal: &str) -> Life {
        let pid = self.proc.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
        tokio::time::timeout(Duration::from_secs(15), self.proc.child.wait())
            .await
            .expect("backend did not exit within 15 s")
            .expect("wait for backend");
        tokio::time::timeout(Duration::from_secs(5), &mut self.reader)
            .await
            .expect("backend stdout not closed")
            .expect("reader task");
        let record = self.record.lock().expect("record lock").clone();
        record
    }
}

/// A free loopback port (bound, then released for HAProxy to take).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// HAProxy in front of `backends`, listening on the returned address.
struct Haproxy {
    proc: Proc,
    addr: SocketAddr,
    dir: TempDir,
}

impl Haproxy {
    /// Sends `command` to HAProxy's admin socket; its answer (empty if it cannot be reached).
    async fn admin(&self, command: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut sock) = tokio::net::UnixStream::connect(self.dir.0.join("admin.sock")).await
        else {
            return String::new();
        };
        if sock
            .write_all(format!("{command}\n").as_bytes())
            .await
            .is_err()
        {
            return String::new();
        }
        let mut out = String::new();
        let _ = sock.read_to_string(&mut out).await;
        out
    }

    /// How many servers HAProxy's health checks have up (from its stats socket).
    async fn servers_up(&self) -> usize {
        let out = self.admin("show servers state servers").await;
        // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state ...; 2 is running.
        out.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(' ').nth(5) == Some("2"))
            .count()
    }

    /// Waits (bounded) until `n` servers are up.
    async fn wait_up(&self, n: usize) {
        for _ in 0..200 {
            if self.servers_up().await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("HAProxy did not see {n} servers up within 10 s");
    }

    /// SIGKILLs HAProxy (every connection through it is cut, both sides) and starts it again
    /// with the same configuration on the same address, while the backends stay up.
    async fn kill_and_restart(&mut self) {
        self.proc.child.start_kill().expect("kill haproxy");
        tokio::time::timeout(Duration::from_secs(10), self.proc.child.wait())
            .await
            .expect("haproxy did not exit within 10 s")
            .expect("wait for haproxy");
        self.proc = start_haproxy(&self.dir.0.join("haproxy.cfg"));
        let listening = wait_listening(&mut self.proc, self.addr).await;
        assert!(
            listening,
            "restarted haproxy exited: {} was taken meanwhile?",
            self.addr
        );
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The minimal configuration the README shows, on loopback ports: mode tcp, `balance`
/// (`roundrobin`, or `source` to send a client back to the backend it was on),
/// `send-proxy-v2` and health checks every 200 ms (down after 2 failures, up after 1 success,
/// so the tests do not wait long), and an admin socket for the tests.
fn haproxy_cfg(
    listen: SocketAddr,
    backends: &[SocketAddr],
    balance: &str,
    admin: &std::path::Path,
) -> String {
    let mut cfg = format!(
        "global\n    maxconn 512\n    stats socket {} level admin\n\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n    retries 3\n    option redispatch\n\n\
         frontend fw\n    bind {listen}\n    default_backend servers\n\n\
         backend servers\n    balance {balance}\n",
        admin.display()
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "    server s{i} {b} send-proxy-v2 check inter 200ms fall 2 rise 1\n"
        ));
    }
    cfg
}

/// Starts `haproxy` in the foreground with the configuration file `cfg`.
fn start_haproxy(cfg: &std::path::Path) -> Proc {
    let child = Command::new("haproxy")
        .arg("-db") // foreground, no daemon
        .arg("-f")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start haproxy: {e}"));
    Proc { child }
}

/// Waits (bounded) until `proc` listens on `addr` (true) or exits (false).
async fn wait_listening(proc: &mut Proc, addr: SocketAddr) -> bool {
    for _ in 0..100 {
        if let Some(status) = proc.child.try_wait().expect("haproxy status") {
            eprintln!("haproxy exited ({status}) while starting on {addr}");
            return false;
        }
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("haproxy did not listen on {addr} within 5 s (see its messages above)");
}

/// HAProxy balancing `roundrobin` over `backends`.
async fn haproxy(backends: &[SocketAddr]) -> Haproxy {
    haproxy_balancing(backends, "roundrobin").await
}

async fn haproxy_balancing(backends: &[SocketAddr], balance: &str) -> Haproxy {
    let dir = std::env::temp_dir().join(format!(
        "framewire-haproxy-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = TempDir(dir);
    let cfg = dir.0.join("haproxy.cfg");
    let admin = dir.0.join("admin.sock");
    // The port is released before HAProxy binds it, so another process may take it meanwhile:
    // then HAProxy exits with a bind error, and we try again with a new port rather than talk
    // to whoever took it.
    for _attempt in 0..3 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        std::fs::write(&cfg, haproxy_cfg(addr, backends, balance, &admin))
            .expect("write haproxy.cfg");
        let mut proc = start_haproxy(&cfg);
        if wait_listening(&mut proc, addr).await {
            return Haproxy { proc, addr, dir };
        }
    }
    panic!("haproxy exited on start three times (see its messages above)");
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
        let mut seen = HashSet::new();
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
    with_haproxy(TEST_TIMEOUT, async {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let b1 = backend("b1", any, &["--greet", "--per-ip", "1"]).await;
        let b2 = backend("b2", any, &["--greet", "--per-ip", "1"]).await;
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
    .await;
}

/// Upper bound for each ack-mode test (two backend restarts and 100,000 messages).
const ACK_TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Messages each ack-mode test streams.
const MESSAGES: u64 = 100_000;

/// The window of the backends and of the client.
const WINDOW: &str = "64";

/// [`WINDOW`] as a number.
fn window() -> u32 {
    WINDOW.parse().expect("a number")
}

/// An ack-mode client through HAProxy that keeps reconnecting (through HAProxy, which picks a
/// backend that is up) for as long as a restart takes.
async fn ack_client(lb: SocketAddr) -> framewire_client::AckClient {
    framewire_client::Client::builder()
        .ack_window(window())
        .reconnect(
            framewire_client::ReconnectPolicy::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(500))
                .max_attempts(Some(100)),
        )
        .connect_ack(lb)
        .await
        .expect("ack-mode connect through haproxy")
}

/// Which of `backends` the client's messages currently go to: the one whose record grows
/// (waits, bounded, for one to take a message after `index`'s last count).
async fn current(backends: &[&Backend]) -> usize {
    let before: Vec<usize> = backends.iter().map(|b| b.recorded()).collect();
    for _ in 0..500 {
        for (i, b) in backends.iter().enumerate() {
            if b.recorded() > before[i] {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no backend took a message for 5 s");
}

/// Waits (bounded) until one of `backends` took message `n`; returns which.
async fn taking(backends: &[&Backend], n: u64) -> usize {
    for _ in 0..1000 {
        if let Some(i) = backends.iter().position(|b| b.took(n)) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no backend took message {n} within 10 s");
}

/// What the backends' records show, checked by [`check_deliveries`].
#[derive(Debug)]
struct Delivered {
    /// Messages a handler took more than once (on different backend processes), in order.
    repeats: Vec<u64>,
    /// Messages a handler took only once and yet flagged as a redelivery.
    flagged_once: usize,
    /// Connections (handlers) that found the client's session new, resumed, lost.
    new: usize,
    resumed: usize,
    lost: usize,
}

/// Checks what every backend process recorded against the client's receipts (`ids[n]` is the
/// id the receipt of message `n` resolved to):
/// - every message `0..MESSAGES` reached a handler (0 lost), and nothing else did;
/// - every delivery of a message carries the id of its receipt: a message taken twice (on two
///   backends) carries the same id, on the wire, both times;
/// - every copy but the first is flagged as a redelivery (at most one copy unflagged);
/// - messages are flagged only after a backend answered "session lost", at most the client's
///   window per such answer (what the client had sent and saw no ack for).
fn check_deliveries(lives: &[Life], ids: &[String]) -> Delivered {
    let mut seen: HashMap<u64, Vec<&Handled>> = HashMap::new();
    for h in lives.iter().flat_map(|l| &l.handled) {
        seen.entry(h.n).or_default().push(h);
    }
    let missing: Vec<u64> = (0..MESSAGES).filter(|n| !seen.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} messages lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        seen.len() as u64,
        MESSAGES,
        "messages that were never sent arrived"
    );
    let mut repeats = Vec::new();
    let mut flagged_once = 0;
    for (n, copies) in &seen {
        for h in copies {
            assert_eq!(
                h.id, ids[*n as usize],
                "message {n} reached a handler with id {}, its receipt says {}",
                h.id, ids[*n as usize]
            );
        }
        let unflagged = copies.iter().filter(|h| !h.redelivered).count();
        assert!(
            unflagged <= 1,
            "message {n} arrived {} times, {unflagged} of them not flagged as a redelivery",
            copies.len()
        );
        if copies.len() > 1 {
            repeats.push(*n);
        } else if copies[0].redelivered {
            flagged_once += 1;
        }
    }
    repeats.sort_unstable();
    let count = |status| lives.iter().map(|l| l.sessions(status)).sum::<usize>();
    let d = Delivered {
        repeats,
        flagged_once,
        new: count("New"),
        resumed: count("Resumed"),
        lost: count("Lost"),
    };
    let flagged = d.flagged_once + d.repeats.len();
    assert!(
        flagged <= window() as usize * d.lost,
        "{flagged} messages flagged, more than the window ({WINDOW}) per lost session ({})",
        d.lost
    );
    d
}

/// What [`stream`] returns.
struct Streamed {
    reconnects: u64,
    redeliveries: u64,
    /// The id each message's receipt resolved to (`MessageId` as text), by message number.
    ids: Vec<String>,
}

/// One line on what reached the handlers and what the client did, for the tests' output.
fn summary(d: &Delivered, streamed: &Streamed) -> String {
    format!(
        "{} reached a handler twice, each with the same id both times (first {:?}); {} \
         delivered once but flagged as redeliveries; sessions new/resumed/lost {}/{}/{}; the \
         client reconnected {} times and resent {} messages",
        d.repeats.len(),
        &d.repeats[..d.repeats.len().min(5)],
        d.flagged_once,
        d.new,
        d.resumed,
        d.lost,
        streamed.reconnects,
        streamed.redeliveries,
    )
}

/// Streams `MESSAGES` numbered messages. An event `at(i)` starts in its own task when message
/// `i` is about to be sent and runs while the stream goes on (a kill lands mid-stream, with
/// messages in flight); the stream waits for the previous event to finish before starting the
/// next, and for the last before its final flush. Returns once every receipt resolved (each
/// is checked to be `Ok`), with the client's reconnect and redelivery counts and every
/// message's id.
async fn stream<F, Fut>(client: framewire_client::AckClient, mut at: F) -> Streamed
where
    F: FnMut(u64) -> Option<Fut>,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut receipts = Vec::with_capacity(MESSAGES as usize);
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    for i in 0..MESSAGES {
        if let Some(event) = at(i) {
            if let Some(previous) = running.take() {
                previous.await.expect("event task");
            }
            running = Some(tokio::spawn(event));
        }
        receipts.push(client.send(i.to_string()).await.expect("send"));
    }
    if let Some(last) = running {
        last.await.expect("event task");
    }
    client
        .flush()
        .await
        .expect("flush: every message acknowledged");
    let mut ids = Vec::with_capacity(receipts.len());
    for (i, r) in receipts.into_iter().enumerate() {
        let id = r
            .await
            .unwrap_or_else(|e| panic!("receipt of message {i} failed: {e}"));
        ids.push(id.to_string());
    }
    let streamed = Streamed {
        reconnects: client.reconnects(),
        redeliveries: client.redeliveries(),
        ids,
    };
    client.close().await.expect("close");
    streamed
}

/// The arguments of every ack-mode backend.
const ACK_ARGS: [&str; 3] = ["--ack", WINDOW, "--record"];

/// Two recording ack-mode backends behind HAProxy, both up, and a client connected through it.
struct Cluster {
    lb: Arc<tokio::sync::Mutex<Haproxy>>,
    /// The running backends (a restarted one takes its predecessor's place).
    backends: Arc<tokio::sync::Mutex<Vec<Backend>>>,
    /// What each stopped backend process recorded, in the order they stopped.
    lives: Arc<Lives>,
    client: framewire_client::AckClient,
}

/// What each stopped backend process recorded.
type Lives = Mutex<Vec<Life>>;

/// Two backends started with `args`, HAProxy balancing them by `balance`.
async fn cluster(args: &[&str], balance: &str) -> Cluster {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let b1 = backend("b1", any, args).await;
    let b2 = backend("b2", any, args).await;
    let lb = haproxy_balancing(&[b1.addr, b2.addr], balance).await;
    lb.wait_up(2).await;
    let client = ack_client(lb.addr).await;
    Cluster {
        lb: Arc::new(tokio::sync::Mutex::new(lb)),
        backends: Arc::new(tokio::sync::Mutex::new(vec![b1, b2])),
        lives: Arc::default(),
        client,
    }
}

impl Cluster {
    /// Stops the backends still running (gracefully) and returns what every backend process
    /// recorded, the stopped ones first.
    async fn finish(backends: &tokio::sync::Mutex<Vec<Backend>>, lives: &Lives) -> Vec<Life> {
        let running = std::mem::take(&mut *backends.lock().await);
        let mut all = std::mem::take(&mut *lives.lock().expect("lives"));
        for b in running {
            all.push(b.stop("TERM").await);
        }
        all
    }
}

/// The message whose first handler keeps it (recorded, never acknowledged: it never asks for
/// the next one) until its backend is SIGKILLed.
const STALLED: u64 = 30_000;

#[tokio::test]
async fn ack_stream_survives_a_backend_killed_and_restarted() {
    with_haproxy(ACK_TEST_TIMEOUT, async {
        let stall = STALLED.to_string();
        let args = [&ACK_ARGS[..], &["--stall-at", &stall]].concat();
        let c = cluster(&args, "roundrobin").await;
        let (lb, backends, lives, client) = (c.lb, c.backends, c.lives, c.client);
        let killed_at = Arc::new(Mutex::new(None));
        let streamed = stream(client, |i| {
            let (backends, lives, killed_at, lb) = (
                backends.clone(),
                lives.clone(),
                killed_at.clone(),
                lb.clone(),
            );
            (i == STALLED || i == 60_000).then_some(async move {
                let mut backends = backends.lock().await;
                if i == STALLED {
                    // SIGKILL the backend whose handler took message STALLED and stalls on it
                    // (taken, not acknowledged): no GOAWAY, no FIN from it.
                    let victim = taking(&[&backends[0], &backends[1]], STALLED).await;
                    let b = backends.remove(victim);
                    let addr = b.addr;
                    let life = b.stop("KILL").await;
                    lives.lock().expect("lives").push(life);
                    *killed_at.lock().expect("killed") = Some((victim, addr));
                } else {
                    // Later: restart it on the same port; HAProxy's checks see it up again.
                    let (victim, addr) = killed_at.lock().expect("killed").expect("killed");
                    backends.insert(victim, backend("restarted", addr, &ACK_ARGS).await);
                    lb.lock().await.wait_up(2).await;
                }
            })
        })
        .await;

        let (victim, _) = killed_at
            .lock()
            .expect("killed")
            .expect("a backend was killed");
        // [killed, then the running ones in place order: the restarted one at `victim`].
        let lives = Cluster::finish(&backends, &lives).await;
        let (survivor, restarted) = (&lives[2 - victim], &lives[1 + victim]);
        let d = check_deliveries(&lives, &streamed.ids);
        eprintln!(
            "SIGKILL: {} messages on the killed backend, {} on the survivor, {} on the restarted \
             one; {}",
            lives[0].handled.len(),
            survivor.handled.len(),
            restarted.handled.len(),
            summary(&d, &streamed),
        );
        assert!(streamed.reconnects >= 1, "the client never reconnected");
        assert!(
            survivor.handled.len() as u64 >= MESSAGES - 60_000,
            "the stream did not move to the survivor"
        );
        // The duplicate branch for real: the killed handler took STALLED and never acknowledged
        // it, so the client resent it to the survivor: two deliveries, one id, the second
        // flagged (checked above for every repeat).
        assert!(
            d.repeats.contains(&STALLED),
            "message {STALLED} (taken, not acknowledged, at the kill) reached only one handler"
        );
        assert!(
            survivor
                .handled
                .iter()
                .any(|h| h.n == STALLED && h.redelivered),
            "message {STALLED} did not reach the survivor flagged"
        );
        assert_eq!(d.lost, 1, "the survivor answers \"session lost\" once");
    })
    .await;
}

#[tokio::test]
async fn rolling_graceful_restart_of_both_backends_loses_nothing() {
    with_haproxy(ACK_TEST_TIMEOUT, async {
        let Cluster {
            lb,
            backends,
            lives,
            client,
        } = cluster(&ACK_ARGS, "roundrobin").await;
        let streamed = stream(client, |i| {
            let (backends, lives, lb) = (backends.clone(), lives.clone(), lb.clone());
            (i == 25_000 || i == 60_000).then_some(async move {
                // Restart the backend the stream goes to (first one, then the other):
                // SIGTERM (graceful: GOAWAY to the client, which reconnects through HAProxy to
                // the other backend), wait for it to exit, start it again on the same port and
                // wait for HAProxy to see it up.
                let mut backends = backends.lock().await;
                let victim = current(&[&backends[0], &backends[1]]).await;
                let b = backends.remove(victim);
                let addr = b.addr;
                let life = b.stop("TERM").await;
                lives.lock().expect("lives").push(life);
                backends.insert(victim, backend("restarted", addr, &ACK_ARGS).await);
                lb.lock().await.wait_up(2).await;
            })
        })
        .await;

        let lives = Cluster::finish(&backends, &lives).await;
        // Within one backend process, no message reaches the handler twice.
        for (k, life) in lives.iter().enumerate() {
            let mut once = HashSet::new();
            for h in &life.handled {
                assert!(
                    once.insert(h.n),
                    "message {} reached backend life {k} twice",
                    h.n
                );
            }
        }
        let d = check_deliveries(&lives, &streamed.ids);
        let sizes: Vec<usize> = lives.iter().map(|l| l.handled.len()).collect();
        eprintln!(
            "rolling restart: messages per backend life {sizes:?}; {}",
            summary(&d, &streamed),
        );
        assert!(
            streamed.reconnects >= 2,
            "one reconnect per restart expected, got {}",
            streamed.reconnects
        );
        assert!(
            sizes[0] > 0 && sizes[1] > 0,
            "both restarts happened mid-stream: {sizes:?}"
        );
    })
    .await;
}

/// Cuts in [`ack_session_resumes_on_the_same_backend_through_haproxy`]: one every 10,000
/// messages; the one at [`HAPROXY_RESTART_AT`] kills and restarts HAProxy.
const CUT_EVERY: u64 = 10_000;

/// The message at which that test SIGKILLs HAProxy and starts it again.
const HAPROXY_RESTART_AT: u64 = 50_000;

#[tokio::test]
async fn ack_session_resumes_on_the_same_backend_through_haproxy() {
    with_haproxy(ACK_TEST_TIMEOUT, async {
        // `balance source`: a client comes back to the backend it was on, which keeps its
        // session. The backends stay up; only the client's connections are cut, by HAProxy.
        let c = cluster(&ACK_ARGS, "source").await;
        let streamed = stream(c.client, |i| {
            let (backends, lb) = (c.backends.clone(), c.lb.clone());
            (i > 0 && i % CUT_EVERY == 0).then_some(async move {
                // Wait until the stream flows (a connection is up and delivering), then cut.
                {
                    let backends = backends.lock().await;
                    current(&[&backends[0], &backends[1]]).await;
                }
                let mut lb = lb.lock().await;
                if i == HAPROXY_RESTART_AT {
                    lb.kill_and_restart().await;
                } else {
                    // HAProxy closes both sides of every connection to either server.
                    for server in ["servers/s0", "servers/s1"] {
                        let out = lb
                            .admin(&format!("shutdown sessions server {server}"))
                            .await;
                        assert!(out.trim().is_empty(), "haproxy: {out}");
                    }
                }
            })
        })
        .await;

        let lives = Cluster::finish(&c.backends, &c.lives).await;
        let cuts = MESSAGES / CUT_EVERY - 1;
        let d = check_deliveries(&lives, &streamed.ids);
        let sizes: Vec<usize> = lives.iter().map(|l| l.handled.len()).collect();
        eprintln!(
            "resume through HAProxy: {cuts} cuts (one a HAProxy SIGKILL and restart); messages \
             per backend {sizes:?}; {}",
            summary(&d, &streamed),
        );
        // Exactly once within the one backend: the session resumed on every reconnect.
        assert!(d.repeats.is_empty(), "taken twice: {:?}", &d.repeats);
        assert_eq!(d.flagged_once, 0, "flagged although the session was kept");
        assert_eq!((d.new, d.lost), (1, 0), "sessions new / lost");
        assert!(
            d.resumed as u64 >= cuts && streamed.reconnects >= cuts,
            "{cuts} cuts, {} resumed sessions, {} reconnects",
            d.resumed,
            streamed.reconnects
        );
        assert!(
            sizes.contains(&(MESSAGES as usize)),
            "one backend took every message (balance source): {sizes:?}"
        );
        assert_eq!(streamed.redeliveries, 0);
    })
    .await;
}
