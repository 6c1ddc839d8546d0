//! Connections: half-sent requests are closed and cost bounded memory (the real binary, its RSS
//! read from /proc), idle keep-alive connections and silent request bodies are closed, `GET /`
//! leads to the landing page, and a missing `theme_dir` stops the server before it starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

fn doorman() -> Command {
    doorman_command()
}

/// `doorman serve` as a child process (output in files, so a full pipe never blocks it).
struct Serve {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Serve {
    async fn start(extra_toml: &str) -> Serve {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let config = dir.path().join("doorman.toml");
            let opts = Options {
                extra_toml: extra_toml.to_string(),
                ..Default::default()
            };
            std::fs::write(&config, config_text(port, &dir.path().join("data"), &opts)).unwrap();
            let child = doorman()
                .args(["serve", "--config", config.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
                .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
                .spawn()
                .unwrap();
            let mut serve = Serve {
                child,
                base: format!("http://127.0.0.1:{port}"),
                dir,
            };
            if serve.wait_healthy().await {
                return serve;
            }
            let stderr = std::fs::read_to_string(serve.dir.path().join("stderr")).unwrap();
            assert!(stderr.contains("cannot listen"), "serve exited:\n{stderr}");
        }
        panic!("serve never started");
    }

    /// Polls /healthz for up to 20 s; false if the process exited.
    async fn wait_healthy(&mut self) -> bool {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not become healthy within 20 s");
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in:\n{status}"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets this process (and the server it starts) open a few thousand sockets: the soft limit up
/// to the hard one, and (as root) both to 8192 if they are lower.
fn raise_fd_limit() {
    const WANT: libc::rlim_t = 8192;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= WANT {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: WANT,
            rlim_max: lim.rlim_max.max(WANT),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Waits (up to `deadline`) until the server closes `stream`: true if it did.
async fn closed_by_server(stream: &mut TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (e.g. 408) before the close: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

const HALF_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_and_memory_stays_bounded() {
    const CONNECTIONS: usize = 2000;
    raise_fd_limit();
    let serve = Serve::start("").await;
    let addr = serve.addr();
    // Warm up the paths a request takes, then measure where the server starts.
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let r = http
            .get(format!("{}/healthz", serve.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(http);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_kib = serve.rss_kib();

    // 2,000 connections from 127.0.0.1, each with half a request header.
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(HALF_REQUEST).await.unwrap();
        streams.push(s);
    }
    let sent = tokio::time::Instant::now();

    // Meanwhile another address is served at once.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let r = other
        .get(format!("{}/healthz", serve.base))
        .send()
        .await
        .expect("GET /healthz from 127.0.0.2 did not answer within 3 s during the flood");
    assert_eq!(r.status(), 200);

    // What the open connections cost: the highest RSS seen over a second.
    let mut open_kib = serve.rss_kib();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open_kib = open_kib.max(serve.rss_kib());
    }

    // All of them closed by the server within 30 s of the last one opening.
    let deadline = sent + Duration::from_secs(30);
    let mut still_open = 0;
    for s in &mut streams {
        if !closed_by_server(s, deadline).await {
            still_open += 1;
        }
    }
    let closed_after = sent.elapsed();
    drop(streams);
    assert_eq!(
        still_open, 0,
        "{still_open} of {CONNECTIONS} half-sent requests still open 30 s later"
    );

    // Memory comes back (poll for a few seconds: the server frees as its tasks end).
    let mut end_kib = serve.rss_kib();
    let settle = Instant::now() + Duration::from_secs(10);
    while end_kib > start_kib + 12 * 1024 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
        end_kib = serve.rss_kib();
    }
    eprintln!(
        "flood of {CONNECTIONS} half-sent requests: RSS {start_kib} KiB at start, {open_kib} KiB \
         while open (+{} KiB), {end_kib} KiB after they closed (+{} KiB); all closed {:.1} s \
         after the last was opened",
        open_kib.saturating_sub(start_kib),
        end_kib.saturating_sub(start_kib),
        closed_after.as_secs_f64()
    );
    assert!(
        open_kib < start_kib + 48 * 1024,
        "{CONNECTIONS} open connections cost {} KiB",
        open_kib - start_kib
    );
    assert!(
        end_kib <= start_kib + 12 * 1024,
        "RSS {end_kib} KiB after the flood, {start_kib} KiB before"
    );
    // And the server still serves.
    let r = reqwest::get(format!("{}/healthz", serve.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A client that connects and sends nothing, and one that sends its request head a byte at a
/// time too slowly, are both closed after `header_read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_closed() {
    let server =
        TestServer::start("[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"30s\"").await;
    let addr: std::net::SocketAddr = server.origin.trim_start_matches("http://").parse().unwrap();
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(20);

    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut silent, deadline()).await);

    let mut dribble = TcpStream::connect(addr).await.unwrap();
    dribble
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let until = deadline();
    let mut closed = false;
    loop {
        // Well within the timeout between bytes, but the head never completes.
        if dribble.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), dribble.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
        if tokio::time::Instant::now() > until {
            break;
        }
    }
    assert!(
        closed,
        "a request head sent a byte every 200 ms was never cut off"
    );
}

/// A kept-alive connection gets `idle_timeout` (not `header_read_timeout`) to send its next
/// request, and is closed once that passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let server =
        TestServer::start("[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"5s\"").await;
    let addr: std::net::SocketAddr = server.origin.trim_start_matches("http://").parse().unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let first = read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle for longer than header_read_timeout: still open, and a second request is answered.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.write_all(request).await.unwrap();
    let second = read_response(&mut s).await;
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "a kept-alive connection idle for less than idle_timeout was not served: {second:?}"
    );
    // Then idle for good: closed by the server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    assert!(closed_by_server(&mut s, deadline).await);
}

/// A request whose body stops arriving is closed after idle_timeout + header_read_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_is_closed() {
    let server =
        TestServer::start("[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"").await;
    let addr: std::net::SocketAddr = server.origin.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    assert!(closed_by_server(&mut s, deadline).await);
}

/// Request heads over 64 KiB are refused (431) instead of being buffered.
#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let server = TestServer::start("").await;
    let addr: std::net::SocketAddr = server.origin.trim_start_matches("http://").parse().unwrap();
    let send = |size: usize| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(size)
        );
        let _ = s.write_all(head.as_bytes()).await;
        read_response(&mut s).await
    };
    let fine = send(30_000).await;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine:?}");
    let big = send(70_000).await;
    assert!(
        big.starts_with("HTTP/1.1 431"),
        "{:?}",
        &big[..big.len().min(200)]
    );
}

/// Reads one response head and its (Content-Length) body.
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let t = text(&got);
        if let Some((head, body)) = t.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    text(&got)
}

/// With `max_connections` taken, a new connection waits and is served once a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_a_client_waits_for_a_free_slot() {
    let server =
        TestServer::start("[server]\nmax_connections = 2\nheader_read_timeout = \"30s\"").await;
    let addr: std::net::SocketAddr = server.origin.trim_start_matches("http://").parse().unwrap();
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(HALF_REQUEST).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(HALF_REQUEST).await.unwrap();
    // The third connects (the kernel queues it) but is not served while both slots are taken.
    let socket = TcpSocket::new_v4().unwrap();
    let mut c = socket.connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), c.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while max_connections = 2 were taken"
    );
    // One slot frees: the waiting request is answered.
    drop(a);
    let answer = read_response(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    drop(b);
}

#[tokio::test]
async fn root_sends_the_browser_to_the_landing_page() {
    let server = TestServer::start("").await;
    let page = Browser::new().get(&server.url("/")).await;
    assert!(
        matches!(page.status, 302 | 303 | 307),
        "GET / answered {}",
        page.status
    );
    assert_eq!(
        page.location().unwrap().as_str(),
        server.url("/login"),
        "GET / leads to the landing page"
    );
    let login = Browser::new().get(&server.url("/login")).await;
    login.assert_status(200);
    assert!(login.login_form().is_some(), "{}", login.text);

    // Under an issuer with a path: the host's root, the path and the path with a slash.
    let server = TestServer::start_with(Options {
        issuer_path: Some("/auth".into()),
        ..Default::default()
    })
    .await;
    for path in ["/", "/auth", "/auth/"] {
        let page = Browser::new()
            .get(&format!("{}{path}", server.origin))
            .await;
        assert!(
            matches!(page.status, 302 | 303 | 307),
            "GET {path} answered {}",
            page.status
        );
        assert_eq!(
            page.location().unwrap().as_str(),
            format!("{}/auth/login", server.origin),
            "GET {path}"
        );
    }
    // Other unknown paths stay 404.
    Browser::new()
        .get(&server.url("/nothing-here"))
        .await
        .assert_status(404);
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("doorman.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    doorman().args(args).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn a_missing_theme_dir_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("themes").join("mine");
    let config = write_config(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = '{}'\ntheme_dir = '{}'\n",
            free_port(),
            dir.path().join("data").display(),
            missing.display()
        ),
    );
    let config = config.to_str().unwrap();
    for command in ["check-config", "serve"] {
        let out = run(&[command, "--config", config]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{command} accepted a missing theme_dir"
        );
        assert!(
            stderr.contains("theme_dir")
                && stderr.contains(&missing.display().to_string())
                && stderr.contains("does not exist"),
            "{command}: {stderr}"
        );
    }
    // Once it exists, the config is valid.
    std::fs::create_dir_all(&missing).unwrap();
    let out = run(&["check-config", "--config", config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
